//! `shoal`: runs Shoal.
//!
//! `shoal dev` is a whole cluster in one process: 3 nodes in zones a/b/c replicating 3
//! shard groups over loopback gRPC, each with its own RocksDB under `--data-dir`, behind
//! one RESP address (`--standalone`: one unreplicated engine with a snapshot file
//! instead). `shoal node` is one node of a cluster of processes: a replica of every
//! shard group, whose writes are committed to a Raft log on a quorum before they are
//! answered, with a router in front.

// The gRPC API's request futures nest the router's (scatter, rounds, shared fences)
// deeper than the default limit of 128 allows the compiler to lay out.
#![recursion_limit = "256"]

mod access;
mod acl_command;
mod admin;
mod api;
mod busy_poll;
mod cluster_node;
mod cluster_shape;
mod connection;
mod convert;
mod dev_cluster;
mod idle_clients;
mod info;
mod live_config;
mod node;
mod node_config;
mod persist;
mod raft_admin;
mod reshard_admin;
mod search_frame;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use shoal_resp::Limits;

use crate::live_config::LiveConfig;
use tokio::net::TcpListener;

/// mimalloc: every request allocates a few small buffers, and glibc's allocator was a
/// tenth of the profile of a pipelined SET load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "shoal",
    version,
    about = "A sharded vector search cluster that speaks Redis"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a whole cluster in this process (or, with --standalone, one unreplicated
    /// engine) behind one RESP address.
    Dev(Box<DevArgs>),
    /// Runs a replica of Raft-replicated shard groups (flags or a TOML file).
    Node(Box<node_config::NodeArgs>),
}

#[derive(Debug, clap::Args)]
struct DevArgs {
    /// Address to serve RESP on.
    #[arg(long, default_value = "127.0.0.1:6379")]
    resp: SocketAddr,
    /// Address to serve the gRPC client API (proto/shoal.proto) on.
    #[arg(long, default_value = "127.0.0.1:50051")]
    api: SocketAddr,
    /// Directory for the nodes' Raft logs (RocksDB), or the --standalone snapshot;
    /// without it nothing is kept across restarts.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Nodes in the embedded cluster.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Shard groups the keys are spread over.
    #[arg(long, default_value_t = 3)]
    groups: u64,
    /// Replicas of each group, on distinct nodes (in distinct zones where there are
    /// enough); every node when there are fewer.
    #[arg(long, default_value_t = 3)]
    replication_factor: usize,
    /// Availability zones the nodes are placed in, in turn.
    #[arg(long, value_delimiter = ',', default_value = "a,b,c")]
    zones: Vec<String>,
    /// One engine in this process, unreplicated, kept by a periodic snapshot in
    /// --data-dir (the fastest way to try the commands; no failover).
    #[arg(long)]
    standalone: bool,
    /// Seconds between --standalone snapshots (when something changed).
    #[arg(long, default_value_t = 60)]
    snapshot_interval: u64,
    /// Longest argument a client may send, in bytes (at most 16 MiB unless
    /// --standalone: a log entry must fit one Raft message).
    #[arg(long, default_value_t = 512 * 1024 * 1024)]
    max_bulk_len: usize,
    /// Microseconds an answered connection polls for its next request before it
    /// sleeps: lower latency for one-at-a-time clients on VMs, at a core's worth of
    /// spinning. 0 (the default) never spins; at most 1000.
    #[arg(long, default_value_t = 0)]
    busy_poll_us: u64,
    /// Nodes whose routers serve the RESP port's and the gRPC API's clients, each new
    /// connection going to the next of them. One (the default) sends every client
    /// through node 1: the nodes share this process's cores, so more routers add no
    /// capacity, and a router's confirmation rounds are shared only by its own searches
    /// (docs/operations.md). More exercise every node's router.
    #[arg(long, default_value_t = 1)]
    routers: usize,
    /// See `shoal node --read-mode` [default: votes].
    #[arg(long)]
    read_mode: Option<String>,
    /// See `shoal node --follower-reads` [default: true].
    #[arg(long)]
    follower_reads: Option<bool>,
    #[command(flatten)]
    tls: node_config::TlsArgs,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match cli.command {
        Command::Dev(args) => runtime.block_on(dev(*args)),
        Command::Node(args) => {
            let config = (*args).resolve()?;
            runtime.block_on(replicated_node(config))
        }
    }
}

