//! The I/O shell around the core: the [`Node`] handle, its builder, the
//! reactor thread and the worker pool.

mod builder;
mod call;
mod command;
mod completion;
mod context;
pub(crate) mod deadlines;
mod directory;
mod events;
mod handlers;
pub(crate) mod membership;
mod metrics;
mod queue;
mod reactor;
pub(crate) mod services;
mod sockets;
mod spin;
mod streams;
mod waker;
mod workers;

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{TrySendError, bounded};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use builder::NodeBuilder;
pub use call::{CallFuture, CallOneFuture, PendingCall, Response, Responses, To};
pub use context::Context;
pub use events::Events;
pub use handlers::{CallContext, HandlerError};
pub use workers::HandlerPool;

use crate::core::{NodeStats, PeerEvent, PeerInfo, PeerState};
use crate::error::{CallError, Error, Side};
#[cfg(feature = "testkit")]
use crate::faults::{FaultPlan, FaultStats};
use crate::mailbox;
use crate::protocol::{MethodName, NodeName};
use crate::security::{Keypair, PublicKey};
#[cfg(feature = "testkit")]
use command::FaultChange;
use command::{Command, Snapshot};
pub(crate) use command::{StreamCommand, StreamTx};
use completion::{CallSink, Completion};
use directory::Directory;
use events::EventHub;
use handlers::Registry;
pub(crate) use handlers::encode;
pub(crate) use streams::{Service, Shared};
use waker::Waker;
use workers::WorkerPool;

/// The reactor's answer to an open: the stream's shared state, or why not.
pub(crate) type StreamOpened = Result<Arc<Shared>, crate::StreamError>;

/// How long introspection and `connect` wait for the reactor to answer.
pub(crate) const REACTOR_ANSWER: Duration = Duration::from_secs(5);

/// A running node of the mesh. Cheap to clone; every clone is the same node.
///
/// `Node` is `Send + Sync`: any thread may call, cast, register or connect.
/// The node closes when [`Node::close`] is called or the last clone is dropped.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Running {
    reactor: JoinHandle<()>,
    workers: WorkerPool,
}

pub(crate) struct Inner {
    name: NodeName,
    incarnation: u64,
    network: String,
    endpoints: Vec<String>,
    commands: queue::QueueTx<Command>,
    /// A second receiver, to answer commands that arrive after the reactor stopped.
    leftovers: queue::QueueRx<Command>,
    /// Set once the reactor thread has ended: from then on nobody else
    /// takes commands from the queue.
    reactor_gone: AtomicBool,
    waker: Arc<Waker>,
    close_requested: Arc<AtomicBool>,
    /// Set by `kill` (test support) before closing.
    #[cfg_attr(not(feature = "testkit"), allow(dead_code))]
    abort: Arc<AtomicBool>,
    registry: Arc<Registry>,
    events: Arc<EventHub>,
    event_capacity: usize,
    directory: Arc<RwLock<Directory>>,
    running: Mutex<Option<Running>>,
    shutdown_grace: Duration,
    call_timeout: Duration,
    /// The largest message this node sends or takes (a cast over it is refused).
    max_message_size: usize,
    /// The node made its own ZeroMQ context (no `NodeBuilder::context`), so
    /// no other node can be reached over `inproc://`.
    own_context: bool,
    /// CURVE mode: this node's public key.
    public_key: Option<PublicKey>,
    /// The built-in services running on the node (channels, ...).
    services: services::Services,
    /// What the services learn of sessions beginning and ending.
    membership: Arc<membership::Membership>,
    /// Stream services, by name.
    stream_services: Arc<streams::Services>,
    /// Where streams opened here send their commands.
    stream_tx: StreamTx,
}

/// A reference to a node that does not keep it open (see [`Node::downgrade`]).
#[derive(Clone, Debug)]
pub struct WeakNode(std::sync::Weak<Inner>);

impl WeakNode {
    /// The node, if a handle to it still exists.
    pub fn upgrade(&self) -> Option<Node> {
        self.0.upgrade().map(|inner| Node { inner })
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Inner({})", self.name)
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.inner.name)
            .field(
                "incarnation",
                &format_args!("{:016x}", self.inner.incarnation),
            )
            .field("endpoints", &self.inner.endpoints)
            .finish()
    }
}

impl Node {
    /// Starts configuring a node called `name` (its routing id: 1 to 255
    /// bytes of printable UTF-8).
    pub fn builder(name: impl Into<String>) -> NodeBuilder {
        NodeBuilder::new(name)
    }

