//! Flow control on one link: what may leave now, what waits, and what the
//! peer has acknowledged.
//!
//! Every frame that carries application bytes is *windowed*: calls,
//! replies, casts and stream opens (*messages*), and the DATA and FRAGMENT
//! frames of streams and large messages (*bulk*). Each link to each peer
//! has a [`Lane`] that counts what it handed to the socket and what the
//! peer has acknowledged. Now and then the lane sends MARK(token) and the
//! peer echoes ACK(token) as soon as it reads it, which proves that
//! everything sent before the MARK has left this node: its socket queue,
//! the kernel's buffers, the peer's socket. Tokens are random, so a peer
//! cannot acknowledge what it has not read, and the receiver keeps no state.
//!
//! Two windows share one count. Messages leave while fewer than
//! `message_window` bytes and `message_window_count` messages of them are
//! in flight; beyond that they wait in the lane's queue, counted against the
//! peer's memory (`memory.rs`), and leave as acknowledgements come back, so
//! the socket's queue never fills and a computed reply is never dropped.
//! Bulk frames leave while fewer than `link_window` bulk bytes are in
//! flight, one chunk at a time from each stream and transfer with something
//! to send, in turn. Messages are offered the link first: a call queued
//! behind a bulk transfer waits for at most a window of bulk bytes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::Limits;
use super::mesh::{Mesh, Purpose};
use super::peer::Link;
use super::stream::StreamId;
use super::streams::StreamSignal;
use crate::protocol::{Fragment, Message, NodeName, write_data_header};

/// How long a lane waits before offering a frame again to a socket that
/// refused it for a full queue (which the message window should prevent).
pub(crate) const RETRY_FULL_QUEUE: Duration = Duration::from_millis(10);

/// MARKs awaiting their ACK that a lane remembers; an ACK of an older one,
/// forgotten, is ignored and a later one acknowledges as much.
const MAX_MARKS: usize = 32;

/// Something with bulk bytes to send, in a lane's round-robin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Stream(StreamId),
    Transfer(u64),
}

/// The node-wide part of bulk transfer, beside each peer's lanes: the ids
/// of large messages sent, when lanes that a full socket queue blocked are
/// offered their frames again, and the bytes of messages under reassembly.
#[derive(Debug)]
pub(crate) struct Bulk {
    next_transfer_id: u64,
    retry_at: Option<Instant>,
    reassembling: usize,
}

impl Default for Bulk {
    fn default() -> Self {
        Bulk {
            next_transfer_id: 1,
            retry_at: None,
            reassembling: 0,
        }
    }
}

impl Bulk {
    /// The id the next large message sent will have.
    fn peek_transfer_id(&self) -> u64 {
        self.next_transfer_id
    }

    /// Takes the id [`Bulk::peek_transfer_id`] showed.
    fn take_transfer_id(&mut self) {
        self.next_transfer_id = self.next_transfer_id.wrapping_add(1);
    }

    /// Some blocked lane is to be retried at `at` (or earlier).
    fn retry_by(&mut self, at: Instant) {
        self.retry_at = Some(self.retry_at.map_or(at, |t| t.min(at)));
    }

    /// Whether blocked lanes are due to be retried; if so, nothing is due
    /// any more until [`Bulk::retry_by`] says so again.
    fn take_retry(&mut self, now: Instant) -> bool {
        let due = self.retry_at.is_some_and(|t| t <= now);
        if due {
            self.retry_at = None;
        }
        due
    }

    /// When blocked lanes are retried next.
    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Messages under reassembly hold `bytes` more.
    pub(super) fn hold(&mut self, bytes: usize) {
        self.reassembling += bytes;
    }

    /// Messages under reassembly let `bytes` go.
    pub(super) fn release(&mut self, bytes: usize) {
        self.reassembling = self.reassembling.saturating_sub(bytes);
    }

    /// Bytes held by messages under reassembly, from all peers.
    pub(super) fn reassembling(&self) -> usize {
        self.reassembling
    }
}

