//! Grace periods for reusing slot memory while searches run without locks.
//!
//! A search registers itself for its whole duration. Before a writer reuses the memory of
//! a removed vector it first makes the vector unreachable (no link, no live label points to
//! it) and then calls [`Grace::synchronize`], which returns once every search that started
//! before that moment has finished. Searches never wait; only the writer does.
//!
//! Protocol (one writer at a time calls `synchronize`, enforced by the index's structure
//! lock):
//!
//! | reader step                         | writer step                        |
//! |-------------------------------------|------------------------------------|
//! | e = epoch; active[e&1] += 1         | unlink slots                       |
//! | if epoch != e: undo, retry          | e' = epoch; epoch = e' + 1         |
//! | ... search ...                      | wait until active[e'&1] == 0       |
//! | active[e&1] -= 1                    | slots may now be rewritten         |
//!
//! A reader that registered under the old parity is waited for; one that registers under
//! the new parity started after the unlink and cannot reach the slots. A reader that read
//! the old epoch but registered late sees the epoch moved and retries under the new one.
//! The previous `synchronize` drained the new parity's counter of earlier readers.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Reader registration and writer-side waiting.
#[derive(Debug, Default)]
pub(crate) struct Grace {
    epoch: AtomicU64,
    active: [PaddedCounter; 2],
}

/// Keeps the two counters on separate cache lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct PaddedCounter(AtomicUsize);

/// Held by a search for its duration.
#[derive(Debug)]
pub(crate) struct ReadGuard<'a> {
    counter: &'a AtomicUsize,
}

impl Grace {
    /// Registers a reader.
    pub(crate) fn read(&self) -> ReadGuard<'_> {
        loop {
            let e = self.epoch.load(Ordering::SeqCst);
            let counter = &self.active[(e & 1) as usize].0;
            counter.fetch_add(1, Ordering::SeqCst);
            if self.epoch.load(Ordering::SeqCst) == e {
                return ReadGuard { counter };
            }
            counter.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Waits until every reader registered before this call has finished.
    pub(crate) fn synchronize(&self) {
        let e = self.epoch.fetch_add(1, Ordering::SeqCst);
        let counter = &self.active[(e & 1) as usize].0;
        let mut spins = 0u32;
        while counter.load(Ordering::SeqCst) != 0 {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn synchronize_waits_for_earlier_readers_only() {
        let grace = Arc::new(Grace::default());
        let released = Arc::new(AtomicBool::new(false));
        let guard = grace.read();
        let g2 = Arc::clone(&grace);
        let r2 = Arc::clone(&released);
        let writer = std::thread::spawn(move || {
            g2.synchronize();
            assert!(
                r2.load(Ordering::SeqCst),
                "returned while an earlier reader was active"
            );
        });
        // Wait (without a timing guess) until the writer has moved the epoch: a reader
        // that starts after that must neither hold the writer up nor be held up by it.
        while grace.epoch.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let later = grace.read();
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            !writer.is_finished(),
            "the writer did not wait for the earlier reader"
        );
        released.store(true, Ordering::SeqCst);
        drop(guard);
        writer.join().unwrap();
        drop(later);
        grace.synchronize();
    }
}
