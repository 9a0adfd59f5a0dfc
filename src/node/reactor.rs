//! The reactor: one thread that owns every ZeroMQ socket of a node and drives
//! the sans-IO [`Mesh`].
//!
//! Each turn of the loop polls the ROUTER, every DEALER, their monitors, the
//! ZAP handler (CURVE mode) and the waker; feeds what arrived (frames,
//! handshake outcomes, ZAP requests, commands from user threads, finished
//! jobs, the clock) to the mesh; then carries out the mesh's actions. No
//! protocol decision is taken here: this file only moves bytes between
//! sockets, channels and the core.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use parking_lot::RwLock;

use super::command::{CallSink, Command, FaultChange, Snapshot};
use super::directory::Directory;
use super::events::EventHub;
use super::sockets::{self, Monitored, SocketOptions};
use super::spin::{Spin, SpinPermit};
use super::streams::Chunk;
use super::streams::StreamHost;
use super::waker::{WakeReceiver, Waker};
use crate::core::{
    Action, Delivery, Job, JobDone, Link, Mesh, Origin, Runner, SendFailure, Transmit,
};
use crate::error::Error;
use crate::faults::{Direction, FaultInjector, FaultPlan};
use crate::protocol::{NodeName, ReplyStatus};
use crate::security::zap;
use crate::zmq::{Context, Message, MonitorEvent, PollItem, SendFlags, Socket};

/// Calls plus handler jobs in flight at or below which the reactor counts as
/// lightly loaded, and may spin.
const LIGHT_LOAD: usize = 2;

/// Frames read from one socket per turn, so no socket can starve the others.
const READ_BATCH: usize = 256;
/// Frames of one message kept for the core (the rest are counted and dropped).
const MAX_FRAMES: usize = 4;

pub(crate) struct Reactor {
    pub ctx: Context,
    pub router: Monitored,
    /// CURVE mode: the ZAP handler's REP socket.
    pub zap: Option<Socket>,
    pub dealers: HashMap<NodeName, Monitored>,
    /// Numbers the monitors' inproc endpoints (0 is the ROUTER's).
    pub monitor_seq: u64,
    pub mesh: Mesh<CallSink>,
    pub options: SocketOptions,
    pub commands: super::queue::QueueRx<Command>,
    pub done: Receiver<JobDone>,
    pub jobs: super::workers::JobSender,
    /// The handlers, to run those declared non-blocking here.
    pub handlers: Arc<super::handlers::Registry>,
    /// The service thread's queue, for jobs of the built-in services' methods.
    pub service_jobs: Sender<Job>,
    pub waker: Arc<Waker>,
    pub wake_rx: WakeReceiver,
    pub close_requested: Arc<AtomicBool>,
    /// Close as a crash would: nothing more goes on the wire.
    pub abort: Arc<AtomicBool>,
    pub events: Arc<EventHub>,
    /// The built-in services' lossless view of the same events.
    pub membership: Arc<super::membership::Membership>,
    pub directory: Arc<RwLock<Directory>>,
    pub published_generation: Option<u64>,
    /// Fault injection, when a plan is set.
    pub faults: Option<FaultInjector<Faulted>>,
    /// Live streams and stream services.
    pub streams: StreamHost,
    /// What the node reports with the `metrics` feature (else nothing).
    pub metrics: super::metrics::NodeMetrics,
}

/// A message in the hands of the fault injector.
#[derive(Clone)]
pub(crate) enum Faulted {
    Send(Transmit),
    Receive(Received),
}

/// An inbound message, copied out of its ZeroMQ frames so it can be held.
#[derive(Clone)]
pub(crate) struct Received {
    /// `None` for the ROUTER, else the peer whose DEALER it came on.
    dealer: Option<NodeName>,
    user_id: Option<String>,
    frames: Vec<Vec<u8>>,
    total: usize,
}

/// A spin: until when, and whether anything was expected in it.
#[derive(Clone, Copy)]
struct Window {
    until: Instant,
    speculative: bool,
}

