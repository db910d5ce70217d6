//! Rounds shared by every caller that waits for one: one call to another node answers
//! all the reads that were waiting when it was sent.
//!
//! Both confirmations a router asks of other nodes before it reads its own replica —
//! a leader's read index (`crate::read_index`) and a peer's votes (`crate::confirm`) —
//! are good for a read only if they were taken after the read began. A round therefore
//! serves only the callers already waiting when it is *sent*; a caller that arrives
//! while a round is in flight waits for the next one, which is sent as soon as the
//! current one is back. At most one round per key is in flight; under load each carries
//! every caller that arrived during the previous one. A round is sent with the queries
//! of the callers it serves (for `confirm`, the groups they read).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::wire::ShardError;

type Waiter<T> = oneshot::Sender<Result<T, ShardError>>;

struct Slot<Q, T> {
    /// Whether a round is in flight (and will start the next one if callers wait).
    running: bool,
    /// Callers that arrived since the round in flight was sent, with their queries.
    waiting: Vec<(Q, Waiter<T>)>,
}

type SharedSlot<Q, T> = Arc<Mutex<Slot<Q, T>>>;

/// The rounds of one router, per key (a node, or a group and its leader).
pub struct Rounds<K, Q, T> {
    slots: Mutex<HashMap<K, SharedSlot<Q, T>>>,
    rounds: Arc<AtomicU64>,
}

impl<K, Q, T> Default for Rounds<K, Q, T> {
    fn default() -> Self {
        Rounds {
            slots: Mutex::new(HashMap::new()),
            rounds: Arc::default(),
        }
    }
}

impl<K, Q, T> std::fmt::Debug for Rounds<K, Q, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rounds")
            .field("rounds", &self.rounds.load(Ordering::Relaxed))
            .finish()
    }
}

impl<K, Q, T> Rounds<K, Q, T>
where
    K: Hash + Eq,
    Q: Send + 'static,
    T: Clone + Send + 'static,
{
    /// The answer of a round for `key` sent after this call began, with `query` among
    /// the round's queries. `fetch` runs in a task of its own, so a caller that gives
    /// up (its deadline) does not cancel the round for the others. `None` when the
    /// round was lost (its task panicked).
    pub async fn get<F, Fut>(&self, key: K, query: Q, fetch: F) -> Option<Result<T, ShardError>>
    where
        F: Fn(Vec<Q>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ShardError>> + Send + 'static,
    {
        let slot = self
            .slots
            .lock()
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Mutex::new(Slot {
                    running: false,
                    waiting: Vec::new(),
                }))
            })
            .clone();
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut s = slot.lock();
            s.waiting.push((query, tx));
            !std::mem::replace(&mut s.running, true)
        };
        if start {
            tokio::spawn(run_rounds(slot, fetch, self.rounds.clone()));
        }
        rx.await.ok()
    }

    /// Rounds sent since the start.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }
}

/// Sends rounds while callers wait: each round answers the callers that were waiting
/// when it was sent, then the next takes those that came meanwhile.
async fn run_rounds<Q, T, F, Fut>(slot: SharedSlot<Q, T>, fetch: F, rounds: Arc<AtomicU64>)
where
    T: Clone,
    F: Fn(Vec<Q>) -> Fut,
    Fut: Future<Output = Result<T, ShardError>>,
{
    let mut running = Running {
        slot: slot.clone(),
        done: false,
    };
    loop {
        let (queries, waiters): (Vec<Q>, Vec<Waiter<T>>) =
            std::mem::take(&mut slot.lock().waiting).into_iter().unzip();
        rounds.fetch_add(1, Ordering::Relaxed);
        let result = fetch(queries).await;
        for waiter in waiters {
            // A caller that gave up has dropped its receiver: nothing to tell.
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
/// the callers waiting learn it (their senders are dropped) and the next caller starts
/// a round again, instead of every later caller waiting out its deadline.
struct Running<Q, T> {
    slot: SharedSlot<Q, T>,
    done: bool,
}

impl<Q, T> Drop for Running<Q, T> {
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

    type Counter = Rounds<&'static str, u64, u64>;

    /// A leader whose commit index moves on with every write: each caller's answer must
    /// come from a round sent after it began, and carry its query.
    struct Leader {
        commit: AtomicU64,
        sent: AtomicU64,
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_that_wait_together_share_a_round_sent_after_them() {
        let leader = Arc::new(Leader {
            commit: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        });
        let rounds = Arc::new(Rounds::<&'static str, u64, (u64, Vec<u64>)>::default());
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            // A write is acknowledged (the commit index moves), then a read starts: its
            // index must be at least that commit.
            let acked = leader.commit.fetch_add(1, Ordering::SeqCst) + 1;
            let (rounds, leader) = (rounds.clone(), leader.clone());
            let fetch = move |queries: Vec<u64>| {
                let leader = leader.clone();
                async move {
                    // The index is read when the round arrives; the answer takes a while.
                    let index = leader.commit.load(Ordering::SeqCst);
                    leader.sent.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Ok((index, queries))
                }
            };
            tasks.push(tokio::spawn(async move {
                let (index, queries) = rounds.get("n1", i, fetch).await.unwrap().unwrap();
                assert!(
                    index >= acked,
                    "read {i}: index {index} < acknowledged {acked}"
                );
                assert!(queries.contains(&i), "read {i} not among {queries:?}");
            }));
            if i % 20 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let sent = rounds.rounds();
        assert_eq!(sent, leader.sent.load(Ordering::SeqCst));
        assert!(sent < 50, "{sent} rounds for 200 reads: not shared");
    }

    #[tokio::test]
    async fn a_failed_round_fails_its_callers_and_the_next_caller_sends_again() {
        let rounds = Counter::default();
        let fail = |_: Vec<u64>| async { Err(ShardError::NoRoute { group: 1 }) };
        assert!(matches!(
            rounds.get("n2", 1, fail).await,
            Some(Err(ShardError::NoRoute { group: 1 }))
        ));
        let ok = |_: Vec<u64>| async { Ok(9) };
        assert_eq!(rounds.get("n2", 1, ok).await.unwrap().unwrap(), 9);
        assert_eq!(rounds.rounds(), 2);
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_leaves_the_round_to_the_others() {
        let rounds = Arc::new(Counter::default());
        let slow = |_: Vec<u64>| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(3)
        };
        let impatient = tokio::time::timeout(Duration::from_millis(1), rounds.get("n1", 4, slow));
        assert!(impatient.await.is_err());
        // The round it started still finishes, and a later caller gets its own.
        assert_eq!(rounds.get("n1", 4, slow).await.unwrap().unwrap(), 3);
    }

    #[tokio::test]
    async fn a_round_that_panics_fails_its_callers_and_frees_the_slot() {
        let rounds = Counter::default();
        let broken = |_: Vec<u64>| async {
            if true {
                panic!("a bug in the fetch");
            }
            Ok(0)
        };
        assert!(rounds.get("n1", 2, broken).await.is_none());
        // The slot is free again: the next caller sends its own round.
        let fine = |_: Vec<u64>| async { Ok(5) };
        let next = tokio::time::timeout(Duration::from_secs(5), rounds.get("n1", 2, fine));
        assert_eq!(next.await.unwrap().unwrap().unwrap(), 5);
    }
}
