//! `shoal node`'s settings: a TOML file, flags, or both (a flag wins over the file).
//!
//! ```toml
//! id = 1
//! zone = "a"
//! resp = "127.0.0.1:7001"
//! grpc = "127.0.0.1:7101"
//! data_dir = "/var/lib/shoal/1"
//!
//! [[members]]            # the initial voters of every group (static bootstrap)
//! id = 1
//! zone = "a"
//! grpc = "127.0.0.1:7101"
//! resp = "127.0.0.1:7001"
//! ```
//!
//! TLS goes in its own table (keys as the `--tls-*` flags, without the prefix):
//!
//! ```toml
//! [tls]
//! cert_file = "/etc/shoal/node.pem"
//! key_file = "/etc/shoal/node.key"
//! ca_cert_file = "/etc/shoal/ca.pem"   # clients must present a certificate it signed
//! peer_ca_cert_file = "/etc/shoal/nodes-ca.pem"   # mutual TLS between nodes too
//! ```
//!
//! Without members the node starts empty and waits to be added to its groups
//! (`RAFT ADD-LEARNER` on a leader).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use shoal_raft::{NodeAddr, NodeId, ReadMode};

use crate::tls::{AuthClients, TlsFiles};

/// Why the settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Toml {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{0} is required (flag --{0} or `{0}` in the config file)")]
    Missing(&'static str),
    #[error("member {0:?}: expected ID,ZONE,GRPC_ADDR,RESP_ADDR")]
    Member(String),
    #[error("read_mode {0:?}: expected votes, read-index or lease")]
    ReadMode(String),
    #[error("members do not include this node (id {0})")]
    SelfMissing(NodeId),
    #[error("member {id} appears twice")]
    Duplicate { id: NodeId },
    #[error("{0}")]
    Invalid(String),
}

/// One initial member of the groups.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    pub id: NodeId,
    pub zone: String,
    pub grpc: String,
    pub resp: String,
}

/// The file's form: every key optional, flags fill or override.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub id: Option<NodeId>,
    pub zone: Option<String>,
    pub resp: Option<SocketAddr>,
    pub grpc: Option<SocketAddr>,
    pub advertise_grpc: Option<String>,
    pub peer_source_ip: Option<IpAddr>,
    pub api: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub groups: Option<u64>,
    pub replication_factor: Option<usize>,
    pub replace_after_ms: Option<u64>,
    pub learner_stall_ms: Option<u64>,
    #[serde(default)]
    pub members: Vec<Member>,
    pub heartbeat_ms: Option<u64>,
    pub election_timeout_ms: Option<u64>,
    pub snapshot_after_logs: Option<u64>,
    pub quorum_timeout_ms: Option<u64>,
    pub read_mode: Option<String>,
    pub follower_reads: Option<bool>,
    pub rebalance: Option<bool>,
    pub reshard_pace_ms: Option<u64>,
    pub join: Option<bool>,
    pub max_bulk_len: Option<usize>,
    pub busy_poll_us: Option<u64>,
    pub tls: Option<TlsTable>,
}

/// The file's `[tls]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsTable {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub ca_cert_file: Option<PathBuf>,
    pub auth_clients: Option<String>,
    pub peer_ca_cert_file: Option<PathBuf>,
    pub peer_server_name: Option<String>,
}

/// TLS flags, shared by `shoal node` and `shoal dev`.
#[derive(Debug, Default, clap::Args)]
pub struct TlsArgs {
    /// Serve the RESP port and the gRPC API over TLS only, with this certificate chain
    /// (PEM); needs --tls-key-file.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long)]
    pub tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM) that sign client certificates.
    #[arg(long)]
    pub tls_ca_cert_file: Option<PathBuf>,
    /// With a CA: whether clients must present a certificate it signed: yes, optional
    /// or no [default: yes].
    #[arg(long)]
    pub tls_auth_clients: Option<String>,
    /// Mutual TLS between nodes too (the Raft transport and routed commands), with
    /// node certificates signed by this CA (PEM). Anyone holding a certificate it signed
    /// can act as a node: use a CA that signs node certificates only.
    #[arg(long)]
    pub tls_peer_ca_cert_file: Option<PathBuf>,
    /// The name peers' certificates are checked against [default: the peer's address].
    #[arg(long)]
    pub tls_peer_server_name: Option<String>,
}

