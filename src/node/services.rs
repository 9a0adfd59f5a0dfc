//! The extension point of the node's built-in services (channels, and the
//! registry and discovery to come).
//!
//! A built-in service is a [`BuiltIn`]: it runs beside a node, speaks to its
//! counterparts on other nodes with the node's ordinary calls and casts, and
//! follows the [membership feed](super::membership). It plugs in through
//! this module alone:
//!
//! - [`Services::start`] starts it once per node (on first use, or when the
//!   node starts) with a [`Host`]: the node, and the registration of its
//!   methods, always named `bilateral.<service>.<method>`;
//! - it is added to the membership feed right after, and told of every
//!   session already open;
//! - when the node closes it is stopped, after the reactor and the workers;
//! - its counters (and those the host keeps for it: messages received,
//!   malformed) appear in [`NodeStats::services`](crate::NodeStats).
//!
//! The `bilateral.` method namespace is the services' own: the application
//! cannot register, unregister or shadow a method in it
//! ([`reserved_service`](crate::protocol::reserved_service)). A
//! call into it for a service this node does not run is answered
//! `NoService`, which the caller sees as
//! [`CallError::NoService`](crate::CallError::NoService).

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, select};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::handlers::{CallContext, Failure, HandlerError, Registry};
use super::membership::{Listener, Membership};
use super::workers::Report;
use super::{Node, WeakNode};
use crate::Error;
use crate::core::{Job, ServiceStats};

use crate::protocol::reserved_service as reserved;

/// A built-in service: what a node needs to know of it to run it.
pub(crate) trait BuiltIn: Listener + Any + Send + Sync {
    /// Runs the service's timers and sends what they produce, on the node's
    /// service thread; returns when it must run next. It also runs soon
    /// after the service asks for it ([`Wake::wake`]), and at least once a
    /// second.
    fn tick(&self, node: &Node, now: Instant) -> Option<Instant>;

    /// The node is closing (its reactor, workers and service thread have
    /// stopped): let go of what the service holds.
    fn stop(&self) {}

    /// The service's own counters, by name, for [`ServiceStats::counters`].
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// What the host counts for every service.
#[derive(Default)]
struct Counters {
    received: AtomicU64,
    malformed: AtomicU64,
}

struct Running {
    name: &'static str,
    service: Arc<dyn BuiltIn>,
    /// The same service, to hand it back typed.
    typed: Arc<dyn Any + Send + Sync>,
    counters: Arc<Counters>,
}

/// The built-in services running on one node, and the one thread that
/// runs them all (started with the first service): their ticks, and the
/// calls and casts peers make to their methods.
pub(crate) struct Services {
    running: Mutex<Vec<Running>>,
    membership: Arc<Membership>,
    wake: Wake,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// What the thread takes with it when it starts.
    inputs: Mutex<Option<Inputs>>,
}

/// The service thread's inputs.
pub(crate) struct Inputs {
    /// Jobs for the services' methods, from the reactor.
    pub jobs: Receiver<Job>,
    /// Where finished jobs go.
    pub report: Report,
    /// The handlers (the services' are registered there, by their [`Host`]).
    pub handlers: Arc<Registry>,
    woken: Receiver<()>,
}

/// A service's way to ask for a tick soon (after its handlers changed its
/// state, for instance). Never blocks.
#[derive(Clone)]
pub(crate) struct Wake(Sender<()>);

impl Wake {
    /// Asks for a tick of every service.
    pub(crate) fn wake(&self) {
        match self.0.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }
}

/// The longest the service thread sleeps.
const MAX_SLEEP: Duration = Duration::from_secs(1);

impl Services {
    pub(crate) fn new(
        membership: Arc<Membership>,
        jobs: Receiver<Job>,
        report: Report,
        handlers: Arc<Registry>,
    ) -> Self {
        let (tx, woken) = bounded(1);
        Services {
            running: Mutex::new(Vec::new()),
            membership,
            wake: Wake(tx),
            thread: Mutex::new(None),
            inputs: Mutex::new(Some(Inputs {
                jobs,
                report,
                handlers,
                woken,
            })),
        }
    }

