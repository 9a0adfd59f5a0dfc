//! The one completion path of a call, with two faces.
//!
//! A call's results travel from the reactor to the caller through a
//! [`Completion`]: one slot per target, filled by the reactor as outcomes
//! arrive ([`CallSink::deliver`]), and read by the caller either blocking
//! ([`Completion::wait_until`], a condition variable with the caller's own
//! deadline) or from a future ([`Completion::poll_until`], a stored
//! [`Waker`]). Both faces see the same state under the same lock, so a call
//! behaves the same whichever way it is awaited:
//!
//! - it is *complete* when every slot is filled, and the reactor wakes the
//!   caller once, with the last outcome;
//! - it is *closed* when the reactor can no longer fill it: the last
//!   [`CallSink`] is gone (the call table dropped it, or the node stopped)
//!   with slots still empty;
//! - its deadline is the caller's: a blocking wait never sleeps past it,
//!   and a future registers it with the process's [`deadlines`] thread,
//!   which wakes it then whatever the reactor is doing.
//!
//! A caller that stops waiting (drops its call) marks the completion
//! *abandoned*, and the reactor removes the call from its table; see
//! [`Completion::abandon`] for how that meets a call still on its way in.
//!
//! [`deadlines`]: super::deadlines

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crossbeam_utils::Backoff;
use parking_lot::{Condvar, Mutex};

use super::metrics::CallMeter;
use crate::core::Outcome;

/// Rounds of the spin a future does before it yields (1 + 2 + … + 2^6 =
/// 127 spin hints: about a microsecond).
const POLL_SPIN_STEPS: u32 = 7;

/// The state a call's results are gathered in (see the module docs).
#[derive(Debug)]
pub(crate) struct Completion {
    state: Mutex<State>,
    filled: Condvar,
    /// Set (under the lock, after the state changed) once the call is
    /// complete or closed: a blocking waiter spins on it briefly before it
    /// sleeps, as a channel's receiver does.
    settled: AtomicBool,
}

#[derive(Debug)]
struct State {
    slots: Vec<Option<Outcome>>,
    /// Slots still empty.
    missing: usize,
    /// No sink is left to fill the missing slots.
    closed: bool,
    /// The caller stopped waiting.
    abandoned: bool,
    /// The request id the reactor gave the call, once it has.
    request_id: Option<u64>,
    /// The task to wake, if a future is waiting.
    waker: Option<Waker>,
    /// The deadline's registration with the deadline thread, if any.
    timed: Option<super::deadlines::Key>,
}

/// How a wait ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Every slot is filled.
    Complete,
    /// The reactor will fill no more.
    Closed,
    /// The deadline passed first.
    TimedOut,
}

impl Completion {
    /// A completion of `slots`, of which those already `Some` are settled.
    pub(crate) fn new(slots: Vec<Option<Outcome>>) -> Arc<Self> {
        let missing = slots.iter().filter(|s| s.is_none()).count();
        Arc::new(Completion {
            state: Mutex::new(State {
                slots,
                missing,
                closed: false,
                abandoned: false,
                request_id: None,
                waker: None,
                timed: None,
            }),
            filled: Condvar::new(),
            settled: AtomicBool::new(missing == 0),
        })
    }

