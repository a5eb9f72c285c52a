//! Membership: every hub node sharing the database is listed (`GET /admin/v1/nodes`) with its last
//! heartbeat, whether it is live and what it holds; a node that stops is no longer live (at once
//! after a clean shutdown, after the claim lease after a crash); rows of nodes gone long ago are
//! pruned. On PostgreSQL the tests start more nodes on the test's database; on SQLite (one node
//! per file) the one node shows.

use crate::support::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokenhub::store::Dialect;
use tokenhub::{Application, Config};

hub_tests!(
    every_node_sharing_the_database_is_listed_live,
    a_stopped_node_is_no_longer_live_and_a_crashed_one_after_the_lease,
    the_nodes_are_shown_to_the_roles_that_read_global_objects_and_reveal_no_secret,
);
hub_tests!(config = slow_requestors; what_a_node_holds_is_listed);
hub_tests!(config = quick_prune; the_rows_of_nodes_gone_longer_than_the_retention_are_pruned);

const PATH: &str = "/admin/v1/nodes";

/// Another hub node on the test's database, serving every API on a plain loopback port, in a
/// runtime of its own: shutting that runtime down stops the node at once, as a crash would.
struct OtherNode {
    address: String,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

impl OtherNode {
    /// Starts node `id` on `app`'s database, on `app`'s clock.
    async fn start(app: &TestApp, id: &str) -> Self {
        let mut config = Config::for_database(&app.database_url());
        default_config(&mut config);
        config.node.id = id.to_string();
        let clock = Arc::new(app.clock.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the node");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (bound, address) = tokio::sync::oneshot::channel();
        let served = runtime.spawn(async move {
            let node = Application::build_with_clock(config, clock)
                .await
                .expect("the other node starts");
            let _ = bound.send(node.local_addr());
            let shutdown = async {
                let _ = stopped.await;
            };
            node.run_until(shutdown).await.expect("the node serves");
        });
        let address = address.await.expect("the node's address");
        Self {
            address: format!("http://{address}"),
            runtime: Some(runtime),
            stop: Some(stop),
            served: Some(served),
        }
    }

    /// `GET /admin/v1/nodes` on this node, with `app`'s admin key.
    async fn nodes(&self, app: &TestApp) -> Value {
        let r = reqwest::Client::new()
            .get(format!("{}{PATH}", self.address))
            .bearer_auth(&app.admin_key)
            .send()
            .await
            .expect("the node answers");
        Answer::read(r).await.expect(200).clone()
    }

    /// A clean shutdown: the node's workers end, and it says it stopped.
    async fn stop(mut self) {
        let _ = self.stop.take().expect("running").send(());
        self.served.take().expect("running").await.expect("it ends");
        self.runtime.take().expect("running").shutdown_background();
    }

    /// A crash: everything the node runs ends where it is, and it says nothing.
    fn kill(mut self) {
        self.runtime.take().expect("running").shutdown_background();
    }
}

impl Drop for OtherNode {
    fn drop(&mut self) {
        if let Some(r) = self.runtime.take() {
            r.shutdown_background();
        }
    }
}

/// `GET /admin/v1/nodes` on the test's hub.
async fn nodes(app: &TestApp) -> Value {
    app.admin_get(PATH).await.expect(200).clone()
}

/// The node `id` in a listing, if listed.
fn node<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list["nodes"]
        .as_array()
        .expect("a list of nodes")
        .iter()
        .find(|n| n["nodeId"] == id)
}

fn this_id(app: &TestApp) -> String {
    app.hub.config.node.id.clone()
}

fn is_postgres(app: &TestApp) -> bool {
    app.hub.store.dialect() == Dialect::Postgres
}

/// Waits until `probe` holds of the test hub's listing; returns that listing.
async fn listing_where(app: &TestApp, what: &str, probe: impl Fn(&Value) -> bool) -> Value {
    eventually(what, || async {
        let list = nodes(app).await;
        probe(&list).then_some(list)
    })
    .await
}

async fn every_node_sharing_the_database_is_listed_live(app: TestApp) {
    let me = this_id(&app);
    let list = nodes(&app).await;
    assert_eq!(list["claimLeaseMs"], 30_000, "{list}");
    let mine = node(&list, &me).expect("the node answering is listed");
    assert_eq!(mine["live"], true, "{list}");
    assert_eq!(mine["thisNode"], true, "{list}");
    assert_eq!(mine["version"], env!("CARGO_PKG_VERSION"), "{list}");
    assert_eq!(mine["holds"], json!({"tspCalls": 0, "notifications": 0}));
    assert!(mine["stoppedAt"].is_null(), "{list}");
    if !is_postgres(&app) {
        assert_eq!(list["nodes"].as_array().unwrap().len(), 1, "{list}");
        return;
    }
    let other = OtherNode::start(&app, "node-b").await;
    let list = listing_where(&app, "the other node listed live", |l| {
        node(l, "node-b").is_some_and(|n| n["live"] == true)
    })
    .await;
    assert_eq!(list["nodes"].as_array().unwrap().len(), 2, "{list}");
    assert_eq!(node(&list, "node-b").unwrap()["thisNode"], false);
    // The other node sees the same two, itself as the one answering.
    let seen = other.nodes(&app).await;
    assert_eq!(node(&seen, "node-b").unwrap()["thisNode"], true, "{seen}");
    assert_eq!(node(&seen, &me).unwrap()["thisNode"], false, "{seen}");
    assert_eq!(node(&seen, &me).unwrap()["live"], true, "{seen}");
    other.stop().await;
}

async fn a_stopped_node_is_no_longer_live_and_a_crashed_one_after_the_lease(app: TestApp) {
    let me = this_id(&app);
    let lease = Duration::from_millis(30_000);
    if !is_postgres(&app) {
        // The one node keeps beating: live whatever the time.
        let before = nodes(&app).await;
        app.clock.advance(lease * 2);
        listing_where(&app, "the node live after a new heartbeat", |l| {
            let n = node(l, &me).unwrap();
            n["live"] == true
                && n["lastHeartbeatAt"] != node(&before, &me).unwrap()["lastHeartbeatAt"]
        })
        .await;
        return;
    }
    let stopped = OtherNode::start(&app, "node-stopped").await;
    let crashed = OtherNode::start(&app, "node-crashed").await;
    listing_where(&app, "three nodes live", |l| {
        ["node-stopped", "node-crashed"]
            .iter()
            .all(|id| node(l, id).is_some_and(|n| n["live"] == true))
    })
    .await;

    stopped.stop().await;
    let list = nodes(&app).await;
    let gone = node(&list, "node-stopped").expect("a stopped node stays listed");
    assert_eq!(gone["live"], false, "{list}");
    assert!(gone["stoppedAt"].is_string(), "{list}");

    crashed.kill();
    // Silent, but within its lease: still live, as the other nodes must take it to be.
    let list = nodes(&app).await;
    assert_eq!(node(&list, "node-crashed").unwrap()["live"], true, "{list}");
    assert!(node(&list, "node-crashed").unwrap()["stoppedAt"].is_null());

    app.clock.advance(lease + Duration::from_secs(1));
    let list = listing_where(&app, "the crashed node not live, this one live", |l| {
        node(l, "node-crashed").unwrap()["live"] == false && node(l, &me).unwrap()["live"] == true
    })
    .await;
    assert!(node(&list, "node-crashed").unwrap()["stoppedAt"].is_null());
    assert_eq!(node(&list, "node-stopped").unwrap()["live"], false);
}

/// Requestors on 127.0.0.0/8, each delivery given 10 s: time for a test to see it held.
fn slow_requestors(config: &mut Config) {
    requestors_allowed(config);
    config.notify.timeout = Duration::from_secs(10);
}

/// A requestor's endpoint that takes each request and never answers.
async fn silent_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{address}/hooks")
}

