//! Network partitions between chosen nodes: a TCP proxy in front of every node's peer
//! (gRPC) port.
//!
//! Each node listens on its real peer port and advertises the proxy's
//! (`--advertise-grpc`), so every node-to-node connection (Raft traffic and routed
//! commands) passes through the proxy of the node it goes to. Each node also opens its
//! connections to other nodes from its own loopback address (`--peer-source-ip
//! 127.0.0.<10+id>`; all of 127/8 is local on Linux), which tells the proxy who is
//! calling.
//!
//! A blocked pair behaves as a network that drops packets, not as a closed port: bytes
//! stop flowing in both directions (the sender's buffers fill, its deadlines and HTTP/2
//! keep-alives expire), new connections are accepted but get no answer, and whatever
//! was held back flows once the partition heals, as TCP retransmission would deliver
//! it. Clients' RESP connections do not pass through the proxy: a partition separates
//! nodes from nodes, and each side's routers keep serving their clients.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The loopback address node `id` calls other nodes from.
pub fn source_ip(id: u64) -> IpAddr {
    let last = u8::try_from(10 + id).unwrap_or(u8::MAX);
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// Which node a connection comes from, by its source address (none for anything
/// else, such as a node's start-up probe or a test's client).
fn caller(addr: SocketAddr) -> Option<u64> {
    match addr.ip() {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            (a == 127 && b == 0 && c == 0 && d > 10).then(|| u64::from(d) - 10)
        }
        IpAddr::V6(_) => None,
    }
}

/// The blocked directed pairs (from, to), shared by every proxy; a change is
/// announced to every connection.
#[derive(Debug, Clone)]
pub struct Partitions {
    blocked: Arc<watch::Sender<BTreeSet<(u64, u64)>>>,
}

impl Default for Partitions {
    fn default() -> Self {
        Partitions {
            blocked: Arc::new(watch::channel(BTreeSet::new()).0),
        }
    }
}

impl Partitions {
    /// Cuts every link between a node of one side and a node of another, both ways.
    pub fn split(&self, sides: &[Vec<u64>]) {
        let mut pairs = BTreeSet::new();
        for (i, a) in sides.iter().enumerate() {
            for b in sides.iter().skip(i + 1) {
                for &x in a {
                    for &y in b {
                        pairs.insert((x, y));
                        pairs.insert((y, x));
                    }
                }
            }
        }
        self.blocked.send_replace(pairs);
    }

    /// Whether `node` is cut off from more nodes than it can reach of `all`: its view
    /// of the cluster may be stale.
    pub fn cut_off(&self, node: u64, all: &[u64]) -> bool {
        let blocked = self.blocked.borrow();
        let unreachable = all
            .iter()
            .filter(|&&other| other != node && blocked.contains(&(node, other)))
            .count();
        2 * unreachable >= all.len()
    }

    /// Every link up again.
    pub fn heal(&self) {
        self.blocked.send_replace(BTreeSet::new());
    }

    fn watch(&self) -> watch::Receiver<BTreeSet<(u64, u64)>> {
        self.blocked.subscribe()
    }
}

/// The proxies of a cluster: node id → the address others reach it at.
#[derive(Debug)]
pub struct Proxies {
    pub partitions: Partitions,
    pub ports: HashMap<u64, u16>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Proxies {
    /// One proxy per node, each forwarding to that node's real peer port.
    pub async fn start(nodes: &[(u64, u16)]) -> Result<Proxies> {
        let partitions = Partitions::default();
        let mut ports = HashMap::new();
        let mut tasks = Vec::new();
        for &(id, upstream) in nodes {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .context("binding a proxy")?;
            ports.insert(id, listener.local_addr()?.port());
            let partitions = partitions.clone();
            tasks.push(tokio::spawn(serve(listener, id, upstream, partitions)));
        }
        Ok(Proxies {
            partitions,
            ports,
            tasks,
        })
    }
}

impl Drop for Proxies {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn serve(listener: TcpListener, to: u64, upstream: u16, partitions: Partitions) {
    loop {
        let Ok((client, from)) = listener.accept().await else {
            continue;
        };
        let link = Link {
            from: caller(from),
            to,
            partitions: partitions.watch(),
        };
        // A link ends when either side closes it (the node's process exits with the
        // cluster).
        tokio::spawn(async move {
            let _ = link.carry(client, upstream).await;
        });
    }
}

/// One proxied connection.
struct Link {
    from: Option<u64>,
    to: u64,
    partitions: watch::Receiver<BTreeSet<(u64, u64)>>,
}

impl Link {
    fn blocked(&self) -> bool {
        self.from
            .is_some_and(|from| self.partitions.borrow().contains(&(from, self.to)))
    }

