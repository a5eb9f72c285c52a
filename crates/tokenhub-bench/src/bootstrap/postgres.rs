//! A fresh PostgreSQL database for one bench run, made on the server of the URL given and
//! dropped after the run: a bench's figures never depend on what an earlier run left behind.

use anyhow::Context;
use sqlx::{Connection, Executor, Row};

/// A database this run made (`<prefix>_<random>`), and the URL the hub opens it with.
pub(crate) struct FreshDatabase {
    server: String,
    name: String,
    pub(crate) url: String,
}

impl FreshDatabase {
    /// Makes the database on the server of `server_url` (whose own database is where the
    /// `CREATE DATABASE` is sent from).
    pub(crate) async fn create(server_url: &str, prefix: &str) -> anyhow::Result<Self> {
        let name = format!("{prefix}_{}", super::random_hex(6));
        let (base, query) = match server_url.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (server_url, None),
        };
        let (host, _) = base
            .rsplit_once('/')
            .context("the database URL names no database (postgres://user@host:port/db)")?;
        let url = match query {
            Some(q) => format!("{host}/{name}?{q}"),
            None => format!("{host}/{name}"),
        };
        let mut admin = sqlx::PgConnection::connect(server_url)
            .await
            .with_context(|| format!("connecting to {host}"))?;
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .with_context(|| format!("creating the database {name}"))?;
        admin.close().await.ok();
        Ok(Self {
            server: server_url.to_string(),
            name,
            url,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database, closing what still holds it open (a killed hub's connections).
    pub(crate) async fn drop_now(self) -> anyhow::Result<()> {
        let mut admin = sqlx::PgConnection::connect(&self.server).await?;
        admin
            .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
            .await
            .with_context(|| format!("dropping the database {}", self.name))?;
        admin.close().await.ok();
        Ok(())
    }
}

/// The size of the hub's database in MB: the SQLite file (and its WAL), or PostgreSQL's
/// `pg_database_size`.
pub(crate) async fn database_mb(url: &str) -> f64 {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return crate::campaign::file_mb(std::path::Path::new(path));
    }
    let size = async {
        let mut c = sqlx::PgConnection::connect(url).await?;
        let row = c
            .fetch_one("SELECT pg_database_size(current_database())")
            .await?;
        let bytes: i64 = row.try_get(0)?;
        c.close().await.ok();
        anyhow::Ok(bytes)
    }
    .await;
    size.map_or(f64::NAN, |b| b as f64 / 1_048_576.0)
}