async fn dev(mut args: DevArgs) -> Result<()> {
    if !args.standalone && !(1..=args.nodes).contains(&args.routers) {
        anyhow::bail!(
            "--routers must be between 1 and --nodes ({}), not {}",
            args.nodes,
            args.routers
        );
    }
    let tls = load_tls(std::mem::take(&mut args.tls).resolve(node_config::TlsTable::default())?)?;
    let listener = TcpListener::bind(args.resp)
        .await
        .with_context(|| format!("binding {}", args.resp))?;
    let local = listener.local_addr()?;
    // One engine alone takes arguments up to Redis's default 512 MiB (or what was asked),
    // a cluster's only what fits one Raft message.
    let ceiling = if args.standalone {
        args.max_bulk_len.max(Limits::default().max_bulk_len)
    } else {
        node_config::MAX_BULK_LEN
    };
    let settings = connection::Settings {
        limits: Limits::default(),
        // Capped: a longer spin holds a worker thread that other clients and timers need.
        busy_poll: Duration::from_micros(args.busy_poll_us.min(1_000)),
        live: Arc::new(LiveConfig::new(args.max_bulk_len, ceiling)),
    };
    if args.standalone {
        return standalone(args, listener, settings, tls).await;
    }
    // Without a data directory the cluster lives in a temporary one, removed at exit.
    let (data_dir, temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("shoal-dev-{}", std::process::id())),
            true,
        ),
    };
    let shape = dev_cluster::Shape {
        nodes: args.nodes,
        groups: args.groups,
        replication_factor: args.replication_factor,
        zones: args.zones.clone(),
        resp: local,
        data_dir: data_dir.clone(),
        max_bulk_len: args.max_bulk_len,
        busy_poll_us: args.busy_poll_us,
        read_mode: args.read_mode.clone(),
        follower_reads: args.follower_reads,
        tls: tls.clone(),
    };
    let cluster = dev_cluster::DevCluster::start(&shape).await?;
    let routers: Vec<Arc<node::Node>> = cluster
        .nodes
        .iter()
        .take(args.routers)
        .map(|n| n.node.clone())
        .collect();
    let api = ApiServer::start(args.api, routers.clone(), tls.as_ref()).await?;
    tracing::info!(resp = %local, api = %api.addr, nodes = args.nodes, groups = args.groups,
        routers = args.routers, data_dir = %data_dir.display(), tls = tls.is_some(), "shoal dev cluster ready");
    // The line tests and scripts wait for.
    println!("shoal dev listening on {local}");
    let misfit = Arc::new(parking_lot::Mutex::new(None));
    let stop = {
        let misfit = misfit.clone();
        let found = futures::future::select_all(cluster.nodes.iter().map(|n| Box::pin(n.misfit())));
        async move {
            tokio::select! {
                () = shutdown_signal() => {}
                (why, _, _) = found => *misfit.lock() = Some(why),
            }
        }
    };
    serve_resp(&routers, listener, settings, tls, stop).await;
    tracing::info!("shutting down");
    api.stop().await;
    cluster.stop().await?;
    if temporary {
        if let Err(e) = std::fs::remove_dir_all(&data_dir) {
            tracing::warn!(error = %e, dir = %data_dir.display(), "removing the temporary data");
        }
    }
    if let Some(why) = misfit.lock().take() {
        anyhow::bail!(why);
    }
    tracing::info!("bye");
    Ok(())
}