async fn what_a_node_holds_is_listed(app: TestApp) {
    let me = this_id(&app);
    app.register_requestor(REQUESTOR, &silent_endpoint().await, 1)
        .await;
    app.tsp.hold_calls();
    // Its confirmation owes the TSP a call (held open) and the requestor an update (never
    // answered): this node claimed both and holds them while they are under way.
    app.active_token_from(json!({"tokenRequestorId": REQUESTOR, "card": card()}))
        .await;
    let holding = json!({"tspCalls": 1, "notifications": 1});
    let list = listing_where(&app, "the call and the update held", |l| {
        node(l, &me).unwrap()["holds"] == holding
    })
    .await;
    assert_eq!(node(&list, &me).unwrap()["live"], true);
    if is_postgres(&app) {
        // Another node sees what this one holds, and holds nothing itself.
        let other = OtherNode::start(&app, "node-b").await;
        let seen = other.nodes(&app).await;
        assert_eq!(node(&seen, &me).unwrap()["holds"], holding, "{seen}");
        let empty = json!({"tspCalls": 0, "notifications": 0});
        assert_eq!(node(&seen, "node-b").unwrap()["holds"], empty, "{seen}");
        other.stop().await;
    }
    app.tsp.release_calls();
    listing_where(&app, "the call settled", |l| {
        node(l, &me).unwrap()["holds"]["tspCalls"] == 0
    })
    .await;
}

