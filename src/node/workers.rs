//! The bounded pools of threads that run handlers, off the reactor thread.
//!
//! Admission is bounded by the core (`max_queued_handlers`), so the job queue
//! itself needs no second limit. A handler that blocks holds one worker; the
//! reactor, and with it every heartbeat, keeps running.
//!
//! Each node has a pool of its own unless given a [`HandlerPool`] that
//! several nodes of a process share: a job then carries its node (whose
//! handlers it runs and whose reactor it reports to), and a node that
//! closes stops only its own jobs.
//!
//! Workers start when work needs them, up to the pool's size, and then
//! stay: a node that is never called has no worker thread at all. Each job
//! handed out either claims a worker that waits idle or, when none does and
//! the pool is not full, starts one; so below the pool's size a job never
//! waits behind another. A worker counts itself idle as soon as its handler
//! is over, before the reactor hears of it. (Once the pool is full the count
//! may run ahead of the truth, which only matters for starting workers, and
//! a full pool starts none.)

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendError, Sender, unbounded};
use parking_lot::{Condvar, Mutex};

use super::handlers::{CallContext, ErasedHandler, Failure, Handler, Registry};
use super::waker::Waker;
use crate::core::{Job, JobDone, JobOutcome};
use crate::protocol::ReplyStatus;

/// What a job needs of its node: its handlers, where to report, and
/// whether it is closing.
struct NodeJobs {
    registry: Arc<Registry>,
    report: Report,
    closing: AtomicBool,
    /// Its handlers running now, and a signal when that changes.
    running: Mutex<usize>,
    idle: Condvar,
}

/// A job on its way to a worker, with its node.
struct Task {
    job: Job,
    node: Arc<NodeJobs>,
}

/// The threads of one pool, and the queue they take tasks from.
struct Pool {
    name: String,
    size: usize,
    tasks: Receiver<Task>,
    /// Workers waiting for a task that no task has claimed yet.
    idle: AtomicUsize,
    closing: AtomicBool,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    fn new(name: &str, size: usize) -> (Arc<Pool>, Sender<Task>) {
        let (tx, tasks) = unbounded();
        let pool = Arc::new(Pool {
            name: name.to_string(),
            size,
            tasks,
            idle: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            handles: Mutex::new(Vec::with_capacity(size)),
        });
        (pool, tx)
    }

    /// Starts one more worker if the pool is not full.
    fn grow(self: &Arc<Self>) {
        let mut handles = self.handles.lock();
        if handles.len() >= self.size || self.closing.load(Ordering::Acquire) {
            return;
        }
        let pool = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("bilateral-worker-{}-{}", self.name, handles.len()))
            .spawn(move || pool.work());
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => log::error!(
                "{}: cannot start a handler thread ({e}); {} run the handlers",
                self.name,
                handles.len()
            ),
        }
    }

    fn work(self: Arc<Self>) {
        let free = || {
            self.idle.fetch_add(1, Ordering::AcqRel);
        };
        while let Ok(Task { job, node }) = self.tasks.recv() {
            if self.closing.load(Ordering::Acquire) {
                break;
            }
            if node.closing.load(Ordering::Acquire) {
                // Its node closed while it waited: dropped, as queued jobs are.
                free();
                continue;
            }
            *node.running.lock() += 1;
            run(&node.registry, job, &node.report, &free);
            let mut running = node.running.lock();
            *running -= 1;
            if *running == 0 {
                node.idle.notify_all();
            }
        }
    }
}

/// A pool of handler threads that several nodes of one process can share
/// ([`NodeBuilder::handler_pool`](crate::NodeBuilder::handler_pool)): at most
/// `threads` run handlers at once for all of them, started as calls need
/// them. Each node still bounds its own queue (`max_queued_handlers`).
/// Cloning is cheap and shares the pool; its threads end when the last
/// clone and the last node using it are gone.
#[derive(Clone)]
pub struct HandlerPool {
    pool: Arc<Pool>,
    tx: Sender<Task>,
}

impl std::fmt::Debug for HandlerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerPool")
            .field("threads", &self.pool.size)
            .field("started", &self.pool.handles.lock().len())
            .finish()
    }
}