    /// Starts configuring a CURVE node: its name is `keys`' public key, and
    /// every socket runs CURVE with `keys` (see [`NodeBuilder::curve`]).
    pub fn secure_builder(keys: &Keypair) -> NodeBuilder {
        NodeBuilder::new(keys.public().to_z85()).curve(keys.clone())
    }

    /// In CURVE mode, this node's public key (its name, decoded).
    pub fn public_key(&self) -> Option<PublicKey> {
        self.inner.public_key
    }

    /// CURVE mode: lets `key` connect from now on. Returns whether it was
    /// already allowed.
    pub fn allow_key(&self, key: &PublicKey) -> Result<bool, Error> {
        self.access(key, true)
    }

    /// CURVE mode: stops `key` from connecting. New connections with it are
    /// refused at the handshake; a peer with it that dialled this node loses
    /// its session at once and its JOINs are refused. Returns whether it was
    /// on the allow-list.
    pub fn revoke_key(&self, key: &PublicKey) -> Result<bool, Error> {
        self.access(key, false)
    }

    /// CURVE mode: the allow-list, sorted.
    pub fn allowed_keys(&self) -> Result<Vec<PublicKey>, Error> {
        if self.inner.public_key.is_none() {
            return Err(Error::NotCurve);
        }
        let (reply, answer) = bounded(1);
        self.send_command(Command::AllowedKeys { reply })?;
        answer
            .recv_timeout(REACTOR_ANSWER)
            .map_err(|_| Error::Closed)
    }

    fn access(&self, key: &PublicKey, allow: bool) -> Result<bool, Error> {
        if self.inner.public_key.is_none() {
            return Err(Error::NotCurve);
        }
        let (reply, answer) = bounded(1);
        self.send_command(Command::Access {
            key: *key,
            allow,
            reply,
        })?;
        answer
            .recv_timeout(REACTOR_ANSWER)
            .map_err(|_| Error::Closed)
    }

    /// A reference that does not keep the node open.
    pub fn downgrade(&self) -> WeakNode {
        WeakNode(Arc::downgrade(&self.inner))
    }

    /// The built-in service `name`, started with `start` if this is its
    /// first use (see [`services`]).
    pub(crate) fn service<S, F>(&self, name: &'static str, start: F) -> Result<Arc<S>, Error>
    where
        S: services::BuiltIn,
        F: FnOnce(&services::Host<'_>) -> Result<Arc<S>, Error>,
    {
        self.inner.services.start(self, name, start)
    }

    /// The timeout of calls made without one (see [`NodeBuilder::call_timeout`]).
    pub fn call_timeout(&self) -> Duration {
        self.inner.call_timeout
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        self.inner.name.as_str()
    }

    /// This start's incarnation: a random value that tells restarts apart.
    pub fn incarnation(&self) -> u64 {
        self.inner.incarnation
    }

    /// The network name.
    pub fn network(&self) -> &str {
        &self.inner.network
    }

    /// The bound listen endpoints, with wildcard ports resolved
    /// (`tcp://127.0.0.1:*` becomes `tcp://127.0.0.1:41234`).
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// The first bound endpoint, if any: the address to give to peers.
    pub fn endpoint(&self) -> Option<&str> {
        self.inner.endpoints.first().map(String::as_str)
    }

    /// Registers `handler` under `method`, replacing any previous one.
    ///
    /// The handler receives the call's context (who called, request id) and
    /// the arguments decoded from MessagePack into `A`; its `Ok` value is sent
    /// back encoded as MessagePack, its `Err` as [`CallError::Remote`].
    /// Arguments that do not decode into `A` are answered with
    /// [`CallError::BadArguments`] without calling the handler, and a panic in
    /// the handler becomes a remote error: neither harms the node. Casts to
    /// `method` run the same handler and discard its result.
    pub fn register<A, R, F>(&self, method: &str, handler: F) -> Result<(), Error>
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(&CallContext, A) -> Result<R, HandlerError> + Send + Sync + 'static,
    {
        user_method(method)?;
        self.inner.registry.insert(method, handler);
        Ok(())
    }

    /// Registers a handler for `method` that runs on the node's reactor
    /// thread, at once, instead of on a worker: for handlers that only
    /// compute and return (no calls, no I/O, no waiting on locks), it saves
    /// two thread hand-offs per request. It must not block: while it runs,
    /// nothing else of the node moves, heartbeats included. A panic in it is
    /// answered as a handler error and the node goes on; it counts against
    /// `max_queued_handlers` for the instant it runs, and it is not limited
    /// by `workers`.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), bilateral::Error> {
    /// # let node = bilateral::Node::builder("a").start()?;
    /// node.register_inline("Arith.Add", |_ctx, (a, b): (i64, i64)| Ok(a + b))?;
    /// # Ok(()) }
    /// ```
    pub fn register_inline<A, R, F>(&self, method: &str, handler: F) -> Result<(), Error>
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(&CallContext, A) -> Result<R, HandlerError> + Send + Sync + 'static,
    {
        user_method(method)?;
        self.inner.registry.insert_inline(method, handler);
        Ok(())
    }

    /// Registers an async handler for `method`: an `async` closure (or a
    /// function returning a future) from the call's context and its typed
    /// arguments to a typed reply.
    ///
    /// It runs on the tokio runtime current when it is registered (which
    /// this method must be called from): a worker decodes the arguments and
    /// starts the future there, so awaiting — another call, a timer, I/O —
    /// holds no worker thread. Until it finishes it counts as one of the
    /// node's `max_queued_handlers`, like a blocking handler. A panic in it
    /// is answered as a handler error, as for a blocking one. Needs the
    /// `tokio` feature.
    #[cfg(feature = "tokio")]
    pub fn register_async<A, R, F, Fut>(&self, method: &str, handler: F) -> Result<(), Error>
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(CallContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        user_method(method)?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::InvalidConfig(
                "register_async needs a tokio runtime: call it from within one".into(),
            )
        })?;
        self.inner.registry.insert_async(method, runtime, handler);
        Ok(())
    }

