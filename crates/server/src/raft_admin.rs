//! `RAFT ...`: shard group administration over RESP, so an operator needs nothing but
//! redis-cli. Membership changes go to the group's leader (a follower answers `MOVED`).
//!
//! ```text
//! RAFT STATUS [group]
//! RAFT ADD-LEARNER <group> <node-id> <zone> <raft-addr> <resp-addr>
//! RAFT PROMOTE <group> <node-id>
//! RAFT REMOVE <group> <node-id>
//! RAFT TRANSFER-LEADER <group> <node-id>
//! RAFT SNAPSHOT <group>
//! ```

use bytes::Bytes;
use shoal_raft::{GroupStatus, NodeAddr};
use shoal_resp::Value;
use tracing::Instrument;

use crate::node::{group_error, Node, Replicated, Store};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn number(args: &[Bytes], i: usize, what: &str) -> Result<u64, Value> {
    args.get(i)
        .and_then(|a| std::str::from_utf8(a).ok()?.parse().ok())
        .ok_or_else(|| Value::Error(format!("ERR {what} must be a non-negative integer")))
}

fn wrong_args(sub: &str) -> Value {
    Value::Error(format!(
        "ERR wrong number of arguments for 'raft|{}' command",
        sub.to_ascii_lowercase()
    ))
}

pub async fn answer(node: &Node, args: &[Bytes]) -> Value {
    let Store::Replicated(r) = &node.store else {
        return Value::Error(
            "ERR this node is not replicated (shoal dev); RAFT needs shoal node".into(),
        );
    };
    let sub = args
        .get(1)
        .map(|a| text(a).to_ascii_uppercase())
        .unwrap_or_default();
    let span = tracing::info_span!("raft_admin", sub = %sub);
    match run(r, &sub, args).instrument(span).await {
        Ok(v) | Err(v) => v,
    }
}

async fn run(r: &Replicated, sub: &str, args: &[Bytes]) -> Result<Value, Value> {
    // The group argument, defaulting to the one this node's RESP front serves.
    let group_at = |i: usize| -> Result<shoal_raft::Group, Value> {
        let id = if args.len() > i {
            number(args, i, "group")?
        } else {
            r.group
        };
        r.host
            .group(id)
            .ok_or_else(|| Value::Error(format!("ERR this node hosts no replica of group {id}")))
    };
    let done = |result: Result<(), shoal_raft::GroupError>| match result {
        Ok(()) => Ok(Value::ok()),
        Err(e) => Err(Value::Error(group_error(&e))),
    };
    match sub {
        "STATUS" => {
            if args.len() > 3 {
                return Err(wrong_args(sub));
            }
            Ok(status(&group_at(2)?.status()))
        }
        "ADD-LEARNER" => {
            if args.len() != 7 {
                return Err(wrong_args(sub));
            }
            let group = group_at(2)?;
            let id = number(args, 3, "node id")?;
            // A node with a replica this group left behind erases it within a second
            // or two; replicating to it before then would watch its log go back.
            let leftover = r.router.with_cached_map(|m| {
                m.nodes
                    .get(&id)
                    .is_some_and(|n| n.holds.contains(&group.id()))
            });
            let member = group.status().members.iter().any(|m| m.0 == id);
            if leftover && !member {
                return Err(Value::Error(format!(
                    "ERR node {id} holds data of group {g} from an earlier membership; add it once it has erased it (RAFT STATUS {g} on it: holds_data 0)",
                    g = group.id()
                )));
            }
            let addr = NodeAddr {
                zone: text(&args[4]),
                raft: text(&args[5]),
                resp: text(&args[6]),
            };
            done(group.add_learner(id, addr).await)
        }
        "PROMOTE" | "REMOVE" => {
            if args.len() != 4 {
                return Err(wrong_args(sub));
            }
            let group = group_at(2)?;
            let id = number(args, 3, "node id")?;
            if sub == "PROMOTE" {
                done(group.promote(id).await)
            } else {
                done(group.remove(id).await)
            }
        }
        "TRANSFER-LEADER" => {
            if args.len() != 4 {
                return Err(wrong_args(sub));
            }
            let group = group_at(2)?;
            let id = number(args, 3, "node id")?;
            let status = group.status();
            if !status.members.iter().any(|m| m.0 == id && m.2) {
                return Err(Value::Error(format!(
                    "ERR node {id} is not a voter of group {}",
                    group.id()
                )));
            }
            if status.leader.as_ref().is_some_and(|(l, _)| *l == id) && status.role == "leader" {
                return Ok(Value::ok());
            }
            // Twice the quorum timeout: the named voter may first wait for its log.
            done(
                group
                    .transfer_leader(id, r.quorum_timeout.saturating_mul(2))
                    .await,
            )
        }
        "SNAPSHOT" => {
            if args.len() > 3 {
                return Err(wrong_args(sub));
            }
            done(group_at(2)?.snapshot().await)
        }
        other => Err(Value::Error(format!(
            "ERR unknown subcommand '{}'. Try STATUS, ADD-LEARNER, PROMOTE, REMOVE, TRANSFER-LEADER or SNAPSHOT.",
            other.to_ascii_lowercase()
        ))),
    }
}