/// What a poll found readable.
#[derive(Default)]
struct Ready {
    waker: bool,
    router: bool,
    router_monitor: bool,
    zap: bool,
    dealers: Vec<NodeName>,
    dealer_monitors: Vec<NodeName>,
}

impl Reactor {
    pub(crate) fn run(mut self) {
        log::debug!("reactor of {} started", self.mesh.name());
        // Until this instant the reactor polls without blocking: work that
        // follows other work closely (a handler's reply, a caller's next
        // call) is picked up without the cost of a kernel wake-up.
        let mut window: Option<Window> = None;
        let mut permit: Option<SpinPermit> = None;
        let mut spin = Spin::new(self.options.spin);
        // Set once a close has begun: until then, messages still waiting in
        // the node for room in a peer's window may leave (and their
        // acknowledgements come in) before the PART; no command is taken.
        let mut closing: Option<Instant> = None;
        loop {
            self.publish_directory();
            let now = Instant::now();
            if let Some(w) = window.filter(|w| now >= w.until) {
                if w.speculative {
                    spin.speculated(false);
                }
                window = None;
                permit = None;
            }
            let timeout = if permit.is_some() {
                Some(Duration::ZERO)
            } else {
                self.wake_rx.before_sleep(&self.waker);
                if self.has_queued_work(closing.is_some()) {
                    Some(Duration::ZERO)
                } else {
                    let held = self.faults.as_ref().and_then(FaultInjector::poll_timeout);
                    let next = self
                        .mesh
                        .poll_timeout()
                        .into_iter()
                        .chain(held)
                        .chain(closing)
                        .min();
                    next.map(|t| t.saturating_duration_since(now))
                }
            };
            let ready = match self.wait(timeout) {
                Ok(ready) => ready,
                Err(e) => {
                    log::error!("reactor poll failed, closing node: {e}");
                    break;
                }
            };
            if ready.waker {
                self.wake_rx.drain(&self.waker);
            } else {
                self.wake_rx.stay_awake(&self.waker);
            }
            let now = Instant::now();
            if closing.is_none() && self.close_requested.load(Ordering::Acquire) {
                // What was asked before the close is carried out first (a
                // cast the caller was told is queued leaves before the
                // PART), unless the node dies as a crash would.
                if self.abort.load(Ordering::Acquire) {
                    break;
                }
                self.drain_commands(now);
                self.execute();
                // Messages behind a full window wait for the peer's
                // acknowledgements, for at most the sockets' linger.
                closing = Some(now + self.options.linger);
            }
            if let Some(until) = closing {
                let killed = self.abort.load(Ordering::Acquire);
                if killed || now >= until || !self.mesh.has_unsent() {
                    break;
                }
            }
            if ready.zap {
                self.serve_zap();
            }
            if ready.router_monitor {
                self.read_router_monitor();
            }
            for peer in &ready.dealer_monitors {
                self.read_dealer_monitor(peer, now);
            }
            if ready.router {
                self.read_router(now);
            }
            for peer in &ready.dealers {
                self.read_dealer(peer, now);
            }
            self.release_held(now);
            let mut active = self.drain_done(now);
            if closing.is_none() {
                active |= self.drain_commands(now);
            }
            // Stream work does not count as activity: spinning serves call
            // latency, and during a bulk transfer it would only take CPU from
            // the threads moving the bytes.
            self.streams.drain(&mut self.mesh, now);
            self.mesh.handle_timeout(now);
            active |= self.execute();
            self.metrics.sample(&self.mesh, now);
            // After work, under light load, spin for a window (spin.rs):
            // when a handler's result or a reply is expected, or as a scored
            // speculation that the peer just served calls again. Under load
            // the next piece of work is already queued and spinning would
            // only take the CPU from the threads producing it. A turn that
            // finds nothing does not extend the window: a long handler is
            // waited for blocking.
            if active {
                if window.take().is_some_and(|w| w.speculative) {
                    spin.speculated(true);
                }
                let (calls, jobs) = (self.mesh.pending_calls(), self.mesh.queued_handlers());
                let expected = calls + jobs > 0;
                if calls + jobs <= LIGHT_LOAD && spin.should_spin(expected) {
                    if permit.is_none() {
                        permit = SpinPermit::try_acquire();
                    }
                    window = permit.is_some().then(|| Window {
                        until: Instant::now() + spin.window(),
                        speculative: !expected,
                    });
                }
            } else if permit.is_some() {
                // Let the threads we wait for run on this core.
                std::thread::yield_now();
            }
            if window.is_none() {
                permit = None;
            }
        }
        drop(permit);
        self.shutdown();
    }

