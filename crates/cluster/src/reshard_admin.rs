//! `RESHARD ADD-GROUP | STATUS | ABORT` (docs/resharding.md §1): what any router does
//! for an operator. Each writes only the reshard record, guarded by the version it read,
//! and leaves the work to the meta leader's coordinator ([`crate::reshard_run`]).

use std::collections::BTreeMap;

use shoal_raft::{GroupId, NodeAddr, NodeId};

use crate::layout::Layout;
use crate::placement::group_members;
use crate::plan::MAX_GROUPS;
use crate::reshard_record::{Phase, ReshardRecord};
use crate::reshard_run::hset_record;
use crate::router::Router;

/// What `RESHARD STATUS` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The reshard under way, if any.
    pub record: Option<ReshardRecord>,
    /// The layout keys are routed by.
    pub layout: Layout,
}

/// The id of the group a reshard adds: one past the highest, while the cluster holds
/// fewer than [`MAX_GROUPS`].
fn next_group(groups: &[GroupId]) -> Result<GroupId, String> {
    if groups.len() >= MAX_GROUPS {
        return Err(format!(
            "ERR the cluster has {} shard groups, the most it may hold ({MAX_GROUPS}: SCAN cursors name a group in one byte)",
            groups.len()
        ));
    }
    Ok(groups.iter().max().map_or(0, |g| g.saturating_add(1)))
}

impl Router {
    /// Records a reshard that adds one shard group, placed on the live nodes as a
    /// group of the cluster's replication factor, and answers its id. Refused while
    /// another reshard is recorded.
    pub async fn reshard_add_group(&self, now_ms: u64) -> Result<GroupId, String> {
        let current = self.read_reshard(now_ms).await?;
        if let Some(record) = &current.record {
            return Err(format!(
                "ERR a reshard adding group {} is under way (RESHARD STATUS)",
                record.target
            ));
        }
        let map = self.cached_map();
        let shape = &current.shape;
        let target = next_group(&current.layout.all_groups())?;
        let alive: BTreeMap<NodeId, NodeAddr> = map
            .nodes
            .iter()
            .filter(|(_, n)| n.alive(now_ms))
            .map(|(&id, n)| (id, n.addr.clone()))
            .collect();
        let replicas = usize::try_from(shape.replication_factor).unwrap_or(usize::MAX);
        // An aborted reshard's group keeps its id, its Raft group and its voters: a
        // group initialized once is not initialized again, so its members are those
        // voters (repair then treats it as any group once the layout names it).
        let members = match map.groups.get(&target) {
            Some(known) if !known.voters.is_empty() => known.voters.clone(),
            Some(_) | None => group_members(&alive, replicas, target),
        };
        if members.len() < replicas.min(map.nodes.len()) || members.is_empty() {
            return Err(format!(
                "ERR {} of the cluster's nodes are up; a new group needs {replicas}",
                members.len()
            ));
        }
        let first_epoch = current.layout.epoch.saturating_add(1);
        let record = ReshardRecord {
            target,
            members,
            phase: Phase::Creating,
            run: first_epoch << 32,
            started_ms: now_ms,
            progress: BTreeMap::new(),
        };
        if !self
            .write_reshard(current.version, vec![hset_record(&record)?], now_ms)
            .await?
        {
            return Err("ERR the reshard record changed meanwhile; try again".into());
        }
        tracing::info!(target, members = ?record.members, "reshard recorded");
        Ok(target)
    }

    /// The reshard under way and the layout, read on the meta leader.
    pub async fn reshard_status(&self, now_ms: u64) -> Result<Status, String> {
        let current = self.read_reshard(now_ms).await?;
        Ok(Status {
            record: current.record,
            layout: current.layout,
        })
    }

    /// Turns the reshard under way into an abort. Refused once a source has switched:
    /// its keys' writes are on the new group only, so the reshard finishes forward.
    pub async fn reshard_abort(&self, now_ms: u64) -> Result<(), String> {
        let current = self.read_reshard(now_ms).await?;
        let Some(record) = current.record else {
            return Err("ERR no reshard is under way".into());
        };
        let switched = current
            .layout
            .moving
            .as_ref()
            .is_some_and(|m| !m.switched.is_empty());
        match record.phase {
            Phase::Aborting => return Ok(()),
            Phase::Cleaning => {
                return Err("ERR every source has switched: the reshard finishes forward".into())
            }
            Phase::Creating | Phase::Copying | Phase::Switching { .. } if switched => {
                return Err("ERR a source has switched: the reshard finishes forward".into())
            }
            Phase::Creating | Phase::Copying | Phase::Switching { .. } => {}
        }
        let aborting = ReshardRecord {
            phase: Phase::Aborting,
            ..record
        };
        if !self
            .write_reshard(current.version, vec![hset_record(&aborting)?], now_ms)
            .await?
        {
            return Err("ERR the reshard record changed meanwhile; try again".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_group_is_one_past_the_highest_until_a_scan_cursor_could_not_name_it() {
        assert_eq!(next_group(&[]), Ok(0));
        assert_eq!(next_group(&[0, 1, 2]), Ok(3));
        assert_eq!(next_group(&[0, 2, 5]), Ok(6));
        let full: Vec<GroupId> = (0..MAX_GROUPS as GroupId).collect();
        assert_eq!(
            next_group(&full[..MAX_GROUPS - 1]),
            Ok(MAX_GROUPS as GroupId - 1)
        );
        let refused = next_group(&full).unwrap_err();
        assert!(
            refused.starts_with("ERR the cluster has 255 shard groups"),
            "{refused}"
        );
    }
}
