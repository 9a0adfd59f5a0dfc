//! The [`Mesh`]: every peer of one node, its pending calls, and the routing of
//! inbound frames to the handshake, liveness and dispatch logic.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::access::AccessState;
use super::calls::{CallTable, Outcome, Resolved};
use super::config::MeshConfig;
use super::dispatch::JobQueues;
use super::events::PeerEvent;
use super::lane::Bulk;
use super::memory::Memory;
use super::peer::{Link, Peer, PeerInfo, PeerState};
use super::peers::Peers;
use super::rng::Rng;
use super::stats::{NodeStats, PeerStats};
use super::stream::StreamId;
use super::streams::{IncomingStream, StreamSignal, Streams};
use crate::core::errors::{CallError, Side};
use crate::protocol::{
    self, CallFrame, Envelope, Message, NodeName, RejectCode, Reply, ReplyStatus, Security,
};

/// Something the I/O shell must do.
#[derive(Debug)]
pub enum Action<C> {
    /// Send a frame to a peer over one of its links.
    Transmit(Transmit),
    /// Open (or re-open) the DEALER to `peer`: close any existing one, create a
    /// new one with this node's name as routing id, connect it to `endpoint`.
    OpenLink {
        /// The peer.
        peer: NodeName,
        /// Where it listens.
        endpoint: String,
    },
    /// Close the DEALER to `peer`.
    ///
    /// With `flush`, frames it still queues (a PART) get the socket's linger
    /// (200 ms by default) to leave. Without, they are dropped at once: a
    /// closed DEALER that had not yet connected must not connect later and,
    /// presenting the same routing id, take the peer's ROUTER slot from the
    /// DEALER that replaces it.
    CloseLink {
        /// The peer.
        peer: NodeName,
        /// Whether queued frames are worth delivering.
        flush: bool,
    },
    /// Publish an event to the application.
    Event(PeerEvent),
    /// Run a handler on the worker pool, then report with [`Mesh::handle_job_done`].
    Dispatch(Job),
    /// Deliver one entry of a call's result to its caller.
    Resolve {
        /// The caller's completion handle, as given to [`Mesh::handle_call`].
        completion: C,
        /// Which target of the call this entry is for.
        index: usize,
        /// The reply or why there is none.
        outcome: Outcome,
    },
    /// A peer opened a stream: hand it to the service it names, which
    /// accepts or refuses it.
    IncomingStream(IncomingStream),
    /// Tell the application something about one of its streams.
    Stream {
        /// The stream.
        id: StreamId,
        /// What happened.
        signal: StreamSignal,
    },
}

/// Stream bytes that arrived, returned by [`Mesh::handle_inbound`] rather
/// than queued as an action so that the shell can hand the received frame
/// itself to the reader, without a copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The stream they belong to.
    pub stream: StreamId,
    /// Where they are in the message's protocol frame (its last frame).
    pub range: Range<usize>,
}

/// What a transmitted frame is for, so that a failed send reaches the right owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Protocol housekeeping: nobody waits for it, and it is not windowed.
    Control,
    /// The REQUEST of call `id` (windowed).
    Request(u64),
    /// A REPLY (windowed).
    Reply,
    /// A CAST or an OPEN (windowed).
    Message,
    /// A DATA frame of a stream.
    Stream(StreamId),
    /// A FRAGMENT of transfer `id`.
    Transfer(u64),
}

/// A frame to send.
#[derive(Clone, Debug)]
pub struct Transmit {
    /// The peer, which is also the routing id on the ROUTER.
    pub peer: NodeName,
    /// The link to send it on.
    pub link: Link,
    /// The encoded frame.
    pub frame: Vec<u8>,
    /// What it is for.
    pub purpose: Purpose,
}

