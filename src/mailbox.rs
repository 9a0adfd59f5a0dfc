//! A bounded queue whose receiver waits blocking or as a future.
//!
//! The node's event subscriptions and the channels' watchers hand values
//! from the node's threads to the application: the producer must never
//! block (it only [`Sender::try_send`]s, and a full mailbox refuses), and
//! the consumer may wait either way — blocking with a deadline
//! ([`Receiver::recv_deadline`]), or from a task ([`Receiver::poll_recv`],
//! with a deadline through the process's deadline thread when it has one).
//! One lock guards the queue; a blocking receiver spins briefly before it
//! sleeps, as a channel's does. The mailbox ends for the receiver once
//! every sender is gone and the queue is drained, and for senders once the
//! receiver is gone.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use crate::node::deadlines::{self, Expire};

/// Why a send did not go.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TrySendError<T> {
    /// The mailbox holds its capacity.
    Full(T),
    /// The receiver is gone.
    Disconnected(T),
}

/// Why a receive returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecvError {
    /// The deadline passed first.
    Timeout,
    /// Every sender is gone and nothing is left.
    Disconnected,
}

struct State<T> {
    queue: VecDeque<T>,
    capacity: usize,
    senders: usize,
    receiver: bool,
    waker: Option<Waker>,
    timed: Option<deadlines::Key>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    arrived: Condvar,
}

impl<T: Send> Expire for Shared<T> {
    fn expire(&self) {
        let waker = self.state.lock().waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// A mailbox holding at most `capacity` values (at least one).
pub(crate) fn mailbox<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            capacity: capacity.max(1),
            senders: 1,
            receiver: true,
            waker: None,
            timed: None,
        }),
        arrived: Condvar::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

/// The producing end.
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// Queues `value` unless the mailbox is full or its receiver gone.
    pub(crate) fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let waker = {
            let mut s = self.shared.state.lock();
            if !s.receiver {
                return Err(TrySendError::Disconnected(value));
            }
            if s.queue.len() >= s.capacity {
                return Err(TrySendError::Full(value));
            }
            s.queue.push_back(value);
            self.shared.arrived.notify_one();
            s.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.state.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut s = self.shared.state.lock();
            s.senders -= 1;
            if s.senders > 0 {
                return;
            }
            self.shared.arrived.notify_all();
            s.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The consuming end.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl<T: Send + 'static> Receiver<T> {
    /// The next value if one is queued.
    pub(crate) fn try_recv(&self) -> Option<T> {
        self.shared.state.lock().queue.pop_front()
    }

    /// The next value, waiting until `deadline` at most.
    pub(crate) fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvError> {
        let backoff = crossbeam_utils::Backoff::new();
        let mut s = self.shared.state.lock();
        loop {
            if let Some(value) = s.queue.pop_front() {
                return Ok(value);
            }
            if s.senders == 0 {
                return Err(RecvError::Disconnected);
            }
            if Instant::now() >= deadline {
                return Err(RecvError::Timeout);
            }
            if backoff.is_completed() {
                let _ = self.shared.arrived.wait_until(&mut s, deadline);
            } else {
                parking_lot::MutexGuard::unlocked(&mut s, || backoff.snooze());
            }
        }
    }

    /// The next value, or `Ready(Err(..))` once the mailbox ended or
    /// `deadline` (if any) passed.
    pub(crate) fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        deadline: Option<Instant>,
    ) -> Poll<Result<T, RecvError>> {
        let mut s = self.shared.state.lock();
        let ready = if let Some(value) = s.queue.pop_front() {
            Some(Ok(value))
        } else if s.senders == 0 {
            Some(Err(RecvError::Disconnected))
        } else if deadline.is_some_and(|d| Instant::now() >= d) {
            Some(Err(RecvError::Timeout))
        } else {
            None
        };
        if let Some(ready) = ready {
            let timed = s.timed.take();
            drop(s);
            if let Some(key) = timed {
                deadlines::forget(key);
            }
            return Poll::Ready(ready);
        }
        match &mut s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        if let (Some(deadline), None) = (deadline, s.timed) {
            let weak = Arc::downgrade(&self.shared);
            s.timed = Some(deadlines::wake_at(deadline, weak));
        }
        Poll::Pending
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let (queue, timed) = {
            let mut s = self.shared.state.lock();
            s.receiver = false;
            s.waker = None;
            (std::mem::take(&mut s.queue), s.timed.take())
        };
        drop(queue);
        if let Some(key) = timed {
            deadlines::forget(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn values_arrive_in_order_up_to_the_capacity() {
        let (tx, rx) = mailbox(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(rx.recv_deadline(Instant::now()), Ok(2));
        assert_eq!(rx.recv_deadline(Instant::now()), Err(RecvError::Timeout));
    }

    #[test]
    fn the_end_comes_after_what_is_queued() {
        let (tx, rx) = mailbox(4);
        let tx2 = tx.clone();
        tx.try_send(1).unwrap();
        drop(tx);
        tx2.try_send(2).unwrap();
        drop(tx2);
        let far = Instant::now() + Duration::from_secs(3600);
        assert_eq!(rx.recv_deadline(far), Ok(1));
        assert_eq!(rx.recv_deadline(far), Ok(2));
        assert_eq!(rx.recv_deadline(far), Err(RecvError::Disconnected));
    }

    #[test]
    fn senders_learn_that_the_receiver_is_gone() {
        let (tx, rx) = mailbox(4);
        drop(rx);
        assert_eq!(tx.try_send(1), Err(TrySendError::Disconnected(1)));
    }

    #[test]
    fn a_blocked_receiver_is_woken_by_a_send() {
        let (tx, rx) = mailbox(4);
        let sender = std::thread::spawn(move || tx.try_send(7).unwrap());
        let far = Instant::now() + Duration::from_secs(3600);
        assert_eq!(rx.recv_deadline(far), Ok(7));
        sender.join().unwrap();
    }
}
