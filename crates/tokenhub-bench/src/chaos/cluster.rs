//! The hub nodes of a chaos run, each a process of its own on the shared database, and the
//! killer that takes one down with `SIGKILL` and starts it again.

use crate::bootstrap::HubProcess;
use rand::Rng;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How every node is started.
pub(crate) struct Spec {
    pub(crate) exe: PathBuf,
    pub(crate) database_url: String,
    /// The master key and the bootstrap admin token.
    pub(crate) keys: (String, String),
    pub(crate) log_filter: String,
    pub(crate) dir: PathBuf,
    pub(crate) env: Vec<(String, String)>,
}

struct Node {
    id: String,
    port: u16,
    process: HubProcess,
}

pub(crate) struct Cluster {
    spec: Spec,
    nodes: Vec<Node>,
}

/// One kill: which node, when (since the run started), and how long until it served again.
#[derive(Debug, Clone)]
pub(crate) struct Kill {
    pub(crate) node: String,
    pub(crate) at: Duration,
    pub(crate) back_after: Duration,
}

impl Cluster {
    /// Starts a node per port and waits until each serves.
    pub(crate) async fn start(spec: Spec, ports: &[u16]) -> anyhow::Result<Self> {
        let mut cluster = Self {
            spec,
            nodes: Vec::new(),
        };
        for (i, port) in ports.iter().enumerate() {
            let id = format!("chaos-node-{i}");
            let process = cluster.spawn(&id, *port).await?;
            println!("node {id}: pid {}, port {port}", process.pid());
            cluster.nodes.push(Node {
                id,
                port: *port,
                process,
            });
        }
        Ok(cluster)
    }

    async fn spawn(&self, id: &str, port: u16) -> anyhow::Result<HubProcess> {
        let mut env = self.spec.env.clone();
        env.push(("TOKENHUB_NODE_ID".into(), id.to_string()));
        let mut process = HubProcess::spawn_with(
            &self.spec.exe,
            &self.spec.database_url,
            port,
            (&self.spec.keys.0, &self.spec.keys.1),
            &self.spec.log_filter,
            &self.log_of(id),
            &env,
        )?;
        process
            .wait_ready(&format!("http://127.0.0.1:{port}"))
            .await?;
        Ok(process)
    }

    fn log_of(&self, id: &str) -> PathBuf {
        self.spec.dir.join(format!("{id}.log"))
    }

    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes
            .iter()
            .map(|n| SocketAddr::from(([127, 0, 0, 1], n.port)))
            .collect()
    }

    pub(crate) fn logs(&self) -> Vec<PathBuf> {
        self.nodes.iter().map(|n| self.log_of(&n.id)).collect()
    }

    /// Nodes that exited by themselves (not killed by the run): a node must not die of chaos.
    pub(crate) fn exited(&mut self) -> Vec<String> {
        let mut exited = Vec::new();
        for n in &mut self.nodes {
            if !n.process.running() {
                exited.push(n.id.clone());
            }
        }
        exited
    }

    /// Kills node `i` with `SIGKILL`, waits `pause`, and starts it again with the same id and
    /// port.
    pub(crate) async fn kill_and_restart(
        &mut self,
        i: usize,
        pause: Duration,
        since: Instant,
    ) -> anyhow::Result<Kill> {
        let at = since.elapsed();
        self.nodes[i].process.kill();
        let killed = Instant::now();
        tokio::time::sleep(pause).await;
        let (id, port) = (self.nodes[i].id.clone(), self.nodes[i].port);
        let process = self.spawn(&id, port).await?;
        self.nodes[i].process = process;
        Ok(Kill {
            node: id,
            at,
            back_after: killed.elapsed(),
        })
    }

    pub(crate) fn stop_all(&mut self) {
        for n in &mut self.nodes {
            n.process.kill();
        }
    }
}

/// Kills a random node every `min..=max` seconds, `kills` times, each started again after a
/// second (so that its heartbeat lapses and its claims are leased to no live process).
pub(crate) async fn killer(
    cluster: &mut Cluster,
    kills: u32,
    (min, max): (u64, u64),
    since: Instant,
) -> anyhow::Result<Vec<Kill>> {
    let mut done = Vec::new();
    for _ in 0..kills {
        let (wait_ms, victim) = {
            let mut rng = rand::thread_rng();
            (
                rng.gen_range(min * 1000..=max * 1000),
                rng.gen_range(0..cluster.nodes.len()),
            )
        };
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        let kill = cluster
            .kill_and_restart(victim, Duration::from_secs(1), since)
            .await?;
        println!(
            "  {:>6.1} s  killed {} (SIGKILL), serving again {:.1} s later",
            kill.at.as_secs_f64(),
            kill.node,
            kill.back_after.as_secs_f64()
        );
        done.push(kill);
    }
    Ok(done)
}