/// Where an inbound message came from.
#[derive(Clone, Copy, Debug)]
pub enum Origin<'a> {
    /// The ROUTER. Its first frame is the sender's routing id.
    Router {
        /// In CURVE mode, the key that authenticated the connection (Z85),
        /// from the message's `User-Id` metadata.
        user_id: Option<&'a str>,
    },
    /// The DEALER this node opened to `peer`.
    Outbound(&'a NodeName),
}

/// A request or cast to run on the worker pool.
#[derive(Clone, Debug)]
pub struct Job {
    /// Where it runs.
    pub runner: Runner,
    /// Who sent it.
    pub peer: NodeName,
    /// The sender's incarnation.
    pub incarnation: u64,
    /// The link it arrived on (the reply goes back on it).
    pub link: Link,
    /// The request id, or `None` for a cast.
    pub request_id: Option<u64>,
    /// After this instant the caller has given up; the handler is not started.
    pub deadline: Option<Instant>,
    /// The method name.
    pub method: String,
    /// The MessagePack arguments.
    pub args: Vec<u8>,
}

/// Which pool runs a job: the application's handlers run on the worker
/// pool, the built-in services' (`bilateral.…`, `PROTOCOL.md` §7.6) on the
/// node's service thread. Each is admitted against its own bound, so
/// neither can crowd out the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runner {
    /// The worker pool (bound: `max_queued_handlers`).
    Workers,
    /// The service thread (bound: `max_queued_service_jobs`).
    Services,
}

impl Runner {
    /// The runner of `method`.
    pub fn of(method: &str) -> Runner {
        match crate::protocol::reserved_service(method) {
            Some(_) => Runner::Services,
            None => Runner::Workers,
        }
    }
}

impl Job {
    /// How this job ends with a reply of `status` and `payload`: that reply
    /// for a request, [`JobOutcome::CastDone`] for a cast (nobody awaits one).
    pub fn answer(&self, status: ReplyStatus, payload: Vec<u8>) -> JobOutcome {
        match self.request_id {
            Some(_) => JobOutcome::Reply(status, payload),
            None => JobOutcome::CastDone,
        }
    }

    /// The report that this job ended with `outcome`.
    pub fn done(self, outcome: JobOutcome) -> JobDone {
        JobDone {
            runner: self.runner,
            held: super::dispatch::job_cost(&self.method, &self.args),
            peer: self.peer,
            incarnation: self.incarnation,
            link: self.link,
            request_id: self.request_id,
            method: self.method,
            outcome,
        }
    }
}

/// What a worker reports when a [`Job`] is over.
#[derive(Clone, Debug)]
pub struct JobDone {
    /// Where the job ran.
    pub runner: Runner,
    /// The job's peer.
    pub peer: NodeName,
    /// The job's incarnation.
    pub incarnation: u64,
    /// The job's link.
    pub link: Link,
    /// The job's request id.
    pub request_id: Option<u64>,
    /// The job's method (for its metrics).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub method: String,
    /// How it ended.
    pub outcome: JobOutcome,
    /// The bytes the job held against its peer's memory (see [`Job::done`]).
    pub held: usize,
}

/// How a job ended.
#[derive(Clone, Debug)]
pub enum JobOutcome {
    /// A reply to send (requests only).
    Reply(ReplyStatus, Vec<u8>),
    /// The deadline passed before the handler could start.
    Expired,
    /// A cast ran (or failed: nobody is told).
    CastDone,
}

/// Why the shell could not hand a frame to a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendFailure {
    /// The socket's queue is full.
    QueueFull,
    /// The ROUTER has no connection with that routing id any more, or the peer
    /// has no DEALER open.
    Unreachable,
}

