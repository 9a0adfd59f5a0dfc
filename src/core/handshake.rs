//! Joining and leaving: JOIN / WELCOME / REJECT / PART, sessions, join attempts.

use std::time::{Duration, Instant};

use super::backoff;
use super::events::{LostReason, PeerEvent, Rejection};
use super::mesh::{Action, Mesh, Purpose};
use super::peer::{Link, OutState, Outbound};
use crate::core::errors::CallError;
use crate::protocol::{
    Join, MAX_PROTOCOL_VERSION, MIN_PROTOCOL_VERSION, Message, NodeName, PartReason, Reject,
    RejectCode, Welcome,
};

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl<C: Clone> Mesh<C> {
    /// The application asked to dial `peer` at `endpoint`.
    ///
    /// Dialling a peer already dialled at the same endpoint does nothing; a new
    /// endpoint replaces the old one and starts a fresh attempt.
    pub fn handle_connect(&mut self, peer: NodeName, endpoint: String, now: Instant) {
        if self.closed || peer == self.cfg.name {
            return;
        }
        let entry = self.peers.get_or_insert(&peer, now);
        if entry
            .outbound
            .as_ref()
            .is_some_and(|o| o.endpoint == endpoint)
        {
            return;
        }
        entry.outbound = Some(Outbound {
            endpoint,
            state: OutState::Waiting { until: now },
            failures: 0,
        });
        self.peers.changed();
        self.start_attempt(&peer, now);
    }

    /// The application asked to forget `peer`: say PART, end the session, stop dialling.
    /// Returns whether the peer was known.
    pub fn handle_disconnect(&mut self, peer: &NodeName, now: Instant) -> bool {
        if !self.peers.contains(peer) {
            return false;
        }
        self.part_from(peer, PartReason::Disconnect, LostReason::Disconnected, now);
        self.forget_peer(peer);
        true
    }

    /// The node is closing: PART to every peer, fail every pending call with
    /// `Closed`, close every link. Everything after this is ignored.
    pub fn handle_close(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        let failed = self.calls.fail_all(&CallError::Closed);
        self.push_resolved(failed);
        let mut names: Vec<NodeName> = self.peers.names().cloned().collect();
        names.sort();
        for name in &names {
            self.part_from(name, PartReason::Closing, LostReason::Closed, now);
        }
        self.peers.clear();
        self.closed = true;
    }

    /// Says PART (`reason`) on every link up to `peer` if it is in session
    /// and ends the session (`lost`), then closes the link this node dialled
    /// — flushed if the PART is on it. The peer's entry stays for the caller
    /// to remove.
    fn part_from(&mut self, peer: &NodeName, reason: PartReason, lost: LostReason, now: Instant) {
        let Some(p) = self.peers.get(peer) else {
            return;
        };
        let links: Vec<Link> = [Link::Outbound, Link::Inbound]
            .into_iter()
            .filter(|&l| p.link_up(l))
            .collect();
        let dialled = p.outbound.is_some();
        let flush = p.session.is_some() && links.contains(&Link::Outbound);
        if p.session.is_some() {
            for link in links {
                self.send(peer, link, &Message::Part(reason), Purpose::Control);
            }
            self.end_session(peer, lost, now);
        }
        if dialled {
            self.actions.push_back(Action::CloseLink {
                peer: peer.clone(),
                flush,
            });
        }
    }

    /// A JOIN arrived on the ROUTER from routing id `name`.
    pub(super) fn on_join(
        &mut self,
        name: NodeName,
        incarnation: u64,
        join: &Join<'_>,
        len: usize,
        now: Instant,
    ) {
        let low = join.min_version.max(MIN_PROTOCOL_VERSION);
        let high = join.max_version.min(MAX_PROTOCOL_VERSION);
        let refusal = if low > high || join.min_version > join.max_version {
            Some((
                RejectCode::UnsupportedVersion,
                format!(
                    "this node speaks versions {MIN_PROTOCOL_VERSION}..={MAX_PROTOCOL_VERSION}"
                ),
            ))
        } else if join.security != self.cfg.security.code() {
            Some((
                RejectCode::SecurityMismatch,
                format!("this node runs {:?}", self.cfg.security),
            ))
        } else if join.network != self.cfg.network {
            Some((RejectCode::WrongNetwork, "network names differ".to_string()))
        } else if join.name != name.as_str() {
            Some((
                RejectCode::BadName,
                "the JOIN's name differs from the routing id".to_string(),
            ))
        } else if join.target != self.cfg.name.as_str() {
            Some((
                RejectCode::WrongPeer,
                format!("this node is {:?}", self.cfg.name.as_str()),
            ))
        } else if let Some(refusal) = self.curve_join_refusal(&name) {
            Some(refusal)
        } else if self
            .peers
            .get(&name)
            .is_some_and(|p| p.superseded.contains(&incarnation))
        {
            Some((
                RejectCode::NameTaken,
                "a newer node holds this name".to_string(),
            ))
        } else if self.closed {
            Some((RejectCode::ShuttingDown, String::new()))
        } else {
            None
        };
        if let Some((code, detail)) = refusal {
            self.refuse(&name, incarnation, code, &detail);
            return;
        }

        self.check_heartbeat(&name, join.heartbeat_ms);
        let peer = self.peers.get_or_insert(&name, now);
        peer.stats.messages_in += 1;
        peer.stats.bytes_in += len as u64;
        match peer.incarnation() {
            Some(current) if current == incarnation => {}
            Some(_) => {
                // Same name, new incarnation: the peer restarted. The old
                // session is reported lost before the new one joins.
                let dialled = peer.outbound_up();
                self.end_session(&name, LostReason::Restarted, now);
                if dialled {
                    self.start_attempt(&name, now);
                }
            }
            None => {}
        }
        if self.peers.get(&name).is_some_and(|p| p.session.is_none()) {
            self.begin_session(&name, incarnation, now);
        }
        // A JOIN opens the inbound link but does not keep an existing one
        // alive: a peer that keeps JOINing is one that cannot hear us, and its
        // session must time out here too.
        if let Some(peer) = self.peers.get_mut(&name) {
            if peer.inbound.is_none() {
                peer.heard_on(Link::Inbound, now);
            }
        }
        let welcome = Message::Welcome(Welcome {
            version: high,
            heartbeat_ms: millis(self.cfg.timers.heartbeat_interval),
            joiner_incarnation: incarnation,
            name: self.cfg.name.as_str(),
        })
        .encode(self.cfg.incarnation);
        self.transmit(&name, Link::Inbound, welcome, Purpose::Control);
    }

    /// Warns when a peer's heartbeat is too slow for this node's lost timeout:
    /// the session would be lost and rejoined over and over.
    fn check_heartbeat(&self, name: &NodeName, heartbeat_ms: u32) {
        let theirs = Duration::from_millis(u64::from(heartbeat_ms));
        if theirs * 2 > self.cfg.timers.lost_timeout {
            log::warn!(
                "peer {name} sends heartbeats every {theirs:?}, too slow for this node's lost timeout of {:?}",
                self.cfg.timers.lost_timeout
            );
        }
    }

    /// Refuses a JOIN: REJECT to the sender, an event and a count here.
    pub(super) fn refuse(
        &mut self,
        name: &NodeName,
        their_incarnation: u64,
        code: RejectCode,
        detail: &str,
    ) {
        self.stats.joins_refused += 1;
        let rejection = Rejection {
            code,
            detail: detail.to_string(),
        };
        log::info!("refused JOIN from {name}: {rejection}");
        let reject = self.reject_message(code, their_incarnation, detail);
        self.send(name, Link::Inbound, &reject, Purpose::Control);
        self.emit(PeerEvent::Refused {
            from: name.to_string(),
            rejection,
        });
    }

    pub(super) fn reject_message<'a>(
        &self,
        code: RejectCode,
        your_incarnation: u64,
        detail: &'a str,
    ) -> Message<'a> {
        Message::Reject(Reject {
            code,
            your_incarnation,
            min_version: MIN_PROTOCOL_VERSION,
            max_version: MAX_PROTOCOL_VERSION,
            detail,
        })
    }

    /// A WELCOME arrived on our DEALER to `name`.
    pub(super) fn on_welcome(
        &mut self,
        name: &NodeName,
        incarnation: u64,
        w: &Welcome<'_>,
        len: usize,
        now: Instant,
    ) {
        if w.joiner_incarnation != self.cfg.incarnation {
            self.stats.stale_incarnation += 1;
            return;
        }
        self.check_heartbeat(name, w.heartbeat_ms);
        let Some(peer) = self.peers.get_mut(name) else {
            return;
        };
        let Some(out) = &peer.outbound else { return };
        peer.stats.messages_in += 1;
        peer.stats.bytes_in += len as u64;
        if !matches!(out.state, OutState::Joining { .. }) {
            // A WELCOME to a retransmitted JOIN: nothing new.
            if peer.incarnation() == Some(incarnation) {
                peer.heard_on(Link::Outbound, now);
            }
            return;
        }
        let local_refusal = if w.name != name.as_str() {
            Some((
                RejectCode::WrongPeer,
                format!("the node at this endpoint is {:?}", w.name),
            ))
        } else if !(MIN_PROTOCOL_VERSION..=MAX_PROTOCOL_VERSION).contains(&w.version) {
            Some((
                RejectCode::UnsupportedVersion,
                format!("peer chose version {}", w.version),
            ))
        } else {
            None
        };
        if let Some((code, detail)) = local_refusal {
            self.rejected(name, Rejection { code, detail }, now);
            return;
        }
        if peer
            .incarnation()
            .is_some_and(|current| current != incarnation)
        {
            self.end_session(name, LostReason::Restarted, now);
        }
        let Some(peer) = self.peers.get_mut(name) else {
            return;
        };
        if let Some(out) = &mut peer.outbound {
            if !matches!(out.state, OutState::Up { .. }) {
                peer.epochs[Link::Outbound.index()] += 1;
            }
            out.state = OutState::Up { last_recv: now };
            out.failures = 0;
        }
        peer.last_rejection = None;
        let in_session = peer.session.is_some();
        self.peers.changed();
        if !in_session {
            self.begin_session(name, incarnation, now);
        }
        // Messages that waited for this link can leave now.
        self.pump(name, Link::Outbound, now);
    }

    /// A REJECT arrived on our DEALER to `name`.
    pub(super) fn on_reject(
        &mut self,
        name: &NodeName,
        incarnation: u64,
        r: &Reject<'_>,
        now: Instant,
    ) {
        if r.your_incarnation != self.cfg.incarnation {
            self.stats.stale_incarnation += 1;
            return;
        }
        let Some(peer) = self.peers.get(name) else {
            return;
        };
        let Some(out) = &peer.outbound else { return };
        let rejection = Rejection {
            code: r.code,
            detail: r.detail.to_string(),
        };
        match (&out.state, r.code) {
            (OutState::Up { .. }, RejectCode::NotJoined) => {
                // The peer does not know us (it timed us out, or it restarted):
                // end the session and join again at once.
                let reason = match peer.incarnation() {
                    Some(current) if current != incarnation => LostReason::Restarted,
                    _ => LostReason::Reset,
                };
                if peer.session.is_some() {
                    self.end_session(name, reason, now);
                }
                self.start_attempt(name, now);
            }
            // A reply to some earlier message while our JOIN is on its way.
            (_, RejectCode::NotJoined) | (OutState::Waiting { .. }, _) => {}
            (OutState::Joining { .. }, _) | (OutState::Up { .. }, _) => {
                if peer.session.is_some() && peer.inbound.is_none() {
                    self.end_session(name, LostReason::Reset, now);
                }
                self.rejected(name, rejection, now);
            }
        }
    }

    fn curve_join_refusal(&self, name: &NodeName) -> Option<(RejectCode, String)> {
        (self.cfg.security == crate::protocol::Security::Curve)
            .then(|| self.join_refusal(name))
            .flatten()
    }

    /// Our join attempt to `name` was refused: report it and back off.
    pub(super) fn rejected(&mut self, name: &NodeName, rejection: Rejection, now: Instant) {
        log::warn!("peer {name} refused to let us join: {rejection}");
        if let Some(peer) = self.peers.get_mut(name) {
            peer.last_rejection = Some(rejection.clone());
        }
        self.emit(PeerEvent::Rejected {
            peer: name.clone(),
            rejection,
        });
        self.fail_attempt(name, now);
    }

    /// The peer said goodbye.
    pub(super) fn on_part(&mut self, name: &NodeName, reason: PartReason, now: Instant) {
        log::info!("peer {name} left ({reason:?})");
        self.end_session(name, LostReason::Parted, now);
        let dialled = self.peers.get(name).is_some_and(|p| p.outbound.is_some());
        if dialled {
            // It may come back; retry, starting with the shortest backoff.
            if let Some(out) = self.peers.get_mut(name).and_then(|p| p.outbound.as_mut()) {
                out.failures = 0;
            }
            self.fail_attempt(name, now);
        } else {
            self.forget_peer(name);
        }
    }

    pub(super) fn begin_session(&mut self, name: &NodeName, incarnation: u64, now: Instant) {
        let heartbeat = self.cfg.timers.heartbeat_interval;
        let Some(peer) = self.peers.get_mut(name) else {
            return;
        };
        peer.session = Some(super::peer::Session { incarnation });
        peer.recent_requests.clear();
        peer.stats.sessions += 1;
        peer.pinger.next_at = now + heartbeat;
        peer.pinger.outstanding = None;
        log::info!("peer {name} joined (incarnation {incarnation:016x})");
        self.emit(PeerEvent::Joined {
            peer: name.clone(),
            incarnation,
        });
    }

    /// Ends the session with `name`, if any: fails its pending calls and
    /// reports it lost. Links are left to the caller, except the inbound one,
    /// which belonged to the session.
    pub(super) fn end_session(&mut self, name: &NodeName, reason: LostReason, now: Instant) {
        let _ = now;
        let Some(peer) = self.peers.get_mut(name) else {
            return;
        };
        let Some(session) = peer.session.take() else {
            return;
        };
        peer.inbound = None;
        if reason == LostReason::Restarted {
            peer.supersede(session.incarnation);
        }
        if let Some(out) = &mut peer.outbound {
            if matches!(out.state, OutState::Up { .. }) {
                // The DEALER was joined to the old session; it must join again.
                out.state = OutState::Waiting { until: now };
            }
        }
        // Bulk traffic and reassembly belonged to the session.
        let now_epochs = peer.epochs;
        let mut abandoned = Vec::new();
        for link in [Link::Outbound, Link::Inbound] {
            let lane = &mut peer.lanes[link.index()];
            abandoned.extend(lane.reset(now_epochs[link.index()], true, now));
        }
        let released = peer.reassembly.clear();
        self.bulk.release(released);
        drop(abandoned);
        self.recount(name);
        let failed = self.calls.fail_peer(name, &CallError::PeerLost(reason));
        self.push_resolved(failed);
        self.end_streams(name, reason);
        log::info!("peer {name} lost: {reason}");
        self.emit(PeerEvent::Lost {
            peer: name.clone(),
            incarnation: session.incarnation,
            reason,
        });
    }

    /// Opens a fresh DEALER to the peer and sends JOIN.
    pub(super) fn start_attempt(&mut self, name: &NodeName, now: Instant) {
        let timers = &self.cfg.timers;
        let (join_timeout, join_retry) = (timers.join_timeout, timers.join_retry);
        let Some(out) = self.peers.get_mut(name).and_then(|p| p.outbound.as_mut()) else {
            return;
        };
        out.state = OutState::Joining {
            deadline: now + join_timeout,
            next_join: now + join_retry,
        };
        let endpoint = out.endpoint.clone();
        self.peers.changed();
        self.actions.push_back(Action::OpenLink {
            peer: name.clone(),
            endpoint,
        });
        self.send_join(name);
    }

    pub(super) fn send_join(&mut self, name: &NodeName) {
        let join = Message::Join(Join {
            min_version: MIN_PROTOCOL_VERSION,
            max_version: MAX_PROTOCOL_VERSION,
            security: self.cfg.security.code(),
            heartbeat_ms: millis(self.cfg.timers.heartbeat_interval),
            network: &self.cfg.network,
            name: self.cfg.name.as_str(),
            target: name.as_str(),
        });
        let frame = join.encode(self.cfg.incarnation);
        self.transmit(name, Link::Outbound, frame, Purpose::Control);
    }

    /// The current attempt failed: close the DEALER and wait before the next.
    /// Returns the delay.
    pub(super) fn fail_attempt(&mut self, name: &NodeName, now: Instant) -> Duration {
        let Some(out) = self.peers.get_mut(name).and_then(|p| p.outbound.as_mut()) else {
            return Duration::ZERO;
        };
        out.failures = out.failures.saturating_add(1);
        let delay = backoff::delay(&self.cfg.timers, out.failures, &mut self.rng);
        out.state = OutState::Waiting { until: now + delay };
        self.peers.changed();
        self.actions.push_back(Action::CloseLink {
            peer: name.clone(),
            flush: false,
        });
        delay
    }
}
