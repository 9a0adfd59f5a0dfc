//! Fan-out of peer events to any number of subscribers.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use parking_lot::Mutex;

use crate::core::PeerEvent;

/// Delivers each event to every live subscriber without ever blocking the
/// reactor: a subscriber whose queue is full misses the event (counted).
#[derive(Debug, Default)]
pub(crate) struct EventHub {
    subscribers: Mutex<Vec<Sender<PeerEvent>>>,
    dropped: std::sync::atomic::AtomicU64,
}

impl EventHub {
    pub(crate) fn subscribe(&self, capacity: usize) -> Events {
        let (tx, rx) = bounded(capacity.max(1));
        self.subscribers.lock().push(tx);
        Events { rx }
    }

    pub(crate) fn publish(&self, event: &PeerEvent) {
        self.subscribers
            .lock()
            .retain(|s| match s.try_send(event.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    self.dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            });
    }

    /// Ends every subscription: receivers see the end of the stream.
    pub(crate) fn close(&self) {
        self.subscribers.lock().clear();
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A subscription to a node's [`PeerEvent`]s, from [`crate::Node::events`].
///
/// Events that happen after the subscription are queued (up to the node's
/// event capacity; beyond it they are dropped for this subscriber). The
/// stream ends when the node closes.
#[derive(Debug)]
pub struct Events {
    rx: Receiver<PeerEvent>,
}

impl Events {
    /// The next event, waiting at most `timeout`. `None` on timeout or when the node closed.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<PeerEvent> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Option<PeerEvent> {
        self.rx.try_recv().ok()
    }

    /// Waits until an event satisfying `pred` arrives, for at most `timeout`,
    /// skipping the others. Returns it, or `None` at the deadline.
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&PeerEvent) -> bool,
    ) -> Option<PeerEvent> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.rx.recv_deadline(deadline) {
                Ok(e) if pred(&e) => return Some(e),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Blocking iterator over events; ends when the node closes.
    pub fn iter(&self) -> impl Iterator<Item = PeerEvent> + '_ {
        self.rx.iter()
    }

    pub(crate) fn recv_deadline(&self, deadline: Instant) -> Result<PeerEvent, RecvTimeoutError> {
        self.rx.recv_deadline(deadline)
    }

    pub(crate) fn into_receiver(self) -> Receiver<PeerEvent> {
        self.rx
    }
}