    /// Removes the handler of `method`; returns whether there was one.
    /// The built-in services' methods (`bilateral.…`) cannot be removed.
    pub fn unregister(&self, method: &str) -> bool {
        crate::protocol::reserved_service(method).is_none() && self.inner.registry.remove(method)
    }

    /// Where streams opened here send their commands.
    pub(crate) fn stream_tx(&self) -> &StreamTx {
        &self.inner.stream_tx
    }

    /// The node's stream services.
    pub(crate) fn stream_table(&self) -> &streams::Services {
        &self.inner.stream_services
    }

    /// Asks the reactor to open a stream; its answer comes in the mailbox.
    pub(crate) fn request_stream(
        &self,
        peer: NodeName,
        service: &str,
        init: Vec<u8>,
        deadline: Instant,
    ) -> Result<mailbox::Receiver<StreamOpened>, crate::StreamError> {
        let (reply, answer) = mailbox::mailbox(1);
        self.send_command(Command::OpenStream {
            peer,
            service: service.to_string(),
            init,
            deadline,
            reply,
        })
        .map_err(|e| match e {
            Error::Overloaded(_) => crate::StreamError::Overloaded(Side::Local),
            _ => crate::StreamError::Closed,
        })?;
        Ok(answer)
    }

    /// The registered method names, sorted.
    pub fn methods(&self) -> Vec<String> {
        self.inner.registry.methods()
    }

    /// Dials `peer` at `endpoint` and keeps it joined: JOIN now, heartbeats
    /// once joined, rejoin with exponential backoff whenever it is lost, for
    /// as long as the node runs or until [`Node::disconnect`].
    ///
    /// Returns once the link is open (not joined: see [`Node::wait_for_peer`]).
    /// Fails for an invalid name or endpoint, or for this node's own name,
    /// and for an `inproc://` endpoint when the node has a ZeroMQ context of
    /// its own ([`NodeBuilder::context`]: only nodes sharing one reach each
    /// other over `inproc://`).
    pub fn connect(&self, peer: &str, endpoint: &str) -> Result<(), Error> {
        let peer = node_name(peer)?;
        if peer == self.inner.name {
            return Err(Error::SelfConnect);
        }
        if self.inner.public_key.is_some() {
            // In CURVE mode the peer's name is the key it must prove it holds.
            PublicKey::from_z85(peer.as_str())?;
        }
        if self.inner.own_context && endpoint.starts_with("inproc://") {
            // It would only ever wait: inproc endpoints live in one context.
            return Err(Error::InvalidConfig(format!(
                "{endpoint}: inproc:// reaches only nodes that share a ZeroMQ context; \
                 start both with NodeBuilder::context(Context::shared()?)"
            )));
        }
        let (reply, answer) = bounded(1);
        self.send_command(Command::Connect {
            peer,
            endpoint: endpoint.to_string(),
            reply,
        })?;
        answer
            .recv_timeout(REACTOR_ANSWER)
            .map_err(|_| Error::Closed)?
    }

