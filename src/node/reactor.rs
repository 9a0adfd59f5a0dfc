//! The reactor: one thread that owns every ZeroMQ socket of a node and drives
//! the sans-IO [`Mesh`].
//!
//! Each turn of the loop polls the ROUTER, every DEALER and the waker; feeds
//! what arrived (frames, commands from user threads, finished jobs, the
//! clock) to the mesh; then carries out the mesh's actions. No protocol
//! decision is taken here: this file only moves bytes between sockets,
//! channels and the core.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use parking_lot::RwLock;

use super::directory::Directory;
use super::events::EventHub;
use super::spin::SpinPermit;
use super::waker::{WakeReceiver, Waker};
use crate::core::{
    Action, Job, JobDone, JobOutcome, Link, Mesh, NodeStats, Origin, Outcome, PeerInfo,
    SendFailure, Transmit,
};
use crate::error::Error;
use crate::protocol::{NodeName, ReplyStatus};
use crate::zmq::{Context, Message, PollItem, SendFlags, Socket, SocketType};

/// Where a call's per-target results go: the caller's channel, and the
/// caller's slot for each target the mesh was given (when the caller settled
/// some targets itself, such as invalid names, the numbering differs).
#[derive(Clone, Debug)]
pub(crate) struct CallSink {
    pub tx: Sender<(usize, Outcome)>,
    pub slots: Option<Arc<[usize]>>,
}

impl CallSink {
    pub(crate) fn deliver(&self, index: usize, outcome: Outcome) {
        let slot = self
            .slots
            .as_ref()
            .and_then(|s| s.get(index).copied())
            .unwrap_or(index);
        // Capacity equals the number of targets and each is resolved once, so
        // this never blocks; a caller that gave up has dropped its receiver
        // and the entry is discarded.
        let _ = self.tx.try_send((slot, outcome));
    }
}

/// Work handed to the reactor by other threads.
pub(crate) enum Command {
    Connect {
        peer: NodeName,
        endpoint: String,
        reply: Sender<Result<(), Error>>,
    },
    Disconnect {
        peer: NodeName,
        reply: Sender<bool>,
    },
    Call {
        targets: Vec<NodeName>,
        method: String,
        args: Vec<u8>,
        deadline: Instant,
        sink: CallSink,
    },
    Cast {
        targets: Vec<NodeName>,
        method: String,
        args: Vec<u8>,
    },
    Query {
        reply: Sender<Snapshot>,
    },
}

impl Command {
    /// Answers a command that will never run because the node is closed.
    pub(crate) fn refuse(self) {
        match self {
            Command::Connect { reply, .. } => {
                let _ = reply.send(Err(Error::Closed));
            }
            Command::Call { targets, sink, .. } => {
                for index in 0..targets.len() {
                    sink.deliver(index, Err(crate::error::CallError::Closed));
                }
            }
            // Dropping the reply channel tells the waiter the node is gone.
            Command::Disconnect { .. } | Command::Cast { .. } | Command::Query { .. } => {}
        }
    }
}

/// The reactor's view of the node, for introspection.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    pub peers: Vec<PeerInfo>,
    pub stats: NodeStats,
    pub pending_calls: usize,
    pub queued_handlers: usize,
}

/// Socket settings derived from the node's configuration.
#[derive(Clone, Debug)]
pub(crate) struct SocketOptions {
    pub name: NodeName,
    pub high_water_mark: i32,
    /// libzmq drops a connection that sends a frame above this (a hard memory
    /// bound); frames between the configured maximum and this are dropped and
    /// counted by the core instead.
    pub hard_max_frame: i64,
    pub linger: Duration,
    /// How long the reactor keeps polling without blocking after work.
    pub spin: Duration,
}

/// Calls plus handler jobs in flight at or below which the reactor counts as
/// lightly loaded, and may spin.
const LIGHT_LOAD: usize = 2;

/// Frames read from one socket per turn, so no socket can starve the others.
const READ_BATCH: usize = 256;
/// Frames of one message kept for the core (the rest are counted and dropped).
const MAX_FRAMES: usize = 4;

pub(crate) struct Reactor {
    pub ctx: Context,
    pub router: Socket,
    pub dealers: HashMap<NodeName, Socket>,
    pub mesh: Mesh<CallSink>,
    pub options: SocketOptions,
    pub commands: Receiver<Command>,
    pub done: Receiver<JobDone>,
    pub jobs: Sender<Job>,
    pub waker: Arc<Waker>,
    pub wake_rx: WakeReceiver,
    pub close_requested: Arc<AtomicBool>,
    /// Close as a crash would: nothing more goes on the wire.
    pub abort: Arc<AtomicBool>,
    pub events: Arc<EventHub>,
    pub directory: Arc<RwLock<Directory>>,
    pub published_generation: Option<u64>,
}

