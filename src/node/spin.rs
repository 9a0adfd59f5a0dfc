//! A process-wide budget for reactors that poll without blocking.
//!
//! Spinning saves a kernel wake-up (tens of microseconds on small virtual
//! machines) when work follows work closely, but only while a core is free:
//! many reactors spinning at once on few cores take the time slices of the
//! very threads they wait for. So at most `cores - 1` reactors (at least one)
//! in a process spin at any moment; the others block as usual.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

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