/// A message too large for one frame, leaving in FRAGMENTs.
#[derive(Debug)]
pub(crate) struct Transfer {
    /// The whole encoded frame, shared by every target of a multicast.
    pub frame: Arc<Vec<u8>>,
    /// Bytes of `frame` already sent.
    pub offset: usize,
    /// The request it carries, if any: a failed transfer fails the call.
    pub request_id: Option<u64>,
    /// Whether its unsent bytes count against the peer's memory (a reply
    /// does; what the application sends is its own to bound).
    pub charged: bool,
}

/// What a lane has handed to its link, or has had acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Windowed bytes, bulk and messages.
    pub bytes: u64,
    /// Of which bulk.
    pub bulk: u64,
    /// Message frames.
    pub messages: u64,
}

impl Counts {
    fn message_bytes(&self) -> u64 {
        self.bytes - self.bulk
    }

    fn at_least(self, other: Counts) -> Counts {
        Counts {
            bytes: self.bytes.max(other.bytes),
            bulk: self.bulk.max(other.bulk),
            messages: self.messages.max(other.messages),
        }
    }
}

/// A message waiting for room in the window.
#[derive(Debug)]
pub(crate) struct Queued {
    pub frame: Vec<u8>,
    pub purpose: Purpose,
}

/// The flow control of one link to one peer.
#[derive(Debug)]
pub(crate) struct Lane {
    /// The link epoch this accounting belongs to.
    pub epoch: u64,
    /// Handed to the link since its connection began.
    pub sent: Counts,
    /// Known to have left (as of the latest MARK acknowledged).
    pub acked: Counts,
    /// MARKs sent and not yet acknowledged, oldest first: token and `sent` then.
    marks: VecDeque<(u64, Counts)>,
    /// `sent` at the last MARK, and when it went.
    marked: Counts,
    marked_at: Instant,
    /// When the acknowledged counts last advanced, or bytes went in flight
    /// after none were.
    pub progress_at: Instant,
    /// Bulk sources with something to send, in turn.
    pub ready: VecDeque<Source>,
    /// Outgoing transfers by id.
    pub transfers: HashMap<u64, Transfer>,
    /// Bytes of `transfers` not yet sent, and of those, the charged ones.
    pub transfer_bytes: usize,
    pub charged_transfer_bytes: usize,
    /// Messages waiting for the window, and their bytes.
    pub queue: VecDeque<Queued>,
    pub queued_bytes: usize,
    /// The socket refused a frame for a full queue: nothing leaves before this.
    pub blocked_until: Option<Instant>,
}

/// The message window in bytes: `message_window`, but never more than a
/// quarter of what the peer may be made to hold, since unacknowledged
/// messages count against it.
fn message_window(limits: &Limits) -> u64 {
    limits.message_window.min(limits.max_peer_memory / 4) as u64
}

impl Lane {
    pub(crate) fn new(now: Instant) -> Self {
        Lane {
            epoch: 0,
            sent: Counts::default(),
            acked: Counts::default(),
            marks: VecDeque::new(),
            marked: Counts::default(),
            marked_at: now,
            progress_at: now,
            ready: VecDeque::new(),
            transfers: HashMap::new(),
            transfer_bytes: 0,
            charged_transfer_bytes: 0,
            queue: VecDeque::new(),
            queued_bytes: 0,
            blocked_until: None,
        }
    }

    /// Windowed bytes sent and not yet acknowledged.
    pub(crate) fn in_flight(&self) -> u64 {
        self.sent.bytes - self.acked.bytes
    }

    /// Bulk bytes sent and not yet acknowledged.
    pub(crate) fn bulk_in_flight(&self) -> u64 {
        self.sent.bulk - self.acked.bulk
    }

    fn message_bytes_in_flight(&self) -> u64 {
        self.sent.message_bytes() - self.acked.message_bytes()
    }

    /// Whether the message window has room for one more message.
    fn message_room(&self, limits: &Limits) -> bool {
        self.message_bytes_in_flight() < message_window(limits)
            && self.sent.messages - self.acked.messages < limits.message_window_count as u64
    }