    /// Says goodbye to `peer` (PART), ends the session, stops dialling it.
    pub fn disconnect(&self, peer: &str) -> Result<(), Error> {
        let name = node_name(peer)?;
        let (reply, answer) = bounded(1);
        self.send_command(Command::Disconnect { peer: name, reply })?;
        match answer.recv_timeout(REACTOR_ANSWER) {
            Ok(true) => Ok(()),
            Ok(false) if !self.is_closed() => Err(Error::UnknownPeer(peer.to_string())),
            _ => Err(Error::Closed),
        }
    }

    /// Waits until `peer` is in session.
    ///
    /// Fails with [`Error::Rejected`] as soon as the peer refuses a join
    /// attempt during the wait (the node keeps retrying in the background),
    /// and at the deadline with [`Error::Rejected`] if the last attempt before
    /// it was refused, [`Error::Timeout`] otherwise.
    pub fn wait_for_peer(&self, peer: &str, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        // The subscription starts with the sessions already open.
        let events = self.events();
        loop {
            let received = events.recv_deadline(deadline);
            if let Some(done) = peer_wait_step(&self.downgrade(), peer, received) {
                return done;
            }
        }
    }

    /// [`Node::wait_for_peer`] as a future; it does not keep the node open.
    pub fn wait_for_peer_async(
        &self,
        peer: &str,
        timeout: Duration,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'static + use<> {
        let deadline = Instant::now() + timeout;
        let (events, node, peer) = (self.events(), self.downgrade(), peer.to_string());
        async move {
            loop {
                let received = std::future::poll_fn(|cx| events.poll_deadline(cx, deadline)).await;
                if let Some(done) = peer_wait_step(&node, &peer, received) {
                    return done;
                }
            }
        }
    }

    /// Calls `method` on the peers in `to` and waits for every result.
    ///
    /// Returns one entry per targeted peer: its reply, or why there is none.
    /// Returns as soon as every peer has answered or is known not to, and at
    /// the latest after `timeout`. Fails as a whole only for local reasons:
    /// an invalid method name, arguments that cannot be encoded, a closed node.
    pub fn call<A, R>(
        &self,
        to: impl Into<To>,
        method: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<Responses<R>, Error>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        Ok(self.start_call(to, method, args, timeout)?.wait())
    }

    /// Calls `method` on one peer and returns its reply or why there is none.
    pub fn call_one<A, R>(
        &self,
        peer: &str,
        method: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<R, CallError>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        one_result(self.call(peer, method, args, timeout))
    }

