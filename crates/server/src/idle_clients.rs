//! Closes connections idle for longer than CONFIG's `timeout`, as Redis's clientsCron
//! does: a sweep once a second over the listener's connections. The request path pays
//! two relaxed stores a batch and one uncontended wake-up registration while it waits,
//! and no timer; a change of `timeout` reaches connections already waiting at the next
//! sweep, whatever the value was when they began to wait.
//!
//! Idle means waiting for a request: a connection running a command (however long) or
//! writing its replies is busy and never closed, as Redis never closes a client in the
//! middle of a command. Like Redis, idle time is counted in whole seconds of the sweep's
//! clock and must exceed the timeout.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// `since` while a connection is busy.
const BUSY: u64 = u64::MAX;

/// The connections of one listener, and the sweep's clock.
#[derive(Debug)]
pub struct IdleClients {
    started: Instant,
    /// Whole seconds since `started` at the last sweep: real seconds, however late a
    /// busy machine runs the sweep.
    clock: AtomicU64,
    /// Registrations are numbered here, not by client id: a listener that hands its
    /// connections to several nodes' routers (`shoal dev --routers`) sees each node's ids.
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Mark>>>,
}

impl Default for IdleClients {
    fn default() -> Self {
        IdleClients {
            started: Instant::now(),
            clock: AtomicU64::new(0),
            next: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }
}

/// One connection's state as the sweep sees it.
#[derive(Debug)]
struct Mark {
    /// The clock when the connection began to wait for a request, or [`BUSY`].
    since: AtomicU64,
    /// Tells a waiting connection to check whether it has been idle too long.
    wake: Notify,
}

/// A connection's place in the sweep, removed when the connection ends.
#[derive(Debug)]
pub struct Registration {
    owner: Arc<IdleClients>,
    id: u64,
    mark: Arc<Mark>,
}

impl IdleClients {
    /// Enters a connection, busy until it first waits.
    pub fn register(self: &Arc<Self>) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mark = Arc::new(Mark {
            since: AtomicU64::new(BUSY),
            wake: Notify::new(),
        });
        self.open.lock().insert(id, mark.clone());
        Registration {
            owner: self.clone(),
            id,
            mark,
        }
    }

    /// The once-a-second sweep: with a timeout set, wakes every connection idle past it.
    pub fn sweep(&self, timeout_secs: Option<u64>) {
        self.sweep_at(self.started.elapsed().as_secs(), timeout_secs);
    }

    /// The sweep at `now` seconds of the listener's clock.
    fn sweep_at(&self, now: u64, timeout_secs: Option<u64>) {
        self.clock.fetch_max(now, Ordering::Relaxed);
        let Some(timeout) = timeout_secs else {
            return;
        };
        // Woken after the lock is released: accepts and closes do not wait on wake-ups.
        let due: Vec<Arc<Mark>> = self
            .open
            .lock()
            .values()
            .filter(|mark| idle_past(mark.since.load(Ordering::Relaxed), now, timeout))
            .cloned()
            .collect();
        for mark in due {
            mark.wake.notify_one();
        }
    }

    /// How many connections are entered (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.lock().len()
    }
}

/// Whether a connection idle since `since` has waited longer than `timeout` at `now`.
fn idle_past(since: u64, now: u64, timeout: u64) -> bool {
    since != BUSY && now.saturating_sub(since) > timeout
}

impl Registration {
    /// The connection begins to wait for its next request.
    pub fn idle(&self) {
        let now = self.owner.clock.load(Ordering::Relaxed);
        self.mark.since.store(now, Ordering::Relaxed);
    }

    /// A request arrived.
    pub fn busy(&self) {
        self.mark.since.store(BUSY, Ordering::Relaxed);
    }

    /// Completes when the sweep found this connection idle past the timeout; the
    /// connection then asks [`Registration::expired`], since it may have woken for a
    /// request in between.
    pub async fn woken(&self) {
        self.mark.wake.notified().await;
    }

    /// Whether the connection, still waiting, has been idle longer than `timeout_secs`.
    pub fn expired(&self, timeout_secs: Option<u64>) -> bool {
        let now = self.owner.clock.load(Ordering::Relaxed);
        timeout_secs
            .is_some_and(|timeout| idle_past(self.mark.since.load(Ordering::Relaxed), now, timeout))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.owner.open.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[test]
    fn only_a_connection_waiting_longer_than_the_timeout_is_woken() {
        let clients = Arc::new(IdleClients::default());
        let waiting = clients.register();
        let busy = clients.register();
        waiting.idle();
        // A timeout of 2: idle for 1, 2 seconds is not enough, 3 is (Redis's `>`).
        clients.sweep_at(1, Some(2));
        clients.sweep_at(2, Some(2));
        assert!(!waiting.expired(Some(2)));
        clients.sweep_at(3, Some(2));
        assert!(waiting.expired(Some(2)));
        assert!(!busy.expired(Some(2)), "a busy connection is never idle");
        // The sweep left a wake-up for the idle connection only.
        assert!(waiting.woken().now_or_never().is_some());
        assert!(busy.woken().now_or_never().is_none());
        // No timeout, or a request in between: not expired.
        assert!(!waiting.expired(None));
        waiting.busy();
        assert!(!waiting.expired(Some(2)));
    }

    #[test]
    fn a_timeout_set_later_reaches_a_connection_already_waiting() {
        let clients = Arc::new(IdleClients::default());
        let waiting = clients.register();
        waiting.idle();
        for now in 1..=5 {
            clients.sweep_at(now, None);
        }
        assert!(waiting.woken().now_or_never().is_none());
        clients.sweep_at(6, Some(1));
        assert!(waiting.woken().now_or_never().is_some());
        assert!(waiting.expired(Some(1)));
    }

    #[test]
    fn connections_of_several_routers_with_the_same_client_id_are_each_swept() {
        // `shoal dev --routers 2`: two nodes both number their first client 1.
        let clients = Arc::new(IdleClients::default());
        let a = clients.register();
        let b = clients.register();
        a.idle();
        b.idle();
        drop(a);
        assert_eq!(
            clients.len(),
            1,
            "ending one connection unregistered the other"
        );
        clients.sweep_at(5, Some(1));
        assert!(b.woken().now_or_never().is_some());
    }

    #[test]
    fn the_clock_is_the_listener_s_real_seconds() {
        let clients = Arc::new(IdleClients::default());
        let waiting = clients.register();
        waiting.idle();
        clients.sweep(Some(1));
        // Well under a second after the start: nothing is idle past a second.
        assert!(!waiting.expired(Some(1)));
        assert!(clients.clock.load(Ordering::Relaxed) <= 1);
    }

    #[test]
    fn an_ended_connection_leaves_the_sweep() {
        let clients = Arc::new(IdleClients::default());
        let a = clients.register();
        let b = clients.register();
        assert_eq!(clients.len(), 2);
        drop(a);
        assert_eq!(clients.len(), 1);
        drop(b);
        assert_eq!(clients.len(), 0);
    }
}
