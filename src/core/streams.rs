//! Streams in the mesh: opening and accepting them, their frames, their
//! timers, and what the application is told.
//!
//! A stream lives inside one session and travels on one link (see
//! `stream.rs` for why): OPEN from the opener, then a STATUS from the
//! acceptor to accept it (or a RESET to refuse it), then DATA and STATUS both
//! ways, until each side has finished (FIN) or stopped reading, or a RESET,
//! the end of the session, or a broken link ends it early. The application
//! hears of all this through [`StreamSignal`]s; the bytes themselves reach
//! it as a [`Delivery`](super::Delivery) returned by `handle_inbound`, so the
//! I/O shell can pass the received frame on without copying it.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::events::LostReason;
use super::lane::Source;
use super::mesh::{Action, Delivery, Mesh, Purpose};
use super::peer::Link;
use super::stream::{Accept, Phase, RecvSide, SendSide, Stream, StreamId};
use crate::core::errors::{Side, StreamError};
use crate::protocol::{DATA_HEADER_LEN, Data, Message, NodeName, Open, Reset, ResetCode, Status};

/// What the application must learn about one of its streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamSignal {
    /// The peer accepted the stream this node opened.
    Accepted,
    /// This many queued bytes went to the link: the writer may queue more.
    Sent(u64),
    /// The peer finished writing and every byte has been delivered: the
    /// reader reaches the end of the stream.
    Finished,
    /// The peer reads no more; what was queued is dropped and further writes fail.
    Stopped,
    /// The stream failed, in both directions.
    Failed(StreamError),
    /// The core forgot the stream: nothing more will come for it. Always
    /// the last signal of a stream.
    Released,
}

/// A stream a peer opened, for the application to accept or refuse with
/// [`Mesh::handle_accept_stream`] or [`Mesh::handle_refuse_stream`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingStream {
    /// The stream.
    pub id: StreamId,
    /// Who opened it.
    pub peer: NodeName,
    /// The service it asks for.
    pub service: String,
    /// The opener's init data (MessagePack).
    pub init: Vec<u8>,
}

/// Every stream of the node.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    by_id: HashMap<StreamId, Stream>,
    /// (peer, opened by this node, wire id) → stream.
    by_wire: HashMap<(NodeName, bool, u64), StreamId>,
    /// Deadlines of streams being opened or decided on.
    deadlines: BTreeSet<(Instant, StreamId)>,
    /// Streams each peer opened here (for `max_streams_per_peer`).
    opened_by: HashMap<NodeName, usize>,
    /// Streams with each peer, either way (each holds a receive window).
    with_peer: HashMap<NodeName, usize>,
    next_id: u64,
    next_wire_id: u64,
}

impl Streams {
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn get_mut(&mut self, id: StreamId) -> Option<&mut Stream> {
        self.by_id.get_mut(&id)
    }

    /// Streams with `peer`, opened either way.
    pub(crate) fn of_peer_count(&self, peer: &NodeName) -> usize {
        self.with_peer.get(peer).copied().unwrap_or(0)
    }

    /// Streams `peer` opened here that are still live.
    fn opened_by(&self, peer: &NodeName) -> usize {
        self.opened_by.get(peer).copied().unwrap_or(0)
    }

    fn find(&self, peer: &NodeName, opened_here: bool, wire_id: u64) -> Option<StreamId> {
        self.by_wire
            .get(&(peer.clone(), opened_here, wire_id))
            .copied()
    }

    fn insert(&mut self, stream: Stream) -> StreamId {
        self.next_id += 1;
        let id = StreamId(self.next_id);
        let key = (stream.peer.clone(), stream.opener, stream.wire_id);
        match stream.phase {
            Phase::Opening { deadline } | Phase::Pending { deadline } => {
                self.deadlines.insert((deadline, id));
            }
            Phase::Open => {}
        }
        if !stream.opener {
            *self.opened_by.entry(stream.peer.clone()).or_insert(0) += 1;
        }
        *self.with_peer.entry(stream.peer.clone()).or_insert(0) += 1;
        self.by_wire.insert(key, id);
        self.by_id.insert(id, stream);
        id
    }

