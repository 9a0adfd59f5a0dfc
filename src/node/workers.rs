//! The bounded worker pool that runs handlers, off the reactor thread.
//!
//! Admission is bounded by the core (`max_queued_handlers`), so the job queue
//! itself needs no second limit. A handler that blocks holds one worker; the
//! reactor, and with it every heartbeat, keeps running.
//!
//! Workers start when work needs them, up to the pool's size, and then
//! stay: a node that is never called has no worker thread at all. Each job
//! handed out either claims a worker that waits idle or, when none does and
//! the pool is not full, starts one; so below the pool's size a job never
//! waits behind another. (A worker counts itself idle when it finishes a
//! job; once the pool is full the count may run ahead of the truth, which
//! only matters for starting workers, and a full pool starts none.)

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, SendError, Sender, unbounded};
use parking_lot::Mutex;

use super::handlers::{CallContext, ErasedHandler, Failure, Handler, Registry};
use super::waker::Waker;
use crate::core::{Job, JobDone, JobOutcome};
use crate::protocol::ReplyStatus;

/// What every worker of a pool shares.
struct Pool {
    node: String,
    size: usize,
    jobs: Receiver<Job>,
    registry: Arc<Registry>,
    report: Report,
    closing: AtomicBool,
    /// Workers waiting for a job that no job has claimed yet.
    idle: AtomicUsize,
    handles: Mutex<Vec<JoinHandle<()>>>,
    exit: Sender<ThreadId>,
}

impl Pool {
    /// Starts one more worker if the pool is not full.
    fn grow(self: &Arc<Self>) {
        let mut handles = self.handles.lock();
        if handles.len() >= self.size || self.closing.load(Ordering::Acquire) {
            return;
        }
        let pool = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("bilateral-worker-{}-{}", self.node, handles.len()))
            .spawn(move || pool.work());
        match spawned {
            Ok(h) => handles.push(h),
            Err(e) => log::error!(
                "node {}: cannot start a handler thread ({e}); {} run the handlers",
                self.node,
                handles.len()
            ),
        }
    }

    fn work(self: Arc<Self>) {
        // Reports the exit even if something below unwinds.
        struct ExitGuard(Sender<ThreadId>);
        impl Drop for ExitGuard {
            fn drop(&mut self) {
                let _ = self.0.send(std::thread::current().id());
            }
        }
        let _guard = ExitGuard(self.exit.clone());
        // The worker counts itself idle as soon as its handler is over and
        // before the reactor can hear of it: work that the result sets off
        // (the caller's next call) then finds it free instead of starting a
        // worker it does not need.
        let free = || {
            self.idle.fetch_add(1, Ordering::AcqRel);
        };
        while let Ok(job) = self.jobs.recv() {
            if self.closing.load(Ordering::Acquire)
                || !run(&self.registry, job, &self.report, &free)
            {
                break;
            }
        }
    }
}

/// The workers of one node.
pub(crate) struct WorkerPool {
    pool: Arc<Pool>,
    exited: Receiver<ThreadId>,
}

/// Where the reactor hands out jobs (see the module docs).
pub(crate) struct JobSender {
    tx: Sender<Job>,
    pool: Arc<Pool>,
}

impl JobSender {
    /// Queues `job` for a worker, starting one if none is free.
    pub(crate) fn send(&self, job: Job) -> Result<(), SendError<Job>> {
        self.tx.send(job)?;
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
    /// A pool of up to `size` workers (none started yet) taking jobs from
    /// the returned sender.
    pub(crate) fn start(
        node: &str,
        size: usize,
        registry: Arc<Registry>,
        done: Sender<JobDone>,
        waker: Arc<Waker>,
    ) -> (WorkerPool, JobSender) {
        let (tx, jobs) = unbounded::<Job>();
        let (exit, exited) = unbounded();
        let pool = Arc::new(Pool {
            node: node.to_string(),
            size,
            jobs,
            registry,
            report: Report::new(done, waker),
            closing: AtomicBool::new(false),
            idle: AtomicUsize::new(0),
            handles: Mutex::new(Vec::with_capacity(size)),
            exit,
        });
        (
            WorkerPool {
                pool: pool.clone(),
                exited,
            },
            JobSender { tx, pool },
        )
    }

    /// Stops the pool: queued jobs are dropped, running handlers may finish
    /// within `grace`. Workers still busy after it are left to end on their own.
    pub(crate) fn shutdown(self, grace: Duration) {
        self.pool.closing.store(true, Ordering::Release);
        let me = std::thread::current().id();
        let deadline = Instant::now() + grace;
        let mut remaining: Vec<JoinHandle<()>> = std::mem::take(&mut *self.pool.handles.lock())
            .into_iter()
            .filter(|h| h.thread().id() != me)
            .collect();
        while !remaining.is_empty() {
            let Ok(id) = self.exited.recv_deadline(deadline) else {
                break;
            };
            if let Some(pos) = remaining.iter().position(|h| h.thread().id() == id) {
                let _ = remaining.swap_remove(pos).join();
            }
        }
        if !remaining.is_empty() {
            log::warn!(
                "{} handler(s) still running at close; not waiting for them",
                remaining.len()
            );
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
    let ctx = CallContext {
        peer: job.peer.clone(),
        incarnation: job.incarnation,
        request_id: job.request_id,
        method: job.method.clone(),
        deadline: job.deadline,
    };
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

/// Runs a handler declared non-blocking here and now (on the reactor), and
/// says how it ended.
pub(crate) fn run_inline(handler: &ErasedHandler, job: Job) -> JobDone {
    if job.deadline.is_some_and(|d| Instant::now() >= d) {
        return job.done(JobOutcome::Expired);
    }
    let ctx = CallContext {
        peer: job.peer.clone(),
        incarnation: job.incarnation,
        request_id: job.request_id,
        method: job.method.clone(),
        deadline: job.deadline,
    };
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
