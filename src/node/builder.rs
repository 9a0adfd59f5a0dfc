//! [`NodeBuilder`]: every setting of a node, validated by [`NodeBuilder::start`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crossbeam_channel::unbounded;
use parking_lot::{Mutex, RwLock};

use super::command::StreamTx;
use super::directory::Directory;
use super::events::EventHub;
use super::handlers::Registry;
use super::reactor::Reactor;
use super::sockets::{self, SocketOptions};
use super::streams::Services;
use super::streams::StreamHost;
use super::workers::WorkerPool;
use super::{Inner, Node, Running};
use crate::core::{Access, Limits, Mesh, MeshConfig, Timers};
use crate::error::Error;
use crate::faults::{FaultInjector, FaultPlan};
use crate::protocol::{NodeName, Security};
use crate::security::{Keypair, PublicKey};
use crate::zmq::Context;

/// Configures and starts a [`Node`]. Obtained from [`Node::builder`].
///
/// ```no_run
/// # fn main() -> Result<(), bilateral::Error> {
/// use std::time::Duration;
/// let node = bilateral::Node::builder("alpha")
///     .network("demo")
///     .listen("tcp://127.0.0.1:*")
///     .heartbeat_interval(Duration::from_millis(500))
///     .lost_timeout(Duration::from_secs(3))
///     .workers(8)
///     .start()?;
/// println!("listening on {:?}", node.endpoints());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct NodeBuilder {
    name: String,
    network: String,
    endpoints: Vec<String>,
    timers: Timers,
    limits: Limits,
    workers: usize,
    handler_pool: Option<super::workers::HandlerPool>,
    command_capacity: usize,
    event_capacity: usize,
    high_water_mark: i32,
    linger: Duration,
    shutdown_grace: Duration,
    reactor_spin: Duration,
    context: Option<Context>,
    call_timeout: Duration,
    curve: Option<Keypair>,
    access: Access,
    allowed_keys: Vec<PublicKey>,
    allowed_keys_file: Option<std::path::PathBuf>,
    faults: Option<FaultPlan>,
    registry: crate::registry::RegistryConfig,
    discovery: Option<crate::discovery::Discovery>,
    advertise: Vec<String>,
    seeds: Vec<(String, String)>,
}

impl NodeBuilder {
    pub(crate) fn new(name: impl Into<String>) -> Self {
        NodeBuilder {
            name: name.into(),
            network: String::new(),
            endpoints: Vec::new(),
            timers: Timers::default(),
            limits: Limits::default(),
            workers: 4,
            handler_pool: None,
            command_capacity: 65_536,
            event_capacity: 1024,
            high_water_mark: 10_000,
            linger: Duration::from_millis(200),
            shutdown_grace: Duration::from_secs(1),
            reactor_spin: Duration::from_micros(50),
            context: None,
            call_timeout: Duration::from_secs(5),
            curve: None,
            access: Access::AllowList,
            allowed_keys: Vec::new(),
            allowed_keys_file: None,
            faults: None,
            registry: crate::registry::RegistryConfig::default(),
            discovery: None,
            advertise: Vec::new(),
            seeds: Vec::new(),
        }
    }

    /// Turns discovery on (see [`crate::discovery`]): the node publishes
    /// its advertised endpoints and dials the nodes it finds, as
    /// `discovery`'s policy says. Off by default.
    pub fn discovery(mut self, discovery: crate::discovery::Discovery) -> Self {
        self.discovery = Some(discovery);
        self
    }

    /// An endpoint other nodes should dial to reach this one, published by
    /// discovery (repeat for several). Without any, the node advertises its
    /// bound endpoints, except wildcard addresses (`0.0.0.0`, `::`), which
    /// no peer can dial: a node that binds one, or sits behind NAT, says
    /// here where it is.
    pub fn advertise(mut self, endpoint: impl Into<String>) -> Self {
        self.advertise.push(endpoint.into());
        self
    }