    /// Bytes this lane makes the node hold for its peer: messages waiting
    /// or unacknowledged, and the unsent part of charged transfers.
    pub(crate) fn held_bytes(&self) -> usize {
        let in_flight = usize::try_from(self.message_bytes_in_flight()).unwrap_or(usize::MAX);
        self.queued_bytes
            .saturating_add(in_flight)
            .saturating_add(self.charged_transfer_bytes)
    }

    /// Whether anything here still needs the periodic timers.
    pub(crate) fn busy(&self) -> bool {
        self.in_flight() > 0 || !self.queue.is_empty() || self.blocked_until.is_some()
    }

    fn on_sent(&mut self, bytes: usize, bulk: bool, now: Instant) {
        if self.in_flight() == 0 {
            self.progress_at = now;
        }
        self.sent.bytes += bytes as u64;
        if bulk {
            self.sent.bulk += bytes as u64;
        } else {
            self.sent.messages += 1;
        }
    }

    /// An ACK echoing `token`; returns whether it freed room.
    pub(crate) fn on_ack(&mut self, token: u64, now: Instant) -> bool {
        let Some(at) = self.marks.iter().position(|&(t, _)| t == token) else {
            return false;
        };
        let mut counts = self.acked;
        for (_, sent) in self.marks.drain(..=at) {
            counts = counts.at_least(sent);
        }
        let freed = counts != self.acked;
        self.acked = counts;
        if freed {
            self.progress_at = now;
        }
        freed
    }

    /// Records a MARK with `token` covering everything sent so far.
    fn mark(&mut self, token: u64, now: Instant) {
        if self.marks.len() == MAX_MARKS {
            self.marks.pop_front();
        }
        self.marks.push_back((token, self.sent));
        self.marked = self.sent;
        self.marked_at = now;
    }

    /// Whether a MARK should follow what was just sent: a quarter of a
    /// window went out since the last one, or a window is full and needs
    /// an ACK to move on.
    fn mark_due(&self, limits: &Limits) -> bool {
        let (sent, marked) = (self.sent, self.marked);
        let quarter = |window: usize| (window as u64 / 4).max(1);
        sent.bytes > marked.bytes
            && (sent.bulk - marked.bulk >= quarter(limits.link_window)
                || sent.message_bytes() - marked.message_bytes()
                    >= quarter(message_window(limits) as usize)
                || sent.messages - marked.messages >= quarter(limits.message_window_count)
                || self.bulk_in_flight() >= limits.link_window as u64
                || !self.message_room(limits))
    }

    /// Forgets the accounting of a connection that is gone; returns the
    /// transfers that were under way on it. Waiting messages stay unless
    /// `clear` (the session is over).
    pub(crate) fn reset(&mut self, epoch: u64, clear: bool, now: Instant) -> Vec<Transfer> {
        let transfers = self.transfers.drain().map(|(_, t)| t).collect();
        let (queue, queued_bytes) = (std::mem::take(&mut self.queue), self.queued_bytes);
        *self = Lane::new(now);
        self.epoch = epoch;
        if !clear {
            (self.queue, self.queued_bytes) = (queue, queued_bytes);
        }
        transfers
    }

    /// Queues a message for the window: last, or first (one the socket
    /// refused goes back to the head of the line).
    fn enqueue(&mut self, frame: Vec<u8>, purpose: Purpose, first: bool) {
        self.queued_bytes += frame.len();
        let queued = Queued { frame, purpose };
        if first {
            self.queue.push_front(queued);
        } else {
            self.queue.push_back(queued);
        }
    }

    /// Takes the unsent rest of transfer `id` out of the lane.
    pub(crate) fn remove_transfer(&mut self, id: u64) -> Option<Transfer> {
        let t = self.transfers.remove(&id)?;
        let rest = t.frame.len() - t.offset;
        self.transfer_bytes -= rest;
        if t.charged {
            self.charged_transfer_bytes -= rest;
        }
        Some(t)
    }
}

