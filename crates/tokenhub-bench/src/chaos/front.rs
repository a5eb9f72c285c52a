//! A round-robin TCP front before the nodes, as a load balancer in layer 4 would be: each new
//! connection goes to the next node, skipping a node that refuses it; a connection to a node
//! that dies is closed, and the caller tries again on a new one.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

pub(crate) struct Front {
    task: tokio::task::JoinHandle<()>,
    counts: Arc<Counts>,
}

struct Counts {
    /// Connections handed to each node.
    per_node: Vec<AtomicU64>,
    /// Connections no node took (every one refused).
    refused: AtomicU64,
    next: AtomicUsize,
}

impl Front {
    pub(crate) fn start(listener: TcpListener, nodes: Vec<SocketAddr>) -> Self {
        let counts = Arc::new(Counts {
            per_node: nodes.iter().map(|_| AtomicU64::new(0)).collect(),
            refused: AtomicU64::new(0),
            next: AtomicUsize::new(0),
        });
        let nodes = Arc::new(nodes);
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (nodes, counts) = (nodes.clone(), shared.clone());
                tokio::spawn(async move { forward(client, &nodes, &counts).await });
            }
        });
        Self { task, counts }
    }

    /// Connections handed to each node, and those no node took.
    pub(crate) fn connections(&self) -> (Vec<u64>, u64) {
        (
            self.counts
                .per_node
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            self.counts.refused.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(mut client: TcpStream, nodes: &[SocketAddr], counts: &Counts) {
    let _ = client.set_nodelay(true);
    let first = counts.next.fetch_add(1, Ordering::Relaxed);
    for k in 0..nodes.len() {
        let i = (first + k) % nodes.len();
        let Ok(mut node) = TcpStream::connect(nodes[i]).await else {
            continue;
        };
        let _ = node.set_nodelay(true);
        counts.per_node[i].fetch_add(1, Ordering::Relaxed);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut node).await;
        return;
    }
    counts.refused.fetch_add(1, Ordering::Relaxed);
}
