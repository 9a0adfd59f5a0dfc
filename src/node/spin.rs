//! When a reactor polls without blocking ("spins"), and how many may.
//!
//! Spinning saves a kernel wake-up (tens of microseconds on small virtual
//! machines) when work follows work closely: a handler's reply, a caller's
//! next call. It is a bet, and it loses in two ways, which the two parts of
//! this module bound:
//!
//! - **Work that does not follow closely.** After doing some work, a
//!   reactor spins for a window (`reactor_spin`, 50 µs) only if more work is
//!   *expected* — a handler it started has not finished, or a call it sent
//!   awaits its reply — or, with nothing expected, as a *speculation* that
//!   the peer it just answered calls again at once. Speculations are
//!   scored ([`Spin`]): after two in a row find nothing, the reactor tries
//!   one in two opportunities, then one in four, up to one in 64, until one
//!   pays off again. A node called every few milliseconds (one of 200
//!   peers a hub calls in turn) so stops spinning after each call, instead
//!   of taking 50 µs of CPU per call from the processes that have work; a
//!   window is never extended by a turn that found nothing, so a long
//!   handler is waited for blocking.
//! - **Too many spinners in one process.** Many reactors spinning at once
//!   on few cores take the time slices of the very threads they wait for.
//!   So at most `cores - 1` reactors (at least one) in a process spin at any
//!   moment ([`SpinPermit`]); the others block as usual.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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

/// Speculative windows that may find nothing in a row before the reactor
/// backs off.
const TRIES: u32 = 2;

/// At most one opportunity in `2^MAX_BACKOFF` is taken while backing off.
const MAX_BACKOFF: u32 = 6;

/// The score of one reactor's speculative spins (see the module docs).
/// Nothing here reads a clock: every transition is unit-tested.
#[derive(Debug)]
pub(crate) struct Spin {
    window: Duration,
    /// Speculative windows in a row that found nothing.
    fails: u32,
    /// Opportunities passed since the last speculation, while backing off.
    skipped: u32,
}

impl Spin {
    /// Windows of `window` (zero: never spin).
    pub(crate) fn new(window: Duration) -> Spin {
        Spin {
            window,
            fails: 0,
            skipped: 0,
        }
    }

    /// How long a window lasts.
    pub(crate) fn window(&self) -> Duration {
        self.window
    }

    /// Whether to spin after work when more work is `expected` (a handler
    /// running, a reply awaited) or, if not, whether to speculate now.
    pub(crate) fn should_spin(&mut self, expected: bool) -> bool {
        if self.window.is_zero() {
            return false;
        }
        if expected || self.fails < TRIES {
            return true;
        }
        let every = 1u32 << (self.fails - TRIES + 1).min(MAX_BACKOFF);
        self.skipped += 1;
        if self.skipped >= every {
            self.skipped = 0;
            return true;
        }
        false
    }

    /// A speculative window ended: work came within it, or none did.
    pub(crate) fn speculated(&mut self, found_work: bool) {
        if found_work {
            self.fails = 0;
            self.skipped = 0;
        } else {
            self.fails = self.fails.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_micros(50);

    /// Of `n` opportunities to speculate that all find nothing, how many
    /// are taken.
    fn taken_of_failing(spin: &mut Spin, n: u32) -> u32 {
        let mut taken = 0;
        for _ in 0..n {
            if spin.should_spin(false) {
                taken += 1;
                spin.speculated(false);
            }
        }
        taken
    }

    #[test]
    fn speculation_that_pays_off_goes_on() {
        let mut spin = Spin::new(W);
        for _ in 0..1000 {
            assert!(spin.should_spin(false));
            spin.speculated(true);
        }
    }

    #[test]
    fn speculation_that_finds_nothing_backs_off_to_one_in_sixty_four() {
        let mut spin = Spin::new(W);
        // The first two fail; then one in 2, 4, 8, ... 64.
        assert_eq!(taken_of_failing(&mut spin, 2), 2);
        let taken = taken_of_failing(&mut spin, 64 * 100);
        assert!((100..=110).contains(&taken), "{taken}");
        // Expected work is always waited for.
        assert!(spin.should_spin(true));
        // One speculation that pays off restores it at once.
        while !spin.should_spin(false) {}
        spin.speculated(true);
        assert!(spin.should_spin(false));
    }

    #[test]
    fn a_node_called_now_and_then_by_a_hub_rarely_speculates() {
        // Each call: the handler's result is expected (always waited for);
        // after the reply nothing comes for milliseconds.
        let mut spin = Spin::new(W);
        let mut speculated = 0;
        for _ in 0..1000 {
            assert!(spin.should_spin(true));
            if spin.should_spin(false) {
                speculated += 1;
                spin.speculated(false);
            }
        }
        assert!(speculated < 30, "{speculated} of 1000");
    }

    #[test]
    fn a_zero_window_never_spins() {
        let mut spin = Spin::new(Duration::ZERO);
        assert!(!spin.should_spin(true) && !spin.should_spin(false));
    }
}