    /// A node to dial as soon as this one starts, as [`Node::connect`]
    /// would: with discovery on, the node through which this one finds the
    /// rest of the mesh. In CURVE mode `name` is the seed's key (which the
    /// handshake needs); in plaintext its name, which the JOIN checks.
    pub fn seed(mut self, name: impl Into<String>, endpoint: impl Into<String>) -> Self {
        self.seeds.push((name.into(), endpoint.into()));
        self
    }

    /// The registry's limits and timers (see [`crate::registry`]). Every
    /// node runs the registry, so that entries travel through it.
    pub fn registry(mut self, config: crate::registry::RegistryConfig) -> Self {
        self.registry = config;
        self
    }

    /// The network name (default empty). Nodes join only nodes of the same network.
    pub fn network(mut self, network: impl Into<String>) -> Self {
        self.network = network.into();
        self
    }

    /// Adds an endpoint to listen on: `tcp://host:port` (`tcp://127.0.0.1:*`
    /// picks a free port), `ipc:///path`, or `inproc://name` (in-process, for
    /// nodes sharing a [`Context`](crate::Context)). A node without endpoints only dials out.
    pub fn listen(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoints.push(endpoint.into());
        self
    }

    /// Replaces every timer at once.
    pub fn timers(mut self, timers: Timers) -> Self {
        self.timers = timers;
        self
    }

