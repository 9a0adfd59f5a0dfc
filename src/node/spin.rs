//! When a reactor polls without blocking ("spins"), and how many may.
//!
//! Spinning saves a kernel wake-up (tens of microseconds on small virtual
//! machines) when work follows work closely: a handler's reply, a caller's
//! next call. It is a bet, and it loses in two ways, which the two parts of
//! this module bound:
//!
//! - **Work that does not follow closely.** A node called every few
//!   milliseconds (one of 200 peers a hub calls in turn) would spin after
//!   every call for nothing, and on a host full of such processes the
//!   spinning takes the CPU from the threads that have work — a hub's call
//!   to 200 processes took 367 ms. So a reactor spins only while the work
//!   it has seen follows closely: [`Spin`] keeps a moving average of the
//!   gaps between one piece of work and the next, and allows a spin only
//!   while that average is within the spin window. The bet is measured
//!   where it is made, per reactor, so it adapts to other processes on the
//!   host too: starved of CPU, the gaps grow and spinning stops.
//! - **Too many spinners in one process.** Many reactors spinning at once
//!   on few cores take the time slices of the very threads they wait for.
//!   So at most `cores - 1` reactors (at least one) in a process spin at any
//!   moment ([`SpinPermit`]); the others block as usual.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static SPINNING: AtomicUsize = AtomicUsize::new(0);

fn limit() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
    })
}

/// The right to spin, held by one reactor; released on drop.
#[derive(Debug)]
pub(crate) struct SpinPermit(());

impl SpinPermit {
    /// A permit if the process is below its budget.
    pub(crate) fn try_acquire() -> Option<SpinPermit> {
        let max = limit();
        SPINNING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| SpinPermit(()))
    }
}

impl Drop for SpinPermit {
    fn drop(&mut self) {
        SPINNING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One gap weighs this much in the average (1/8: the last dozen or so
/// pieces of work decide).
const WEIGHT: u32 = 8;

/// A gap counts at most this many windows, so that one long pause (a quiet
/// second) delays spinning by a few pieces of work only.
const GAP_CAP: u32 = 4;

/// Whether spinning has been paying off for one reactor (see the module
/// docs). Time is given, never read: every transition is unit-tested.
#[derive(Debug)]
pub(crate) struct Spin {
    window: Duration,
    /// The moving average of gaps between pieces of work.
    average: Duration,
    /// When the last piece of work was done, if the reactor is idle since.
    idle_since: Option<Instant>,
}

impl Spin {
    /// Spinning for up to `window` after work (zero: never).
    pub(crate) fn new(window: Duration) -> Spin {
        Spin {
            window,
            // Until work has been seen, assume it follows closely.
            average: Duration::ZERO,
            idle_since: None,
        }
    }

    /// A turn of the reactor at `now` found work (`true`) or none.
    pub(crate) fn turn(&mut self, found_work: bool, now: Instant) {
        if !found_work {
            self.idle_since.get_or_insert(now);
            return;
        }
        if let Some(since) = self.idle_since.take() {
            let gap = now
                .saturating_duration_since(since)
                .min(self.window * GAP_CAP);
            self.average = (self.average * (WEIGHT - 1) + gap) / WEIGHT;
        }
    }

    /// Whether to spin now (for up to [`Spin::window`]): only while work
    /// has been following work within the window.
    pub(crate) fn worth_it(&self) -> bool {
        !self.window.is_zero() && self.average <= self.window
    }

    /// How long a spin lasts.
    pub(crate) fn window(&self) -> Duration {
        self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_micros(50);

    /// Work every `gap`, `n` times.
    fn work_every(spin: &mut Spin, start: Instant, gap: Duration, n: u32) -> Instant {
        let mut now = start;
        for _ in 0..n {
            spin.turn(true, now);
            spin.turn(false, now);
            now += gap;
        }
        now
    }

    #[test]
    fn work_that_follows_closely_keeps_the_spin_and_slow_work_stops_it() {
        let mut spin = Spin::new(W);
        let t0 = Instant::now();
        assert!(spin.worth_it(), "spins until it learns otherwise");
        let t = work_every(&mut spin, t0, Duration::from_micros(10), 50);
        assert!(spin.worth_it());
        // Work every 5 ms (a hub calling 200 processes): a few gaps stop it.
        let mut t = t;
        let mut turns = 0;
        while spin.worth_it() {
            t = work_every(&mut spin, t, Duration::from_millis(5), 1);
            turns += 1;
        }
        assert!(turns <= 3, "stopped after {turns} slow gaps");
        // Close work again: spinning resumes after a few pieces of work.
        let mut turns = 0;
        while !spin.worth_it() {
            t = work_every(&mut spin, t, Duration::from_micros(10), 1);
            turns += 1;
        }
        assert!(turns <= 8, "resumed after {turns}");
    }

    #[test]
    fn a_node_called_now_and_then_by_a_hub_does_not_spin() {
        // Each call: the request after a pause of milliseconds, then the
        // handler's result within microseconds.
        let mut spin = Spin::new(W);
        let mut t = Instant::now();
        for _ in 0..20 {
            t = work_every(&mut spin, t, Duration::from_millis(3), 1);
            t = work_every(&mut spin, t, Duration::from_micros(20), 1);
        }
        assert!(!spin.worth_it());
    }

    #[test]
    fn one_long_pause_counts_as_a_few_windows_only() {
        let mut spin = Spin::new(W);
        let t0 = Instant::now();
        let t = work_every(&mut spin, t0, Duration::from_micros(10), 20);
        // A quiet minute, then close work again.
        let t = work_every(
            &mut spin,
            t + Duration::from_secs(60),
            Duration::from_micros(10),
            1,
        );
        let mut t = t;
        let mut turns = 0;
        while !spin.worth_it() {
            t = work_every(&mut spin, t, Duration::from_micros(10), 1);
            turns += 1;
        }
        assert!(turns <= 8, "{turns}");
    }

    #[test]
    fn a_zero_window_never_spins() {
        let spin = Spin::new(Duration::ZERO);
        assert!(!spin.worth_it());
    }
}