    /// The service `name` of type `S`, started with `start` if it is not
    /// running yet. `start` must not start another service.
    pub(crate) fn start<S, F>(
        &self,
        node: &Node,
        name: &'static str,
        start: F,
    ) -> Result<Arc<S>, Error>
    where
        S: BuiltIn,
        F: FnOnce(&Host<'_>) -> Result<Arc<S>, Error>,
    {
        let mut running = self.running.lock();
        if let Some(r) = running.iter().find(|r| r.name == name) {
            return Arc::clone(&r.typed)
                .downcast::<S>()
                .map_err(|_| Error::InvalidConfig(format!("service {name} has another type")));
        }
        if node.is_closed() {
            return Err(Error::Closed);
        }
        self.start_thread(node)?;
        let counters = Arc::new(Counters::default());
        let host = Host {
            node,
            name,
            counters: counters.clone(),
            wake: self.wake.clone(),
        };
        let service = start(&host)?;
        self.membership.listen(service.clone());
        running.push(Running {
            name,
            service: service.clone(),
            typed: service.clone(),
            counters,
        });
        log::debug!("node {}: service {name} started", node.name());
        self.wake.wake();
        Ok(service)
    }

    fn start_thread(&self, node: &Node) -> Result<(), Error> {
        let mut thread = self.thread.lock();
        let Some(inputs) = self.inputs.lock().take() else {
            return Ok(());
        };
        let weak = node.downgrade();
        let spawned = std::thread::Builder::new()
            .name(format!("bilateral-services-{}", node.name()))
            .spawn(move || run(&weak, &inputs))
            .map_err(Error::Thread)?;
        *thread = Some(spawned);
        Ok(())
    }

    /// The services to tick now.
    fn to_tick(&self) -> Vec<Arc<dyn BuiltIn>> {
        self.running
            .lock()
            .iter()
            .map(|r| r.service.clone())
            .collect()
    }

    /// Every service's counters, by name.
    pub(crate) fn stats(&self) -> Vec<ServiceStats> {
        let mut stats: Vec<ServiceStats> = self
            .running
            .lock()
            .iter()
            .map(|r| ServiceStats {
                name: r.name.to_string(),
                received: r.counters.received.load(Ordering::Relaxed),
                malformed: r.counters.malformed.load(Ordering::Relaxed),
                counters: r
                    .service
                    .counters()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            })
            .collect();
        stats.sort_by(|a, b| a.name.cmp(&b.name));
        stats
    }

    /// Stops every service (the node is closing; its reactor has stopped,
    /// so no membership change or handler can reach them any more).
    pub(crate) fn stop_all(&self) {
        let thread = self.thread.lock().take();
        if let Some(thread) = thread {
            // The thread sees the node closed at its next turn.
            self.wake.wake();
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
        let running = std::mem::take(&mut *self.running.lock());
        for r in running {
            r.service.stop();
        }
    }
}

/// The service thread: runs the jobs of the services' methods as they come,
/// and ticks every service when one is due or asked for it, until the node
/// closes. It holds the node only while it ticks.
fn run(node: &WeakNode, inputs: &Inputs) {
    let mut next = Instant::now();
    let mut asked = true;
    // When the services' figures last went to the metrics (feature `metrics`).
    let mut reported: Option<Instant> = None;
    loop {
        if asked || Instant::now() >= next {
            asked = false;
            let Some(node) = node.upgrade() else { return };
            if node.is_closed() {
                return;
            }
            let now = Instant::now();
            next = node
                .inner
                .services
                .to_tick()
                .iter()
                .filter_map(|service| service.tick(&node, now))
                .min()
                .unwrap_or(now + MAX_SLEEP)
                .min(now + MAX_SLEEP);
            if reported.is_none_or(|t| now.duration_since(t) >= MAX_SLEEP) {
                reported = Some(now);
                super::metrics::services(node.name(), &node.inner.services.stats());
            }
        }
        select! {
            recv(inputs.jobs) -> job => match job {
                Ok(job) => {
                    if !super::workers::run(&inputs.handlers, job, &inputs.report, &|| {}) {
                        return;
                    }
                }
                Err(_) => return, // the reactor is gone
            },
            recv(inputs.woken) -> _ => asked = true,
            default(next.saturating_duration_since(Instant::now())) => {}
        }
    }
}

/// What a starting service gets from its node.
pub(crate) struct Host<'a> {
    node: &'a Node,
    name: &'static str,
    counters: Arc<Counters>,
    wake: Wake,
}

impl Host<'_> {
    /// The node, for its name and incarnation. A service must not keep a
    /// clone (that would keep the node open): its tick is given the node.
    pub(crate) fn node(&self) -> &Node {
        self.node
    }

    /// How the service asks for a tick.
    pub(crate) fn wake(&self) -> Wake {
        self.wake.clone()
    }

    /// Registers the service's method `method`, a full name in its
    /// namespace (`bilateral.<service>.<method>`, as the protocol names
    /// it). The handler runs on the service thread: it must not block. Each message it receives is counted; one whose arguments do not
    /// decode is counted as malformed, logged, and answered `BadArguments`
    /// (a cast is dropped).
    pub(crate) fn register<A, R, F>(&self, method: &str, handler: F)
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(&CallContext, A) -> Result<R, HandlerError> + Send + Sync + 'static,
    {
        debug_assert_eq!(
            reserved(method),
            Some(self.name),
            "{method} is not the service's"
        );
        let erased = super::handlers::erase(handler);
        let counters = self.counters.clone();
        let counted = move |ctx: &CallContext, bytes: &[u8]| -> Result<Vec<u8>, Failure> {
            counters.received.fetch_add(1, Ordering::Relaxed);
            let result = erased(ctx, bytes);
            if let Err(Failure::BadArguments(why)) = &result {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                log::debug!("{} sent a malformed {}: {why}", ctx.peer(), ctx.method());
            }
            result
        };
        self.node
            .inner
            .registry
            .insert_erased(method, Arc::new(counted));
    }
}
