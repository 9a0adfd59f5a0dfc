//! The membership feed of a node's built-in services: every session that
//! begins and every session that ends, in order, none dropped.
//!
//! The application's [`Events`](super::Events) may drop events when a
//! subscriber falls behind (it only counts them); a service cannot afford
//! that: a registry that missed one `Lost` would keep a dead owner's entries
//! for ever. So services do not read a queue. The reactor hands each peer
//! event to [`Membership::handle_event`], which turns `Joined` / `Lost` into
//! [`Change`]s and calls every listener with each change, in order, before
//! it returns — under one lock, so:
//!
//! - a listener sees each session exactly twice, `Joined` then `Left`, with
//!   the same [`Session`] (a `Joined` for a peer still in session first ends
//!   the old session);
//! - a listener added while sessions are open ([`Membership::listen`]) first
//!   gets a `Joined` for each of them, atomically with its subscription: no
//!   change falls between the snapshot and the feed;
//! - every change reaches a service before the application's events report
//!   it, and before any call from that session reaches a handler.
//!
//! The price is that listeners run on the reactor thread, holding this lock:
//! they must only update their own state and return (take a short lock of
//! their own, wake their thread), never block, and never call back into the
//! node in a way that waits for the reactor.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::core::{LostReason, PeerEvent};
use crate::protocol::NodeName;

/// One session with a peer: from its `Joined` to its `Left`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Session {
    /// The peer.
    pub peer: NodeName,
    /// The peer's incarnation in this session.
    pub incarnation: u64,
    /// This node's number for the session: increasing, never reused, so two
    /// sessions with the same peer and incarnation (a partition that healed)
    /// still differ.
    pub number: u64,
}

/// A change of membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// A session began.
    Joined(Session),
    /// A session ended.
    Left(Session, LostReason),
}

/// Something that follows the membership (a built-in service).
pub(crate) trait Listener: Send + Sync {
    /// Called with each change in order; see the module docs for what it
    /// must not do.
    fn on_change(&self, change: &Change);
}

/// The feed: open sessions and the listeners that follow them.
#[derive(Default)]
pub(crate) struct Membership {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    sessions: BTreeMap<NodeName, Session>,
    next_number: u64,
    listeners: Vec<Arc<dyn Listener>>,
    closed: bool,
}

impl Membership {
    /// Feeds a peer event from the reactor to every listener.
    pub(crate) fn handle_event(&self, event: &PeerEvent) {
        let mut state = self.state.lock();
        match event {
            PeerEvent::Joined { peer, incarnation } => {
                if let Some(old) = state.sessions.remove(peer) {
                    // Not expected from the reactor; kept whole regardless.
                    state.tell(&Change::Left(old, LostReason::Restarted));
                }
                state.next_number += 1;
                let session = Session {
                    peer: peer.clone(),
                    incarnation: *incarnation,
                    number: state.next_number,
                };
                state.sessions.insert(peer.clone(), session.clone());
                state.tell(&Change::Joined(session));
            }
            PeerEvent::Lost { peer, reason, .. } => {
                if let Some(old) = state.sessions.remove(peer) {
                    state.tell(&Change::Left(old, *reason));
                }
            }
            _ => {}
        }
    }

    /// Adds a listener: it is told of every open session at once, then of
    /// every change. After [`Membership::close`] it is told nothing.
    pub(crate) fn listen(&self, listener: Arc<dyn Listener>) {
        let mut state = self.state.lock();
        if state.closed {
            return;
        }
        for session in state.sessions.values() {
            listener.on_change(&Change::Joined(session.clone()));
        }
        state.listeners.push(listener);
    }

    /// The open session with `peer`, if any.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn session(&self, peer: &str) -> Option<Session> {
        self.state.lock().sessions.get(peer).cloned()
    }

    /// The node stopped: every open session ends (as `Disconnected`) and
    /// the listeners are let go.
    pub(crate) fn close(&self) {
        let mut state = self.state.lock();
        let open = std::mem::take(&mut state.sessions);
        for session in open.into_values() {
            state.tell(&Change::Left(session, LostReason::Disconnected));
        }
        state.listeners.clear();
        state.closed = true;
    }
}

