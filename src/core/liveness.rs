//! Timers: heartbeats, dead links, lost peers, join retries and backoff, call deadlines.

use std::time::Instant;

use super::events::{LostReason, PeerEvent};
use super::mesh::{Mesh, Purpose};
use super::peer::{Link, OutState};
use crate::protocol::{Message, NodeName};

impl<C: Clone> Mesh<C> {
    /// Runs every timer that is due at `now`. Call it when [`Mesh::poll_timeout`]
    /// says so (calling it earlier or more often is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        let lost = self.cfg.timers.lost_timeout;
        let mut due: Vec<NodeName> = self
            .peers
            .values()
            .filter(|p| p.next_deadline(lost).is_some_and(|t| t <= now))
            .map(|p| p.name.clone())
            .collect();
        // Deterministic order, so tests and logs do not depend on hashing.
        due.sort();
        for name in due {
            self.peer_timers(&name, now);
        }
        let expired = self.calls.expire(now);
        self.push_resolved(expired);
        self.retry_blocked(now);
        self.tick(now);
    }

    fn peer_timers(&mut self, name: &NodeName, now: Instant) {
        let timers = self.cfg.timers.clone();
        let Some(peer) = self.peers.get(name) else {
            return;
        };
        let inbound_alive = peer
            .inbound
            .as_ref()
            .is_some_and(|i| now < i.last_recv + timers.lost_timeout);

        // The link this node dials.
        if let Some(out) = &peer.outbound {
            match out.state {
                OutState::Joining { deadline, .. } if now >= deadline => {
                    let in_session = peer.session.is_some();
                    let delay = self.fail_attempt(name, now);
                    let attempt = self
                        .peers
                        .get(name)
                        .and_then(|p| p.outbound.as_ref())
                        .map_or(0, |o| o.failures);
                    log::debug!(
                        "join attempt {attempt} to {name} got no answer; retry in {delay:?}"
                    );
                    if !in_session {
                        self.emit(PeerEvent::ConnectFailed {
                            peer: name.clone(),
                            attempt,
                            retry_in: delay,
                        });
                    }
                }
                OutState::Joining {
                    next_join,
                    deadline,
                } if now >= next_join => {
                    self.send_join(name);
                    if let Some(out) = self.peers.get_mut(name).and_then(|p| p.outbound.as_mut()) {
                        out.state = OutState::Joining {
                            deadline,
                            next_join: now + timers.join_retry,
                        };
                    }
                }
                OutState::Waiting { until } if now >= until => self.start_attempt(name, now),
                OutState::Up { last_recv } if now >= last_recv + timers.lost_timeout => {
                    log::debug!("link to {name} silent for {:?}", timers.lost_timeout);
                    if !inbound_alive {
                        self.end_session(name, LostReason::Timeout, now);
                    }
                    self.start_attempt(name, now);
                }
                _ => {}
            }
        }

        // The link the peer dials.
        let Some(peer) = self.peers.get_mut(name) else {
            return;
        };
        if peer.inbound.is_some() && !inbound_alive {
            peer.inbound = None;
            if !peer.outbound_up() && peer.session.is_some() {
                self.end_session(name, LostReason::Timeout, now);
            }
        }

        // A peer that is neither dialled nor in session is forgotten.
        let Some(peer) = self.peers.get_mut(name) else {
            return;
        };
        if peer.outbound.is_none() && peer.session.is_none() {
            self.forget_peer(name);
            return;
        }

        // Heartbeat.
        if peer.session.is_some() && now >= peer.pinger.next_at {
            peer.pinger.next_at = now + timers.heartbeat_interval;
            let nonce = peer.pinger.next_nonce;
            peer.pinger.next_nonce = nonce.wrapping_add(1);
            peer.pinger.outstanding = Some((nonce, now));
            if let Some(link) = peer.preferred_link() {
                self.send(name, link, &Message::Ping { nonce }, Purpose::Control);
            }
        }
    }

    /// A PONG: measure the round trip if it answers the outstanding PING.
    pub(super) fn on_pong(&mut self, name: &NodeName, nonce: u64, now: Instant) {
        let Some(peer) = self.peers.get_mut(name) else {
            return;
        };
        if let Some((expected, sent)) = peer.pinger.outstanding {
            if expected == nonce {
                peer.pinger.outstanding = None;
                peer.stats.record_rtt(now.saturating_duration_since(sent));
            }
        }
    }

    /// The shell could not hand a frame to its socket. `frame` is the frame
    /// itself when the shell got it back, so that a windowed one refused
    /// for a full queue can be offered again instead of being lost.
    pub fn handle_send_failed(
        &mut self,
        peer: &NodeName,
        link: Link,
        purpose: Purpose,
        failure: super::SendFailure,
        frame: Option<Vec<u8>>,
        now: Instant,
    ) {
        self.stats.send_failures += 1;
        let queue_full = failure == super::SendFailure::QueueFull;
        match (purpose, frame) {
            (Purpose::Request(_) | Purpose::Reply | Purpose::Message, Some(frame))
                if queue_full =>
            {
                self.requeue(peer, link, frame, purpose, now);
            }
            (Purpose::Reply, Some(frame)) => {
                // The connection is gone: the peer's other link may still
                // carry the reply; if there is none, it is lost (§7.2).
                if !self.offer_elsewhere(peer, link, frame, purpose, now) {
                    self.stats.replies_orphaned += 1;
                }
            }
            (Purpose::Control | Purpose::Reply | Purpose::Message, _) => {}
            (Purpose::Request(id), _) => {
                let error = if queue_full {
                    crate::core::errors::CallError::Overloaded(crate::core::errors::Side::Local)
                } else {
                    crate::core::errors::CallError::Unreachable(None)
                };
                if let Some(r) = self.calls.resolve(id, peer, Err(error)) {
                    self.push_resolved(vec![r]);
                }
            }
            (Purpose::Stream(id), _) => self.stream_send_failed(id, queue_full),
            (Purpose::Transfer(id), _) => {
                // The rest of the message is useless without this piece.
                let lane = self.peers.get_mut(peer).map(|p| &mut p.lanes[link.index()]);
                if let Some(t) = lane.and_then(|l| l.remove_transfer(id)) {
                    self.abandon_transfer(peer, t);
                }
                self.recount(peer);
            }
        }
        // A vanished ROUTER connection is not a dead link yet: the peer's
        // DEALER reconnects by itself, and if it does not, the link's silence
        // timer ends the session like any other.
    }
}
