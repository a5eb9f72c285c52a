//! The PostgreSQL baseline of the data bench: an HTTP server whose handler does one `INSERT` of
//! the request's body into a scratch table, committed (autocommit: the statement and its commit
//! in one round trip) before its `204`. Same driver as the hub (sqlx's `Any` pool, the hub's pool
//! size), same server, same database, same load: what one commit per request costs there, the
//! figure the hub's group commit is judged against.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use std::net::SocketAddr;
use std::time::Duration;

/// The scratch table: a key, and the body as it came.
const CREATE: &str =
    "CREATE TABLE IF NOT EXISTS bench_baseline (id BIGSERIAL PRIMARY KEY, body BYTEA NOT NULL)";
const INSERT: &str = "INSERT INTO bench_baseline (body) VALUES ($1)";

/// The baseline server, in this process beside the hub.
pub(crate) struct Baseline {
    pub(crate) addr: SocketAddr,
    pool: AnyPool,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Baseline {
    /// Connects to `url` (the hub's database) and serves on a port of its own.
    pub(crate) async fn start(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(tokenhub::store::PG_POOL_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::query(CREATE).execute(&pool).await?;
        let router = axum::Router::new()
            .route(
                "/trapi/v2.0/tokens/{token_id}/data",
                axum::routing::put(insert),
            )
            .with_state(pool.clone())
            .layer(axum::extract::DefaultBodyLimit::max(
                tokenhub::http::MAX_BODY_BYTES,
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Self {
            addr,
            pool,
            stop,
            server,
        })
    }

    /// Stops serving and empties the scratch table (the hub's phases that follow find the
    /// database as without it, but for the write-ahead log already written).
    pub(crate) async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.server.await??;
        sqlx::query("DROP TABLE bench_baseline")
            .execute(&self.pool)
            .await?;
        self.pool.close().await;
        Ok(())
    }
}

/// One `INSERT` of the body, committed; `204` after the commit.
async fn insert(State(pool): State<AnyPool>, body: Bytes) -> StatusCode {
    match sqlx::query(INSERT).bind(body.to_vec()).execute(&pool).await {
        Ok(_) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}