/// The state of one node's mesh: peers, sessions, pending calls.
///
/// `C` is the caller's completion handle (a channel sender in the node; any
/// `Clone` value in tests), handed back in [`Action::Resolve`].
#[derive(Debug)]
pub struct Mesh<C> {
    pub(super) cfg: MeshConfig,
    pub(super) peers: Peers,
    pub(super) calls: CallTable<C>,
    pub(super) actions: VecDeque<Action<C>>,
    pub(super) rng: Rng,
    pub(super) stats: NodeStats,
    /// Jobs handed out and not yet done.
    pub(super) jobs: JobQueues,
    pub(super) closed: bool,
    /// Start and count of the current one-second window of NotJoined replies.
    pub(super) not_joined_window: (Instant, u32),
    pub(super) access: AccessState,
    pub(super) streams: Streams,
    /// What each peer makes this node hold.
    pub(super) memory: Memory,
    /// Large messages and blocked lanes, node-wide.
    pub(super) bulk: Bulk,
    /// When the periodic bulk and stream timers run next, if anything needs them.
    pub(super) next_tick: Option<Instant>,
}

impl<C: Clone> Mesh<C> {
    /// A mesh with no peers.
    pub fn new(cfg: MeshConfig, now: Instant) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let first_id = rng.next_u64();
        let access = AccessState::new(cfg.access.clone(), cfg.allowed_keys.iter().copied());
        Mesh {
            cfg,
            peers: Peers::default(),
            calls: CallTable::new(first_id),
            actions: VecDeque::new(),
            rng,
            stats: NodeStats::default(),
            jobs: JobQueues::default(),
            closed: false,
            not_joined_window: (now, 0),
            access,
            streams: Streams::default(),
            memory: Memory::default(),
            bulk: Bulk::default(),
            next_tick: None,
        }
    }

    /// This node's name.
    pub fn name(&self) -> &NodeName {
        &self.cfg.name
    }

    #[cfg(test)]
    /// This node's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.cfg.incarnation
    }

    #[cfg(test)]
    /// The configuration.
    pub fn config(&self) -> &MeshConfig {
        &self.cfg
    }

    /// Changes whenever a peer appears, disappears or changes state.
    pub fn generation(&self) -> u64 {
        self.peers.generation()
    }

    /// The next thing to do, if any.
    pub fn poll_action(&mut self) -> Option<Action<C>> {
        self.actions.pop_front()
    }

    /// When [`Mesh::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .next_deadline(self.cfg.timers.lost_timeout)
            .into_iter()
            .chain(self.calls.next_deadline())
            .chain(self.streams.next_deadline())
            .chain(self.next_tick)
            .chain(self.bulk.retry_at())
            .min()
    }

    /// Node-wide counters.
    pub fn stats(&self) -> NodeStats {
        self.stats.clone()
    }

    /// Requests and casts admitted to the worker pool and not yet done.
    pub fn queued_handlers(&self) -> usize {
        self.jobs.handlers()
    }

    /// Calls awaiting replies.
    pub fn pending_calls(&self) -> usize {
        self.calls.len()
    }

    /// Whether messages for a peer in session still wait in this node for
    /// room in its window (or are large ones not yet all sent): a node that
    /// closes lets them leave before it says PART, for a bounded time.
    pub fn has_unsent(&self) -> bool {
        self.peers
            .values()
            .filter(|p| p.session.is_some())
            .any(|p| {
                p.lanes
                    .iter()
                    .any(|l| !l.queue.is_empty() || !l.transfers.is_empty())
            })
    }

    #[cfg(test)]
    /// A snapshot of one peer.
    pub fn peer_info(&self, name: &str) -> Option<PeerInfo> {
        self.peers.get(name).map(|p| self.info(p))
    }

    fn info(&self, peer: &Peer) -> PeerInfo {
        PeerInfo {
            memory: self.memory.held(&peer.name),
            ..peer.info()
        }
    }

    /// Snapshots of every peer, sorted by name.
    pub fn peer_infos(&self) -> Vec<PeerInfo> {
        let mut all: Vec<PeerInfo> = self.peers.values().map(|p| self.info(p)).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Every peer's name, state and session incarnation.
    pub fn directory(&self) -> Vec<(NodeName, PeerState, Option<u64>)> {
        self.peers
            .values()
            .map(|p| (p.name.clone(), p.state(), p.incarnation()))
            .collect()
    }

    /// A message arrived. `frames` are its first frames (at most a few are
    /// kept) and `total_frames` how many it had.
    ///
    /// Returns where stream bytes are in the last of `frames` when the
    /// message carried some for the application (see [`Delivery`]).
    pub fn handle_inbound(
        &mut self,
        origin: Origin<'_>,
        frames: &[&[u8]],
        total_frames: usize,
        now: Instant,
    ) -> Option<Delivery> {
        if self.closed {
            return None;
        }
        self.stats.frames_in += 1;
        match origin {
            Origin::Router { user_id } => self.on_router(frames, total_frames, user_id, now),
            Origin::Outbound(peer) => self.on_outbound(peer, frames, total_frames, now),
        }
    }

    fn on_router(
        &mut self,
        frames: &[&[u8]],
        total: usize,
        user_id: Option<&str>,
        now: Instant,
    ) -> Option<Delivery> {
        let routing_id = frames.first()?;
        let Ok(name) = NodeName::from_bytes(routing_id) else {
            self.stats.bad_routing_id += 1;
            log::debug!(
                "dropped message from invalid routing id {:?}",
                lossy(routing_id)
            );
            return None;
        };
        // In CURVE mode a connection may only speak under the name of the key
        // it authenticated with: no allowed key can act as another node.
        if self.cfg.security == Security::Curve && !self.identity_holds(&name, user_id, now) {
            return None;
        }
        // A DEALER speaking the protocol sends exactly one frame; the ROUTER
        // adds the routing id in front.
        let (true, Some(body)) = (total == 2, frames.get(1)) else {
            self.malformed(Some(&name), "wrong frame count", |s| {
                &mut s.wrong_frame_count
            });
            return None;
        };
        let env = self.decode(Some(&name), Link::Inbound, body)?;
        if name == self.cfg.name {
            if let Message::Join(_) = env.message {
                self.refuse(
                    &name,
                    env.incarnation,
                    RejectCode::JoiningItself,
                    "this is my own name",
                );
            } else {
                self.stats.bad_routing_id += 1;
                log::debug!("dropped message from a sender using this node's own name");
            }
            return None;
        }
        let len = body.len();
        match env.message {
            Message::Join(join) => self.on_join(name, env.incarnation, &join, len, now),
            Message::Welcome(_) | Message::Reject(_) => {
                self.malformed(Some(&name), "handshake reply on the ROUTER", |s| {
                    &mut s.malformed
                });
            }
            _ => return self.on_session_message(&name, Link::Inbound, env, len, now),
        }
        None
    }

    fn on_outbound(
        &mut self,
        peer: &NodeName,
        frames: &[&[u8]],
        total: usize,
        now: Instant,
    ) -> Option<Delivery> {
        let (true, Some(body)) = (total == 1, frames.first()) else {
            self.malformed(Some(peer), "wrong frame count", |s| {
                &mut s.wrong_frame_count
            });
            return None;
        };
        let env = self.decode(Some(peer), Link::Outbound, body)?;
        let len = body.len();
        match env.message {
            Message::Welcome(w) => self.on_welcome(peer, env.incarnation, &w, len, now),
            Message::Reject(r) => self.on_reject(peer, env.incarnation, &r, now),
            Message::Join(_) => {
                self.malformed(Some(peer), "JOIN on a DEALER", |s| &mut s.malformed)
            }
            _ => return self.on_session_message(peer, Link::Outbound, env, len, now),
        }
        None
    }

    /// Size check and decoding; counts and logs whatever fails.
    fn decode<'b>(
        &mut self,
        from: Option<&NodeName>,
        link: Link,
        body: &'b [u8],
    ) -> Option<Envelope<'b>> {
        if body.len() > self.cfg.limits.max_message_size {
            self.malformed(from, "oversized frame", |s| &mut s.oversized);
            if let Some(peer) = from {
                self.refuse_oversized(peer, link, body, body.len());
            }
            return None;
        }
        match protocol::decode(body) {
            Ok(env) => Some(env),
            Err(e) => {
                log::debug!("undecodable frame from {from:?}: {e}");
                self.malformed(from, "undecodable frame", |s| &mut s.malformed);
                None
            }
        }
    }

    /// A REQUEST or REPLY of `size` bytes, from a peer in session, that is
    /// over `max_message_size` (`start`: the frame or its first piece) and
    /// was dropped: the peer's caller is answered TooLarge, or this node's
    /// own call settled, instead of either waiting out its deadline.
    pub(super) fn refuse_oversized(
        &mut self,
        peer: &NodeName,
        link: Link,
        start: &[u8],
        size: usize,
    ) {
        if self.peers.get(peer).is_none_or(|p| p.session.is_none()) {
            return;
        }
        // The first piece of a fragmented message can itself be over the
        // limit (a peer's chunks may be larger): the call is in its payload.
        let call = match protocol::call_id_of(start) {
            Some(call) => Some((call, size)),
            None => match protocol::decode(start) {
                Ok(Envelope {
                    message: Message::Fragment(f),
                    ..
                }) if f.offset == 0 => protocol::call_id_of(f.payload)
                    .map(|call| (call, usize::try_from(f.total).unwrap_or(usize::MAX))),
                _ => None,
            },
        };
        let Some(((kind, request_id), size)) = call else {
            return;
        };
        match kind {
            CallFrame::Request => {
                let text = format!(
                    "the request ({size} bytes) is larger than the callee's max_message_size ({})",
                    self.cfg.limits.max_message_size
                );
                let reply = Message::Reply(Reply {
                    request_id,
                    status: ReplyStatus::TooLarge,
                    payload: text.as_bytes(),
                });
                self.send(peer, link, &reply, Purpose::Control);
            }
            CallFrame::Reply => {
                let outcome = Err(CallError::TooLarge(Side::Local));
                if let Some(resolved) = self.calls.resolve(request_id, peer, outcome) {
                    self.push_resolved(vec![resolved]);
                }
            }
        }
    }

    pub(super) fn malformed(
        &mut self,
        from: Option<&NodeName>,
        what: &str,
        counter: impl FnOnce(&mut NodeStats) -> &mut u64,
    ) {
        *counter(&mut self.stats) += 1;
        if let Some(peer) = from.and_then(|n| self.peers.get_mut(n)) {
            peer.stats.malformed += 1;
        }
        log::debug!("dropped {what} from {from:?}");
    }

    /// A message that needs a session: heartbeats, calls, replies, casts,
    /// streams, fragments, PART.
    pub(super) fn on_session_message(
        &mut self,
        name: &NodeName,
        link: Link,
        env: Envelope<'_>,
        len: usize,
        now: Instant,
    ) -> Option<Delivery> {
        let current = self.peers.get(name).and_then(Peer::incarnation);
        if current != Some(env.incarnation) {
            if current.is_some() {
                self.stats.stale_incarnation += 1;
            } else {
                self.stats.unknown_sender += 1;
            }
            log::debug!(
                "dropped {:?} from {name} outside a session",
                kind_name(&env.message)
            );
            if link == Link::Inbound {
                self.tell_not_joined(name, env.incarnation, now);
            }
            return None;
        }
        if let Some(peer) = self.peers.get_mut(name) {
            peer.heard_on(link, now);
            peer.stats.messages_in += 1;
            peer.stats.bytes_in += len as u64;
        }
        match env.message {
            Message::Ping { nonce } => {
                self.send(name, link, &Message::Pong { nonce }, Purpose::Control)
            }
            Message::Pong { nonce } => self.on_pong(name, nonce, now),
            Message::Part(reason) => self.on_part(name, reason, now),
            Message::Request(r) => self.on_request(name, env.incarnation, link, &r, now),
            Message::Reply(r) => self.on_reply(name, &r),
            Message::Cast(c) => self.on_cast(name, env.incarnation, link, &c),
            Message::Open(o) => self.on_open(name, link, &o, now),
            Message::Data(d) => return self.on_data(name, link, &d, len, now),
            Message::Status(s) => self.on_status(name, link, &s, now),
            Message::Reset(r) => self.on_stream_reset(name, &r),
            Message::Fragment(f) => return self.on_fragment(name, link, &f, now),
            Message::Mark { offset } => self.on_mark(name, link, offset),
            Message::Ack { offset } => self.on_ack(name, link, offset, now),
            Message::Join(_) | Message::Welcome(_) | Message::Reject(_) => {}
        }
        None
    }

    /// Whether one more answer to a stranger (REJECT(NotJoined), RESET of
    /// an unknown stream) fits in this second's budget.
    pub(super) fn answer_allowed(&mut self, now: Instant) -> bool {
        let (start, count) = &mut self.not_joined_window;
        if now.saturating_duration_since(*start) >= Duration::from_secs(1) {
            *start = now;
            *count = 0;
        }
        if *count >= self.cfg.limits.max_not_joined_replies_per_sec {
            return false;
        }
        *count += 1;
        true
    }

    /// Answers a sender without a session with REJECT(NotJoined), at a bounded rate.
    fn tell_not_joined(&mut self, name: &NodeName, their_incarnation: u64, now: Instant) {
        if !self.answer_allowed(now) {
            return;
        }
        let reject = self.reject_message(RejectCode::NotJoined, their_incarnation, "");
        self.send(name, Link::Inbound, &reject, Purpose::Control);
    }

    /// Encodes `message` from this incarnation and queues it for `peer` on
    /// `link` as one frame. For protocol messages of bounded size; calls,
    /// replies, casts and opens go through [`Mesh::send_message`].
    pub(super) fn send(
        &mut self,
        peer: &NodeName,
        link: Link,
        message: &Message<'_>,
        purpose: Purpose,
    ) {
        let frame = message.encode(self.cfg.incarnation);
        self.transmit(peer, link, frame, purpose);
    }

    /// Sends an encoded REQUEST, REPLY, CAST or OPEN: in one windowed frame
    /// if it fits in a chunk, else as a transfer in FRAGMENTs. Returns
    /// `false` when it could not be queued: what this node sends would pass
    /// the peer's memory bound, or too many bytes of transfers wait already.
    /// (A reply's admission is decided before, by its caller.)
    pub(super) fn send_message(
        &mut self,
        peer: &NodeName,
        link: Link,
        frame: Arc<Vec<u8>>,
        purpose: Purpose,
        now: Instant,
    ) -> bool {
        if frame.len() <= self.cfg.limits.chunk_size {
            if purpose != Purpose::Reply && !self.admits_own(peer, frame.len()) {
                self.refused_for_memory(peer, "a message", frame.len());
                return false;
            }
            let frame = Arc::try_unwrap(frame).unwrap_or_else(|shared| shared.to_vec());
            self.send_windowed(peer, link, frame, purpose, now);
            return true;
        }
        let request_id = match purpose {
            Purpose::Request(id) => Some(id),
            _ => None,
        };
        let charged = purpose == Purpose::Reply;
        self.start_transfer(peer, link, frame, request_id, charged, now)
    }

    /// Queues one frame for the socket, outside any window (control frames).
    pub(super) fn transmit(
        &mut self,
        peer: &NodeName,
        link: Link,
        frame: Vec<u8>,
        purpose: Purpose,
    ) {
        let mut none = PeerStats::default();
        let peer_stats = match self.peers.get_mut(peer) {
            Some(p) => &mut p.stats,
            None => &mut none,
        };
        Outbox::new(&mut self.actions, &mut self.stats, peer_stats, peer, link)
            .push(frame, purpose);
    }

    /// Something now needs the periodic tick (a stream, bytes in flight, a
    /// message under reassembly): make sure it runs.
    pub(super) fn need_tick(&mut self, now: Instant) {
        if self.next_tick.is_none() {
            self.next_tick = Some(now + self.cfg.timers.heartbeat_interval);
        }
    }

    /// Runs the stream deadlines, and the periodic timers of streams, lanes
    /// and reassembly when the tick is due; the tick stops once nothing
    /// needs it.
    pub(super) fn tick(&mut self, now: Instant) {
        self.stream_timers(now);
        if self.next_tick.is_some_and(|t| t <= now) {
            self.next_tick = None;
            self.stream_tick(now);
            self.lane_timers(now);
            self.reassembly_timers(now);
            if self.streams_exist() || self.lanes_busy() || self.bulk.reassembling() > 0 {
                self.need_tick(now);
            }
        }
    }

    /// Forgets `peer` (neither dialled nor in session any more) and what
    /// it made this node hold.
    pub(super) fn forget_peer(&mut self, peer: &NodeName) {
        self.peers.remove(peer);
        self.recount(peer);
    }

    pub(super) fn emit(&mut self, event: PeerEvent) {
        self.peers.changed();
        self.actions.push_back(Action::Event(event));
    }

    pub(super) fn push_resolved(&mut self, resolved: Vec<Resolved<C>>) {
        for r in resolved {
            self.actions.push_back(Action::Resolve {
                completion: r.completion,
                index: r.index,
                outcome: r.outcome,
            });
        }
    }
}