async fn the_nodes_are_shown_to_the_roles_that_read_global_objects_and_reveal_no_secret(
    app: TestApp,
) {
    let anonymous = app.client.get(app.url(PATH)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = app
        .admin_as("thk_nobody_nothing", reqwest::Method::GET, PATH, None)
        .await;
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert_eq!(
        app.admin_as(ADMIN_TOKEN, reqwest::Method::GET, PATH, None)
            .await
            .status,
        403,
        "the bootstrap token manages admin keys only"
    );
    for body in [
        json!({"role": "key-custodian"}),
        json!({"role": "issuer-admin", "issuers": [ISSUER]}),
    ] {
        let key = app.create_admin_key(&body).await;
        let a = app.admin_as(&key, reqwest::Method::GET, PATH, None).await;
        assert_eq!(a.status, 403, "{body}: {a:?}");
    }
    let reader = app.create_admin_key(&json!({"role": "read-only"})).await;
    let a = app
        .admin_as(&reader, reqwest::Method::GET, PATH, None)
        .await;
    let mine = node(a.expect(200), &this_id(&app)).expect("listed").clone();
    let mut fields: Vec<&String> = mine.as_object().unwrap().keys().collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "holds",
            "lastHeartbeatAt",
            "live",
            "nodeId",
            "startedAt",
            "thisNode",
            "version"
        ],
        "{mine}"
    );
    for secret in [
        ADMIN_TOKEN,
        MASTER_KEY,
        app.admin_key.as_str(),
        reader.as_str(),
        app.database_url().as_str(),
    ] {
        assert!(!a.text.contains(secret), "{}", a.text);
    }
}

/// Nodes gone for an hour are pruned, at a sweep every 100 ms.
fn quick_prune(config: &mut Config) {
    config.retention.nodes = Duration::from_secs(3600);
    config.retention.sweep_interval = Duration::from_millis(100);
}

async fn the_rows_of_nodes_gone_longer_than_the_retention_are_pruned(app: TestApp) {
    let now = app.hub.now_ms();
    let (old, recent) = (now - 2 * 3_600_000, now - 600_000);
    app.execute_sql(&format!(
        "INSERT INTO nodes (node_id, version, started_ms, heartbeat_ms, stopped_ms) VALUES \
         ('crashed-long-ago', '0.0.1', {old}, {old}, NULL), \
         ('stopped-long-ago', '0.0.1', {old}, {old}, {old}), \
         ('stopped-lately', '0.0.1', {old}, {recent}, {recent})"
    ))
    .await;
    let list = listing_where(&app, "the nodes gone long ago pruned", |l| {
        node(l, "crashed-long-ago").is_none() && node(l, "stopped-long-ago").is_none()
    })
    .await;
    let lately = node(&list, "stopped-lately").expect("a node gone lately stays listed");
    assert_eq!(lately["live"], false, "{list}");
    assert_eq!(node(&list, &this_id(&app)).unwrap()["live"], true);
}
