//! `shoal`: runs a Shoal node.
//!
//! `shoal dev` serves RESP on one address with the whole keyspace in this process and a
//! snapshot in `--data-dir`. `shoal node` is one replica of replicated shard groups: its
//! writes are committed to a Raft log (RocksDB) on a quorum before they are answered.

mod admin;
mod busy_poll;
mod connection;
mod convert;
mod info;
mod node;
mod node_config;
mod persist;
mod raft_admin;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use shoal_resp::Limits;
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
    /// Runs one node serving RESP, unreplicated.
    Dev(DevArgs),
    /// Runs a replica of Raft-replicated shard groups (flags or a TOML file).
    Node(Box<node_config::NodeArgs>),
}

#[derive(Debug, clap::Args)]
struct DevArgs {
    /// Address to serve RESP on.
    #[arg(long, default_value = "127.0.0.1:6379")]
    resp: SocketAddr,
    /// Directory for the snapshot; without it nothing is kept across restarts.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Seconds between snapshots (when something changed).
    #[arg(long, default_value_t = 60)]
    snapshot_interval: u64,
    /// Longest argument a client may send, in bytes.
    #[arg(long, default_value_t = 512 * 1024 * 1024)]
    max_bulk_len: usize,
    /// Microseconds an answered connection polls for its next request before it
    /// sleeps: lower latency for one-at-a-time clients on VMs, at a core's worth of
    /// spinning. 0 (the default) never spins; at most 1000.
    #[arg(long, default_value_t = 0)]
    busy_poll_us: u64,
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
        Command::Dev(args) => runtime.block_on(dev(args)),
        Command::Node(args) => {
            let config = (*args).resolve()?;
            runtime.block_on(replicated_node(config))
        }
    }
}

async fn dev(args: DevArgs) -> Result<()> {
    let listener = TcpListener::bind(args.resp)
        .await
        .with_context(|| format!("binding {}", args.resp))?;
    let local = listener.local_addr()?;
    let node = node::Node::open(args.data_dir.clone(), local.port())?;
    node.spawn_background(Duration::from_secs(args.snapshot_interval.max(1)));
    let settings = connection::Settings {
        limits: Limits {
            max_bulk_len: args.max_bulk_len,
            ..Limits::default()
        },
        // Capped: a longer spin holds a worker thread that other clients and timers need.
        busy_poll: Duration::from_micros(args.busy_poll_us.min(1_000)),
    };
    tracing::info!(resp = %local, data_dir = ?args.data_dir, "shoal dev ready");
    // The line tests and scripts wait for.
    println!("shoal dev listening on {local}");
    serve_resp(&node, listener, settings, shutdown_signal()).await;
    tracing::info!("shutting down");
    let saver = node.clone();
    tokio::task::spawn_blocking(move || saver.save())
        .await
        .context("snapshot task")??;
    tracing::info!("snapshot written, bye");
    Ok(())
}

/// Accepts RESP connections until `shutdown` completes.
async fn serve_resp(
    node: &Arc<node::Node>,
    listener: TcpListener,
    settings: connection::Settings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection::serve(node.clone(), stream, settings));
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            },
            () = &mut shutdown => break,
        }
    }
}

/// `shoal node`: opens the node's groups over its RocksDB, serves the Raft transport and
/// RESP, and bootstraps the groups from the configured members if they are new.
/// How long a stopping node lets in-flight Raft calls finish.
const GRPC_DRAIN: Duration = Duration::from_secs(1);

async fn replicated_node(config: node_config::NodeConfig) -> Result<()> {
    let grpc = TcpListener::bind(config.grpc)
        .await
        .with_context(|| format!("binding gRPC {}", config.grpc))?;
    let resp = TcpListener::bind(config.resp)
        .await
        .with_context(|| format!("binding RESP {}", config.resp))?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let raft_config = shoal_raft::raft_config(
        config.heartbeat_ms,
        config.election_timeout_ms,
        config.snapshot_after_logs,
    );
    let host = Arc::new(
        shoal_raft::Host::open(config.id, &config.data_dir, raft_config)
            .context("opening the Raft log")?,
    );
    for group in 0..config.groups {
        host.open_group(group)
            .await
            .with_context(|| format!("opening group {group}"))?;
    }
    let local = shoal_cluster::Local {
        host: host.clone(),
        read_mode: config.read_mode,
        quorum_timeout: config.quorum_timeout,
    };
    let (stop_grpc, grpc_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let raft = host.service().into_server();
        let shard = shoal_cluster::ShardService::new(local.clone()).into_server();
        tokio::spawn(async move {
            let stop = async {
                let _ = grpc_stopped.await;
            };
            // No Nagle: a heartbeat's small reply must not wait for the ACK of the
            // last one (that stalled every ReadIndex read by a delayed-ACK period).
            let incoming =
                tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true));
            let served = tonic::transport::Server::builder()
                .add_service(raft)
                .add_service(shard)
                .serve_with_incoming_shutdown(incoming, stop)
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "gRPC server stopped");
            }
        })
    };
    if !config.members.is_empty() {
        for group in 0..config.groups {
            let handle = host
                .group(group)
                .with_context(|| format!("group {group} is not open"))?;
            handle
                .initialize(config.members.clone())
                .await
                .with_context(|| format!("bootstrapping group {group}"))?;
        }
    }
    let group = host.group(0).context("group 0 is not open")?;
    // Every node hosts every group (static placement): the ring covers groups 0..N,
    // and a group's members are the configured voters.
    let ring = shoal_cluster::Ring::new(0..config.groups);
    let shards = shoal_cluster::Shards::new(
        local,
        config
            .members
            .iter()
            .map(|(id, addr)| (*id, addr.clone()))
            .collect(),
    );
    let node = node::Node::replicated(
        node::Replicated {
            host: host.clone(),
            group,
            router: shoal_cluster::Router::new(ring, shards),
            quorum_timeout: config.quorum_timeout,
        },
        config.resp.port(),
    );
    node.spawn_background(Duration::from_secs(60));
    let settings = connection::Settings {
        limits: Limits {
            max_bulk_len: config.max_bulk_len,
            ..Limits::default()
        },
        busy_poll: Duration::from_micros(config.busy_poll_us.min(1_000)),
    };
    tracing::info!(id = config.id, zone = %config.zone, resp = %config.resp, grpc = %config.grpc,
        groups = config.groups, members = config.members.len(), "shoal node ready");
    // The line tests and scripts wait for.
    println!(
        "shoal node {} listening on resp {} grpc {}",
        config.id, config.resp, config.grpc
    );
    serve_resp(&node, resp, settings, shutdown_signal()).await;
    tracing::info!("shutting down");
    host.shutdown().await.context("stopping groups")?;
    let _ = stop_grpc.send(());
    // tonic's graceful stop waits for every peer to close its connection, and live peers
    // keep theirs open: give in-flight calls a moment, then stop.
    let abort = server.abort_handle();
    if tokio::time::timeout(GRPC_DRAIN, server).await.is_err() {
        abort.abort();
    }
    tracing::info!("bye");
    Ok(())
}

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