impl HandlerPool {
    /// A pool of up to `threads` handler threads (at least one).
    pub fn new(threads: usize) -> HandlerPool {
        let (pool, tx) = Pool::new("shared", threads.max(1));
        HandlerPool { pool, tx }
    }
}

/// The workers one node uses: a pool of its own, or a shared one.
pub(crate) struct WorkerPool {
    pool: Arc<Pool>,
    node: Arc<NodeJobs>,
    own: bool,
}

/// Where the reactor hands out jobs (see the module docs).
pub(crate) struct JobSender {
    tx: Sender<Task>,
    pool: Arc<Pool>,
    node: Arc<NodeJobs>,
}

impl JobSender {
    /// Queues `job` for a worker, starting one if none is free.
    pub(crate) fn send(&self, job: Job) -> Result<(), SendError<Job>> {
        let task = Task {
            job,
            node: self.node.clone(),
        };
        self.tx
            .send(task)
            .map_err(|SendError(t)| SendError(t.job))?;
        let claimed = self
            .pool
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if !claimed {
            self.pool.grow();
        }
        Ok(())
    }
}

impl WorkerPool {
    /// The workers of node `node`: `shared`, or a pool of its own of up to
    /// `size` (none started yet); jobs go through the returned sender.
    pub(crate) fn start(
        node: &str,
        size: usize,
        shared: Option<&HandlerPool>,
        registry: Arc<Registry>,
        done: Sender<JobDone>,
        waker: Arc<Waker>,
    ) -> (WorkerPool, JobSender) {
        let (pool, tx, own) = match shared {
            Some(h) => (h.pool.clone(), h.tx.clone(), false),
            None => {
                let (pool, tx) = Pool::new(node, size);
                (pool, tx, true)
            }
        };
        let jobs = Arc::new(NodeJobs {
            registry,
            report: Report::new(done, waker),
            closing: AtomicBool::new(false),
            running: Mutex::new(0),
            idle: Condvar::new(),
        });
        (
            WorkerPool {
                pool: pool.clone(),
                node: jobs.clone(),
                own,
            },
            JobSender {
                tx,
                pool,
                node: jobs,
            },
        )
    }

    /// Stops this node's jobs: queued ones are dropped, running handlers
    /// may finish within `grace`; a pool of the node's own stops too.
    /// Workers still busy after it are left to end on their own.
    pub(crate) fn shutdown(self, grace: Duration) {
        self.node.closing.store(true, Ordering::Release);
        let deadline = Instant::now() + grace;
        let all_done = {
            let mut running = self.node.running.lock();
            while *running > 0
                && !self
                    .node
                    .idle
                    .wait_until(&mut running, deadline)
                    .timed_out()
            {}
            if *running > 0 {
                log::warn!(
                    "{} handler(s) still running at close; not waiting for them",
                    *running
                );
            }
            *running == 0
        };
        if !self.own {
            return;
        }
        // The reactor, which held the only sender, is gone: idle workers
        // see their queue closed and exit. Busy ones (past the grace) are
        // left to end on their own.
        self.pool.closing.store(true, Ordering::Release);
        let handles = std::mem::take(&mut *self.pool.handles.lock());
        if all_done {
            let me = std::thread::current().id();
            for h in handles.into_iter().filter(|h| h.thread().id() != me) {
                let _ = h.join();
            }
        }
    }
}

/// Where finished jobs go: the reactor's queue, and its wake-up.
#[derive(Clone)]
pub(crate) struct Report {
    done: Sender<JobDone>,
    waker: Arc<Waker>,
}

impl Report {
    pub(crate) fn new(done: Sender<JobDone>, waker: Arc<Waker>) -> Self {
        Report { done, waker }
    }

    /// Hands a finished job to the reactor; `false` once it is gone.
    fn send(&self, done: JobDone) -> bool {
        if self.done.send(done).is_err() {
            return false;
        }
        self.waker.wake();
        true
    }
}