/// Frames on their way to one link of one peer, counted as they go: the
/// one place where [`Action::Transmit`]s are made.
pub(super) struct Outbox<'a, C> {
    actions: &'a mut VecDeque<Action<C>>,
    stats: &'a mut NodeStats,
    peer_stats: &'a mut PeerStats,
    peer: &'a NodeName,
    link: Link,
    count: usize,
}

impl<'a, C> Outbox<'a, C> {
    pub(super) fn new(
        actions: &'a mut VecDeque<Action<C>>,
        stats: &'a mut NodeStats,
        peer_stats: &'a mut PeerStats,
        peer: &'a NodeName,
        link: Link,
    ) -> Self {
        Outbox {
            actions,
            stats,
            peer_stats,
            peer,
            link,
            count: 0,
        }
    }

    pub(super) fn push(&mut self, frame: Vec<u8>, purpose: Purpose) {
        self.stats.frames_out += 1;
        self.peer_stats.messages_out += 1;
        self.peer_stats.bytes_out += frame.len() as u64;
        self.count += 1;
        self.actions.push_back(Action::Transmit(Transmit {
            peer: self.peer.clone(),
            link: self.link,
            frame,
            purpose,
        }));
    }

    /// Frames pushed.
    pub(super) fn count(&self) -> usize {
        self.count
    }
}

/// A wait as the `timeout_ms` of REQUEST and OPEN: rounded up, so that the
/// receiver never gives up before the sender does.
pub(super) fn timeout_ms(wait: Duration) -> u32 {
    u32::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(u32::MAX)
}

pub(super) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(64).collect()
}

/// The message's kind as `PROTOCOL.md` names it.
pub(crate) fn kind_name(m: &Message<'_>) -> &'static str {
    match m {
        Message::Join(_) => "JOIN",
        Message::Welcome(_) => "WELCOME",
        Message::Reject(_) => "REJECT",
        Message::Ping { .. } => "PING",
        Message::Pong { .. } => "PONG",
        Message::Part(_) => "PART",
        Message::Request(_) => "REQUEST",
        Message::Reply(_) => "REPLY",
        Message::Cast(_) => "CAST",
        Message::Open(_) => "OPEN",
        Message::Data(_) => "DATA",
        Message::Status(_) => "STATUS",
        Message::Reset(_) => "RESET",
        Message::Fragment(_) => "FRAGMENT",
        Message::Mark { .. } => "MARK",
        Message::Ack { .. } => "ACK",
    }
}