impl State {
    fn tell(&self, change: &Change) {
        for listener in &self.listeners {
            listener.on_change(change);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Log(Mutex<Vec<Change>>);

    impl Listener for Log {
        fn on_change(&self, change: &Change) {
            self.0.lock().push(change.clone());
        }
    }

    fn name(s: &str) -> NodeName {
        NodeName::new(s).unwrap()
    }

    fn joined(peer: &str, incarnation: u64) -> PeerEvent {
        PeerEvent::Joined {
            peer: name(peer),
            incarnation,
        }
    }

    fn lost(peer: &str, incarnation: u64) -> PeerEvent {
        PeerEvent::Lost {
            peer: name(peer),
            incarnation,
            reason: LostReason::Timeout,
        }
    }

    fn session(peer: &str, incarnation: u64, number: u64) -> Session {
        Session {
            peer: name(peer),
            incarnation,
            number,
        }
    }

    #[test]
    fn every_session_is_told_joined_then_left_and_numbers_tell_rejoins_apart() {
        let feed = Membership::default();
        let log = Arc::new(Log::default());
        feed.listen(log.clone());
        feed.handle_event(&joined("a", 7));
        feed.handle_event(&lost("a", 7));
        feed.handle_event(&joined("a", 7));
        feed.handle_event(&lost("b", 1)); // no session: nothing to tell
        assert_eq!(
            *log.0.lock(),
            vec![
                Change::Joined(session("a", 7, 1)),
                Change::Left(session("a", 7, 1), LostReason::Timeout),
                Change::Joined(session("a", 7, 2)),
            ]
        );
    }

    #[test]
    fn a_late_listener_gets_the_open_sessions_first() {
        let feed = Membership::default();
        feed.handle_event(&joined("a", 1));
        feed.handle_event(&joined("b", 2));
        feed.handle_event(&lost("a", 1));
        let log = Arc::new(Log::default());
        feed.listen(log.clone());
        feed.handle_event(&lost("b", 2));
        assert_eq!(
            *log.0.lock(),
            vec![
                Change::Joined(session("b", 2, 2)),
                Change::Left(session("b", 2, 2), LostReason::Timeout),
            ]
        );
        assert_eq!(feed.session("b"), None);
    }

    #[test]
    fn a_second_joined_ends_the_first_session() {
        let feed = Membership::default();
        let log = Arc::new(Log::default());
        feed.listen(log.clone());
        feed.handle_event(&joined("a", 1));
        feed.handle_event(&joined("a", 2));
        assert_eq!(
            *log.0.lock(),
            vec![
                Change::Joined(session("a", 1, 1)),
                Change::Left(session("a", 1, 1), LostReason::Restarted),
                Change::Joined(session("a", 2, 2)),
            ]
        );
    }

    #[test]
    fn nothing_is_dropped_however_many_changes_a_listener_gets() {
        let feed = Membership::default();
        let log = Arc::new(Log::default());
        feed.listen(log.clone());
        for i in 0..10_000 {
            feed.handle_event(&joined("a", i));
            feed.handle_event(&lost("a", i));
        }
        assert_eq!(log.0.lock().len(), 20_000);
    }

    #[test]
    fn closing_ends_the_open_sessions_and_lets_listeners_go() {
        let feed = Membership::default();
        let log = Arc::new(Log::default());
        feed.listen(log.clone());
        feed.handle_event(&joined("a", 1));
        feed.close();
        feed.handle_event(&joined("b", 1));
        let late = Arc::new(Log::default());
        feed.listen(late.clone());
        assert_eq!(
            *log.0.lock(),
            vec![
                Change::Joined(session("a", 1, 1)),
                Change::Left(session("a", 1, 1), LostReason::Disconnected),
            ]
        );
        assert!(late.0.lock().is_empty());
        assert_eq!(Arc::strong_count(&log), 1);
    }
}