    /// Work waiting for this turn; once `closing`, commands are no longer
    /// taken and the close is already under way.
    fn has_queued_work(&self, closing: bool) -> bool {
        !self.done.is_empty()
            || self.streams.has_work()
            || (!closing
                && (!self.commands.is_empty() || self.close_requested.load(Ordering::Acquire)))
    }

    /// Polls every socket and the waker.
    fn wait(&self, timeout: Option<Duration>) -> crate::zmq::Result<Ready> {
        let mut names = Vec::with_capacity(self.dealers.len());
        let mut items = Vec::with_capacity(2 * self.dealers.len() + 4);
        items.push(PollItem::fd_readable(self.wake_rx.fd()));
        items.push(PollItem::readable(&self.router.socket));
        items.push(PollItem::readable(&self.router.monitor));
        if let Some(zap) = &self.zap {
            items.push(PollItem::readable(zap));
        }
        let fixed = items.len();
        for (name, dealer) in &self.dealers {
            names.push(name.clone());
            items.push(PollItem::readable(&dealer.socket));
            items.push(PollItem::readable(&dealer.monitor));
        }
        crate::zmq::poll(&mut items, timeout)?;
        let mut ready = Ready {
            waker: items[0].is_readable(),
            router: items[1].is_readable(),
            router_monitor: items[2].is_readable(),
            zap: self.zap.is_some() && items[3].is_readable(),
            ..Ready::default()
        };
        for (name, pair) in names.into_iter().zip(items[fixed..].chunks(2)) {
            if pair[1].is_readable() {
                ready.dealer_monitors.push(name.clone());
            }
            if pair[0].is_readable() {
                ready.dealers.push(name);
            }
        }
        Ok(ready)
    }

    fn read_router(&mut self, now: Instant) {
        let curve = self.options.curve.is_some();
        for _ in 0..READ_BATCH {
            match self.router.socket.recv_multipart(true, MAX_FRAMES) {
                Ok((frames, total)) => {
                    // The authenticated key travels with every data frame.
                    let user_id = if curve {
                        frames.get(1).and_then(|f| f.property("User-Id"))
                    } else {
                        None
                    };
                    self.receive(None, user_id, frames, total, now);
                }
                Err(e) if e.is_again() => return,
                Err(e) => {
                    log::warn!("ROUTER receive failed: {e}");
                    return;
                }
            }
        }
    }

    fn read_dealer(&mut self, peer: &NodeName, now: Instant) {
        for _ in 0..READ_BATCH {
            let Some(dealer) = self.dealers.get(peer) else {
                return;
            };
            match dealer.socket.recv_multipart(true, MAX_FRAMES) {
                Ok((frames, total)) => self.receive(Some(peer), None, frames, total, now),
                Err(e) if e.is_again() => return,
                Err(e) => {
                    log::warn!("DEALER to {peer} receive failed: {e}");
                    return;
                }
            }
        }
    }