    /// [`Node::call`] as a future: the same results, the same deadline, on
    /// any async runtime, without holding a thread while it waits. The
    /// arguments are encoded at once, so the future borrows nothing.
    pub fn call_async<A, R>(
        &self,
        to: impl Into<To>,
        method: &str,
        args: &A,
        timeout: Duration,
    ) -> CallFuture<R>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        CallFuture::new(self.start_call(to, method, args, timeout))
    }

    /// [`Node::call_one`] as a future (see [`Node::call_async`]).
    pub fn call_one_async<A, R>(
        &self,
        peer: &str,
        method: &str,
        args: &A,
        timeout: Duration,
    ) -> CallOneFuture<R>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        CallOneFuture::new(self.call_async(peer, method, args, timeout))
    }

    /// Starts a call and returns at once: a [`PendingCall`] to
    /// [`wait`](PendingCall::wait) on or to await. Use it to keep many calls
    /// in flight from one thread or task.
    pub fn start_call<A, R>(
        &self,
        to: impl Into<To>,
        method: &str,
        args: &A,
        timeout: Duration,
    ) -> Result<PendingCall<R>, Error>
    where
        A: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let deadline = Instant::now() + timeout;
        MethodName::new(method).map_err(|reason| Error::InvalidName {
            name: method.to_string(),
            reason,
        })?;
        let args = handlers::encode(args).map_err(Error::Encode)?;
        let peers: Vec<String> = match to.into() {
            To::All => self
                .inner
                .directory
                .read()
                .active()
                .iter()
                .map(|n| n.to_string())
                .collect(),
            To::Peers(names) => names,
        };
        let mut slots = vec![None; peers.len()];
        // Names that cannot exist are settled here; the rest go to the reactor.
        let mut targets = Vec::with_capacity(peers.len());
        let mut indices = Vec::with_capacity(peers.len());
        for (i, peer) in peers.iter().enumerate() {
            match NodeName::new(peer) {
                Ok(name) => {
                    targets.push(name);
                    indices.push(i);
                }
                Err(_) => slots[i] = Some(Err(CallError::UnknownPeer)),
            }
        }
        let remapped = indices.len() != peers.len();
        let completion = Completion::new(slots);
        let pending = PendingCall {
            peers,
            completion: completion.clone(),
            deadline,
            node: Arc::downgrade(&self.inner),
            finished: false,
            _reply: PhantomData,
        };
        if targets.is_empty() {
            return Ok(pending);
        }
        let sink = CallSink::new(
            completion,
            remapped.then(|| Arc::from(indices.clone())),
            method,
        );
        let command = Command::Call {
            targets,
            method: method.to_string(),
            args,
            deadline,
            sink: sink.clone(),
        };
        match self.send_command(command) {
            Ok(()) => Ok(pending),
            Err(Error::Closed) => Err(Error::Closed),
            Err(_) => {
                for i in 0..indices.len() {
                    sink.deliver(i, Err(CallError::Overloaded(Side::Local)));
                }
                Ok(pending)
            }
        }
    }

    /// The caller of call `id` stopped waiting: the reactor forgets it.
    pub(crate) fn cancel_call(&self, id: u64) {
        if let Err(e) = self.send_command(Command::Cancel { id }) {
            // The reactor's own expiry ends the call at its deadline instead.
            log::debug!("cannot cancel call {id}: {e}");
        }
    }

    /// Sends a one-way call to the peers in `to`; nothing comes back.
    ///
    /// Returns how many peers it was queued for (those in session). Delivery
    /// is best effort: a cast to a peer that is lost on the way is gone, and
    /// so is one over the receiver's `max_message_size`. A cast over this
    /// node's own `max_message_size` fails with [`Error::TooLarge`].
    pub fn cast<A>(&self, to: impl Into<To>, method: &str, args: &A) -> Result<usize, Error>
    where
        A: Serialize + ?Sized,
    {
        self.cast_checked(to, method, args, true)
    }

    /// A built-in service's cast: not held to this node's own
    /// `max_message_size` (a replication page goes to every peer and each
    /// receiver applies its own limit, as for any frame).
    pub(crate) fn service_cast<A>(
        &self,
        to: impl Into<To>,
        method: &str,
        args: &A,
    ) -> Result<usize, Error>
    where
        A: Serialize + ?Sized,
    {
        self.cast_checked(to, method, args, false)
    }

    fn cast_checked<A>(
        &self,
        to: impl Into<To>,
        method: &str,
        args: &A,
        size_checked: bool,
    ) -> Result<usize, Error>
    where
        A: Serialize + ?Sized,
    {
        MethodName::new(method).map_err(|reason| Error::InvalidName {
            name: method.to_string(),
            reason,
        })?;
        let args = handlers::encode(args).map_err(Error::Encode)?;
        let size = crate::protocol::Message::Cast(crate::protocol::Cast {
            method,
            args: &args,
        })
        .frame_len();
        if size_checked && size > self.inner.max_message_size {
            return Err(Error::TooLarge {
                size,
                limit: self.inner.max_message_size,
            });
        }
        let targets: Vec<NodeName> = {
            let directory = self.inner.directory.read();
            match to.into() {
                To::All => directory.active(),
                To::Peers(names) => names
                    .iter()
                    .filter(|n| directory.state(n) == Some(PeerState::Active))
                    .filter_map(|n| NodeName::new(n).ok())
                    .collect(),
            }
        };
        let count = targets.len();
        if count > 0 {
            self.send_command(Command::Cast {
                targets,
                method: method.to_string(),
                args,
            })?;
        }
        Ok(count)
    }

    /// Subscribes to peer events: first a [`PeerEvent::Joined`] for each peer
    /// in session now, then every event from now on (see [`Events`]).
    pub fn events(&self) -> Events {
        self.inner.events.subscribe(self.inner.event_capacity)
    }

    /// Hands an event of a built-in service to the application's subscribers.
    pub(crate) fn publish_event(&self, event: &PeerEvent) {
        self.inner.events.publish(event);
    }

    /// Events dropped because a subscriber's queue was full.
    pub fn events_dropped(&self) -> u64 {
        self.inner.events.dropped()
    }

    /// The names of the peers in session, sorted.
    pub fn active_connections(&self) -> Vec<String> {
        self.inner
            .directory
            .read()
            .active()
            .iter()
            .map(|n| n.to_string())
            .collect()
    }

    /// How many peers are in session.
    pub fn connection_count(&self) -> usize {
        self.inner.directory.read().active_count()
    }

    /// The state of a peer (without asking the reactor).
    pub fn peer_state(&self, peer: &str) -> Option<PeerState> {
        self.inner.directory.read().state(peer)
    }

    /// Detailed state and counters of one peer.
    pub fn peer_info(&self, peer: &str) -> Option<PeerInfo> {
        self.snapshot()
            .ok()?
            .peers
            .into_iter()
            .find(|p| p.name.as_str() == peer)
    }

    /// Detailed state and counters of every known peer, sorted by name.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.snapshot().map(|s| s.peers).unwrap_or_default()
    }

    /// Node-wide counters (messages dropped by reason, late replies, ...).
    pub fn stats(&self) -> NodeStats {
        let mut stats = self.snapshot().map(|s| s.stats).unwrap_or_default();
        stats.services = self.inner.services.stats();
        stats
    }

    /// Calls awaiting replies and handler jobs queued or running.
    pub fn load(&self) -> (usize, usize) {
        self.snapshot()
            .map_or((0, 0), |s| (s.pending_calls, s.queued_handlers))
    }

    /// Bytes this node holds for its peers now, against
    /// [`NodeBuilder::max_memory`] (see the README's "Hostile input";
    /// [`PeerInfo::memory`] has each peer's part).
    pub fn memory_held(&self) -> usize {
        self.snapshot().map_or(0, |s| s.memory_held)
    }

    fn snapshot(&self) -> Result<Snapshot, Error> {
        let (reply, answer) = bounded(1);
        self.send_command(Command::Query { reply })?;
        answer
            .recv_timeout(REACTOR_ANSWER)
            .map_err(|_| Error::Closed)
    }

    /// Whether the node has been closed.
    pub fn is_closed(&self) -> bool {
        self.inner.close_requested.load(Ordering::Acquire)
    }

    /// Closes the node: what was asked of it before (casts, calls) is
    /// handed to the mesh first, so a queued cast leaves before the PART
    /// that goes to every peer; then every pending call fails with
    /// [`CallError::Closed`], every socket is closed on the reactor thread,
    /// and the threads are joined (handlers still running after the shutdown
    /// grace are left to finish on their own). Idempotent; also done when the
    /// last clone is dropped.
    pub fn close(&self) {
        self.inner.close();
    }

    #[cfg(feature = "testkit")]
    /// Replaces the fault plan (`None`: faults off; messages held back for a
    /// delay are then delivered at once). See [`crate::faults`].
    pub fn set_faults(&self, plan: Option<FaultPlan>) -> Result<(), Error> {
        if plan.as_ref().is_some_and(|p| !p.is_valid()) {
            return Err(Error::InvalidConfig(
                "fault fractions must be within 0.0..=1.0".into(),
            ));
        }
        self.fault_command(FaultChange::Set(plan.map(Box::new)))
            .map(|_| ())
    }

    #[cfg(feature = "testkit")]
    /// Cuts this node off from `peers`, both ways, until [`Node::heal`]:
    /// nothing is sent to them and what they send is dropped on arrival, as
    /// in a network partition. Other faults of the plan are kept.
    pub fn partition<I, S>(&self, peers: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let peers = peers.into_iter().map(Into::into).collect();
        self.fault_command(FaultChange::Partition(peers))
            .map(|_| ())
    }

    #[cfg(feature = "testkit")]
    /// Removes every partition set by [`Node::partition`] or the fault plan.
    pub fn heal(&self) -> Result<(), Error> {
        self.fault_command(FaultChange::Heal).map(|_| ())
    }

    #[cfg(feature = "testkit")]
    /// What fault injection has done so far, if a plan is set.
    pub fn fault_stats(&self) -> Option<FaultStats> {
        self.fault_command(FaultChange::Query).ok().flatten()
    }

    #[cfg(feature = "testkit")]
    fn fault_command(&self, change: FaultChange) -> Result<Option<FaultStats>, Error> {
        let (reply, answer) = bounded(1);
        self.send_command(Command::Faults { change, reply })?;
        answer
            .recv_timeout(REACTOR_ANSWER)
            .map_err(|_| Error::Closed)
    }

    #[cfg(feature = "testkit")]
    /// Stops the node as a crash would: no PART, peers find out by silence
    /// (or by the next incarnation). Meant for tests of failure handling; the
    /// local side still fails pending calls with [`CallError::Closed`] and
    /// joins its threads.
    pub fn kill(&self) {
        self.inner.abort.store(true, Ordering::Release);
        self.inner.close();
    }

    fn send_command(&self, command: Command) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        match self.inner.commands.try_send(command) {
            Ok(()) => {
                self.inner.waker.wake();
                if self.inner.reactor_gone.load(Ordering::Acquire) {
                    // The reactor ended while we were queueing: nobody else
                    // will answer what is left in the queue. (While it runs,
                    // even closing, it carries out what is queued.)
                    self.inner.refuse_leftovers();
                }
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                Err(Error::Overloaded("the node's command queue is full"))
            }
            Err(TrySendError::Disconnected(_)) => Err(Error::Closed),
        }
    }
}