    fn remove(&mut self, id: StreamId) -> Option<Stream> {
        let s = self.by_id.remove(&id)?;
        self.by_wire.remove(&(s.peer.clone(), s.opener, s.wire_id));
        decrement(&mut self.with_peer, &s.peer);
        if !s.opener {
            decrement(&mut self.opened_by, &s.peer);
        }
        if let Phase::Opening { deadline } | Phase::Pending { deadline } = s.phase {
            self.deadlines.remove(&(deadline, id));
        }
        Some(s)
    }

    fn settle_phase(&mut self, id: StreamId) {
        if let Some(s) = self.by_id.get_mut(&id) {
            if let Phase::Opening { deadline } | Phase::Pending { deadline } = s.phase {
                self.deadlines.remove(&(deadline, id));
                s.phase = Phase::Open;
            }
        }
    }

    fn of_peer(&self, peer: &NodeName) -> Vec<StreamId> {
        let mut ids: Vec<StreamId> = self
            .by_id
            .iter()
            .filter(|(_, s)| &s.peer == peer)
            .map(|(&id, _)| id)
            .collect();
        ids.sort();
        ids
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(d, _)| d)
    }

    /// The next stream whose open or accept deadline passed by `now`
    /// (no longer waited for).
    fn pop_expired(&mut self, now: Instant) -> Option<StreamId> {
        match self.deadlines.first() {
            Some(&(deadline, id)) if deadline <= now => {
                self.deadlines.pop_first();
                Some(id)
            }
            _ => None,
        }
    }

    /// The wire id of the next stream this node opens.
    fn new_wire_id(&mut self) -> u64 {
        self.next_wire_id += 1;
        self.next_wire_id
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = (StreamId, &mut Stream)> {
        self.by_id.iter_mut().map(|(&id, s)| (id, s))
    }
}

/// The error a RESET from the peer means here.
/// Counts one stream less for `peer`, forgetting peers with none.
fn decrement(counts: &mut HashMap<NodeName, usize>, peer: &NodeName) {
    if let Some(n) = counts.get_mut(peer) {
        *n -= 1;
        if *n == 0 {
            counts.remove(peer);
        }
    }
}

fn reset_error(code: ResetCode, detail: &str, service: &str) -> StreamError {
    match code {
        ResetCode::UnknownService => StreamError::UnknownService(service.to_string()),
        ResetCode::Refused => StreamError::Refused(detail.to_string()),
        ResetCode::BadInit => StreamError::BadInit(detail.to_string()),
        ResetCode::Overloaded => StreamError::Overloaded(Side::Remote),
        ResetCode::Cancelled => StreamError::Cancelled,
        ResetCode::Timeout => StreamError::Timeout,
        ResetCode::FlowControl => StreamError::Protocol,
        ResetCode::DataLost | ResetCode::UnknownStream => StreamError::DataLost,
        ResetCode::ShuttingDown => StreamError::ShuttingDown,
        ResetCode::Other(code) => StreamError::Reset {
            code,
            detail: detail.to_string(),
        },
    }
}

/// The error reported here when this node resets a stream for `code`.
fn local_error(code: ResetCode) -> StreamError {
    match code {
        ResetCode::FlowControl => StreamError::Protocol,
        ResetCode::Timeout => StreamError::Timeout,
        ResetCode::Overloaded => StreamError::Overloaded(Side::Local),
        ResetCode::Cancelled => StreamError::CancelledHere,
        ResetCode::ShuttingDown => StreamError::Closed,
        _ => StreamError::DataLost,
    }
}

