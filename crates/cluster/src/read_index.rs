//! Read indexes for follower reads, one leader round trip shared by every read that
//! waits for one.
//!
//! A router whose node holds a replica of a group answers a search part there instead
//! of at the leader: it asks the leader for a read index (the leader confirms it still
//! leads, as for any linearizable read), waits until its own replica has applied that
//! index, and searches its own replica. The walk and the hits stay on this node; what
//! crosses the network is a small call, and one call serves every read that was waiting
//! when it was sent.
//!
//! Why a read may take another's index: an index is good for a read when the leader
//! confirmed its leadership after the read arrived, so every write acknowledged before
//! the read is at or below the index. A round therefore serves only the reads that were
//! already waiting when it was *sent*; a read that arrives while a round is in flight
//! waits for the next one, which is sent as soon as the current one is back. At most one
//! round per (group, leader) is in flight; under load each carries every read that
//! arrived during the previous one.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use shoal_raft::{GroupId, NodeId};
use tokio::sync::oneshot;

use crate::wire::ShardError;

/// What a leader answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadIndex {
    /// The index a replica must have applied.
    At(u64),
    /// The node runs an older Shoal without the call: send it the read instead.
    Unsupported,
}

type Waiter = oneshot::Sender<Result<ReadIndex, ShardError>>;

#[derive(Default)]
struct Slot {
    /// Whether a round is in flight (and will start the next one if reads wait).
    running: bool,
    /// Reads that arrived since the round in flight was sent.
    waiting: Vec<Waiter>,
}

type SharedSlot = Arc<Mutex<Slot>>;

/// The rounds of one router, per group and leader.
#[derive(Default)]
pub struct ReadIndexes {
    /// Per group and leader (its id and address: a node that comes back elsewhere
    /// gets rounds of its own, not the old address's).
    slots: Mutex<HashMap<(GroupId, NodeId, String), SharedSlot>>,
    rounds: Arc<AtomicU64>,
}

impl std::fmt::Debug for ReadIndexes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadIndexes")
            .field("rounds", &self.rounds())
            .finish()
    }
}

impl ReadIndexes {
    /// A read index from `leader` for `group`, fetched by `fetch` in a round sent after
    /// this call began. `fetch` runs in a task of its own, so a caller that gives up
    /// (its deadline) does not cancel the round for the others.
    pub async fn get<F, Fut>(
        &self,
        group: GroupId,
        leader: (NodeId, &str),
        fetch: F,
    ) -> Result<ReadIndex, ShardError>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<ReadIndex, ShardError>> + Send + 'static,
    {
        let (node, addr) = leader;
        let slot = self
            .slots
            .lock()
            .entry((group, node, addr.to_owned()))
            .or_default()
            .clone();
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut s = slot.lock();
            s.waiting.push(tx);
            !std::mem::replace(&mut s.running, true)
        };
        if start {
            tokio::spawn(run_rounds(slot, fetch, self.rounds.clone()));
        }
        rx.await.unwrap_or(Err(ShardError::Unreachable {
            group,
            node,
            message: "the read index round was dropped".into(),
            never_sent: false,
        }))
    }

    /// Rounds sent since the start.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }
}

/// Sends rounds while reads wait: each round answers the reads that were waiting when
/// it was sent, then the next takes those that came meanwhile.
async fn run_rounds<F, Fut>(slot: SharedSlot, fetch: F, rounds: Arc<AtomicU64>)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<ReadIndex, ShardError>>,
{
    let mut running = Running {
        slot: slot.clone(),
        done: false,
    };
    loop {
        let batch = std::mem::take(&mut slot.lock().waiting);
        rounds.fetch_add(1, Ordering::Relaxed);
        let result = fetch().await;
        for waiter in batch {
            // A waiter that gave up has dropped its receiver: nothing to tell.
            let _ = waiter.send(result.clone());
        }
        let mut s = slot.lock();
        if s.waiting.is_empty() {
            s.running = false;
            running.done = true;
            return;
        }
    }
}

/// Frees the slot when the task ends without doing so itself (a panic in `fetch`):
/// the reads waiting learn it (their senders are dropped) and the next read starts a
/// round again, instead of every later read waiting out its deadline.
struct Running {
    slot: SharedSlot,
    done: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.done {
            let mut s = self.slot.lock();
            s.running = false;
            s.waiting.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A leader whose commit index moves on with every round: each read's index must
    /// come from a round sent after the read began.
    struct Leader {
        commit: AtomicU64,
        sent: AtomicU64,
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_that_wait_together_share_a_round_sent_after_them() {
        let leader = Arc::new(Leader {
            commit: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        });
        let indexes = Arc::new(ReadIndexes::default());
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            // A write is acknowledged (the commit index moves), then a read starts: its
            // index must be at least that commit.
            let acked = leader.commit.fetch_add(1, Ordering::SeqCst) + 1;
            let (indexes, leader) = (indexes.clone(), leader.clone());
            let fetch = move || {
                let leader = leader.clone();
                async move {
                    // The index is read when the round arrives; the answer takes a while.
                    let index = leader.commit.load(Ordering::SeqCst);
                    leader.sent.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Ok(ReadIndex::At(index))
                }
            };
            tasks.push(tokio::spawn(async move {
                let ReadIndex::At(index) = indexes.get(7, (1, "n1"), fetch).await.unwrap() else {
                    panic!("the leader gives indexes");
                };
                assert!(
                    index >= acked,
                    "read {i}: index {index} < acknowledged {acked}"
                );
            }));
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let rounds = indexes.rounds();
        assert_eq!(rounds, leader.sent.load(Ordering::SeqCst));
        assert!(rounds < 50, "{rounds} rounds for 200 reads: not shared");
    }

    #[tokio::test]
    async fn a_failed_round_fails_its_reads_and_the_next_read_sends_again() {
        let indexes = ReadIndexes::default();
        let fail = || async { Err(ShardError::NoRoute { group: 1 }) };
        assert!(matches!(
            indexes.get(1, (2, "n2"), fail).await,
            Err(ShardError::NoRoute { group: 1 })
        ));
        assert_eq!(
            indexes
                .get(1, (2, "n2"), || async { Ok(ReadIndex::At(9)) })
                .await
                .unwrap(),
            ReadIndex::At(9)
        );
        assert_eq!(indexes.rounds(), 2);
    }

    #[tokio::test]
    async fn a_reader_that_gives_up_leaves_the_round_to_the_others() {
        let indexes = Arc::new(ReadIndexes::default());
        let slow = || async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(ReadIndex::At(3))
        };
        let impatient =
            tokio::time::timeout(Duration::from_millis(1), indexes.get(4, (1, "n1"), slow));
        assert!(impatient.await.is_err());
        // The round it started still finishes, and a later read gets its own.
        assert_eq!(
            indexes.get(4, (1, "n1"), slow).await.unwrap(),
            ReadIndex::At(3)
        );
    }

    #[tokio::test]
    async fn a_round_that_panics_fails_its_reads_and_frees_the_slot() {
        let indexes = ReadIndexes::default();
        let broken = || async {
            if true {
                panic!("a bug in the fetch");
            }
            Ok(ReadIndex::At(0))
        };
        assert!(matches!(
            indexes.get(2, (1, "n1"), broken).await,
            Err(ShardError::Unreachable { .. })
        ));
        // The slot is free again: the next read sends its own round.
        let fine = || async { Ok(ReadIndex::At(5)) };
        let next = tokio::time::timeout(Duration::from_secs(5), indexes.get(2, (1, "n1"), fine));
        assert_eq!(next.await.unwrap().unwrap(), ReadIndex::At(5));
    }
}