    /// One message from the ROUTER (`dealer` is `None`) or from the DEALER
    /// to `dealer`: through the fault injector if there is one, else to the
    /// core, with stream bytes handed to their stream without a copy.
    fn receive(
        &mut self,
        dealer: Option<&NodeName>,
        user_id: Option<String>,
        mut frames: Vec<Message>,
        total: usize,
        now: Instant,
    ) {
        let parts: Vec<&[u8]> = frames.iter().map(Message::as_bytes).collect();
        // The protocol frame (a ROUTER message also has the sender's id).
        self.metrics.received(parts.last().map_or(0, |p| p.len()));
        if self.faults.is_some() {
            let peer = match dealer {
                Some(peer) => peer.to_string(),
                None => {
                    String::from_utf8_lossy(parts.first().copied().unwrap_or_default()).into_owned()
                }
            };
            let received = Received {
                dealer: dealer.cloned(),
                user_id,
                frames: owned(&parts),
                total,
            };
            self.inject(Direction::Receive, &peer, Faulted::Receive(received), now);
            return;
        }
        let origin = match dealer {
            Some(peer) => Origin::Outbound(peer),
            None => Origin::Router {
                user_id: user_id.as_deref(),
            },
        };
        let delivery = self.mesh.handle_inbound(origin, &parts, total, now);
        if let (Some(d), Some(body)) = (delivery, frames.pop()) {
            self.metrics.stream_received(d.range.len());
            self.streams.deliver(d.stream, Chunk::Frame(body, d.range));
        }
    }

    /// Answers the ZAP requests libzmq sends for CURVE handshakes on the ROUTER.
    fn serve_zap(&mut self) {
        let Some(zap_socket) = &self.zap else { return };
        for _ in 0..READ_BATCH {
            let frames = match zap_socket.recv_multipart(true, 8) {
                Ok((frames, _)) => frames,
                Err(e) if e.is_again() => return,
                Err(e) => {
                    log::warn!("ZAP handler receive failed: {e}");
                    return;
                }
            };
            let parts: Vec<&[u8]> = frames.iter().map(Message::as_bytes).collect();
            let reply = match zap::parse(&parts) {
                Ok(request) => {
                    if self.mesh.handle_zap_request(&request.key, &request.address) {
                        zap::reply(&request.request_id, 200, "OK", &request.key.to_z85())
                    } else {
                        zap::reply(&request.request_id, 400, "key not allowed", "")
                    }
                }
                Err((request_id, malformed)) => {
                    log::warn!("malformed ZAP request: {}", malformed.0);
                    zap::reply(&request_id, 500, malformed.0, "")
                }
            };
            let last = reply.len() - 1;
            for (i, frame) in reply.iter().enumerate() {
                let flags = if i < last {
                    SendFlags::MORE | SendFlags::DONTWAIT
                } else {
                    SendFlags::DONTWAIT
                };
                if let Err(e) = zap_socket.send(frame, flags) {
                    log::warn!("ZAP reply failed: {e}");
                    return;
                }
            }
        }
    }

    fn read_router_monitor(&mut self) {
        while let Some(event) = read_event(&self.router.monitor) {
            if let Some(failure) = sockets::router_failure(&event) {
                self.mesh
                    .handle_inbound_handshake_failed(&event.endpoint, failure);
            }
        }
    }

    fn read_dealer_monitor(&mut self, peer: &NodeName, now: Instant) {
        let curve = self.options.curve.is_some();
        loop {
            let Some(dealer) = self.dealers.get(peer) else {
                return;
            };
            let Some(event) = read_event(&dealer.monitor) else {
                return;
            };
            if let Some(failure) = sockets::dealer_failure(&event, curve) {
                log::debug!(
                    "handshake with {peer} at {} failed: {event:?}",
                    event.endpoint
                );
                self.mesh.handle_handshake_failed(peer, failure, now);
                // The mesh has acted on it (a CloseLink): apply that before
                // reading further events of a socket that may be gone.
                self.execute();
            }
        }
    }

    /// Hands finished jobs to the mesh; returns whether there were any.
    fn drain_done(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Ok(done) = self.done.try_recv() {
            let handlers = &self.handlers;
            self.metrics.served(&done, |m| handlers.contains(m));
            self.mesh.handle_job_done(done, now);
            any = true;
        }
        any
    }

