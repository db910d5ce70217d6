//! The groups this node hosts, as a router and the shard service use them: a write
//! proposed to the local replica, reads linearized on it, a search part run on it.
//! Both the remote path (a peer's router calls our shard service) and the local fast
//! path (our router, when this node leads the group) end here.

use std::sync::Arc;
use std::time::Duration;

use shoal_engine::aggregate::AggregatePart;
use shoal_engine::{ReadContext, SearchResults};
use shoal_raft::{Group, GroupId, Host, ReadMode, Replica, Request, Response};

use crate::confirm::View;
use crate::turns::Turns;
use crate::wire::{AggregateCall, ReadAnswer, ReadCall, SearchCall, ShardError};

/// How this node's replicas answer.
#[derive(Debug, Clone)]
pub struct Local {
    pub host: Arc<Host>,
    pub read_mode: ReadMode,
    /// How long a write or a read's leadership check may wait for a quorum.
    pub quorum_timeout: Duration,
    /// Whether this node's router answers search and aggregate parts from its own
    /// replicas after a read index from the leader (`crate::read_index`), instead of
    /// sending them to the leader.
    pub follower_reads: bool,
    /// The turns this node's router takes for parts it reads on its own replicas after
    /// a confirmation round, when it is busy (one set for the whole process: `shoal
    /// dev`'s nodes share it; see `crate::turns` for why only those parts).
    pub walks: Turns,
}

impl Local {
    pub fn group(&self, group: GroupId) -> Result<Group, ShardError> {
        self.host.group(group).ok_or(ShardError::NotHosted {
            node: self.host.id(),
            group,
        })
    }

    /// Proposes one log entry and waits until it is applied here. An entry planned by
    /// an older routing than the group's ran nothing: the router hears `StaleMap`.
    pub async fn write(&self, group: GroupId, request: Request) -> Result<Response, ShardError> {
        let id = group;
        let group = self.group(group)?;
        let response = group.write(request, self.quorum_timeout).await?;
        match response.stale {
            Some(floor) => Err(ShardError::StaleMap { group: id, floor }),
            None => Ok(response),
        }
    }

    async fn linearize(&self, group: &Group, stale_ok: bool) -> Result<(), ShardError> {
        if !stale_ok {
            group.linearize(self.read_mode, self.quorum_timeout).await?;
        }
        Ok(())
    }

    /// Answers reads in order, after one leadership check for all of them.
    pub async fn read(&self, group: GroupId, call: &ReadCall) -> Result<ReadAnswer, ShardError> {
        let id = group;
        let group = self.group(group)?;
        self.linearize(&group, call.stale_ok).await?;
        let ctx = read_context(call.now_ms, call.resp3);
        let replica = group.replica().read();
        routed_now(&replica, id, call.epoch)?;
        Ok(ReadAnswer {
            replies: call
                .commands
                .iter()
                .map(|args| replica.engine.query(args, ctx))
                .collect(),
            versions: replica.engine.versions(&call.versions, call.now_ms),
            applied: replica.applied().map_or(0, |l| l.index),
        })
    }

    /// This group's part of an FT.SEARCH.
    pub async fn search(
        &self,
        group: GroupId,
        call: &SearchCall,
    ) -> Result<SearchResults, ShardError> {
        let group = self.group(group)?;
        self.linearize(&group, call.stale_ok).await?;
        let part = search_on(&group.replica().read(), group.id(), call);
        part
    }

    /// This group's part of an FT.AGGREGATE.
    pub async fn aggregate(
        &self,
        group: GroupId,
        call: &AggregateCall,
    ) -> Result<AggregatePart, ShardError> {
        let group = self.group(group)?;
        self.linearize(&group, call.stale_ok).await?;
        let part = aggregate_on(&group.replica().read(), group.id(), call);
        part
    }

    /// This node's views of `groups` now (see `crate::confirm` and `Host::read_views`);
    /// `None` for a group it holds no replica of, or one not yet started.
    pub fn vote_views(&self, groups: &[GroupId]) -> Vec<(GroupId, Option<View>)> {
        groups
            .iter()
            .map(|&g| {
                let view = self
                    .host
                    .read_views(g)
                    .map(|(vote, log)| View { vote, log });
                (g, view)
            })
            .collect()
    }

    /// The leader's half of a follower read: the index the follower must have applied
    /// (see `crate::read_index`).
    pub async fn read_index(&self, group: GroupId) -> Result<u64, ShardError> {
        let group = self.group(group)?;
        Ok(group
            .read_index(self.read_mode, self.quorum_timeout)
            .await?)
    }
}

/// A search part on a replica's state as it is: linearized by the caller (a leader's
/// check, or a follower read's applied index, taken under the same lock: engine and
/// index change together), or stale (`READONLY`).
pub fn search_on(
    replica: &Replica,
    group: GroupId,
    call: &SearchCall,
) -> Result<SearchResults, ShardError> {
    routed_now(replica, group, call.epoch)?;
    let ctx = read_context(call.now_ms, call.resp3);
    let results = match &call.prepared.0 {
        Some(prepared) => replica
            .engine
            .search_part_prepared(prepared, ctx, call.window),
        None => replica.engine.search_part(&call.args, ctx, call.window),
    };
    results.map_err(ShardError::Engine)
}

/// An aggregate part on a replica's state (see [`search_on`]).
pub fn aggregate_on(
    replica: &Replica,
    group: GroupId,
    call: &AggregateCall,
) -> Result<AggregatePart, ShardError> {
    routed_now(replica, group, call.epoch)?;
    let ctx = read_context(call.now_ms, false);
    replica
        .engine
        .aggregate_part(&call.args, ctx)
        .map_err(ShardError::Engine)
}

/// Whether a call planned by routing `epoch` may read `replica`: not once the group has
/// moved on to a newer routing (its floor), under which the call's keys may have moved
/// in or out (docs/resharding.md §4). Checked under the lock the call reads under, so
/// the answer and the check see the same state.
pub fn routed_now(replica: &Replica, group: GroupId, epoch: u64) -> Result<(), ShardError> {
    let floor = replica.engine.layout().floor;
    if epoch < floor {
        return Err(ShardError::StaleMap { group, floor });
    }
    Ok(())
}

fn read_context(now_ms: u64, resp3: bool) -> ReadContext {
    ReadContext {
        now_ms,
        resp3,
        in_apply: false,
    }
}

#[cfg(test)]
mod tests {
    use shoal_engine::Write;

    use super::*;
    use crate::wire::ANY_EPOCH;

    #[test]
    fn a_call_planned_by_an_older_routing_than_the_groups_is_refused() {
        let mut replica = Replica::default();
        assert!(
            routed_now(&replica, 1, 0).is_ok(),
            "a group that never resharded"
        );
        let begin = ["SHOAL._BEGIN", "5", "3", "0", "1", "2", "3"];
        let args = begin.iter().map(|a| a.as_bytes().to_vec()).collect();
        replica.engine.apply(&Write::single(1, args));
        assert!(matches!(
            routed_now(&replica, 1, 4),
            Err(ShardError::StaleMap { group: 1, floor: 5 })
        ));
        assert!(routed_now(&replica, 1, 5).is_ok());
        assert!(routed_now(&replica, 1, ANY_EPOCH).is_ok());
    }
}
