//! Search and aggregate parts read after a confirmation round take turns, oldest
//! first, once the node is busy.
//!
//! Under load every connection of a node waits in a tokio worker's run queue, and with
//! two workers that queue is not first come, first served: the worker that polls the
//! I/O driver queues every connection it finds ready, the other steals the older half,
//! and the last one woken jumps ahead through the LIFO slot. A connection's place in
//! that order changes from one request to the next, so at 32 clients a search waited
//! anywhere between one walk and two full rounds of the other clients' walks, and the
//! p99 was twice the p50 (docs/benchmarks.md, "Session 30"). With one worker the same
//! load had a p99 only 1.2 times its p50.
//!
//! So on a busy node a walk does not start in whatever order the workers reach it: it
//! registers with the time its request arrived, yields once so that every request
//! already read can register too, and the turns (one per worker thread) go to the
//! oldest registered walks. A walk that ends hands its turn straight to the oldest
//! waiting one, which then runs on the same worker. The walk stays in its own task:
//! handing it to another task instead (one runner per worker) was measured first and
//! cost about 15 µs a part in cross-core hand-overs and cross-thread frees.
//!
//! A task holds one turn at most: the parts of a search are futures of one task, so a
//! second turn granted to it would sit unused while the first part walks, and leave a
//! core idle (measured: 126% CPU of 200 at 32 clients on `shoal dev` with READONLY).
//!
//! A walk on an idle node (no turn held: one client) takes its turn at once, without
//! yielding, as before.
//!
//! Only the parts a router reads on its own replicas after a confirmation round
//! (`shards::answer_here`) take turns: they come back from their rounds in an order the
//! rounds decided, and the turns put them back in the order of arrival. Measured on
//! `shoal dev` at 32 clients (docs/benchmarks.md, "Session 30"), that path gained 6%
//! in searches per second, with rounds carrying twice as many searches each. Reads that
//! need no round (READONLY, a leader's own part, a standalone node) keep tokio's order:
//! there the extra poll per walk cost 12% of READONLY's searches per second, more than
//! the order gave back.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::oneshot;
use tokio::task;

tokio::task_local! {
    /// When the client request the current task serves arrived: set by the node around
    /// a client's reads, so that every part of a search waits by the search's arrival,
    /// however long its confirmation round took.
    pub static ARRIVED: Instant;
}

/// The arrival of the request this task serves; now, for work no client request
/// scoped (a peer's shard call).
pub fn arrived() -> Instant {
    ARRIVED.try_with(|t| *t).unwrap_or_else(|_| Instant::now())
}

/// The turns of one process (`shoal dev`'s nodes share them: they share the cores).
#[derive(Clone, Default)]
pub struct Turns {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn").field("task", &self.task).finish()
    }
}

impl std::fmt::Debug for Turns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.shared.state.lock();
        f.debug_struct("Turns")
            .field("held", &state.held)
            .field("waiting", &state.waiting.len())
            .finish()
    }
}

#[derive(Default)]
struct Shared {
    /// Turns at most; 0: one per worker thread of the runtime.
    max: usize,
    /// The runtime's worker threads, once asked (`max` 0).
    workers: std::sync::OnceLock<usize>,
    state: Mutex<State>,
    /// Walks that registered and waited since the start.
    waited: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Turns handed out and not yet given back (walks running, or woken to run).
    held: usize,
    /// The tasks holding them (a task outside a runtime has no id).
    holders: Vec<Option<task::Id>>,
    waiting: BinaryHeap<Reverse<Waiter>>,
    next_seq: u64,
}

/// The waiters one pass granted turns to: as many as there are turns (one per worker),
/// kept on the stack.
type Granted = smallvec::SmallVec<[Waiter; 4]>;

/// A registered walk, ordered by its request's arrival, then by registration.
struct Waiter {
    since: Instant,
    seq: u64,
    task: Option<task::Id>,
    grant: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        (self.since, self.seq) == (other.since, other.seq)
    }
}

impl Eq for Waiter {}

impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.since, self.seq).cmp(&(other.since, other.seq))
    }
}

/// A turn: the walk it was taken for may run; dropping it hands it on.
#[must_use = "a turn is given back when dropped"]
pub struct Turn {
    shared: Option<Arc<Shared>>,
    task: Option<task::Id>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.release(self.task);
        }
    }
}

impl Turns {
    /// Turns for at most `max` walks at once (0: one per worker thread).
    pub fn with_max(max: usize) -> Turns {
        Turns {
            shared: Arc::new(Shared {
                max,
                ..Shared::default()
            }),
        }
    }