/// Runs one job's handler, or starts it on its runtime if it is async,
/// and reports how it ended; `free` is called once the thread is free again
/// (before the report of a handler it ran, or once it started an async
/// one). Returns `false` once the reactor is gone.
pub(crate) fn run(registry: &Registry, job: Job, report: &Report, free: &dyn Fn()) -> bool {
    if job.deadline.is_some_and(|d| Instant::now() >= d) {
        free();
        return report.send(job.done(JobOutcome::Expired));
    }
    let Some(handler) = registry.get(&job.method) else {
        log::debug!("{} called unknown method {:?}", job.peer, job.method);
        let outcome = match crate::protocol::reserved_service(&job.method) {
            Some(service) if !registry.serves(service) => {
                job.answer(ReplyStatus::NoService, service.as_bytes().to_vec())
            }
            _ => job.answer(ReplyStatus::UnknownMethod, job.method.clone().into_bytes()),
        };
        free();
        return report.send(job.done(outcome));
    };
    let ctx = context(&job);
    match handler {
        Handler::Sync(handler) | Handler::Inline(handler) => {
            let result = catch_unwind(AssertUnwindSafe(|| handler(&ctx, &job.args)));
            let outcome = outcome(&job, result);
            free();
            report.send(job.done(outcome))
        }
        #[cfg(feature = "tokio")]
        Handler::Async(handler, runtime) => {
            // The worker only starts it: awaiting holds no thread. The job
            // still counts against `max_queued_handlers` until it reports.
            let future = handler(ctx, &job.args);
            let report = report.clone();
            runtime.spawn(async move {
                let result = CatchUnwind(future).await;
                let outcome = outcome(&job, result);
                report.send(job.done(outcome));
            });
            free();
            true
        }
    }
}

/// What the handler of `job` learns of it.
fn context(job: &Job) -> CallContext {
    CallContext {
        peer: job.peer.clone(),
        incarnation: job.incarnation,
        request_id: job.request_id,
        method: job.method.clone(),
        deadline: job.deadline,
    }
}

/// Runs a handler declared non-blocking here and now (on the reactor), and
/// says how it ended.
pub(crate) fn run_inline(handler: &ErasedHandler, job: Job) -> JobDone {
    if job.deadline.is_some_and(|d| Instant::now() >= d) {
        return job.done(JobOutcome::Expired);
    }
    let ctx = context(&job);
    let result = catch_unwind(AssertUnwindSafe(|| handler(&ctx, &job.args)));
    let outcome = outcome(&job, result);
    job.done(outcome)
}

/// Catches a panic of the future it polls, as `catch_unwind` does for a call.
#[cfg(feature = "tokio")]
struct CatchUnwind<F>(F);

#[cfg(feature = "tokio")]
impl<F: std::future::Future + Unpin> std::future::Future for CatchUnwind<F> {
    type Output = std::thread::Result<F::Output>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let inner = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| {
            std::pin::Pin::new(&mut *inner).poll(cx)
        })) {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(value)) => std::task::Poll::Ready(Ok(value)),
            Err(panic) => std::task::Poll::Ready(Err(panic)),
        }
    }
}

/// How a job ended, from its handler's result (or panic).
fn outcome(job: &Job, result: std::thread::Result<Result<Vec<u8>, Failure>>) -> JobOutcome {
    let reply = |status, payload| job.answer(status, payload);
    match result {
        Ok(Ok(value)) => reply(ReplyStatus::Ok, value),
        Ok(Err(Failure::BadArguments(e))) => {
            log::debug!("{} sent bad arguments to {:?}: {e}", job.peer, job.method);
            reply(ReplyStatus::BadArguments, e.into_bytes())
        }
        Ok(Err(Failure::Handler(e))) => match e.data() {
            Some(data) => match crate::error::encode_typed_error(e.message(), data) {
                Ok(payload) => reply(ReplyStatus::TypedError, payload),
                Err(_) => reply(ReplyStatus::HandlerError, e.message().as_bytes().to_vec()),
            },
            None => reply(ReplyStatus::HandlerError, e.message().as_bytes().to_vec()),
        },
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            log::error!("handler {:?} panicked: {text}", job.method);
            reply(
                ReplyStatus::HandlerError,
                format!("handler panicked: {text}").into_bytes(),
            )
        }
    }
}