/// `RAFT STATUS` as a map (a flat array in RESP2).
fn status(s: &GroupStatus) -> Value {
    let int = |v: u64| Value::Int(i64::try_from(v).unwrap_or(i64::MAX));
    let members = s
        .members
        .iter()
        .map(|(id, addr, voter)| {
            Value::Map(vec![
                (Value::bulk("id"), int(*id)),
                (Value::bulk("zone"), Value::bulk(addr.zone.clone())),
                (Value::bulk("raft"), Value::bulk(addr.raft.clone())),
                (Value::bulk("resp"), Value::bulk(addr.resp.clone())),
                (
                    Value::bulk("role"),
                    Value::bulk(if *voter { "voter" } else { "learner" }),
                ),
            ])
        })
        .collect();
    let (leader_id, leader_resp) = match &s.leader {
        Some((id, addr)) => (int(*id), Value::bulk(addr.resp.clone())),
        None => (Value::Null, Value::Null),
    };
    Value::Map(vec![
        (Value::bulk("group"), int(s.group)),
        (Value::bulk("id"), int(s.id)),
        (Value::bulk("role"), Value::bulk(s.role)),
        (Value::bulk("term"), int(s.term)),
        (Value::bulk("leader_id"), leader_id),
        (Value::bulk("leader_resp"), leader_resp),
        (Value::bulk("last_log_index"), int(s.last_log_index)),
        (Value::bulk("committed_index"), int(s.committed_index)),
        (Value::bulk("applied_index"), int(s.applied_index)),
        (Value::bulk("snapshot_index"), int(s.snapshot_index)),
        (Value::bulk("purged_index"), int(s.purged_index)),
        (Value::bulk("membership_index"), int(s.membership_index)),
        (Value::bulk("holds_data"), int(u64::from(s.holds_data))),
        (Value::bulk("members"), Value::Array(members)),
    ])
}

/// INFO's `# Raft` section for the group this node serves.
pub fn info(s: &GroupStatus) -> String {
    let (leader_id, leader_resp) = match &s.leader {
        Some((id, addr)) => (id.to_string(), addr.resp.clone()),
        None => (String::new(), String::new()),
    };
    let voters = s.members.iter().filter(|m| m.2).count();
    // Group commit at work: durability requests answered per WAL fsync, node-wide.
    let (syncs, requests) = shoal_raft::db::metrics::syncs();
    format!(
        "raft_group:{}\r\nraft_node_id:{}\r\nraft_role:{}\r\nraft_term:{}\r\nraft_leader_id:{leader_id}\r\nraft_leader_resp:{leader_resp}\r\nraft_last_log_index:{}\r\nraft_committed_index:{}\r\nraft_applied_index:{}\r\nraft_snapshot_index:{}\r\nraft_voters:{voters}\r\nraft_learners:{}\r\nraft_log_syncs:{syncs}\r\nraft_log_sync_requests:{requests}\r\n",
        s.group,
        s.id,
        s.role,
        s.term,
        s.last_log_index,
        s.committed_index,
        s.applied_index,
        s.snapshot_index,
        s.members.len() - voters,
    )
}