impl TlsArgs {
    /// The flags overlaid on the file's table, checked.
    pub fn resolve(self, file: TlsTable) -> Result<Option<TlsFiles>, ConfigError> {
        let cert = self.tls_cert_file.or(file.cert_file);
        let key = self.tls_key_file.or(file.key_file);
        let ca = self.tls_ca_cert_file.or(file.ca_cert_file);
        let peer_ca = self.tls_peer_ca_cert_file.or(file.peer_ca_cert_file);
        let auth_clients = self
            .tls_auth_clients
            .or(file.auth_clients)
            .map(|s| s.parse::<AuthClients>())
            .transpose()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let peer_server_name = self.tls_peer_server_name.or(file.peer_server_name);
        let (cert, key) = match (cert, key) {
            (Some(cert), Some(key)) => (cert, key),
            (None, None) => {
                if ca.is_some()
                    || peer_ca.is_some()
                    || auth_clients.is_some()
                    || peer_server_name.is_some()
                {
                    return Err(ConfigError::Invalid(
                        "the TLS settings need tls_cert_file and tls_key_file".into(),
                    ));
                }
                return Ok(None);
            }
            (Some(_), None) => return Err(ConfigError::Missing("tls_key_file")),
            (None, Some(_)) => return Err(ConfigError::Missing("tls_cert_file")),
        };
        // Asked for, and impossible: refused rather than quietly not done.
        if ca.is_none() && matches!(auth_clients, Some(AuthClients::Yes | AuthClients::Optional)) {
            return Err(ConfigError::Invalid(
                "tls_auth_clients yes or optional needs tls_ca_cert_file".into(),
            ));
        }
        if peer_ca.is_none() && peer_server_name.is_some() {
            return Err(ConfigError::Invalid(
                "tls_peer_server_name needs tls_peer_ca_cert_file".into(),
            ));
        }
        Ok(Some(TlsFiles {
            cert,
            key,
            ca,
            auth_clients: auth_clients.unwrap_or(AuthClients::Yes),
            peer_ca,
            peer_server_name,
        }))
    }
}

