//! What the reshard coordinator reads before each decision (`reshard::View`): the
//! record and the layout from the map as this router last read it, each group's
//! `SHOAL._LAYOUT`, linearized on its leader, and which groups the map shows with a
//! leader and every voter up.

use std::collections::{BTreeMap, BTreeSet};

use futures::future::join_all;
use shoal_raft::GroupId;

use crate::layout::Layout;
use crate::meta::{ClusterMap, META};
use crate::reshard::{GroupState, View};
use crate::reshard_record::ReshardRecord;
use crate::router::Router;
use crate::shards::{Answer, Op};
use crate::wire::{ReadCall, ANY_EPOCH};

/// How long a group's state may take: a group without a leader (a target not created
/// yet) is left out of this decision rather than holding it up.
const STATE_READ_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);

/// The inputs of one decision, owned (see [`Inputs::view`]).
#[derive(Debug, Clone)]
pub struct Inputs {
    pub record: ReshardRecord,
    pub layout: Layout,
    /// The groups that answered.
    pub states: BTreeMap<GroupId, GroupState>,
    pub ready: BTreeSet<GroupId>,
}

impl Inputs {
    pub fn view(&self) -> View<'_> {
        View {
            record: &self.record,
            layout: &self.layout,
            states: &self.states,
            ready: &self.ready,
        }
    }
}

/// Groups the map shows with a leader and every voter seen lately: a group whose
/// leader or a voter is gone may not finish a step in time.
pub fn ready_groups(map: &ClusterMap, now_ms: u64) -> BTreeSet<GroupId> {
    let alive = |id| map.nodes.get(&id).is_some_and(|n| n.alive(now_ms));
    map.groups
        .iter()
        .filter(|(_, g)| alive(g.leader) && g.voters.iter().all(|&v| alive(v)))
        .map(|(&id, _)| id)
        .collect()
}

impl Router {
    /// The coordinator's inputs now; `None` while no reshard is recorded (or the map
    /// says nothing yet of the cluster's shape).
    pub async fn reshard_inputs(&self, now_ms: u64) -> Option<Inputs> {
        let map = self.cached_map();
        let record = map.reshard.clone()?;
        let layout = match &map.layout {
            Some(layout) => layout.clone(),
            None => Layout::initial(map.shape.as_ref()?.groups),
        };
        Some(self.reshard_inputs_of(record, layout, now_ms).await)
    }

    /// The inputs for `record` and `layout` as the caller read them (the coordinator
    /// reads both linearized, with the version its writes are guarded by): each
    /// group's state, and readiness by the cached map.
    pub async fn reshard_inputs_of(
        &self,
        record: ReshardRecord,
        layout: Layout,
        now_ms: u64,
    ) -> Inputs {
        let mut groups = layout.all_groups();
        groups.push(record.target);
        groups.sort_unstable();
        groups.dedup();
        groups.retain(|&g| g != META);
        let asks = groups.iter().map(|&group| async move {
            let call = ReadCall {
                commands: vec![vec![b"SHOAL._LAYOUT".to_vec()]],
                resp3: false,
                now_ms,
                stale_ok: false,
                versions: Vec::new(),
                // The reshard's own state, whatever the routing.
                epoch: ANY_EPOCH,
            };
            let state = match self
                .shards()
                .call_within(group, &Op::Read(call), STATE_READ_BUDGET)
                .await
            {
                Ok(Answer::Read(answer)) => answer.replies.first().and_then(GroupState::parse),
                Ok(Answer::Write(_) | Answer::Search(_) | Answer::Aggregate(_)) | Err(_) => None,
            };
            (group, state)
        });
        let states = join_all(asks)
            .await
            .into_iter()
            .filter_map(|(g, state)| state.map(|s| (g, s)))
            .collect();
        Inputs {
            record,
            layout,
            states,
            ready: ready_groups(&self.cached_map(), now_ms),
        }
    }
}
