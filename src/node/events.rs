//! Fan-out of peer events to any number of subscribers.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::core::PeerEvent;
use crate::mailbox::{self, RecvError, TrySendError};
use crate::protocol::NodeName;

/// Delivers each event to every live subscriber without ever blocking the
/// reactor: a subscriber whose queue is full misses the event (counted).
/// (The built-in services follow the lossless
/// [`Membership`](super::membership::Membership) instead.)
///
/// The hub also remembers which sessions its events left open, so that a new
/// subscriber starts with a [`PeerEvent::Joined`] for each of them: whatever
/// the moment of subscription, the stream it sees describes the membership
/// completely, and no session is reported twice.
#[derive(Default)]
pub(crate) struct EventHub {
    state: Mutex<HubState>,
    dropped: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct HubState {
    subscribers: Vec<Subscriber>,
    /// Peers whose last published event was `Joined`, with its incarnation.
    in_session: BTreeMap<NodeName, u64>,
    closed: bool,
}

/// Where one subscriber's events go: the application's [`Events`].
struct Subscriber(mailbox::Sender<PeerEvent>);

impl Subscriber {
    /// Offers an event; `None` once the subscriber is gone, `Some(false)`
    /// if its queue is full.
    fn offer(&self, event: PeerEvent) -> Option<bool> {
        match self.0.try_send(event) {
            Ok(()) => Some(true),
            Err(TrySendError::Full(_)) => Some(false),
            Err(TrySendError::Disconnected(_)) => None,
        }
    }
}

impl EventHub {
    pub(crate) fn subscribe(&self, capacity: usize) -> Events {
        let mut state = self.state.lock();
        let (tx, rx) = mailbox::mailbox(capacity.max(1) + state.in_session.len());
        state.start(Subscriber(tx));
        Events { rx }
    }

    pub(crate) fn publish(&self, event: &PeerEvent) {
        let mut state = self.state.lock();
        match event {
            PeerEvent::Joined { peer, incarnation } => {
                state.in_session.insert(peer.clone(), *incarnation);
            }
            PeerEvent::Lost { peer, .. } => {
                state.in_session.remove(peer);
            }
            _ => {}
        }
        state.subscribers.retain(|s| match s.offer(event.clone()) {
            Some(true) => true,
            Some(false) => {
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                true
            }
            None => false,
        });
    }

    /// Ends every subscription: receivers see the end of the stream, and
    /// later subscribers get only the (final) snapshot.
    pub(crate) fn close(&self) {
        let mut state = self.state.lock();
        state.subscribers.clear();
        state.in_session.clear();
        state.closed = true;
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl HubState {
    /// Gives a new subscriber the open sessions, then keeps it (unless closed).
    fn start(&mut self, subscriber: Subscriber) {
        for (peer, &incarnation) in &self.in_session {
            let joined = PeerEvent::Joined {
                peer: peer.clone(),
                incarnation,
            };
            // Cannot fail: the queue has room for the snapshot.
            let _ = subscriber.offer(joined);
        }
        if !self.closed {
            self.subscribers.push(subscriber);
        }
    }
}

/// A subscription to a node's [`PeerEvent`]s, from [`crate::Node::events`].
///
/// The stream begins with a [`PeerEvent::Joined`] for every peer in session
/// at the moment of subscription, then carries every event after it, so a
/// subscriber made at any time (even after peers joined during
/// [`crate::NodeBuilder::start`]) sees the whole membership, each session
/// once. Events are queued up to the node's event capacity; beyond it they
/// are dropped for this subscriber (counted by
/// [`crate::Node::events_dropped`]). The stream ends when the node closes.
///
/// `Events` is also a [`futures_core::Stream`], for async code; its
/// blocking methods and the stream take from the same queue.
#[derive(Debug)]
pub struct Events {
    rx: mailbox::Receiver<PeerEvent>,
}

impl Events {
    /// The next event, waiting at most `timeout`. `None` on timeout or when the node closed.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<PeerEvent> {
        self.rx.recv_deadline(Instant::now() + timeout).ok()
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Option<PeerEvent> {
        self.rx.try_recv()
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
        std::iter::from_fn(|| self.rx.recv_deadline(far_future()).ok())
    }

    /// The next event, awaited; `None` once the node closed.
    pub async fn next_event(&mut self) -> Option<PeerEvent> {
        std::future::poll_fn(|cx| self.rx.poll_recv(cx, None).map(Result::ok)).await
    }

    pub(crate) fn recv_deadline(&self, deadline: Instant) -> Result<PeerEvent, RecvError> {
        self.rx.recv_deadline(deadline)
    }

    pub(crate) fn poll_deadline(
        &self,
        cx: &mut Context<'_>,
        deadline: Instant,
    ) -> Poll<Result<PeerEvent, RecvError>> {
        self.rx.poll_recv(cx, Some(deadline))
    }
}

impl futures_core::Stream for Events {
    type Item = PeerEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PeerEvent>> {
        self.rx.poll_recv(cx, None).map(Result::ok)
    }
}

/// A deadline that never comes, for waits without one.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::LostReason;

    fn joined(peer: &str, incarnation: u64) -> PeerEvent {
        PeerEvent::Joined {
            peer: NodeName::new(peer).unwrap(),
            incarnation,
        }
    }

    fn lost(peer: &str, incarnation: u64) -> PeerEvent {
        PeerEvent::Lost {
            peer: NodeName::new(peer).unwrap(),
            incarnation,
            reason: LostReason::Timeout,
        }
    }

    fn drain(events: &Events) -> Vec<PeerEvent> {
        std::iter::from_fn(|| events.try_recv()).collect()
    }

    #[test]
    fn a_late_subscriber_starts_with_the_open_sessions_once() {
        let hub = EventHub::default();
        let early = hub.subscribe(8);
        hub.publish(&joined("a", 1));
        hub.publish(&joined("b", 2));
        hub.publish(&lost("a", 1));
        hub.publish(&joined("a", 3));
        let late = hub.subscribe(8);
        hub.publish(&joined("c", 4));
        assert_eq!(
            drain(&early),
            vec![
                joined("a", 1),
                joined("b", 2),
                lost("a", 1),
                joined("a", 3),
                joined("c", 4)
            ]
        );
        assert_eq!(
            drain(&late),
            vec![joined("a", 3), joined("b", 2), joined("c", 4)]
        );
    }

    #[test]
    fn the_snapshot_fits_even_beyond_the_capacity() {
        let hub = EventHub::default();
        for i in 0..5 {
            hub.publish(&joined(&format!("p{i}"), i));
        }
        let events = hub.subscribe(1);
        assert_eq!(drain(&events).len(), 5);
        assert_eq!(hub.dropped(), 0);
    }

    #[test]
    fn after_close_streams_end_and_new_subscribers_get_nothing() {
        let hub = EventHub::default();
        let events = hub.subscribe(4);
        hub.publish(&joined("a", 1));
        hub.close();
        assert_eq!(drain(&events), vec![joined("a", 1)]);
        assert!(events.recv_timeout(Duration::from_millis(1)).is_none());
        let late = hub.subscribe(4);
        assert!(late.recv_timeout(Duration::from_millis(1)).is_none());
    }
}