    /// Waits until the link is up.
    async fn open(&mut self) {
        while self.blocked() {
            if self.partitions.changed().await.is_err() {
                return;
            }
        }
    }

    async fn carry(mut self, client: TcpStream, upstream: u16) -> Result<()> {
        let _ = client.set_nodelay(true);
        // A connection made during a partition is accepted (the kernel does that) and
        // then hears nothing, as a SYN into a black hole would.
        self.open().await;
        let server = TcpStream::connect(("127.0.0.1", upstream)).await?;
        let _ = server.set_nodelay(true);
        let (mut client_in, mut client_out) = client.into_split();
        let (mut server_in, mut server_out) = server.into_split();
        let mut up = [0u8; 16 * 1024];
        let mut down = [0u8; 16 * 1024];
        loop {
            // Read whichever side has something, then hold it while the link is cut.
            let (n, towards_server) = tokio::select! {
                r = client_in.read(&mut up) => (r?, true),
                r = server_in.read(&mut down) => (r?, false),
            };
            if n == 0 {
                return Ok(());
            }
            self.open().await;
            if towards_server {
                server_out.write_all(&up[..n]).await?;
            } else {
                client_out.write_all(&down[..n]).await?;
            }
        }
    }
}

/// How long after a heal the harness waits before it checks anything: held-back
/// bytes flow and connections that gave up reconnect.
pub const SETTLE: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_node_on_the_small_side_is_cut_off() {
        let p = Partitions::default();
        let all = [1, 2, 3, 4, 5, 6];
        assert!(!p.cut_off(1, &all));
        p.split(&[vec![1, 4], vec![2, 3, 5, 6]]);
        assert!(p.cut_off(1, &all) && p.cut_off(4, &all));
        assert!(!p.cut_off(2, &all) && !p.cut_off(6, &all));
        p.heal();
        assert!(!p.cut_off(1, &all));
    }

    #[test]
    fn callers_are_known_by_their_loopback_address() {
        assert_eq!(caller(SocketAddr::new(source_ip(3), 5000)), Some(3));
        assert_eq!(caller("127.0.0.1:5000".parse().unwrap()), None);
        assert_eq!(caller("[::1]:5000".parse().unwrap()), None);
    }

    #[test]
    fn a_split_blocks_both_ways_between_sides_only() {
        let p = Partitions::default();
        p.split(&[vec![1], vec![2, 3]]);
        let blocked = p.watch().borrow().clone();
        assert_eq!(blocked, BTreeSet::from([(1, 2), (2, 1), (1, 3), (3, 1)]));
        p.heal();
        assert!(p.watch().borrow().is_empty());
    }

    /// An echo server behind a proxy: bytes flow, stop while the link is cut (held, not
    /// lost), and flow again after the heal.
    #[tokio::test]
    async fn a_cut_link_holds_bytes_until_it_heals() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_port = echo.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let proxies = Proxies::start(&[(2, echo_port)]).await.unwrap();
        let port = proxies.ports[&2];
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source_ip(1), 0)).unwrap();
        let mut s = socket
            .connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .unwrap();
        let mut buf = [0u8; 5];
        s.write_all(b"hello").await.unwrap();
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");

        proxies.partitions.split(&[vec![1], vec![2]]);
        s.write_all(b"again").await.unwrap();
        let held = tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut buf)).await;
        assert!(held.is_err(), "bytes crossed a cut link");
        proxies.partitions.heal();
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"again");
    }
}