    /// Carries out queued commands; returns whether there were any.
    fn drain_commands(&mut self, now: Instant) -> bool {
        let mut any = false;
        loop {
            match self.commands.try_recv() {
                Ok(command) => {
                    self.command(command, now);
                    any = true;
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return any,
            }
        }
    }

    fn command(&mut self, command: Command, now: Instant) {
        match command {
            Command::Connect {
                peer,
                endpoint,
                reply,
            } => {
                self.mesh
                    .handle_connect(peer.clone(), endpoint.clone(), now);
                // Open the DEALER right away so a bad endpoint is reported to
                // the caller instead of failing silently in the background.
                let result = self.execute_until_open(&peer);
                if let Err(e) = &result {
                    log::warn!("cannot connect to {peer} at {endpoint}: {e}");
                    self.mesh.handle_disconnect(&peer, now);
                }
                // The caller must find the directory as this command left it.
                self.publish_directory();
                let _ = reply.send(result);
            }
            Command::Disconnect { peer, reply } => {
                let known = self.mesh.handle_disconnect(&peer, now);
                self.execute();
                self.publish_directory();
                let _ = reply.send(known);
            }
            Command::Call {
                targets,
                method,
                args,
                deadline,
                sink,
            } => {
                if sink.completion().is_abandoned() {
                    return; // its caller gave up before it started
                }
                let watch = sink.clone();
                let id = self
                    .mesh
                    .handle_call(&targets, &method, &args, deadline, sink, now);
                // The caller may have given up meanwhile (see `Completion::abandon`).
                if let Some(id) = id.filter(|&id| !watch.completion().registered(id)) {
                    self.mesh.handle_cancel(id);
                }
            }
            Command::Cancel { id } => self.mesh.handle_cancel(id),
            Command::Cast {
                targets,
                method,
                args,
            } => {
                self.mesh.handle_cast(&targets, &method, &args, now);
            }
            Command::Query { reply } => {
                let _ = reply.send(Snapshot {
                    peers: self.mesh.peer_infos(),
                    stats: self.mesh.stats(),
                    pending_calls: self.mesh.pending_calls(),
                    queued_handlers: self.mesh.queued_handlers(),
                    memory_held: self.mesh.memory_held(),
                });
            }
            Command::Access { key, allow, reply } => {
                let listed = if allow {
                    let new = !self.mesh.allowed_keys().contains(&key);
                    self.mesh.handle_allow(key);
                    !new
                } else {
                    self.mesh.handle_revoke(&key, now)
                };
                let _ = reply.send(listed);
            }
            Command::AllowedKeys { reply } => {
                let _ = reply.send(self.mesh.allowed_keys());
            }
            Command::Faults { change, reply } => {
                self.change_faults(change);
                let _ = reply.send(self.faults.as_ref().map(FaultInjector::stats));
            }
            Command::OpenStream {
                peer,
                service,
                init,
                deadline,
                reply,
            } => {
                let opened =
                    self.streams
                        .open(&mut self.mesh, &peer, &service, &init, deadline, now);
                let _ = reply.try_send(opened);
            }
        }
    }

    /// Carries out actions until the mesh has opened the DEALER to `peer`.
    fn execute_until_open(&mut self, peer: &NodeName) -> Result<(), Error> {
        let mut result = Ok(());
        while let Some(action) = self.mesh.poll_action() {
            if let Action::OpenLink { peer: p, endpoint } = &action {
                if p == peer {
                    if let Err(e) = self.open_dealer(p, endpoint) {
                        result = Err(e);
                    }
                    continue;
                }
            }
            self.act(action);
        }
        result
    }

    /// Carries out the mesh's actions; returns whether a caller was handed a result.
    fn execute(&mut self) -> bool {
        let mut resolved = false;
        while let Some(action) = self.mesh.poll_action() {
            resolved |= matches!(action, Action::Resolve { .. });
            self.act(action);
        }
        resolved
    }

    fn act(&mut self, action: Action<CallSink>) {
        match action {
            Action::Transmit(t) => self.transmit(t),
            Action::OpenLink { peer, endpoint } => {
                if let Err(e) = self.open_dealer(&peer, &endpoint) {
                    // The attempt will time out and back off like any other.
                    log::warn!("cannot open link to {peer} at {endpoint}: {e}");
                }
            }
            Action::CloseLink { peer, flush } => {
                if let Some(dealer) = self.dealers.remove(&peer) {
                    if !flush {
                        let _ = dealer.socket.set_linger(Duration::ZERO);
                    }
                }
            }
            Action::Event(event) => {
                // Whoever sees the event must see the directory it implies.
                self.publish_directory();
                self.membership.handle_event(&event);
                self.events.publish(&event);
            }
            Action::Dispatch(job) => {
                if job.runner == Runner::Workers {
                    if let Some(handler) = self.handlers.inline(&job.method) {
                        let done = super::workers::run_inline(&*handler, job);
                        self.metrics.served(&done, |_| true);
                        self.mesh.handle_job_done(done, Instant::now());
                        return;
                    }
                }
                let sent = match job.runner {
                    Runner::Workers => self.jobs.send(job),
                    Runner::Services => self.service_jobs.send(job),
                };
                if let Err(crossbeam_channel::SendError(job)) = sent {
                    // The pool is gone (closing): refuse instead of dropping silently.
                    let outcome = job.answer(ReplyStatus::ShuttingDown, Vec::new());
                    self.mesh.handle_job_done(job.done(outcome), Instant::now());
                }
            }
            Action::Resolve {
                completion,
                index,
                outcome,
            } => {
                self.metrics.call_ended(completion.meter(), &outcome);
                completion.deliver(index, outcome);
            }
            Action::IncomingStream(incoming) => self.streams.incoming(&mut self.mesh, incoming),
            Action::Stream { id, signal } => self.streams.signal(id, signal),
        }
    }

    fn transmit(&mut self, t: Transmit) {
        if self.faults.is_some() {
            let peer = t.peer.clone();
            self.inject(
                Direction::Send,
                peer.as_str(),
                Faulted::Send(t),
                Instant::now(),
            );
        } else {
            self.send_now(t);
        }
    }

    /// Passes a message through the fault injector and delivers what comes
    /// out at once; the rest is held until `release_held`.
    fn inject(&mut self, direction: Direction, peer: &str, item: Faulted, now: Instant) {
        let Some(faults) = &mut self.faults else {
            return;
        };
        for item in faults.apply(direction, peer, item, now) {
            self.deliver(item, now);
        }
    }

    /// Delivers held messages that are due.
    fn release_held(&mut self, now: Instant) {
        let Some(faults) = &mut self.faults else {
            return;
        };
        for item in faults.take_due(now) {
            self.deliver(item, now);
        }
    }

    fn deliver(&mut self, item: Faulted, now: Instant) {
        match item {
            Faulted::Send(t) => self.send_now(t),
            Faulted::Receive(mut r) => {
                let parts: Vec<&[u8]> = r.frames.iter().map(Vec::as_slice).collect();
                let origin = match &r.dealer {
                    Some(peer) => Origin::Outbound(peer),
                    None => Origin::Router {
                        user_id: r.user_id.as_deref(),
                    },
                };
                let delivery = self.mesh.handle_inbound(origin, &parts, r.total, now);
                if let (Some(Delivery { stream, range }), Some(body)) = (delivery, r.frames.pop()) {
                    self.metrics.stream_received(range.len());
                    self.streams.deliver(stream, Chunk::Bytes(body, range));
                }
            }
        }
    }

    fn change_faults(&mut self, change: FaultChange) {
        let current = self.faults.as_ref().map(|f| f.plan().clone());
        let plan = match change {
            FaultChange::Query => return,
            FaultChange::Set(plan) => plan.map(|p| *p),
            FaultChange::Partition(peers) => {
                let mut plan = current.unwrap_or_else(|| FaultPlan::new(self.options.incarnation));
                for peer in peers {
                    plan = plan.partition(peer);
                }
                Some(plan)
            }
            FaultChange::Heal => current.map(FaultPlan::heal),
        };
        match (plan, &mut self.faults) {
            (Some(plan), Some(faults)) => faults.set_plan(plan),
            (Some(plan), None) => self.faults = Some(FaultInjector::new(plan)),
            (None, _) => {
                // Faults off: what is held is delivered now, not lost.
                if let Some(mut faults) = self.faults.take() {
                    let now = Instant::now();
                    for item in faults.take_due(now + Duration::from_secs(86_400 * 365)) {
                        self.deliver(item, now);
                    }
                }
            }
        }
    }

    fn send_now(&mut self, t: Transmit) {
        let Transmit {
            peer,
            link,
            frame,
            purpose,
        } = t;
        let bytes = frame.len();
        // On failure, the error and the frame (given back to the core,
        // which may offer it again).
        let result: Result<(), (Option<crate::zmq::Error>, Vec<u8>)> = match link {
            Link::Outbound => match self.dealers.get(&peer) {
                Some(dealer) => dealer
                    .socket
                    .send_msg(Message::from_vec(frame), SendFlags::DONTWAIT)
                    .map_err(|(e, msg)| (Some(e), msg.as_bytes().to_vec())),
                None => Err((None, frame)),
            },
            Link::Inbound => {
                let router = &self.router.socket;
                match router.send(
                    peer.as_str().as_bytes(),
                    SendFlags::MORE | SendFlags::DONTWAIT,
                ) {
                    Ok(()) => router
                        .send_msg(Message::from_vec(frame), SendFlags::DONTWAIT)
                        .map_err(|(e, msg)| (Some(e), msg.as_bytes().to_vec())),
                    Err(e) => Err((Some(e), frame)),
                }
            }
        };
        if result.is_ok() {
            self.metrics.sent(bytes, purpose);
        }
        if let Err((error, frame)) = result {
            let failure = match error {
                Some(e) if e.is_again() => SendFailure::QueueFull,
                _ => SendFailure::Unreachable,
            };
            match error {
                Some(e) => log::debug!("send to {peer} over {link:?} failed: {e}"),
                None => log::debug!("send to {peer} over {link:?} failed: no DEALER"),
            }
            self.mesh.handle_send_failed(
                &peer,
                link,
                purpose,
                failure,
                Some(frame),
                Instant::now(),
            );
        }
    }

    fn open_dealer(&mut self, peer: &NodeName, endpoint: &str) -> Result<(), Error> {
        if let Some(old) = self.dealers.remove(peer) {
            // What the replaced DEALER still queues belongs to an attempt
            // that is over (see `Action::CloseLink`).
            let _ = old.socket.set_linger(Duration::ZERO);
        }
        self.monitor_seq += 1;
        let dealer = sockets::dealer(&self.ctx, &self.options, peer, endpoint, self.monitor_seq)?;
        self.dealers.insert(peer.clone(), dealer);
        Ok(())
    }

    fn publish_directory(&mut self) {
        let generation = self.mesh.generation();
        if self.published_generation == Some(generation) {
            return;
        }
        self.published_generation = Some(generation);
        let entries = self.mesh.directory();
        self.directory.write().replace(entries);
    }

    /// Says goodbye, fails what is pending, and closes every socket.
    fn shutdown(mut self) {
        self.mesh.handle_close(Instant::now());
        if self.abort.load(Ordering::Acquire) {
            for dealer in self.dealers.values() {
                let _ = dealer.socket.set_linger(Duration::ZERO);
            }
            let _ = self.router.socket.set_linger(Duration::ZERO);
            while let Some(action) = self.mesh.poll_action() {
                if !matches!(action, Action::Transmit(_)) {
                    self.act(action);
                }
            }
        }
        self.execute();
        self.streams.close();
        while let Ok(command) = self.commands.try_recv() {
            command.refuse();
        }
        self.publish_directory();
        self.events.close();
        // PARTs were queued with the sockets' linger; closing the sockets and
        // dropping the context (last) flushes them for at most that long.
        drop(self.dealers);
        drop(self.router);
        drop(self.zap);
        log::debug!("reactor of {} stopped", self.mesh.name());
    }
}

/// The next monitor event queued on `monitor`, if any.
fn read_event(monitor: &Socket) -> Option<MonitorEvent> {
    match monitor.recv_multipart(true, 2) {
        Ok((frames, _)) => MonitorEvent::parse(&frames),
        Err(_) => None,
    }
}

fn owned(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}