    /// Waits for a turn for a walk whose request arrived at `since`. Hold it over the
    /// walk only: it must not be held across an `.await`, or other walks wait on that.
    ///
    /// | turns held | what the caller does                                        |
    /// |------------|-------------------------------------------------------------|
    /// | none       | takes one at once (an idle node: no yield, no queue)        |
    /// | some       | registers, yields once, then free turns go oldest first;    |
    /// |            | a walk that ends hands its turn to the oldest still waiting |
    pub async fn take(&self, since: Instant) -> Turn {
        let shared = &self.shared;
        let task = task::try_id();
        // Made only once the turn is this caller's: dropped, it gives the turn back.
        let turn = || Turn {
            shared: Some(shared.clone()),
            task,
        };
        let rx = {
            let mut state = shared.state.lock();
            if state.held == 0 && state.waiting.is_empty() {
                state.held += 1;
                state.holders.push(task);
                return turn();
            }
            let (grant, rx) = oneshot::channel();
            let seq = state.next_seq;
            state.next_seq += 1;
            state.waiting.push(Reverse(Waiter {
                since,
                seq,
                task,
                grant,
            }));
            rx
        };
        shared.waited.fetch_add(1, Ordering::Relaxed);
        let mut pending = Pending {
            rx,
            shared: shared.clone(),
            task,
            done: false,
        };
        // The requests that are ready now register before the turns are handed out.
        // Also when every turn is held, although none is free to hand out: skipping the
        // yield then was tried (session 42) and measured 7% fewer searches a second.
        tokio::task::yield_now().await;
        shared.grant_free();
        let granted = (&mut pending.rx).await.is_ok();
        pending.done = true;
        // A grant cannot close while `pending` holds the turns; were it to, the walk
        // runs without a turn rather than not at all.
        match granted {
            true => turn(),
            false => Turn { shared: None, task },
        }
    }

    /// Walks that had to register and wait since the start.
    pub fn waited(&self) -> u64 {
        self.shared.waited.load(Ordering::Relaxed)
    }
}

impl Shared {
    /// Asked of the runtime once (twice per walk on a busy node otherwise: a handle
    /// cloned and dropped each time); outside a runtime 1, not remembered.
    fn max_turns(&self) -> usize {
        if self.max > 0 {
            return self.max;
        }
        if let Some(&workers) = self.workers.get() {
            return workers;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(h) => *self
                .workers
                .get_or_init(|| h.metrics().num_workers().max(1)),
            Err(_) => 1,
        }
    }

    /// Hands every free turn to the oldest waiting walk still there whose task holds
    /// none.
    fn grant_free(&self) {
        let granted = {
            let mut state = self.state.lock();
            self.pick(&mut state)
        };
        self.send(granted);
    }

    /// Marks the turns that are free as held by the oldest eligible waiters, and
    /// returns those waiters: their grants are sent by [`Self::send`] once the lock is
    /// released. Sending wakes a task, which can wake a parked worker thread (a futex
    /// call, an IPI on a VM). Done under the lock, it made every walk's three passes
    /// through this lock longer: the other worker spun and yielded on it (about 790
    /// `sched_yield` calls a second at 32 clients on `shoal dev`, 97% of them here), and
    /// a holder preempted there holds up every walk of the process.
    fn pick(&self, state: &mut State) -> Granted {
        let max = self.max_turns();
        let mut granted = Granted::new();
        let mut passed = Vec::new();
        while state.held < max {
            let Some(Reverse(waiter)) = state.waiting.pop() else {
                break;
            };
            if waiter.task.is_some() && state.holders.contains(&waiter.task) {
                passed.push(waiter);
                continue;
            }
            // A walk whose caller gave up has dropped its receiver: skip it.
            if waiter.grant.is_closed() {
                continue;
            }
            state.held += 1;
            state.holders.push(waiter.task);
            granted.push(waiter);
        }
        state.waiting.extend(passed.into_iter().map(Reverse));
        granted
    }

    /// Sends the grants [`Self::pick`] chose. A caller that gave up after it was picked
    /// cannot take its grant: the turn is given back (and goes on). One that gives up
    /// after the send finds the grant in its `Pending` and gives it back there; either
    /// way exactly once.
    fn send(&self, granted: Granted) {
        for waiter in granted {
            if waiter.grant.send(()).is_err() {
                self.release(waiter.task);
            }
        }
    }

    fn release(&self, task: Option<task::Id>) {
        let granted = {
            let mut state = self.state.lock();
            // Never below zero: a wrapped count would stop every grant for good.
            state.held = state.held.saturating_sub(1);
            if let Some(i) = state.holders.iter().position(|t| *t == task) {
                state.holders.swap_remove(i);
            }
            self.pick(&mut state)
        };
        self.send(granted);
    }
}