    /// Fills slot `index` unless it already is; wakes the caller when it
    /// was the last.
    fn fill(&self, index: usize, outcome: Outcome) {
        let waker = {
            let mut s = self.state.lock();
            match s.slots.get_mut(index) {
                Some(slot @ None) => *slot = Some(outcome),
                _ => return,
            }
            s.missing -= 1;
            if s.missing > 0 {
                return;
            }
            self.settled.store(true, Ordering::Release);
            self.filled.notify_all();
            s.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// No sink is left: missing slots will stay missing.
    fn close(&self) {
        let waker = {
            let mut s = self.state.lock();
            if s.missing == 0 {
                return;
            }
            s.closed = true;
            self.settled.store(true, Ordering::Release);
            self.filled.notify_all();
            s.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Blocks until the call is complete or closed, or until `deadline`.
    ///
    /// A reply that follows within microseconds is common (a handler that
    /// answers at once, a pipelined caller): the waiter spins and yields
    /// for a few microseconds first, and only then sleeps in the kernel,
    /// whose wake-up costs tens of microseconds on a virtual machine.
    pub(crate) fn wait_until(&self, deadline: Instant) -> Ended {
        let backoff = Backoff::new();
        while !self.settled.load(Ordering::Acquire) && !backoff.is_completed() {
            backoff.snooze();
        }
        let mut s = self.state.lock();
        loop {
            if let Some(ended) = s.ended(deadline) {
                return ended;
            }
            // Spurious and timed-out wake-ups alike are re-checked above.
            let _ = self.filled.wait_until(&mut s, deadline);
        }
    }

    /// The future's face of [`Completion::wait_until`].
    pub(crate) fn poll_until(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        deadline: Instant,
    ) -> Poll<Ended> {
        // A reply due within a microsecond is worth a few spins before the
        // task yields (and its runtime, with nothing else to do, sleeps in
        // the kernel); spinning only, never yielding, so the task holds its
        // thread for about a microsecond at most.
        for step in 0..POLL_SPIN_STEPS {
            if self.settled.load(Ordering::Acquire) {
                break;
            }
            for _ in 0..1u32 << step {
                std::hint::spin_loop();
            }
        }
        let mut s = self.state.lock();
        if let Some(ended) = s.ended(deadline) {
            let timed = s.timed.take();
            drop(s);
            if let Some(key) = timed {
                super::deadlines::forget(key);
            }
            return Poll::Ready(ended);
        }
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        if s.timed.is_none() {
            // Registered under the lock: a completion racing with this poll
            // then finds the waker stored, and the deadline thread finds the
            // completion waiting.
            let weak = Arc::downgrade(self);
            s.timed = Some(super::deadlines::wake_at(deadline, weak));
        }
        Poll::Pending
    }

    /// Takes the outcomes (after a wait has ended).
    pub(crate) fn take(&self) -> Vec<Option<Outcome>> {
        std::mem::take(&mut self.state.lock().slots)
    }

    /// The reactor registered the call under `id`. Returns `false` if the
    /// caller has already abandoned it: the reactor must then cancel it.
    pub(crate) fn registered(&self, id: u64) -> bool {
        let mut s = self.state.lock();
        s.request_id = Some(id);
        !s.abandoned
    }

    /// Whether the caller has abandoned the call (checked by the reactor
    /// before it starts one).
    pub(crate) fn is_abandoned(&self) -> bool {
        self.state.lock().abandoned
    }

    /// The caller stops waiting. Returns the request id to cancel, if the
    /// reactor has registered the call and it is not complete; if it has not
    /// registered it yet, it will see the mark and cancel (or not start) it
    /// itself.
    pub(crate) fn abandon(&self) -> Option<u64> {
        let mut s = self.state.lock();
        let timed = s.timed.take();
        let cancel = if s.missing == 0 || s.closed {
            None
        } else {
            s.abandoned = true;
            s.waker = None;
            s.request_id
        };
        drop(s);
        if let Some(key) = timed {
            super::deadlines::forget(key);
        }
        cancel
    }
}

impl super::deadlines::Expire for Completion {
    /// The caller's deadline has passed: wake the future to find it out.
    fn expire(&self) {
        let waker = self.state.lock().waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl State {
    fn ended(&self, deadline: Instant) -> Option<Ended> {
        if self.missing == 0 {
            Some(Ended::Complete)
        } else if self.closed {
            Some(Ended::Closed)
        } else if Instant::now() >= deadline {
            Some(Ended::TimedOut)
        } else {
            None
        }
    }
}

/// The reactor's end of a call: the core's completion handle, cloned into
/// every result it hands out. When the last clone is gone the completion is
/// closed, so a caller never waits for results nobody will deliver.
#[derive(Clone, Debug)]
pub(crate) struct CallSink {
    alive: Arc<SinkAlive>,
    /// The caller's slot for each target the mesh was given (when the caller
    /// settled some targets itself, such as invalid names, the numbering differs).
    slots: Option<Arc<[usize]>>,
}

#[derive(Debug)]
struct SinkAlive(Arc<Completion>, CallMeter);

impl Drop for SinkAlive {
    fn drop(&mut self) {
        self.0.close();
    }
}

impl CallSink {
    /// The sink of a call of `method` (the method names its metrics).
    pub(crate) fn new(
        completion: Arc<Completion>,
        slots: Option<Arc<[usize]>>,
        method: &str,
    ) -> Self {
        CallSink {
            alive: Arc::new(SinkAlive(completion, CallMeter::start(method))),
            slots,
        }
    }

    /// The call's method and start, for its metrics.
    pub(crate) fn meter(&self) -> &CallMeter {
        &self.alive.1
    }

    /// The completion this sink fills.
    pub(crate) fn completion(&self) -> &Completion {
        &self.alive.0
    }

    /// Delivers the outcome of the mesh's target `index`.
    pub(crate) fn deliver(&self, index: usize, outcome: Outcome) {
        let slot = self
            .slots
            .as_ref()
            .and_then(|s| s.get(index).copied())
            .unwrap_or(index);
        self.alive.0.fill(slot, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CallError;
    use std::time::Duration;

    #[test]
    fn the_last_outcome_completes_the_call() {
        let c = Completion::new(vec![None, Some(Ok(vec![1])), None]);
        let sink = CallSink::new(c.clone(), Some(Arc::from([0, 2])), "m");
        sink.deliver(0, Ok(vec![0]));
        assert_eq!(c.wait_until(Instant::now()), Ended::TimedOut);
        sink.deliver(1, Err(CallError::Timeout));
        assert_eq!(c.wait_until(Instant::now()), Ended::Complete);
        assert_eq!(
            c.take(),
            [
                Some(Ok(vec![0])),
                Some(Ok(vec![1])),
                Some(Err(CallError::Timeout))
            ]
        );
    }

    #[test]
    fn a_slot_is_filled_once() {
        let c = Completion::new(vec![None]);
        let sink = CallSink::new(c.clone(), None, "m");
        sink.deliver(0, Ok(vec![1]));
        sink.deliver(0, Ok(vec![2]));
        sink.deliver(7, Ok(vec![3]));
        assert_eq!(c.take(), [Some(Ok(vec![1]))]);
    }

    #[test]
    fn dropping_every_sink_closes_an_incomplete_call() {
        let c = Completion::new(vec![None, None]);
        let sink = CallSink::new(c.clone(), None, "m");
        let clone = sink.clone();
        sink.deliver(0, Ok(vec![]));
        drop(sink);
        assert_eq!(c.wait_until(Instant::now()), Ended::TimedOut);
        drop(clone);
        let far = Instant::now() + Duration::from_secs(3600);
        assert_eq!(c.wait_until(far), Ended::Closed);
    }

    #[test]
    fn a_blocking_wait_is_woken_by_another_thread() {
        let c = Completion::new(vec![None]);
        let sink = CallSink::new(c.clone(), None, "m");
        let filler = std::thread::spawn(move || sink.deliver(0, Ok(vec![9])));
        let far = Instant::now() + Duration::from_secs(3600);
        assert_eq!(c.wait_until(far), Ended::Complete);
        filler.join().unwrap();
    }

    #[test]
    fn abandoning_before_and_after_registration() {
        // Before: the reactor learns it when it registers the call.
        let c = Completion::new(vec![None]);
        assert_eq!(c.abandon(), None);
        assert!(c.is_abandoned());
        assert!(!c.registered(5));
        // After: the caller learns the id to cancel.
        let c = Completion::new(vec![None]);
        assert!(c.registered(6));
        assert_eq!(c.abandon(), Some(6));
        // A complete call has nothing to cancel.
        let c = Completion::new(vec![Some(Ok(vec![]))]);
        assert!(c.registered(7));
        assert_eq!(c.abandon(), None);
    }
}