impl<C: Clone> Mesh<C> {
    /// Queues a message frame (at most a chunk) for `link` to `peer`; it
    /// leaves as soon as the window has room.
    pub(super) fn send_windowed(
        &mut self,
        peer: &NodeName,
        link: Link,
        frame: Vec<u8>,
        purpose: Purpose,
        now: Instant,
    ) {
        self.sync_lane(peer, link, now);
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        p.lanes[link.index()].enqueue(frame, purpose, false);
        self.pump(peer, link, now);
    }

    /// Queues a frame larger than the chunk size as a transfer on `link`.
    pub(super) fn start_transfer(
        &mut self,
        peer: &NodeName,
        link: Link,
        frame: Arc<Vec<u8>>,
        request_id: Option<u64>,
        charged: bool,
        now: Instant,
    ) -> bool {
        let limit = self.cfg.limits.max_message_size.saturating_mul(4);
        self.sync_lane(peer, link, now);
        let id = self.bulk.peek_transfer_id();
        let Some(p) = self.peers.get_mut(peer) else {
            return false;
        };
        let lane = &mut p.lanes[link.index()];
        if lane.transfer_bytes.saturating_add(frame.len()) > limit {
            self.stats.transfers_refused += 1;
            return false;
        }
        self.bulk.take_transfer_id();
        lane.transfer_bytes += frame.len();
        if charged {
            lane.charged_transfer_bytes += frame.len();
        }
        lane.transfers.insert(
            id,
            Transfer {
                frame,
                offset: 0,
                request_id,
                charged,
            },
        );
        lane.ready.push_back(Source::Transfer(id));
        self.pump(peer, link, now);
        true
    }

    /// Resets a lane whose link came up again since its accounting began;
    /// transfers under way on the old connection are abandoned, waiting
    /// messages go on the new one.
    pub(super) fn sync_lane(&mut self, peer: &NodeName, link: Link, now: Instant) {
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        let epoch = p.epoch(link);
        let lane = &mut p.lanes[link.index()];
        if lane.epoch == epoch {
            return;
        }
        let abandoned = lane.reset(epoch, false, now);
        for t in abandoned {
            self.abandon_transfer(peer, t);
        }
        self.recount(peer);
    }

    pub(super) fn abandon_transfer(&mut self, peer: &NodeName, t: Transfer) {
        self.stats.transfers_abandoned += 1;
        if let Some(id) = t.request_id {
            let error = crate::core::errors::CallError::Unreachable(None);
            if let Some(r) = self.calls.resolve(id, peer, Err(error)) {
                self.push_resolved(vec![r]);
            }
        }
    }

    /// Sends what the windows of `link` to `peer` have room for: waiting
    /// messages first, then bulk frames, one chunk from each ready source in
    /// turn; then a MARK if one is due. Counts the peer's memory again.
    pub(super) fn pump(&mut self, peer: &NodeName, link: Link, now: Instant) {
        self.pump_lane(peer, link, now);
        self.recount(peer);
    }