impl Inner {
    fn close(&self) {
        let Some(running) = self.running.lock().take() else {
            return;
        };
        self.close_requested.store(true, Ordering::Release);
        self.waker.wake();
        if running.reactor.thread().id() != std::thread::current().id() {
            let _ = running.reactor.join();
        }
        self.reactor_gone.store(true, Ordering::Release);
        running.workers.shutdown(self.shutdown_grace);
        self.membership.close();
        self.services.stop_all();
        self.refuse_leftovers();
        self.registry.clear();
        self.stream_services.clear();
        log::info!("node {} closed", self.name);
    }
}

impl Inner {
    fn refuse_leftovers(&self) {
        while let Ok(command) = self.leftovers.try_recv() {
            command.refuse();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}

/// 32 random bits (for unique test endpoint names).
#[cfg(feature = "testkit")]
pub(crate) fn random_u32() -> u32 {
    builder::random_u64() as u32
}

/// One step of waiting for `peer` to join: what the wait ends with, if this
/// event (or the lack of one) ends it.
fn peer_wait_step(
    node: &WeakNode,
    peer: &str,
    received: Result<PeerEvent, mailbox::RecvError>,
) -> Option<Result<(), Error>> {
    let rejected = |rejection| Error::Rejected {
        peer: peer.to_string(),
        rejection,
    };
    match received {
        Ok(PeerEvent::Joined { peer: p, .. }) if p.as_str() == peer => Some(Ok(())),
        Ok(PeerEvent::Rejected { peer: p, rejection }) if p.as_str() == peer => {
            Some(Err(rejected(rejection)))
        }
        Ok(_) => None,
        Err(mailbox::RecvError::Timeout) => {
            let last = node
                .upgrade()
                .and_then(|n| n.peer_info(peer))
                .and_then(|i| i.last_rejection);
            Some(Err(last.map_or(Error::Timeout, rejected)))
        }
        Err(mailbox::RecvError::Disconnected) => Some(Err(Error::Closed)),
    }
}

/// The single result of a call to one peer.
pub(crate) fn one_result<R>(call: Result<Responses<R>, Error>) -> Result<R, CallError> {
    match call {
        Ok(responses) => responses
            .into_iter()
            .next()
            .map_or(Err(CallError::UnknownPeer), |r| r.result),
        Err(Error::Closed) => Err(CallError::Closed),
        Err(Error::Overloaded(_)) => Err(CallError::Overloaded(Side::Local)),
        Err(e) => Err(CallError::Local(e.to_string())),
    }
}

/// Checks a method name the application registers: valid, and not in the
/// built-in services' namespace.
pub(crate) fn user_method(method: &str) -> Result<(), Error> {
    let invalid = |reason| Error::InvalidName {
        name: method.to_string(),
        reason,
    };
    MethodName::new(method).map_err(invalid)?;
    match crate::protocol::reserved_service(method) {
        Some(_) => Err(invalid(crate::protocol::NameError::Reserved)),
        None => Ok(()),
    }
}

fn node_name(name: &str) -> Result<NodeName, Error> {
    NodeName::new(name).map_err(|reason| Error::InvalidName {
        name: name.to_string(),
        reason,
    })
}