impl<C: Clone> Mesh<C> {
    /// Opens a stream to `peer` for its service `service`, with `init` as
    /// the init data. The answer arrives as [`StreamSignal::Accepted`] or
    /// [`StreamSignal::Failed`]; with no answer by `deadline` the stream
    /// fails with [`StreamError::Timeout`].
    pub fn handle_open_stream(
        &mut self,
        peer: &NodeName,
        service: &str,
        init: &[u8],
        deadline: Instant,
        now: Instant,
    ) -> Result<StreamId, StreamError> {
        if self.closed {
            return Err(StreamError::Closed);
        }
        if deadline <= now {
            return Err(StreamError::Timeout);
        }
        let p = self.peers.get(peer).ok_or(StreamError::UnknownPeer)?;
        let (Some(_), Some(link)) = (p.incarnation(), p.preferred_link()) else {
            return Err(StreamError::Unreachable(p.last_rejection.clone()));
        };
        if self.streams.len() >= self.cfg.limits.max_streams {
            return Err(StreamError::Overloaded(Side::Local));
        }
        if !self.admits(peer, self.cfg.limits.stream_window) {
            self.refused_for_memory(peer, "a stream", self.cfg.limits.stream_window);
            return Err(StreamError::Overloaded(Side::Local));
        }
        let window = self.cfg.limits.stream_window as u64;
        let wire_id = self.streams.new_wire_id();
        let stream = Stream {
            peer: peer.clone(),
            wire_id,
            opener: true,
            service: service.to_string(),
            link,
            epoch: p.epoch(link),
            phase: Phase::Opening { deadline },
            send: SendSide::default(),
            recv: RecvSide::new(window),
            last_heard: now,
            scheduled: false,
        };
        let id = self.streams.insert(stream);
        self.recount(peer);
        self.need_tick(now);
        let open = Message::Open(Open {
            stream_id: wire_id,
            timeout_ms: super::mesh::timeout_ms(deadline.saturating_duration_since(now)),
            window: u32::try_from(window).unwrap_or(u32::MAX),
            service,
            init,
        })
        .encode(self.cfg.incarnation);
        if !self.send_message(peer, link, std::sync::Arc::new(open), Purpose::Message, now) {
            self.remove_stream(id);
            return Err(StreamError::Overloaded(Side::Local));
        }
        Ok(id)
    }

    /// The application accepts a stream announced by
    /// [`Action::IncomingStream`]. Nothing happens if it already failed.
    pub fn handle_accept_stream(&mut self, id: StreamId, now: Instant) {
        let _ = now;
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        if !matches!(s.phase, Phase::Pending { .. }) {
            return;
        }
        self.streams.settle_phase(id);
        // The first STATUS is the acceptance; it grants the opener credit.
        self.send_status(id, false);
    }

    /// The application refuses a stream announced by
    /// [`Action::IncomingStream`], with a code and a reason for the opener.
    pub fn handle_refuse_stream(&mut self, id: StreamId, code: ResetCode, detail: &str) {
        let pending = self
            .streams
            .get_mut(id)
            .is_some_and(|s| matches!(s.phase, Phase::Pending { .. }));
        if pending {
            self.reset_stream(id, code, detail, None);
        }
    }

