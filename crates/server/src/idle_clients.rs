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

use parking_lot::Mutex;
use tokio::sync::Notify;

/// `since` while a connection is busy.
const BUSY: u64 = u64::MAX;

/// The connections of one listener, and the sweep's clock.
#[derive(Debug, Default)]
pub struct IdleClients {
    /// Seconds since the listener started, advanced by each sweep.
    clock: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Mark>>>,
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
    /// Enters connection `id`, busy until it first waits.
    pub fn register(self: &Arc<Self>, id: u64) -> Registration {
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

    /// One second passed: with a timeout set, wakes every connection idle past it.
    pub fn sweep(&self, timeout_secs: Option<u64>) {
        let now = self.clock.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(timeout) = timeout_secs else {
            return;
        };
        for mark in self.open.lock().values() {
            if idle_past(mark.since.load(Ordering::Relaxed), now, timeout) {
                mark.wake.notify_one();
            }
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
        let waiting = clients.register(1);
        let busy = clients.register(2);
        waiting.idle();
        // A timeout of 2: idle for 1, 2 seconds is not enough, 3 is (Redis's `>`).
        clients.sweep(Some(2));
        clients.sweep(Some(2));
        assert!(!waiting.expired(Some(2)));
        clients.sweep(Some(2));
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
        let waiting = clients.register(7);
        waiting.idle();
        for _ in 0..5 {
            clients.sweep(None);
        }
        assert!(waiting.woken().now_or_never().is_none());
        clients.sweep(Some(1));
        assert!(waiting.woken().now_or_never().is_some());
        assert!(waiting.expired(Some(1)));
    }

    #[test]
    fn an_ended_connection_leaves_the_sweep() {
        let clients = Arc::new(IdleClients::default());
        let a = clients.register(1);
        let b = clients.register(2);
        assert_eq!(clients.len(), 2);
        drop(a);
        assert_eq!(clients.len(), 1);
        drop(b);
        assert_eq!(clients.len(), 0);
    }
}