/// `shoal dev --standalone`: one engine, unreplicated, snapshotted to `--data-dir`.
async fn standalone(
    args: DevArgs,
    listener: TcpListener,
    settings: connection::Settings,
    tls: Option<tls::Tls>,
) -> Result<()> {
    let local = listener.local_addr()?;
    let node = node::Node::open(args.data_dir.clone(), local.port())?;
    node.spawn_background(Duration::from_secs(args.snapshot_interval.max(1)));
    let api = ApiServer::start(args.api, vec![node.clone()], tls.as_ref()).await?;
    tracing::info!(resp = %local, api = %api.addr, data_dir = ?args.data_dir,
        tls = tls.is_some(), "shoal dev (standalone) ready");
    // The line tests and scripts wait for.
    println!("shoal dev listening on {local}");
    serve_resp(
        std::slice::from_ref(&node),
        listener,
        settings,
        tls,
        shutdown_signal(),
    )
    .await;
    tracing::info!("shutting down");
    api.stop().await;
    let saver = node.clone();
    tokio::task::spawn_blocking(move || saver.save())
        .await
        .context("snapshot task")??;
    tracing::info!("snapshot written, bye");
    Ok(())
}

/// Reads the TLS files once, at start: unusable settings stop the process rather than
/// let it serve in plaintext.
fn load_tls(files: Option<tls::TlsFiles>) -> Result<Option<tls::Tls>> {
    files
        .map(|f| tls::Tls::load(&f).context("loading the TLS settings"))
        .transpose()
}

/// Accepts RESP connections until `shutdown` completes, handing them to `nodes` in
/// turn (`shoal dev --routers`); over TLS only when `tls` is set.
async fn serve_resp(
    nodes: &[Arc<node::Node>],
    listener: TcpListener,
    settings: connection::Settings,
    tls: Option<tls::Tls>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let acceptor = tls.map(|t| t.acceptor);
    tokio::pin!(shutdown);
    // CONFIG SET timeout's sweep, once a second, as long as the listener accepts.
    let _sweeps = {
        let live = settings.live.clone();
        AbortOnDrop(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                live.idle.sweep(live.idle_timeout_secs());
            }
        }))
    };
    let mut next = 0usize;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if let Some(node) = nodes.get(next % nodes.len().max(1)) {
                        tokio::spawn(connection::serve(
                            node.clone(),
                            stream,
                            settings.clone(),
                            acceptor.clone(),
                        ));
                    }
                    next = next.wrapping_add(1);
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            () = &mut shutdown => break,
        }
    }
}

/// A task that ends with its owner, however the owner ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `shoal node`: opens the node's groups over its RocksDB, serves the Raft transport and
/// RESP, and bootstraps the groups from the configured members if they are new.
async fn replicated_node(config: node_config::NodeConfig) -> Result<()> {
    let grpc = TcpListener::bind(config.grpc)
        .await
        .with_context(|| format!("binding gRPC {}", config.grpc))?;
    let resp = TcpListener::bind(config.resp)
        .await
        .with_context(|| format!("binding RESP {}", config.resp))?;
    let tls = load_tls(config.tls.clone())?;
    let started = cluster_node::start(
        &config,
        grpc,
        tls.as_ref(),
        shoal_cluster::turns::Turns::default(),
    )
    .await?;
    if let Err(e) = started.check_shape_first(&config).await {
        started.stop().await?;
        return Err(e);
    }
    let api = match config.api {
        Some(addr) => Some(ApiServer::start(addr, vec![started.node.clone()], tls.as_ref()).await?),
        None => None,
    };
    let settings = connection::Settings {
        limits: Limits::default(),
        busy_poll: Duration::from_micros(config.busy_poll_us.min(1_000)),
        live: Arc::new(LiveConfig::new(
            config.max_bulk_len,
            node_config::MAX_BULK_LEN,
        )),
    };
    tracing::info!(id = config.id, zone = %config.zone, resp = %config.resp, grpc = %config.grpc,
        groups = config.groups, members = config.members.len(), tls = tls.is_some(),
        "shoal node ready");
    // The line tests and scripts wait for.
    println!(
        "shoal node {} listening on resp {} grpc {}",
        config.id, config.resp, config.grpc
    );
    // A node that finds it does not fit the cluster stops as on SIGTERM, then exits
    // with the reason.
    let misfit = Arc::new(parking_lot::Mutex::new(None));
    let stop = {
        let (misfit, found) = (misfit.clone(), started.misfit());
        async move {
            tokio::select! {
                () = shutdown_signal() => {}
                why = found => *misfit.lock() = Some(why),
            }
        }
    };
    serve_resp(
        std::slice::from_ref(&started.node),
        resp,
        settings,
        tls,
        stop,
    )
    .await;
    tracing::info!("shutting down");
    if let Some(api) = api {
        api.stop().await;
    }
    started.stop().await?;
    if let Some(why) = misfit.lock().take() {
        anyhow::bail!(why);
    }
    tracing::info!("bye");
    Ok(())
}