    fn pump_lane(&mut self, peer: &NodeName, link: Link, now: Instant) {
        self.sync_lane(peer, link, now);
        let incarnation = self.cfg.incarnation;
        let Mesh {
            peers,
            streams,
            calls,
            actions,
            stats,
            cfg,
            rng,
            ..
        } = self;
        let limits = &cfg.limits;
        let Some(p) = peers.get_mut(peer) else {
            return;
        };
        if !p.link_up(link) {
            return; // The queue waits for the link (see `lane_timers`).
        }
        let lane = &mut p.lanes[link.index()];
        if lane.blocked_until.is_some_and(|t| t > now) {
            return;
        }
        lane.blocked_until = None;
        let mut withdrawn = 0;
        let mut out = super::mesh::Outbox::new(actions, stats, &mut p.stats, peer, link);
        while lane.message_room(limits) {
            let Some(Queued { mut frame, purpose }) = lane.queue.pop_front() else {
                break;
            };
            lane.queued_bytes -= frame.len();
            if let Purpose::Request(id) = purpose {
                // A request that waited leaves with the time its caller has
                // left, or not at all if the caller stopped waiting.
                match calls.deadline(id, peer) {
                    Some(deadline) => {
                        let left = deadline.saturating_duration_since(now);
                        crate::protocol::set_request_timeout(
                            &mut frame,
                            super::mesh::timeout_ms(left),
                        );
                    }
                    None => {
                        withdrawn += 1;
                        continue;
                    }
                }
            }
            lane.on_sent(frame.len(), false, now);
            out.push(frame, purpose);
        }
        let window = limits.link_window as u64;
        let chunk = limits.chunk_size;
        let mut progressed: Vec<(StreamId, u64)> = Vec::new();
        while lane.bulk_in_flight() < window {
            let Some(source) = lane.ready.pop_front() else {
                break;
            };
            match source {
                Source::Stream(id) => {
                    let Some(s) = streams.get_mut(id) else {
                        continue;
                    };
                    s.scheduled = false;
                    let Some((mut frame, offset, len)) = s.send.next_frame() else {
                        continue;
                    };
                    write_data_header(&mut frame, incarnation, s.wire_id, s.opener, offset);
                    if s.send.sendable() {
                        s.scheduled = true;
                        lane.ready.push_back(source);
                    }
                    match progressed.iter_mut().find(|(i, _)| *i == id) {
                        Some((_, n)) => *n += len as u64,
                        None => progressed.push((id, len as u64)),
                    }
                    lane.on_sent(frame.len(), true, now);
                    out.push(frame, Purpose::Stream(id));
                }
                Source::Transfer(tid) => {
                    let Some(t) = lane.transfers.get_mut(&tid) else {
                        continue;
                    };
                    let end = (t.offset + chunk).min(t.frame.len());
                    let piece = Message::Fragment(Fragment {
                        transfer_id: tid,
                        total: t.frame.len() as u64,
                        offset: t.offset as u64,
                        payload: &t.frame[t.offset..end],
                    })
                    .encode(incarnation);
                    lane.transfer_bytes -= end - t.offset;
                    if t.charged {
                        lane.charged_transfer_bytes -= end - t.offset;
                    }
                    t.offset = end;
                    if end == t.frame.len() {
                        lane.transfers.remove(&tid);
                    } else {
                        lane.ready.push_back(source);
                    }
                    lane.on_sent(piece.len(), true, now);
                    out.push(piece, Purpose::Transfer(tid));
                }
            }
        }
        if lane.mark_due(limits) {
            let token = rng.next_u64();
            lane.mark(token, now);
            let mark = Message::Mark { offset: token }.encode(incarnation);
            out.push(mark, Purpose::Control);
        }
        let sent = out.count();
        self.stats.requests_withdrawn += withdrawn;
        if sent > 0 {
            self.need_tick(now);
        }
        for (id, bytes) in progressed {
            self.signal(id, StreamSignal::Sent(bytes));
            self.after_send(id, now);
        }
    }

    /// A MARK: everything sent before it on this link has arrived or is lost.
    pub(super) fn on_mark(&mut self, name: &NodeName, link: Link, token: u64) {
        let ack = Message::Ack { offset: token };
        self.send(name, link, &ack, Purpose::Control);
    }

    /// An ACK: room in the lane of the link it came back on.
    pub(super) fn on_ack(&mut self, name: &NodeName, link: Link, token: u64, now: Instant) {
        let Some(p) = self.peers.get_mut(name) else {
            return;
        };
        if p.lanes[link.index()].on_ack(token, now) {
            self.pump(name, link, now);
        }
    }

    /// The socket would not take a windowed frame: it goes back to the
    /// front of its queue and the lane waits a moment before offering it again.
    pub(super) fn requeue(
        &mut self,
        peer: &NodeName,
        link: Link,
        frame: Vec<u8>,
        purpose: Purpose,
        now: Instant,
    ) {
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        let lane = &mut p.lanes[link.index()];
        lane.enqueue(frame, purpose, true);
        let until = now + RETRY_FULL_QUEUE;
        lane.blocked_until = Some(until);
        self.bulk.retry_by(until);
        self.recount(peer);
    }