/// `shoal node`'s flags; each overrides the same key of `--config`.
#[derive(Debug, Default, clap::Args)]
pub struct NodeArgs {
    /// A TOML file with any of the settings below (flags win).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// This node's id, unique in the cluster (required).
    #[arg(long)]
    pub id: Option<NodeId>,
    /// Availability zone, for placement [default: default].
    #[arg(long)]
    pub zone: Option<String>,
    /// Address to serve RESP on [default: 127.0.0.1:6379].
    #[arg(long)]
    pub resp: Option<SocketAddr>,
    /// Address to serve the Raft transport (gRPC) on [default: 127.0.0.1:50051].
    #[arg(long)]
    pub grpc: Option<SocketAddr>,
    /// The address other nodes reach this node's --grpc at, when it is not --grpc
    /// itself (a NAT, a container's published port, a proxy) [default: --grpc]. The
    /// members list must give this one.
    #[arg(long)]
    pub advertise_grpc: Option<String>,
    /// The local address this node's connections to other nodes leave from, on a host
    /// with several [default: the system's choice].
    #[arg(long)]
    pub peer_source_ip: Option<IpAddr>,
    /// Address to serve the gRPC client API (proto/shoal.proto) on [default: none].
    #[arg(long)]
    pub api: Option<SocketAddr>,
    /// Where the Raft log (RocksDB) and snapshots live (required).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Number of shard groups (ids 0..N); keys are spread over them by a
    /// consistent-hash ring and searches fan out to all; at most 255, the groups a
    /// SCAN cursor can name [default: 1].
    #[arg(long)]
    pub groups: Option<u64>,
    /// Replicas of each shard group, placed on the members in distinct zones (where
    /// there are enough) and turning with the group, so groups and their first
    /// leaders spread over the nodes; every member when there are fewer [default: 3].
    #[arg(long)]
    pub replication_factor: Option<usize>,
    /// A node silent for this long has its replicas re-created on other nodes (each
    /// group's leader adds a learner, promotes it once caught up, removes the silent
    /// voter) [default: 30000].
    #[arg(long)]
    pub replace_after_ms: Option<u64>,
    /// A learner (a replica being added, by repair or rebalancing) whose acknowledged
    /// log has not moved for this long is removed, and its node is not picked for that
    /// group again for as long [default: 300000].
    #[arg(long)]
    pub learner_stall_ms: Option<u64>,
    /// An initial voter of every group, as ID,ZONE,GRPC_ADDR,RESP_ADDR; repeat per node.
    /// Omit on a node that will be added later with RAFT ADD-LEARNER.
    #[arg(long = "member")]
    pub members: Vec<String>,
    /// Leader heartbeat interval [default: 150].
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// A follower that hears no leader for this long (up to twice as long, randomized)
    /// starts an election [default: 750].
    #[arg(long)]
    pub election_timeout_ms: Option<u64>,
    /// Build a snapshot (and purge the log before it) every this many entries
    /// [default: 100000]. A build replays the entries since the previous snapshot into a
    /// copy of the state (writes never wait for it), so it costs CPU: fewer, larger
    /// builds cost less in all; more entries mean a longer log replay on restart.
    #[arg(long)]
    pub snapshot_after_logs: Option<u64>,
    /// How long a write or a leader's read check waits for a quorum before the client
    /// gets TRYAGAIN [default: 5000].
    #[arg(long)]
    pub quorum_timeout_ms: Option<u64>,
    /// How a read is confirmed to see every acknowledged write: votes (a search part
    /// read on this node's replica of a group of at most three voters is confirmed by
    /// one peer's vote; every other read as read-index), read-index (the leader's
    /// quorum round per read batch) or lease (the leader's lease) [default: votes].
    #[arg(long)]
    pub read_mode: Option<String>,
    /// Whether a router answers search and aggregate parts from its own node's
    /// replicas once the group's leader has given it a read index (one small call
    /// shared by every read waiting for it), instead of sending them to the leader.
    /// Linearizable either way [default: true].
    #[arg(long)]
    pub follower_reads: Option<bool>,
    /// Whether group leaders move replicas onto nodes that hold fewer (a node added
    /// later), one group at a time, keeping each group's zones [default: true].
    #[arg(long)]
    pub rebalance: Option<bool>,
    /// A pause after each step of a reshard this node coordinates (a page of keys
    /// copied, a catch-up, a fence...), in milliseconds: it bounds the load that adding
    /// a shard group puts on a busy cluster [default: 0].
    #[arg(long)]
    pub reshard_pace_ms: Option<u64>,
    /// This node joins a running cluster: it starts no group and no meta group from
    /// the member list (which names it and the running members); leaders move
    /// replicas onto it (--rebalance) or an operator adds it (RAFT ADD-LEARNER).
    #[arg(long)]
    pub join: bool,
    /// Longest argument a client may send, in bytes; at most 16 MiB, so that a log
    /// entry always fits one Raft message [default: 16777216].
    #[arg(long)]
    pub max_bulk_len: Option<usize>,
    /// See `shoal dev --busy-poll-us` [default: 0].
    #[arg(long)]
    pub busy_poll_us: Option<u64>,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// The settings `shoal node` runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub id: NodeId,
    pub zone: String,
    pub resp: SocketAddr,
    pub grpc: SocketAddr,
    /// Where other nodes reach `grpc`.
    pub advertise_grpc: String,
    pub peer_source_ip: Option<IpAddr>,
    /// Where the gRPC client API is served, if anywhere.
    pub api: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub groups: u64,
    pub replication_factor: usize,
    pub replace_after: Duration,
    pub learner_stall: Duration,
    pub members: BTreeMap<NodeId, NodeAddr>,
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
    pub snapshot_after_logs: u64,
    pub quorum_timeout: Duration,
    pub read_mode: ReadMode,
    pub follower_reads: bool,
    pub rebalance: bool,
    pub reshard_pace: Duration,
    pub join: bool,
    pub max_bulk_len: usize,
    pub busy_poll_us: u64,
    /// TLS on the client fronts (and between nodes when asked).
    pub tls: Option<TlsFiles>,
}

/// Parses `ID,ZONE,GRPC_ADDR,RESP_ADDR`.
fn parse_member(s: &str) -> Result<Member, ConfigError> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    match parts.as_slice() {
        [id, zone, grpc, resp] if !zone.is_empty() && !grpc.is_empty() && !resp.is_empty() => {
            Ok(Member {
                id: id.parse().map_err(|_| ConfigError::Member(s.to_owned()))?,
                zone: (*zone).to_owned(),
                grpc: (*grpc).to_owned(),
                resp: (*resp).to_owned(),
            })
        }
        _ => Err(ConfigError::Member(s.to_owned())),
    }
}

fn parse_read_mode(s: &str) -> Result<ReadMode, ConfigError> {
    match s {
        "read-index" | "read_index" | "readindex" => Ok(ReadMode::ReadIndex),
        "lease" => Ok(ReadMode::Lease),
        "votes" => Ok(ReadMode::Votes),
        other => Err(ConfigError::ReadMode(other.to_owned())),
    }
}