/// The gRPC client API, served beside RESP.
struct ApiServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl ApiServer {
    /// Binds `addr` (so that clients can connect once the node says it listens) and
    /// serves in the background.
    async fn start(
        addr: SocketAddr,
        nodes: Vec<Arc<node::Node>>,
        tls: Option<&tls::Tls>,
    ) -> Result<ApiServer> {
        let tls = tls.map(tls::Tls::api_server);
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the gRPC API {addr}"))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = api::serve(nodes, listener, tls, shutdown).await {
                tracing::error!(error = %e, "gRPC API stopped");
            }
        });
        Ok(ApiServer { addr, task, stop })
    }

    /// Stops accepting; in-flight calls get a moment to finish.
    async fn stop(self) {
        let _ = self.stop.send(());
        let abort = self.task.abort_handle();
        if tokio::time::timeout(API_DRAIN, self.task).await.is_err() {
            abort.abort();
        }
    }
}

/// How long a stopping API server lets in-flight calls finish.
const API_DRAIN: Duration = Duration::from_secs(1);

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README promises `make run` serves redis-py at 127.0.0.1:6379 and gRPC at
    /// :50051; the tests all pick free ports, so the defaults are held here, and the
    /// Makefile's own RESP default beside them.
    #[test]
    fn dev_defaults_are_the_addresses_the_readme_gives() {
        let cli = Cli::try_parse_from(["shoal", "dev"]).unwrap();
        let Command::Dev(args) = cli.command else {
            panic!("`shoal dev` parsed as another command");
        };
        assert_eq!(args.resp, "127.0.0.1:6379".parse::<SocketAddr>().unwrap());
        assert_eq!(args.api, "127.0.0.1:50051".parse::<SocketAddr>().unwrap());
        assert!(!args.standalone);
        assert_eq!(
            (args.nodes, args.groups, args.replication_factor),
            (3, 3, 3)
        );
        assert_eq!(args.zones, ["a", "b", "c"]);
        assert_eq!(args.data_dir, None);

        let makefile = include_str!("../../../Makefile");
        assert!(
            makefile
                .lines()
                .any(|l| l.trim() == "RESP ?= 127.0.0.1:6379"),
            "the Makefile's RESP default moved"
        );
        assert!(makefile.contains("shoal dev --resp $(RESP)"));
    }

    #[test]
    fn dev_refuses_what_it_cannot_serve() {
        assert!(Cli::try_parse_from(["shoal", "dev", "--resp", "not-an-address"]).is_err());
        assert!(Cli::try_parse_from(["shoal", "dev", "--groups", "many"]).is_err());
        assert!(Cli::try_parse_from(["shoal", "dev", "--what"]).is_err());
    }
}
