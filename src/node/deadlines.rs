//! Caller-side deadlines for futures: one thread per process that wakes a
//! waiting future when its deadline passes, whatever the reactor is doing.
//!
//! A blocking wait needs no help (it sleeps on a condition variable with a
//! timeout); a future has no thread of its own, and the crate does not
//! assume a runtime whose timers it could borrow. So a future that finds
//! its call unfinished registers its deadline here ([`wake_at`]) and
//! withdraws it once it is done ([`forget`]); nothing is kept for calls that
//! finish before their deadline. The thread sleeps until the earliest
//! deadline, starts on the first registration, and stops after
//! [`IDLE_EXIT`] with nothing registered, so a process that does not use
//! futures has no such thread, and one that stops using them loses it.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Something whose waiter is woken when its deadline passes.
pub(crate) trait Expire: Send + Sync {
    /// The deadline passed: wake whoever waits.
    fn expire(&self);
}

/// How long the thread waits with nothing registered before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(5);

/// A registration, to withdraw it.
pub(crate) type Key = (Instant, u64);

struct Timers {
    due: BTreeMap<Key, Weak<dyn Expire>>,
    next_seq: u64,
    running: bool,
}

struct Shared {
    timers: Mutex<Timers>,
    changed: Condvar,
}

fn shared() -> &'static Arc<Shared> {
    static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();
    SHARED.get_or_init(|| {
        Arc::new(Shared {
            timers: Mutex::new(Timers {
                due: BTreeMap::new(),
                next_seq: 0,
                running: false,
            }),
            changed: Condvar::new(),
        })
    })
}

/// Wakes `target`'s waiter at `deadline`; returns the key to [`forget`] it.
pub(crate) fn wake_at(deadline: Instant, target: Weak<dyn Expire>) -> Key {
    let shared = shared();
    let mut t = shared.timers.lock();
    let key = (deadline, t.next_seq);
    t.next_seq += 1;
    let earliest = t
        .due
        .first_key_value()
        .is_none_or(|(first, _)| key < *first);
    t.due.insert(key, target);
    if !t.running {
        let thread = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name("bilateral-deadlines".into())
            .spawn(move || run(&thread));
        match spawned {
            Ok(_) => t.running = true,
            // Without the thread, the reactor's own expiry still ends the
            // call at its deadline; only the guarantee "whatever the reactor
            // is doing" is lost, and that is logged.
            Err(e) => log::error!("cannot start the deadline thread: {e}"),
        }
    } else if earliest {
        shared.changed.notify_one();
    }
    key
}

/// Withdraws a registration (the call ended before its deadline).
pub(crate) fn forget(key: Key) {
    shared().timers.lock().due.remove(&key);
}

fn run(shared: &Shared) {
    let mut t = shared.timers.lock();
    loop {
        let now = Instant::now();
        while let Some(entry) = t.due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let target = entry.remove();
            // Wake outside the lock: a waker may run code of its own.
            parking_lot::MutexGuard::unlocked(&mut t, || {
                if let Some(target) = target.upgrade() {
                    target.expire();
                }
            });
        }
        let next = t.due.first_key_value().map(|((at, _), _)| *at);
        match next {
            Some(at) => {
                shared.changed.wait_until(&mut t, at);
            }
            None => {
                let idle = shared.changed.wait_for(&mut t, IDLE_EXIT);
                if idle.timed_out() && t.due.is_empty() {
                    t.running = false;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::completion::Completion;
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_waiting_future_is_woken_at_its_deadline_and_then_ready() {
        let c = Completion::new(vec![None]);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let deadline = Instant::now() + Duration::from_millis(30);
        assert!(c.poll_until(&mut cx, deadline).is_pending());
        // Wait for the wake-up itself, with a bound, not for a time.
        let give_up = Instant::now() + Duration::from_secs(10);
        while count.0.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < give_up, "never woken");
            std::thread::yield_now();
        }
        assert!(Instant::now() >= deadline);
        assert!(matches!(
            c.poll_until(&mut cx, deadline),
            Poll::Ready(super::super::completion::Ended::TimedOut)
        ));
    }

    #[test]
    fn a_forgotten_registration_holds_nothing() {
        let c = Completion::new(vec![None]);
        let weak: Weak<Completion> = Arc::downgrade(&c);
        let key = wake_at(Instant::now() + Duration::from_secs(3600), weak);
        assert!(shared().timers.lock().due.contains_key(&key));
        forget(key);
        assert!(!shared().timers.lock().due.contains_key(&key));
    }
}