impl NodeArgs {
    /// The file (if any) overlaid with the flags, checked.
    pub fn resolve(self) -> Result<NodeConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|source| ConfigError::Toml {
                    path: path.clone(),
                    source: Box::new(source),
                })?
            }
            None => FileConfig::default(),
        };
        let members = if self.members.is_empty() {
            file.members
        } else {
            self.members
                .iter()
                .map(|m| parse_member(m))
                .collect::<Result<_, _>>()?
        };
        let id = self.id.or(file.id).ok_or(ConfigError::Missing("id"))?;
        let mut by_id = BTreeMap::new();
        for m in members {
            let addr = NodeAddr {
                zone: m.zone,
                raft: m.grpc,
                resp: m.resp,
            };
            if by_id.insert(m.id, addr).is_some() {
                return Err(ConfigError::Duplicate { id: m.id });
            }
        }
        if !by_id.is_empty() && !by_id.contains_key(&id) {
            return Err(ConfigError::SelfMissing(id));
        }
        let read_mode = match self.read_mode.or(file.read_mode) {
            Some(s) => parse_read_mode(&s)?,
            None => ReadMode::Votes,
        };
        let grpc = self
            .grpc
            .or(file.grpc)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 50051)));
        let config = NodeConfig {
            id,
            zone: self
                .zone
                .or(file.zone)
                .unwrap_or_else(|| "default".to_owned()),
            resp: self
                .resp
                .or(file.resp)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 6379))),
            grpc,
            advertise_grpc: self
                .advertise_grpc
                .or(file.advertise_grpc)
                .unwrap_or_else(|| grpc.to_string()),
            peer_source_ip: self.peer_source_ip.or(file.peer_source_ip),
            api: self.api.or(file.api),
            data_dir: self
                .data_dir
                .or(file.data_dir)
                .ok_or(ConfigError::Missing("data_dir"))?,
            groups: self.groups.or(file.groups).unwrap_or(1),
            replication_factor: self
                .replication_factor
                .or(file.replication_factor)
                .unwrap_or(3),
            replace_after: Duration::from_millis(
                self.replace_after_ms
                    .or(file.replace_after_ms)
                    .unwrap_or(30_000),
            ),
            learner_stall: Duration::from_millis(
                self.learner_stall_ms
                    .or(file.learner_stall_ms)
                    .unwrap_or(300_000),
            ),
            members: by_id,
            heartbeat_ms: self.heartbeat_ms.or(file.heartbeat_ms).unwrap_or(150),
            election_timeout_ms: self
                .election_timeout_ms
                .or(file.election_timeout_ms)
                .unwrap_or(750),
            snapshot_after_logs: self
                .snapshot_after_logs
                .or(file.snapshot_after_logs)
                .unwrap_or(100_000),
            quorum_timeout: Duration::from_millis(
                self.quorum_timeout_ms
                    .or(file.quorum_timeout_ms)
                    .unwrap_or(5_000),
            ),
            read_mode,
            follower_reads: self.follower_reads.or(file.follower_reads).unwrap_or(true),
            rebalance: self.rebalance.or(file.rebalance).unwrap_or(true),
            reshard_pace: Duration::from_millis(
                self.reshard_pace_ms.or(file.reshard_pace_ms).unwrap_or(0),
            ),
            join: self.join || file.join.unwrap_or(false),
            max_bulk_len: self
                .max_bulk_len
                .or(file.max_bulk_len)
                .unwrap_or(MAX_BULK_LEN),
            busy_poll_us: self.busy_poll_us.or(file.busy_poll_us).unwrap_or(0),
            tls: self.tls.resolve(file.tls.unwrap_or_default())?,
        };
        config.check()?;
        Ok(config)
    }
}

/// The largest argument a replicated node takes: an entry (a connection's batch of at
/// most 4 MiB plus one argument) must fit the transport's 64 MiB messages with room.
pub const MAX_BULK_LEN: usize = 16 << 20;

