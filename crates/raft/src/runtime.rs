//! openraft's tokio runtime with its sleeps rounded up to a shared grid, so the timers of
//! many groups fire together.
//!
//! Every group ticks every `heartbeat × 13/64` ms (about 20 ms at 100 ms heartbeats), each
//! at its own phase. With 64 groups a node was woken ~1000 times a second to do almost
//! nothing, and on a VM each wake costs tens of microseconds of halt/IPI: 64 idle groups
//! took 7–11% of a core. Rounding every sleep's deadline up to the next multiple of
//! [`GRID`] (counted from one process-wide origin) makes all groups' ticks land on the
//! same instants, so one wake serves them all. A timer fires at most `GRID` late, which
//! is small against heartbeats (≥ 50 ms) and election timeouts (≥ 150 ms). Sleeps under
//! 2 ms (openraft's short pauses on the write path) and timeouts (`timeout`,
//! `timeout_at`, which bound RPCs) stay exact.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use openraft::impls::TokioRuntime;
use openraft::rt::{AsyncRuntime, Instant as _, OptionalSend};

/// The spacing of the instants sleeps end on.
pub const GRID: Duration = Duration::from_millis(10);

/// Sleeps shorter than this are not rounded.
const EXACT_BELOW: Duration = Duration::from_millis(2);

type TokioInstant = <TokioRuntime as AsyncRuntime>::Instant;

/// The instant the grid is counted from.
fn origin() -> TokioInstant {
    static ORIGIN: OnceLock<TokioInstant> = OnceLock::new();
    *ORIGIN.get_or_init(TokioInstant::now)
}

/// `deadline` moved up to the next grid point (unchanged if it is on one).
fn on_grid(deadline: TokioInstant) -> TokioInstant {
    let origin = origin();
    if deadline <= origin {
        return deadline;
    }
    let since = (deadline - origin).as_nanos();
    let grid = GRID.as_nanos();
    let late = (grid - since % grid) % grid;
    // `late` < GRID, so it fits a u64 of nanoseconds.
    deadline + Duration::from_nanos(u64::try_from(late).unwrap_or(0))
}

/// [`TokioRuntime`] with grid-aligned sleeps.
#[derive(Debug)]
pub struct GridRuntime(TokioRuntime);

impl AsyncRuntime for GridRuntime {
    type JoinError = <TokioRuntime as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <TokioRuntime as AsyncRuntime>::Sleep;
    type Instant = TokioInstant;
    type TimeoutError = <TokioRuntime as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> =
        <TokioRuntime as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = <TokioRuntime as AsyncRuntime>::ThreadLocalRng;
    type Mpsc = <TokioRuntime as AsyncRuntime>::Mpsc;
    type Watch = <TokioRuntime as AsyncRuntime>::Watch;
    type Oneshot = <TokioRuntime as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <TokioRuntime as AsyncRuntime>::Mutex<T>;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        TokioRuntime::spawn(future)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Self::sleep_until(TokioInstant::now() + duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        // Short sleeps are not periodic work (openraft sleeps a microsecond to let I/O
        // notifications gather before a flush): they stay exact.
        if deadline.saturating_duration_since(TokioInstant::now()) < EXACT_BELOW {
            return TokioRuntime::sleep_until(deadline);
        }
        TokioRuntime::sleep_until(on_grid(deadline))
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        TokioRuntime::timeout_at(deadline, future)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        TokioRuntime::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        TokioRuntime::thread_rng()
    }

    fn new(threads: usize) -> Self {
        GridRuntime(TokioRuntime::new(threads))
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.0.block_on(future)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_move_up_to_the_grid_and_never_earlier() {
        let o = origin();
        for ms in [0u64, 1, 9, 10, 11, 19, 20, 1234] {
            let d = o + Duration::from_millis(ms) + Duration::from_micros(300);
            let g = on_grid(d);
            assert!(g >= d, "never earlier");
            assert!(g - d < GRID, "less than one grid step late");
            assert_eq!((g - o).as_nanos() % GRID.as_nanos(), 0, "on the grid");
        }
        let exact = o + GRID * 3;
        assert_eq!(on_grid(exact), exact);
    }

    #[test]
    fn sleeps_end_on_the_grid() {
        let mut rt = GridRuntime::new(1);
        rt.block_on(async {
            let start = TokioInstant::now();
            GridRuntime::sleep(Duration::from_millis(3)).await;
            let woke = TokioInstant::now();
            // Not before the grid point at or after the asked deadline.
            assert!(woke >= on_grid(start + Duration::from_millis(3)));
        });
    }
}