/// A registered walk; if its caller gives up after a turn was granted to it, the turn
/// goes on to the next.
struct Pending {
    rx: oneshot::Receiver<()>,
    shared: Arc<Shared>,
    task: Option<task::Id>,
    done: bool,
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.rx.close();
        if self.rx.try_recv().is_ok() {
            self.shared.release(self.task);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_node_takes_its_turn_at_once() {
        let turns = Turns::default();
        let mut take = Box::pin(turns.take(Instant::now()));
        assert!(
            futures::poll!(&mut take).is_ready(),
            "waited on an idle node"
        );
        assert_eq!(turns.waited(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_walks_get_their_turns_oldest_first() {
        let turns = Turns::with_max(1);
        let held = turns.take(Instant::now()).await;
        // Walks registered in the reverse order of their requests' arrival.
        let order = Arc::new(Mutex::new(Vec::new()));
        let base = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..6u64 {
            let (mine, order) = (turns.clone(), order.clone());
            let since = base + Duration::from_millis(100 - 10 * i);
            tasks.push(tokio::spawn(async move {
                let _turn = mine.take(since).await;
                order.lock().push(i);
            }));
            while turns.waited() < i + 1 {
                tokio::task::yield_now().await;
            }
        }
        assert!(
            order.lock().is_empty(),
            "a walk ran while the only turn was held"
        );
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock(), vec![5, 4, 3, 2, 1, 0]);
        assert_eq!(turns.shared.state.lock().held, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_walk_given_up_before_or_after_its_grant_keeps_no_turn() {
        let turns = Turns::with_max(1);
        let held = turns.take(Instant::now()).await;
        // Given up before its grant: skipped.
        let mut early = Box::pin(turns.take(Instant::now()));
        assert!(futures::poll!(&mut early).is_pending());
        drop(early);
        // Granted, then given up before it ran: the turn goes on.
        let mut late = Box::pin(turns.take(Instant::now()));
        assert!(futures::poll!(&mut late).is_pending());
        drop(held);
        assert_eq!(turns.shared.state.lock().held, 1, "granted to `late`");
        drop(late);
        assert_eq!(turns.shared.state.lock().held, 0);
        let next = tokio::time::timeout(Duration::from_secs(5), turns.take(Instant::now()));
        assert!(next.await.is_ok(), "a turn was lost");
    }

    /// The window the grants' sending outside the lock opens: a walk picked for a turn
    /// whose caller gives up before the grant is sent. The turn must come back.
    #[test]
    fn a_turn_picked_for_a_walk_that_gave_up_before_the_send_comes_back() {
        let turns = Turns::with_max(1);
        let shared = &turns.shared;
        let (grant, rx) = oneshot::channel();
        let granted = {
            let mut state = shared.state.lock();
            state.waiting.push(Reverse(Waiter {
                since: Instant::now(),
                seq: 0,
                task: None,
                grant,
            }));
            shared.pick(&mut state)
        };
        assert_eq!((granted.len(), shared.state.lock().held), (1, 1));
        drop(rx);
        shared.send(granted);
        assert_eq!(shared.state.lock().held, 0, "the turn was lost");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_is_never_granted_a_second_turn_while_it_holds_one() {
        let turns = Turns::with_max(2);
        let (t1, t2) = (turns.clone(), turns.clone());
        // One task, two parts: the first holds its turn; the second waits although a
        // turn is free, which another task then gets.
        let (hold_tx, hold_rx) = oneshot::channel::<()>();
        let (held_tx, held_rx) = oneshot::channel::<()>();
        let parts = tokio::spawn(async move {
            let first = t1.take(Instant::now()).await;
            let _ = held_tx.send(());
            let mut second = Box::pin(t1.take(Instant::now()));
            assert!(futures::poll!(&mut second).is_pending());
            assert!(futures::poll!(&mut second).is_pending(), "a second turn");
            let _ = hold_rx.await;
            drop(first);
            let _second = second.await;
        });
        held_rx.await.unwrap();
        while turns.waited() < 1 {
            tokio::task::yield_now().await;
        }
        let other = tokio::time::timeout(Duration::from_secs(5), t2.take(Instant::now()));
        let other = other.await.expect("the free turn went to the other task");
        hold_tx.send(()).unwrap();
        drop(other);
        parts.await.unwrap();
        assert_eq!(turns.shared.state.lock().held, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_walks_on_two_turns_all_run_and_never_more_than_two_at_once() {
        let turns = Turns::with_max(2);
        let running = Arc::new(AtomicU64::new(0));
        let most = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (turns, running, most) = (turns.clone(), running.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..20 {
                    let turn = turns.take(Instant::now()).await;
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::hint::black_box((0..2_000u64).sum::<u64>());
                    running.fetch_sub(1, Ordering::SeqCst);
                    drop(turn);
                    tokio::task::yield_now().await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 2);
        assert_eq!(turns.shared.state.lock().held, 0);
    }
}