impl NodeConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if self.max_bulk_len > MAX_BULK_LEN {
            return Err(ConfigError::Invalid(format!(
                "max_bulk_len ({}) may be at most {MAX_BULK_LEN} on a replicated node",
                self.max_bulk_len
            )));
        }
        if self.groups == 0 {
            return Err(ConfigError::Invalid("groups must be at least 1".into()));
        }
        if self.groups > shoal_cluster::plan::MAX_GROUPS as u64 {
            return Err(ConfigError::Invalid(format!(
                "groups ({}) may be at most {} (SCAN cursors name a group in one byte)",
                self.groups,
                shoal_cluster::plan::MAX_GROUPS
            )));
        }
        if self.replication_factor == 0 {
            return Err(ConfigError::Invalid(
                "replication_factor must be at least 1".into(),
            ));
        }
        if self.heartbeat_ms == 0 || self.election_timeout_ms <= self.heartbeat_ms {
            return Err(ConfigError::Invalid(format!(
                "election_timeout_ms ({}) must exceed heartbeat_ms ({}), which must be positive",
                self.election_timeout_ms, self.heartbeat_ms
            )));
        }
        if let Some(me) = self.members.get(&self.id) {
            if me.raft != self.advertise_grpc || me.resp != self.resp.to_string() {
                return Err(ConfigError::Invalid(format!(
                    "member {} is listed at grpc {} / resp {}, but this node is reached at grpc {} / resp {}",
                    self.id, me.raft, me.resp, self.advertise_grpc, self.resp
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn args(id: Option<u64>) -> NodeArgs {
        NodeArgs {
            id,
            data_dir: Some("/tmp/x".into()),
            ..NodeArgs::default()
        }
    }

    #[test]
    fn flags_alone_give_defaults() {
        let c = args(Some(3)).resolve().unwrap();
        assert_eq!(c.id, 3);
        assert_eq!(c.resp.to_string(), "127.0.0.1:6379");
        assert_eq!(c.grpc.to_string(), "127.0.0.1:50051");
        assert_eq!(c.groups, 1);
        assert!(c.members.is_empty());
        assert_eq!(c.read_mode, ReadMode::Votes);
        assert!(c.rebalance && !c.join);
    }

    #[test]
    fn groups_are_one_to_the_most_a_scan_cursor_can_name() {
        for (groups, ok) in [(0, false), (1, true), (255, true), (256, false)] {
            let mut a = args(Some(1));
            a.groups = Some(groups);
            assert_eq!(a.resolve().is_ok(), ok, "{groups} groups");
        }
    }

    #[test]
    fn members_parse_and_must_include_this_node() {
        let mut a = args(Some(1));
        a.resp = Some("127.0.0.1:7001".parse().unwrap());
        a.grpc = Some("127.0.0.1:7101".parse().unwrap());
        a.members = vec![
            "1,a,127.0.0.1:7101,127.0.0.1:7001".into(),
            "2, b, 127.0.0.1:7102, 127.0.0.1:7002".into(),
        ];
        let c = a.resolve().unwrap();
        assert_eq!(c.members.len(), 2);
        assert_eq!(c.members[&2].zone, "b");
        assert_eq!(c.members[&2].raft, "127.0.0.1:7102");

        let mut a = args(Some(9));
        a.members = vec!["1,a,127.0.0.1:7101,127.0.0.1:7001".into()];
        assert!(matches!(a.resolve(), Err(ConfigError::SelfMissing(9))));

        let mut a = args(Some(1));
        a.members = vec!["1,a,127.0.0.1:7101".into()];
        assert!(matches!(a.resolve(), Err(ConfigError::Member(_))));

        let mut a = args(Some(1));
        a.members = vec![
            "1,a,127.0.0.1:6379,127.0.0.1:50051".into(),
            "1,b,x:1,y:2".into(),
        ];
        assert!(matches!(a.resolve(), Err(ConfigError::Duplicate { id: 1 })));
    }

    #[test]
    fn a_member_entry_for_this_node_must_match_its_addresses() {
        let mut a = args(Some(1));
        a.members = vec!["1,a,127.0.0.1:9999,127.0.0.1:6379".into()];
        assert!(matches!(a.resolve(), Err(ConfigError::Invalid(_))));
        // Listed at its advertised address, which is not where it binds.
        let mut a = args(Some(1));
        a.members = vec!["1,a,127.0.0.1:9999,127.0.0.1:6379".into()];
        a.advertise_grpc = Some("127.0.0.1:9999".into());
        a.peer_source_ip = Some("127.0.0.11".parse().unwrap());
        let c = a.resolve().unwrap();
        assert_eq!(c.grpc.to_string(), "127.0.0.1:50051");
        assert_eq!(c.advertise_grpc, "127.0.0.1:9999");
        assert_eq!(c.peer_source_ip, Some("127.0.0.11".parse().unwrap()));
    }

    #[test]
    fn the_file_is_read_and_flags_override_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            r#"
id = 2
zone = "b"
resp = "127.0.0.1:7002"
grpc = "127.0.0.1:7102"
data_dir = "/var/lib/shoal/2"
groups = 4
read_mode = "lease"
election_timeout_ms = 800
rebalance = false
join = true

[[members]]
id = 2
zone = "b"
grpc = "127.0.0.1:7102"
resp = "127.0.0.1:7002"
"#,
        )
        .unwrap();
        let c = NodeArgs {
            config: Some(path.clone()),
            groups: Some(2),
            ..NodeArgs::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(c.id, 2);
        assert_eq!(c.zone, "b");
        assert_eq!(c.groups, 2, "the flag wins");
        assert_eq!(c.read_mode, ReadMode::Lease);
        assert_eq!(c.election_timeout_ms, 800);
        assert!(!c.rebalance && c.join);
        assert_eq!(c.members.len(), 1);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/shoal/2"));

        std::fs::write(&path, "id = 1\nunknown_key = 3\n").unwrap();
        let e = NodeArgs {
            config: Some(path),
            ..NodeArgs::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("unknown_key"), "{e}");
    }

    #[test]
    fn tls_settings_come_from_the_table_or_flags_and_must_be_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            "id = 1\ndata_dir = \"/x\"\n[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nca_cert_file = \"ca.pem\"\npeer_ca_cert_file = \"nodes.pem\"\n",
        )
        .unwrap();
        let c = NodeArgs {
            config: Some(path.clone()),
            ..NodeArgs::default()
        }
        .resolve()
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("c.pem"));
        assert_eq!(tls.ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(tls.peer_ca, Some(PathBuf::from("nodes.pem")));
        assert_eq!(tls.auth_clients, AuthClients::Yes);

        // A flag overrides the table.
        let mut a = NodeArgs {
            config: Some(path.clone()),
            ..NodeArgs::default()
        };
        a.tls.tls_auth_clients = Some("optional".into());
        a.tls.tls_cert_file = Some("other.pem".into());
        let tls = a.resolve().unwrap().tls.unwrap();
        assert_eq!(tls.auth_clients, AuthClients::Optional);
        assert_eq!(tls.cert, PathBuf::from("other.pem"));

        // Half a configuration is an error, never plaintext.
        let mut a = args(Some(1));
        a.tls.tls_cert_file = Some("c.pem".into());
        assert!(matches!(
            a.resolve(),
            Err(ConfigError::Missing("tls_key_file"))
        ));
        let mut a = args(Some(1));
        a.tls.tls_ca_cert_file = Some("ca.pem".into());
        assert!(matches!(a.resolve(), Err(ConfigError::Invalid(_))));
        let mut a = args(Some(1));
        a.tls.tls_cert_file = Some("c.pem".into());
        a.tls.tls_key_file = Some("k.pem".into());
        a.tls.tls_auth_clients = Some("yes".into());
        assert!(a
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("tls_ca_cert_file"));
        let mut a = args(Some(1));
        a.tls.tls_cert_file = Some("c.pem".into());
        a.tls.tls_key_file = Some("k.pem".into());
        a.tls.tls_peer_server_name = Some("node".into());
        assert!(a
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("tls_peer_ca_cert_file"));
        // Without a CA and without asking, clients are not asked for certificates.
        let mut a = args(Some(1));
        a.tls.tls_cert_file = Some("c.pem".into());
        a.tls.tls_key_file = Some("k.pem".into());
        assert!(a.resolve().unwrap().tls.unwrap().ca.is_none());
        let mut a = args(Some(1));
        a.tls.tls_cert_file = Some("c.pem".into());
        a.tls.tls_key_file = Some("k.pem".into());
        a.tls.tls_auth_clients = Some("sometimes".into());
        assert!(matches!(a.resolve(), Err(ConfigError::Invalid(_))));
        assert!(args(Some(1)).resolve().unwrap().tls.is_none());
    }

    #[test]
    fn missing_and_invalid_settings_are_named() {
        let e = NodeArgs::default().resolve().unwrap_err();
        assert_eq!(
            e.to_string(),
            "id is required (flag --id or `id` in the config file)"
        );
        let mut a = args(Some(1));
        a.read_mode = Some("eventual".into());
        assert!(matches!(a.resolve(), Err(ConfigError::ReadMode(_))));
        let mut a = args(Some(1));
        a.heartbeat_ms = Some(500);
        a.election_timeout_ms = Some(400);
        assert!(matches!(a.resolve(), Err(ConfigError::Invalid(_))));
    }
}