impl Reactor {
    pub(crate) fn run(mut self) {
        log::debug!("reactor of {} started", self.mesh.name());
        // Until this instant the reactor polls without blocking: work that
        // follows other work closely (a handler's reply, a caller's next
        // call) is picked up without the cost of a kernel wake-up.
        let mut spin_until = Instant::now();
        let mut permit: Option<SpinPermit> = None;
        loop {
            self.publish_directory();
            let now = Instant::now();
            if now >= spin_until {
                permit = None;
            }
            let timeout = if permit.is_some() {
                Some(Duration::ZERO)
            } else {
                self.wake_rx.before_sleep(&self.waker);
                if self.has_queued_work() {
                    Some(Duration::ZERO)
                } else {
                    self.mesh
                        .poll_timeout()
                        .map(|t| t.saturating_duration_since(now))
                }
            };
            let (woken, router_ready, ready_dealers) = match self.wait(timeout) {
                Ok(ready) => ready,
                Err(e) => {
                    log::error!("reactor poll failed, closing node: {e}");
                    break;
                }
            };
            if woken {
                self.wake_rx.drain(&self.waker);
            } else {
                self.wake_rx.stay_awake(&self.waker);
            }
            let now = Instant::now();
            if self.close_requested.load(Ordering::Acquire) {
                break;
            }
            if router_ready {
                self.read_router(now);
            }
            for peer in ready_dealers {
                self.read_dealer(&peer, now);
            }
            let mut active = self.drain_done(now);
            active |= self.drain_commands(now);
            self.mesh.handle_timeout(now);
            active |= self.execute();
            // Spin only under light load, when more work is due within
            // microseconds: a handler is running here, or a caller was just
            // served and typically calls again at once. Under load the next
            // piece of work is already queued and spinning would only take
            // the CPU from the threads producing it.
            let in_flight = self.mesh.pending_calls() + self.mesh.queued_handlers();
            let expecting = in_flight <= LIGHT_LOAD && (active || self.mesh.queued_handlers() > 0);
            if expecting && !self.options.spin.is_zero() {
                spin_until = Instant::now() + self.options.spin;
                if permit.is_none() {
                    permit = SpinPermit::try_acquire();
                }
            } else if permit.is_some() {
                // Let the threads we wait for run on this core.
                std::thread::yield_now();
            }
        }
        drop(permit);
        self.shutdown();
    }

    fn has_queued_work(&self) -> bool {
        !self.commands.is_empty()
            || !self.done.is_empty()
            || self.close_requested.load(Ordering::Acquire)
    }

    /// Polls every socket and the waker; returns whether the waker, the
    /// ROUTER and which DEALERs are readable.
    fn wait(&self, timeout: Option<Duration>) -> crate::zmq::Result<(bool, bool, Vec<NodeName>)> {
        let mut names = Vec::with_capacity(self.dealers.len());
        let mut items = Vec::with_capacity(self.dealers.len() + 2);
        items.push(PollItem::fd_readable(self.wake_rx.fd()));
        items.push(PollItem::readable(&self.router));
        for (name, socket) in &self.dealers {
            names.push(name.clone());
            items.push(PollItem::readable(socket));
        }
        crate::zmq::poll(&mut items, timeout)?;
        let (woken, router_ready) = (items[0].is_readable(), items[1].is_readable());
        let ready = names
            .into_iter()
            .zip(&items[2..])
            .filter(|(_, i)| i.is_readable())
            .map(|(n, _)| n)
            .collect();
        Ok((woken, router_ready, ready))
    }