    /// The application wrote: `frame` holds the bytes after
    /// [`DATA_HEADER_LEN`] bytes of room for the header.
    pub fn handle_stream_write(&mut self, id: StreamId, frame: Vec<u8>, now: Instant) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        if !s.send.push(frame) {
            return;
        }
        self.schedule(id, now);
    }

    /// The application finished writing: FIN follows the bytes queued so far.
    pub fn handle_stream_finish(&mut self, id: StreamId, now: Instant) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        s.send.finish();
        self.after_send(id, now);
    }

    /// The application consumed `bytes` of what was delivered.
    pub fn handle_stream_consumed(&mut self, id: StreamId, bytes: u64, now: Instant) {
        let _ = now;
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        if s.recv.on_consumed(bytes).is_some() {
            self.send_status(id, false);
        }
    }

    /// The application reads no more: the peer is told to stop writing.
    pub fn handle_stream_stop(&mut self, id: StreamId, now: Instant) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        if s.recv.stopped || s.recv.done() {
            return;
        }
        s.recv.stopped = true;
        self.send_status(id, false);
        self.release_if_done(id, now);
    }

    /// The application abandoned the stream: RESET to the peer, and the
    /// stream is forgotten.
    pub fn handle_stream_reset(&mut self, id: StreamId, code: ResetCode) {
        if self.streams.get_mut(id).is_some() {
            self.reset_stream(id, code, "", None);
        }
    }

    #[cfg(test)]
    /// Streams open on this node.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    #[cfg(test)]
    /// Bytes reserved by large messages under reassembly.
    pub fn reassembly_bytes(&self) -> usize {
        self.bulk.reassembling()
    }

    // ---- inbound frames ----------------------------------------------------

    /// OPEN from a peer in session.
    pub(super) fn on_open(&mut self, name: &NodeName, link: Link, o: &Open<'_>, now: Instant) {
        if self.streams.find(name, false, o.stream_id).is_some() {
            return; // a copy of an OPEN already handled
        }
        let Some(p) = self.peers.get(name) else {
            return;
        };
        if p.incarnation().is_none() {
            return;
        }
        let link = if p.link_up(link) {
            link
        } else {
            match p.preferred_link() {
                Some(l) => l,
                None => return,
            }
        };
        let epoch = p.epoch(link);
        let refuse = |mesh: &mut Self, code: ResetCode, detail: &str| {
            let reset = Message::Reset(Reset {
                stream_id: o.stream_id,
                from_opener: false,
                code,
                detail,
            });
            mesh.send(name, link, &reset, Purpose::Control);
        };
        if self.closed {
            return refuse(self, ResetCode::ShuttingDown, "");
        }
        if self.streams.len() >= self.cfg.limits.max_streams {
            self.stats.streams_refused += 1;
            return refuse(self, ResetCode::Overloaded, "too many streams");
        }
        if self.streams.opened_by(name) >= self.cfg.limits.max_streams_per_peer {
            self.stats.streams_refused += 1;
            return refuse(
                self,
                ResetCode::Overloaded,
                "too many streams from this peer",
            );
        }
        if !self.admits(name, self.cfg.limits.stream_window) {
            self.stats.streams_refused += 1;
            self.refused_for_memory(name, "a stream", self.cfg.limits.stream_window);
            return refuse(self, ResetCode::Overloaded, "no memory for another stream");
        }
        let window = self.cfg.limits.stream_window as u64;
        let mut send = SendSide::default();
        send.limit = u64::from(o.window);
        let stream = Stream {
            peer: name.clone(),
            wire_id: o.stream_id,
            opener: false,
            service: o.service.to_string(),
            link,
            epoch,
            phase: Phase::Pending {
                deadline: now + Duration::from_millis(u64::from(o.timeout_ms)),
            },
            send,
            recv: RecvSide::new(window),
            last_heard: now,
            scheduled: false,
        };
        let id = self.streams.insert(stream);
        self.recount(name);
        self.need_tick(now);
        self.actions
            .push_back(Action::IncomingStream(IncomingStream {
                id,
                peer: name.clone(),
                service: o.service.to_string(),
                init: o.init.to_vec(),
            }));
    }

    /// DATA from a peer in session. `len` is the whole frame's length.
    pub(super) fn on_data(
        &mut self,
        name: &NodeName,
        link: Link,
        d: &Data<'_>,
        len: usize,
        now: Instant,
    ) -> Option<Delivery> {
        let Some(id) = self.streams.find(name, !d.from_opener, d.stream_id) else {
            self.stats.stream_frames_dropped += 1;
            self.tell_unknown_stream(name, link, d.stream_id, d.from_opener, now);
            return None;
        };
        let s = self.streams.get_mut(id)?;
        s.last_heard = now;
        if s.phase != Phase::Open {
            self.reset_stream(id, ResetCode::FlowControl, "data before acceptance", None);
            return None;
        }
        match s.recv.on_data(d.offset, d.payload.len()) {
            Ok(Accept::Deliver) => Some(Delivery {
                stream: id,
                range: DATA_HEADER_LEN.min(len)..len,
            }),
            Ok(Accept::Discard) => {
                self.stats.stream_frames_dropped += 1;
                None
            }
            Err(code) => {
                log::debug!("stream {id:?} with {name} broken: {code:?}");
                self.stats.streams_broken += 1;
                self.reset_stream(id, code, "", None);
                None
            }
        }
    }

    /// STATUS from a peer in session.
    pub(super) fn on_status(&mut self, name: &NodeName, link: Link, st: &Status, now: Instant) {
        let Some(id) = self.streams.find(name, !st.from_opener, st.stream_id) else {
            if st.probe {
                self.tell_unknown_stream(name, link, st.stream_id, st.from_opener, now);
            }
            return;
        };
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        s.last_heard = now;
        let effect = match s.on_status(st) {
            Ok(effect) => effect,
            Err(code) => {
                self.stats.streams_broken += 1;
                self.reset_stream(id, code, "", None);
                return;
            }
        };
        if effect.accepted {
            self.streams.settle_phase(id);
            self.signal(id, StreamSignal::Accepted);
        }
        if effect.stopped.is_some() {
            self.signal(id, StreamSignal::Stopped);
        }
        if effect.finished && self.streams.get_mut(id).is_some_and(|s| s.recv.done()) {
            self.signal(id, StreamSignal::Finished);
        }
        if effect.probe {
            self.send_status(id, false);
        }
        if effect.credit {
            self.schedule(id, now);
        }
        self.after_send(id, now);
    }

    /// RESET from a peer in session.
    pub(super) fn on_stream_reset(&mut self, name: &NodeName, r: &Reset<'_>) {
        let Some(id) = self.streams.find(name, !r.from_opener, r.stream_id) else {
            return;
        };
        let service = self
            .streams
            .get_mut(id)
            .map(|s| s.service.clone())
            .unwrap_or_default();
        let error = reset_error(r.code, r.detail, &service);
        log::debug!("stream {id:?} reset by {name}: {error}");
        self.fail_stream(id, error);
    }

    // ---- internals ---------------------------------------------------------

    /// Answers a frame for a stream this node does not know with RESET, at
    /// the same bounded rate as answers to senders without a session.
    fn tell_unknown_stream(
        &mut self,
        name: &NodeName,
        link: Link,
        wire_id: u64,
        from_opener: bool,
        now: Instant,
    ) {
        if !self.answer_allowed(now) {
            return;
        }
        let reset = Message::Reset(Reset {
            stream_id: wire_id,
            from_opener: !from_opener,
            code: ResetCode::UnknownStream,
            detail: "",
        });
        self.send(name, link, &reset, Purpose::Control);
    }

    /// Tells the application something about stream `id`.
    pub(super) fn signal(&mut self, id: StreamId, signal: StreamSignal) {
        self.actions.push_back(Action::Stream { id, signal });
    }

    /// Sends our STATUS for stream `id` on its link.
    fn send_status(&mut self, id: StreamId, probe: bool) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        let (peer, link, status) = (s.peer.clone(), s.link, s.status(probe));
        self.send(&peer, link, &Message::Status(status), Purpose::Control);
    }

    /// Puts stream `id` in its lane's round-robin if it can send, and runs the lane.
    fn schedule(&mut self, id: StreamId, now: Instant) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        if s.phase != Phase::Open || s.scheduled || !s.send.sendable() {
            return;
        }
        let (peer, link, epoch) = (s.peer.clone(), s.link, s.epoch);
        let current = self
            .peers
            .get(&peer)
            .is_some_and(|p| p.link_current(link, epoch));
        if !current {
            self.fail_stream(id, StreamError::Interrupted);
            return;
        }
        if let Some(s) = self.streams.get_mut(id) {
            s.scheduled = true;
        }
        self.sync_lane(&peer, link, now);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.lanes[link.index()].ready.push_back(Source::Stream(id));
        }
        self.pump(&peer, link, now);
    }

    /// After bytes left or the writer finished: FIN if due, then forget the
    /// stream if both directions are over.
    pub(super) fn after_send(&mut self, id: StreamId, now: Instant) {
        let Some(s) = self.streams.get_mut(id) else {
            return;
        };
        if s.phase == Phase::Open && s.send.fin_due() {
            s.send.fin_sent = true;
            self.send_status(id, false);
        }
        self.release_if_done(id, now);
    }

    fn release_if_done(&mut self, id: StreamId, now: Instant) {
        let _ = now;
        if self.streams.get_mut(id).is_some_and(|s| s.done()) {
            self.remove_stream(id);
            self.signal(id, StreamSignal::Released);
        }
    }

    /// Forgets stream `id`, and the receive window it held for its peer.
    fn remove_stream(&mut self, id: StreamId) -> Option<Stream> {
        let s = self.streams.remove(id)?;
        self.recount(&s.peer);
        Some(s)
    }

    /// Ends stream `id` here with `error`, without telling the peer.
    pub(super) fn fail_stream(&mut self, id: StreamId, error: StreamError) {
        if self.remove_stream(id).is_some() {
            self.signal(id, StreamSignal::Failed(error));
            self.signal(id, StreamSignal::Released);
        }
    }

    /// Ends stream `id` and tells the peer with RESET(`code`). The local
    /// error is `error`, or the one `code` implies; a refused stream (never
    /// accepted here) gets none, only [`StreamSignal::Released`].
    fn reset_stream(
        &mut self,
        id: StreamId,
        code: ResetCode,
        detail: &str,
        error: Option<StreamError>,
    ) {
        let Some(s) = self.remove_stream(id) else {
            return;
        };
        let reset = Message::Reset(Reset {
            stream_id: s.wire_id,
            from_opener: s.opener,
            code,
            detail,
        });
        let link_ok = self.peers.get(&s.peer).is_some_and(|p| p.link_up(s.link));
        let link = if link_ok {
            Some(s.link)
        } else {
            self.peers.get(&s.peer).and_then(|p| p.preferred_link())
        };
        if let Some(link) = link {
            self.send(&s.peer, link, &reset, Purpose::Control);
        }
        let refused = matches!(s.phase, Phase::Pending { .. });
        if !refused || error.is_some() {
            let error = error.unwrap_or_else(|| local_error(code));
            self.signal(id, StreamSignal::Failed(error));
        }
        self.signal(id, StreamSignal::Released);
    }

    /// The session with `name` ended: every stream with it fails.
    pub(super) fn end_streams(&mut self, name: &NodeName, reason: LostReason) {
        for id in self.streams.of_peer(name) {
            let error = match reason {
                LostReason::Closed => StreamError::Closed,
                reason => StreamError::PeerLost(reason),
            };
            self.fail_stream(id, error);
        }
    }

    /// Stream timers: open and accept deadlines; streams whose link broke;
    /// probes after a long silence.
    pub(super) fn stream_timers(&mut self, now: Instant) {
        while let Some(id) = self.streams.pop_expired(now) {
            self.reset_stream(id, ResetCode::Timeout, "", Some(StreamError::Timeout));
        }
    }

    /// The periodic part of the stream timers (run on the bulk tick).
    pub(super) fn stream_tick(&mut self, now: Instant) {
        let quiet = self.cfg.timers.lost_timeout;
        let mut broken = Vec::new();
        let mut probes = Vec::new();
        for (id, s) in self.streams.iter_mut() {
            let current = self
                .peers
                .get(&s.peer)
                .is_some_and(|p| p.link_current(s.link, s.epoch));
            if !current {
                broken.push(id);
            } else if s.waiting() && now.saturating_duration_since(s.last_heard) >= quiet {
                // Ask, and wait another quiet period before asking again.
                s.last_heard = now;
                probes.push(id);
            }
        }
        broken.sort();
        probes.sort();
        for id in broken {
            self.reset_stream(
                id,
                ResetCode::DataLost,
                "link interrupted",
                Some(StreamError::Interrupted),
            );
        }
        for id in probes {
            self.send_status(id, true);
        }
    }

    /// Whether any stream exists (and so the tick must run).
    pub(super) fn streams_exist(&self) -> bool {
        self.streams.len() > 0
    }

    /// A frame of stream `id` could not be handed to its socket.
    pub(super) fn stream_send_failed(&mut self, id: StreamId, queue_full: bool) {
        let error = if queue_full {
            StreamError::Overloaded(Side::Local)
        } else {
            StreamError::Interrupted
        };
        self.reset_stream(id, ResetCode::DataLost, "send failed", Some(error));
    }
}