    /// Offers `frame`, which the connection behind `link` could not take
    /// because it is gone, to the peer's other link if that one is up;
    /// returns whether it did (PROTOCOL.md §7.2).
    pub(super) fn offer_elsewhere(
        &mut self,
        peer: &NodeName,
        link: Link,
        frame: Vec<u8>,
        purpose: Purpose,
        now: Instant,
    ) -> bool {
        let other = match link {
            Link::Outbound => Link::Inbound,
            Link::Inbound => Link::Outbound,
        };
        let Some(p) = self.peers.get_mut(peer).filter(|p| p.link_up(other)) else {
            return false;
        };
        p.lanes[other.index()].enqueue(frame, purpose, true);
        self.pump(peer, other, now);
        true
    }

    /// Offers their frames again to lanes that a full socket queue blocked.
    pub(super) fn retry_blocked(&mut self, now: Instant) {
        if !self.bulk.take_retry(now) {
            return;
        }
        let mut due = Vec::new();
        for p in self.peers.values() {
            for link in [Link::Outbound, Link::Inbound] {
                match p.lanes[link.index()].blocked_until {
                    Some(t) if t <= now => due.push((p.name.clone(), link)),
                    Some(t) => self.bulk.retry_by(t),
                    None => {}
                }
            }
        }
        for (peer, link) in due {
            self.pump(&peer, link, now);
        }
    }

    /// Lane timers, every tick: a MARK for what went out since the last
    /// one if that was a heartbeat interval ago (a full window needs an ACK
    /// to move on; a MARK or its ACK can be lost with a broken connection;
    /// and what is acknowledged stops counting against the peer's memory).
    /// Messages waiting for a link that is down move to the peer's other
    /// link, and waiting messages are offered again.
    pub(super) fn lane_timers(&mut self, now: Instant) {
        let interval = self.cfg.timers.heartbeat_interval;
        let mut marks = Vec::new();
        let mut moves = Vec::new();
        let mut pumps = Vec::new();
        for p in self.peers.values_mut() {
            for link in [Link::Outbound, Link::Inbound] {
                let up = p.link_up(link);
                let lane = &mut p.lanes[link.index()];
                if lane.in_flight() > 0
                    && now.saturating_duration_since(lane.marked_at) >= interval
                    && now.saturating_duration_since(lane.progress_at) >= interval
                    && up
                {
                    let token = self.rng.next_u64();
                    lane.mark(token, now);
                    marks.push((p.name.clone(), link, token));
                }
                if !lane.queue.is_empty() {
                    match (up, p.session.is_some()) {
                        (true, _) => pumps.push((p.name.clone(), link)),
                        (false, true) => moves.push((p.name.clone(), link)),
                        (false, false) => {}
                    }
                }
            }
        }
        for (peer, link, token) in marks {
            self.send(
                &peer,
                link,
                &Message::Mark { offset: token },
                Purpose::Control,
            );
        }
        for (peer, from) in moves {
            let Some(p) = self.peers.get_mut(&peer) else {
                continue;
            };
            let Some(to) = p.preferred_link().filter(|&l| l != from) else {
                continue;
            };
            let lane = &mut p.lanes[from.index()];
            let (queue, bytes) = (std::mem::take(&mut lane.queue), lane.queued_bytes);
            lane.queued_bytes = 0;
            let target = &mut p.lanes[to.index()];
            target.queue.extend(queue);
            target.queued_bytes += bytes;
            pumps.push((peer, to));
        }
        for (peer, link) in pumps {
            self.pump(&peer, link, now);
        }
    }

    /// Whether any lane needs the periodic timers.
    pub(super) fn lanes_busy(&self) -> bool {
        self.peers.values().any(|p| p.lanes.iter().any(Lane::busy))
    }
}