    fn read_router(&mut self, now: Instant) {
        for _ in 0..READ_BATCH {
            match self.router.recv_multipart(true, MAX_FRAMES) {
                Ok((frames, total)) => {
                    let parts: Vec<&[u8]> = frames.iter().map(Message::as_bytes).collect();
                    self.mesh.handle_inbound(Origin::Router, &parts, total, now);
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
            let Some(socket) = self.dealers.get(peer) else {
                return;
            };
            match socket.recv_multipart(true, MAX_FRAMES) {
                Ok((frames, total)) => {
                    let parts: Vec<&[u8]> = frames.iter().map(Message::as_bytes).collect();
                    self.mesh
                        .handle_inbound(Origin::Outbound(peer), &parts, total, now);
                }
                Err(e) if e.is_again() => return,
                Err(e) => {
                    log::warn!("DEALER to {peer} receive failed: {e}");
                    return;
                }
            }
        }
    }

    /// Hands finished jobs to the mesh; returns whether there were any.
    fn drain_done(&mut self, now: Instant) -> bool {
        let mut any = false;
        while let Ok(done) = self.done.try_recv() {
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
                let _ = reply.send(result);
            }
            Command::Disconnect { peer, reply } => {
                let _ = reply.send(self.mesh.handle_disconnect(&peer, now));
            }
            Command::Call {
                targets,
                method,
                args,
                deadline,
                sink,
            } => {
                self.mesh
                    .handle_call(&targets, &method, &args, deadline, sink, now);
            }
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
                });
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
                if let Some(socket) = self.dealers.remove(&peer) {
                    if !flush {
                        let _ = socket.set_linger(Duration::ZERO);
                    }
                }
            }
            Action::Event(event) => {
                // Whoever sees the event must see the directory it implies.
                self.publish_directory();
                self.events.publish(&event);
            }
            Action::Dispatch(job) => {
                if let Err(crossbeam_channel::SendError(job)) = self.jobs.send(job) {
                    // The pool is gone (closing): refuse instead of dropping silently.
                    let outcome = match job.request_id {
                        Some(_) => JobOutcome::Reply(ReplyStatus::ShuttingDown, Vec::new()),
                        None => JobOutcome::CastDone,
                    };
                    let done = JobDone {
                        peer: job.peer,
                        incarnation: job.incarnation,
                        link: job.link,
                        request_id: job.request_id,
                        outcome,
                    };
                    self.mesh.handle_job_done(done, Instant::now());
                }
            }
            Action::Resolve {
                completion,
                index,
                outcome,
            } => completion.deliver(index, outcome),
        }
    }

    fn transmit(&mut self, t: Transmit) {
        let result = match t.link {
            Link::Outbound => match self.dealers.get(&t.peer) {
                Some(socket) => socket
                    .send_msg(Message::from_vec(t.frame), SendFlags::DONTWAIT)
                    .map_err(|(e, _)| e),
                None => {
                    self.mesh.handle_send_failed(
                        &t.peer,
                        t.link,
                        t.request_id,
                        SendFailure::Unreachable,
                        Instant::now(),
                    );
                    return;
                }
            },
            Link::Inbound => self
                .router
                .send(
                    t.peer.as_str().as_bytes(),
                    SendFlags::MORE | SendFlags::DONTWAIT,
                )
                .and_then(|()| {
                    self.router
                        .send_msg(Message::from_vec(t.frame), SendFlags::DONTWAIT)
                        .map_err(|(e, _)| e)
                }),
        };
        if let Err(e) = result {
            let failure = if e.is_again() {
                SendFailure::QueueFull
            } else {
                SendFailure::Unreachable
            };
            log::debug!("send to {} over {:?} failed: {e}", t.peer, t.link);
            self.mesh
                .handle_send_failed(&t.peer, t.link, t.request_id, failure, Instant::now());
        }
    }

    fn open_dealer(&mut self, peer: &NodeName, endpoint: &str) -> Result<(), Error> {
        if let Some(old) = self.dealers.remove(peer) {
            // What the replaced DEALER still queues belongs to an attempt
            // that is over (see `Action::CloseLink`).
            let _ = old.set_linger(Duration::ZERO);
        }
        let o = &self.options;
        let socket = self.ctx.socket(SocketType::Dealer)?;
        socket.set_routing_id(o.name.as_str().as_bytes())?;
        socket.set_linger(o.linger)?;
        socket.set_sndhwm(o.high_water_mark)?;
        socket.set_rcvhwm(o.high_water_mark)?;
        socket.set_maxmsgsize(o.hard_max_frame)?;
        socket.set_reconnect_ivl(Duration::from_millis(100))?;
        if endpoint.starts_with("tcp://[") {
            socket.set_ipv6(true)?;
        }
        socket.connect(endpoint)?;
        self.dealers.insert(peer.clone(), socket);
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
            for socket in self.dealers.values() {
                let _ = socket.set_linger(Duration::ZERO);
            }
            let _ = self.router.set_linger(Duration::ZERO);
            while let Some(action) = self.mesh.poll_action() {
                if !matches!(action, Action::Transmit(_)) {
                    self.act(action);
                }
            }
        }
        self.execute();
        while let Ok(command) = self.commands.try_recv() {
            command.refuse();
        }
        self.publish_directory();
        self.events.close();
        // PARTs were queued with the sockets' linger; closing the sockets and
        // dropping the context (last) flushes them for at most that long.
        drop(self.dealers);
        drop(self.router);
        log::debug!("reactor of {} stopped", self.mesh.name());
    }
}