    /// Interval between heartbeats (default 1 s).
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.timers.heartbeat_interval = interval;
        self
    }

    /// Silence after which a peer is lost (default 5 s).
    pub fn lost_timeout(mut self, timeout: Duration) -> Self {
        self.timers.lost_timeout = timeout;
        self
    }

    /// How long one join attempt waits for an answer (default 2 s) and how
    /// often it retransmits JOIN meanwhile (default 500 ms).
    pub fn join_timeout(mut self, timeout: Duration, retry: Duration) -> Self {
        self.timers.join_timeout = timeout;
        self.timers.join_retry = retry;
        self
    }

    /// Reconnection backoff: first delay (default 100 ms) and cap (default 30 s).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.timers.backoff_initial = initial;
        self.timers.backoff_max = max;
        self
    }

    /// Fraction of each backoff delay that is random, in `0.0..=1.0` (default 0.5).
    pub fn backoff_jitter(mut self, jitter: f64) -> Self {
        self.timers.backoff_jitter = jitter;
        self
    }

    /// Replaces every limit at once.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Largest message (call arguments, reply, cast, stream init data, with
    /// headers) sent or accepted (default 128 MiB). Messages larger than the
    /// chunk size travel in pieces and are reassembled.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.limits.max_message_size = bytes;
        self
    }

    /// Payload bytes of one stream or message piece, 4 KiB to 1 MiB
    /// (default 128 KiB). Smaller pieces let calls overtake bulk traffic
    /// sooner; larger ones cost less per byte.
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.limits.chunk_size = bytes;
        self
    }

    /// A stream's window (default 1 MiB): how far a writer may run ahead of
    /// its reader, and how much it may queue before `write` blocks. Each
    /// stream holds at most this much memory on each side; its throughput is
    /// at most this divided by the round trip.
    pub fn stream_window(mut self, bytes: usize) -> Self {
        self.limits.stream_window = bytes;
        self
    }

    /// Bulk bytes in flight on one link (default 512 KiB): a call sent while
    /// a bulk transfer runs waits behind at most this much, and a link's bulk
    /// throughput is at most this divided by the round trip (on a LAN with
    /// 0.5 ms round trips, 1 GB/s; raise it for long fat networks).
    pub fn link_window(mut self, bytes: usize) -> Self {
        self.limits.link_window = bytes;
        self
    }

    /// Most streams open at once, both directions (default 1024). Each
    /// accepted stream runs its service on a thread of its own.
    pub fn max_streams(mut self, streams: usize) -> Self {
        self.limits.max_streams = streams;
        self
    }

    /// Most streams one peer may have opened to this node at once (default
    /// 256): further opens from it are refused as overloaded while others
    /// still get theirs.
    pub fn max_streams_per_peer(mut self, streams: usize) -> Self {
        self.limits.max_streams_per_peer = streams;
        self
    }

    /// Most bytes one peer can make this node hold (default 256 MiB): its
    /// requests and casts until their handlers finish, replies and other
    /// messages waiting for it or not yet acknowledged, its large messages
    /// under reassembly, the receive windows of streams with it. What would
    /// pass it is refused as `Overloaded`. At least `max_message_size`.
    pub fn max_peer_memory(mut self, bytes: usize) -> Self {
        self.limits.max_peer_memory = bytes;
        self
    }

    /// Most bytes all peers together can make this node hold (default
    /// 1 GiB). Half is shared first come, first served; the other half is
    /// split evenly among the peers in session, so no peer, or group of
    /// peers, can take everything: each can always hold
    /// `max_memory / (2 × peers in session)`.
    pub fn max_memory(mut self, bytes: usize) -> Self {
        self.limits.max_memory = bytes;
        self
    }

    /// Bytes of calls, replies and casts in flight on one link (default
    /// 4 MiB): sent and not yet acknowledged by the peer. More wait in the
    /// node, counted against the peer's memory. A link carries at most this
    /// divided by the round trip of messages per second.
    pub fn message_window(mut self, bytes: usize) -> Self {
        self.limits.message_window = bytes;
        self
    }

    /// The timeout of calls made without one (typed clients, and
    /// [`Node::call_timeout`] for the application's own use). Default 5 s.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Most calls awaiting replies at once (default 100 000).
    pub fn max_pending_calls(mut self, calls: usize) -> Self {
        self.limits.max_pending_calls = calls;
        self
    }

    /// Most requests and casts queued for or running in handlers (default 10 000).
    pub fn max_queued_handlers(mut self, jobs: usize) -> Self {
        self.limits.max_queued_handlers = jobs;
        self
    }

    /// Handler threads at most (default 4). They start as calls need them
    /// (a node never called has none) and then stay until the node closes.
    pub fn workers(mut self, threads: usize) -> Self {
        self.workers = threads;
        self
    }

    /// Runs the node's handlers on `pool`, shared with other nodes of the
    /// process, instead of on threads of its own (`workers` is then not
    /// used): a hundred nodes of one process run their handlers on the
    /// pool's threads, not on up to four each.
    pub fn handler_pool(mut self, pool: &super::workers::HandlerPool) -> Self {
        self.handler_pool = Some(pool.clone());
        self
    }

    /// Capacity of the queue from user threads to the reactor (default 65 536);
    /// when full, calls fail with `Overloaded(Local)`.
    pub fn command_capacity(mut self, commands: usize) -> Self {
        self.command_capacity = commands;
        self
    }

    /// Events queued per subscriber before further ones are dropped (default 1024).
    pub fn event_capacity(mut self, events: usize) -> Self {
        self.event_capacity = events;
        self
    }

    /// ZeroMQ high-water mark of every socket, in messages (default 10 000).
    pub fn high_water_mark(mut self, messages: i32) -> Self {
        self.high_water_mark = messages;
        self
    }

    /// How long closed sockets keep trying to deliver queued frames, such as
    /// the PARTs sent at close, and how long a closing node first waits for
    /// messages still queued behind a peer's window (default 200 ms).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// How long `close` waits for running handlers (default 1 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// How long the reactor keeps polling without blocking after it has done
    /// some work (default 50 µs; zero disables). Work that follows closely —
    /// a handler's reply, a caller's next call — is then picked up without a
    /// kernel wake-up, which on small virtual machines costs tens of
    /// microseconds. The price is at most this much CPU after each burst,
    /// and only while work has been following work within this long on this
    /// node (a node called now and then, or starved of CPU by other
    /// processes, stops spinning by itself).
    pub fn reactor_spin(mut self, spin: Duration) -> Self {
        self.reactor_spin = spin;
        self
    }

    /// Runs the node in CURVE mode with `keys`: every byte it exchanges is
    /// encrypted, its name must be `keys`' public key in Z85 (see
    /// [`Node::secure_builder`]), peers are dialled by their public keys and
    /// must prove they hold the matching secret keys, and only keys allowed by
    /// the access policy may connect to it (by default: those on the
    /// allow-list, initially empty). A CURVE node needs a ZeroMQ context of
    /// its own (its ZAP handler is bound on it).
    pub fn curve(mut self, keys: Keypair) -> Self {
        self.curve = Some(keys);
        self
    }

    /// CURVE mode: adds keys to the allow-list (and makes the allow-list the
    /// access policy).
    pub fn allow_keys(mut self, keys: impl IntoIterator<Item = PublicKey>) -> Self {
        self.access = Access::AllowList;
        self.allowed_keys.extend(keys);
        self
    }

    /// CURVE mode: adds the keys listed in a file to the allow-list when the
    /// node starts: one Z85 key per line (`#` starts a comment), or public
    /// key files as `keygen` writes them, concatenated
    /// ([`security::read_key_list`](crate::security::read_key_list)).
    pub fn allow_keys_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.access = Access::AllowList;
        self.allowed_keys_file = Some(path.into());
        self
    }

    /// CURVE mode: lets any key connect (encryption and authenticated names,
    /// no access control).
    pub fn allow_any_key(mut self) -> Self {
        self.access = Access::AllowAny;
        self
    }

    /// CURVE mode: `decide` says which keys may connect. It runs on the
    /// reactor thread at every handshake and JOIN: it must be quick.
    pub fn authorize_with(
        mut self,
        decide: impl Fn(&PublicKey) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.access = Access::Callback(Arc::new(decide));
        self
    }

    #[cfg(feature = "testkit")]
    /// Starts with fault injection on (see [`crate::faults`]); change it at
    /// run time with [`Node::set_faults`].
    pub fn faults(mut self, plan: FaultPlan) -> Self {
        self.faults = Some(plan);
        self
    }

    /// Uses a shared ZeroMQ context instead of a new one. Nodes must share a
    /// context to reach each other over `inproc://`.
    pub fn context(mut self, context: super::Context) -> Self {
        self.context = Some(context.0);
        self
    }

    fn validate(&self) -> Result<NodeName, Error> {
        let name = NodeName::new(&self.name).map_err(|reason| Error::InvalidName {
            name: self.name.clone(),
            reason,
        })?;
        let bad = |what: &str| Err(Error::InvalidConfig(what.to_string()));
        let t = &self.timers;
        if self.network.len() > 255 {
            return bad("the network name is longer than 255 bytes");
        }
        if t.heartbeat_interval.is_zero() || t.lost_timeout <= t.heartbeat_interval {
            return bad("the lost timeout must exceed a non-zero heartbeat interval");
        }
        if t.join_timeout.is_zero() || t.join_retry.is_zero() {
            return bad("join timeout and join retry must be non-zero");
        }
        if t.backoff_initial.is_zero() || t.backoff_max < t.backoff_initial {
            return bad("backoff needs 0 < initial <= max");
        }
        if !(0.0..=1.0).contains(&t.backoff_jitter) {
            return bad("backoff jitter must be within 0.0..=1.0");
        }
        if self.call_timeout.is_zero() {
            return bad("the call timeout must be non-zero");
        }
        if self.workers == 0 || self.command_capacity == 0 || self.event_capacity == 0 {
            return bad("workers, command capacity and event capacity must be non-zero");
        }
        let l = &self.limits;
        if l.max_message_size < 1024 || self.high_water_mark < 0 {
            return bad("the maximum message size must be at least 1 KiB");
        }
        if !(4096..=crate::protocol::MAX_CHUNK).contains(&l.chunk_size) {
            return bad("the chunk size must be within 4 KiB..=1 MiB");
        }
        if l.stream_window < l.chunk_size || l.stream_window > u32::MAX as usize {
            return bad("the stream window must be at least one chunk and below 4 GiB");
        }
        if l.link_window < l.chunk_size {
            return bad("the link window must be at least one chunk");
        }
        if l.max_streams == 0 || l.max_streams_per_peer == 0 {
            return bad("max_streams and max_streams_per_peer must be non-zero");
        }
        if l.max_peer_memory < l.max_message_size || l.max_memory < l.max_peer_memory {
            return bad("memory bounds need max_message_size <= max_peer_memory <= max_memory");
        }
        if l.message_window < l.chunk_size || l.message_window_count == 0 {
            return bad("the message window must be at least one chunk and one message");
        }
        if self.faults.as_ref().is_some_and(|p| !p.is_valid()) {
            return bad("fault fractions must be within 0.0..=1.0");
        }
        if let Some(keys) = &self.curve {
            if name.as_str() != keys.public().to_z85() {
                return bad(
                    "in CURVE mode the node's name is its public key (see Node::secure_builder)",
                );
            }
        }
        Ok(name)
    }

    /// Binds the listen endpoints and starts the node's threads.
    ///
    /// Fails with a clear error for an invalid name or setting, or an
    /// endpoint that cannot be bound; nothing keeps running after a failure.
    pub fn start(self) -> Result<Node, Error> {
        let name = self.validate()?;
        let incarnation = random_u64().max(1);
        super::context::raise_open_files();
        let ctx = match &self.context {
            Some(c) => c.clone(),
            None => super::context::own()?,
        };
        let mut allowed_keys = self.allowed_keys.clone();
        if let Some(path) = &self.allowed_keys_file {
            allowed_keys.extend(crate::security::read_key_list(path)?);
        }
        let options = SocketOptions {
            name: name.clone(),
            high_water_mark: self.high_water_mark,
            // No frame is larger than a chunk plus its header: larger
            // messages travel in pieces.
            hard_max_frame: i64::try_from(
                self.limits
                    .max_message_size
                    .saturating_mul(2)
                    .saturating_add(4096)
                    .min(crate::protocol::MAX_FRAME),
            )
            .unwrap_or(i64::MAX),
            linger: self.linger,
            spin: self.reactor_spin,
            curve: self.curve.clone(),
            incarnation,
        };
        // The ZAP handler must be in place before the ROUTER takes its first
        // connection, or libzmq would let CURVE clients in unchecked.
        let zap = match &self.curve {
            Some(_) => Some(sockets::zap_handler(&ctx)?),
            None => None,
        };
        let router = sockets::router(&ctx, &options)?;
        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        for endpoint in &self.endpoints {
            if endpoint.starts_with("tcp://[") {
                router.socket.set_ipv6(true)?;
            }
            router.socket.bind(endpoint).map_err(|source| Error::Bind {
                endpoint: endpoint.clone(),
                source: source.into(),
            })?;
            endpoints.push(router.socket.last_endpoint()?);
        }

        let cfg = MeshConfig {
            name: name.clone(),
            network: self.network.clone(),
            incarnation,
            security: if self.curve.is_some() {
                Security::Curve
            } else {
                Security::Null
            },
            access: self.access.clone(),
            allowed_keys,
            timers: self.timers.clone(),
            limits: Limits {
                // Never more messages in flight than fit in a socket's queue
                // with room to spare: a computed reply must never meet a full one.
                message_window_count: match self.high_water_mark {
                    0 => self.limits.message_window_count,
                    hwm => (hwm as usize / 4).clamp(1, self.limits.message_window_count),
                },
                ..self.limits.clone()
            },
            seed: random_u64(),
        };
        let mesh = Mesh::new(cfg, Instant::now());
        let (waker, wake_rx) = super::waker::pair().map_err(Error::Thread)?;
        let waker = Arc::new(waker);
        let registry = Arc::new(Registry::default());
        let events = Arc::new(EventHub::default());
        let membership = Arc::new(super::membership::Membership::default());
        let directory = Arc::new(RwLock::new(Directory::default()));
        let close_requested = Arc::new(AtomicBool::new(false));
        let abort = Arc::new(AtomicBool::new(false));
        let (commands_tx, commands_rx) = super::queue::queue(self.command_capacity);
        let (stream_tx, stream_rx) = unbounded();
        let stream_tx = StreamTx {
            tx: stream_tx,
            waker: waker.clone(),
        };
        let stream_services = Arc::new(Services::default());
        let (done_tx, done_rx) = unbounded();
        let (service_jobs_tx, service_jobs_rx) = unbounded();
        let services = super::services::Services::new(
            membership.clone(),
            service_jobs_rx,
            super::workers::Report::new(done_tx.clone(), waker.clone()),
            registry.clone(),
        );
        let (workers, jobs_tx) = WorkerPool::start(
            name.as_str(),
            self.workers,
            self.handler_pool.as_ref(),
            registry.clone(),
            done_tx,
            waker.clone(),
        );

        let reactor = Reactor {
            ctx,
            router,
            zap,
            monitor_seq: 0,
            dealers: HashMap::new(),
            mesh,
            options,
            commands: commands_rx.clone(),
            done: done_rx,
            jobs: jobs_tx,
            handlers: registry.clone(),
            service_jobs: service_jobs_tx,
            waker: waker.clone(),
            wake_rx,
            close_requested: close_requested.clone(),
            abort: abort.clone(),
            events: events.clone(),
            membership: membership.clone(),
            directory: directory.clone(),
            published_generation: None,
            faults: self.faults.clone().map(FaultInjector::new),
            streams: StreamHost::new(
                stream_services.clone(),
                stream_tx.clone(),
                stream_rx,
                self.limits.stream_window,
                self.limits.chunk_size,
                name.as_str(),
            ),
            metrics: super::metrics::NodeMetrics::new(name.as_str()),
        };
        let thread = std::thread::Builder::new()
            .name(format!("bilateral-reactor-{name}"))
            .spawn(move || reactor.run());
        let reactor = match thread {
            Ok(t) => t,
            Err(e) => {
                workers.shutdown(Duration::ZERO);
                return Err(Error::Thread(e));
            }
        };
        log::info!("node {name} started (incarnation {incarnation:016x}) on {endpoints:?}");
        let node = Node {
            inner: Arc::new(Inner {
                name,
                incarnation,
                network: self.network,
                endpoints,
                commands: commands_tx,
                leftovers: commands_rx,
                reactor_gone: AtomicBool::new(false),
                waker,
                close_requested,
                abort,
                registry,
                events,
                event_capacity: self.event_capacity,
                directory,
                running: Mutex::new(Some(Running { reactor, workers })),
                shutdown_grace: self.shutdown_grace,
                own_context: self.context.is_none(),
                call_timeout: self.call_timeout,
                max_message_size: self.limits.max_message_size,
                public_key: self.curve.as_ref().map(|k| *k.public()),
                services,
                membership,
                stream_services,
                stream_tx,
            }),
        };
        crate::registry::Service::of(&node, Some(self.registry))?;
        if let Some(discovery) = self.discovery {
            let advertise = if self.advertise.is_empty() {
                node.endpoints()
                    .iter()
                    .filter(|e| crate::discovery::usable(e))
                    .cloned()
                    .collect()
            } else {
                self.advertise
            };
            let seeds: Vec<String> = self.seeds.iter().map(|(name, _)| name.clone()).collect();
            let access = self.curve.as_ref().map(|_| self.access.clone());
            crate::discovery::Service::start_on(&node, discovery, advertise, &seeds, access)?;
        }
        for (name, endpoint) in &self.seeds {
            node.connect(name, endpoint)?;
        }
        Ok(node)
    }
}

/// A random value from the operating system, for incarnations and seeds.
pub(crate) fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: fall back to the clock and the process id, which
        // still differ between starts.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return nanos ^ (u64::from(std::process::id()) << 32);
    }
    u64::from_le_bytes(bytes)
}
