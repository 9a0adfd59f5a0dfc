//! Calls and casts: sending requests, admitting inbound work, matching replies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::config::Limits;
use super::mesh::{Action, Job, JobDone, JobOutcome, Mesh, Purpose, Runner};
use super::peer::Link;
use crate::core::errors::{CallError, RemoteError, Side};
use crate::protocol::{Cast, Message, NodeName, Reply, ReplyStatus, Request};

/// Jobs handed out and not yet done, by runner: the worker pool's
/// (bounded by `max_queued_handlers`) and the service thread's
/// (`max_queued_service_jobs`).
#[derive(Debug, Default)]
pub(crate) struct JobQueues {
    workers: usize,
    services: usize,
}

impl JobQueues {
    /// Whether `runner`'s queue is at its bound.
    fn is_full(&self, runner: Runner, limits: &Limits) -> bool {
        match runner {
            Runner::Workers => self.workers >= limits.max_queued_handlers,
            Runner::Services => self.services >= limits.max_queued_service_jobs,
        }
    }

    fn admit(&mut self, runner: Runner) {
        match runner {
            Runner::Workers => self.workers += 1,
            Runner::Services => self.services += 1,
        }
    }

    fn done(&mut self, runner: Runner) {
        let n = match runner {
            Runner::Workers => &mut self.workers,
            Runner::Services => &mut self.services,
        };
        *n = n.saturating_sub(1);
    }

    /// Jobs of the worker pool (the application's requests and casts).
    pub(crate) fn handlers(&self) -> usize {
        self.workers
    }
}

impl<C: Clone> Mesh<C> {
    /// Starts a call of `method` on every peer in `targets`.
    ///
    /// Each target gets exactly one [`Action::Resolve`] with its index in
    /// `targets`: at once for targets that cannot be reached (unknown, not in
    /// session, this node itself), else when its reply arrives, its session
    /// ends, or `deadline` passes, unless the call is cancelled
    /// ([`Mesh::handle_cancel`]) first. Returns the call's request id if
    /// any target is waiting.
    pub fn handle_call(
        &mut self,
        targets: &[NodeName],
        method: &str,
        args: &[u8],
        deadline: Instant,
        completion: C,
        now: Instant,
    ) -> Option<u64> {
        let refuse = |mesh: &mut Self, index: usize, error: CallError| {
            mesh.actions.push_back(Action::Resolve {
                completion: completion.clone(),
                index,
                outcome: Err(error),
            });
        };
        if self.closed {
            (0..targets.len()).for_each(|i| refuse(self, i, CallError::Closed));
            return None;
        }
        if deadline <= now {
            (0..targets.len()).for_each(|i| refuse(self, i, CallError::Timeout));
            return None;
        }
        if self.calls.len() >= self.cfg.limits.max_pending_calls {
            (0..targets.len()).for_each(|i| refuse(self, i, CallError::Overloaded(Side::Local)));
            return None;
        }
        let id = self.calls.allocate_id();
        let timeout = deadline.saturating_duration_since(now);
        let request = Message::Request(Request {
            request_id: id,
            timeout_ms: super::mesh::timeout_ms(timeout),
            method,
            args,
        });
        // One encoding for every target; a large one is shared, not copied.
        let frame = Arc::new(request.encode(self.cfg.incarnation));
        if frame.len() > self.cfg.limits.max_message_size {
            (0..targets.len()).for_each(|i| refuse(self, i, CallError::TooLarge(Side::Local)));
            return None;
        }
        // The call is in the table before its requests leave: a request
        // that has to wait for room on its link is only sent while its call
        // still waits for that peer.
        let mut routes = Vec::with_capacity(targets.len());
        for (index, target) in targets.iter().enumerate() {
            let route = match self.peers.get_mut(target) {
                Some(peer) if peer.session.is_some() => match peer.preferred_link() {
                    Some(link) => {
                        peer.stats.calls_out += 1;
                        Ok(link)
                    }
                    None => Err(CallError::Unreachable(None)),
                },
                Some(peer) => Err(CallError::Unreachable(peer.last_rejection.clone())),
                None => Err(CallError::UnknownPeer),
            };
            match route {
                Ok(link) => routes.push((index, target, link)),
                Err(error) => refuse(self, index, error),
            }
        }
        let waiting: Vec<_> = routes.iter().map(|&(i, t, _)| (t.clone(), i)).collect();
        let any = !waiting.is_empty();
        self.calls.insert(id, completion.clone(), deadline, waiting);
        for (_, target, link) in routes {
            if !self.send_message(target, link, frame.clone(), Purpose::Request(id), now) {
                let refused = Err(CallError::Overloaded(Side::Local));
                if let Some(r) = self.calls.resolve(id, target, refused) {
                    self.push_resolved(vec![r]);
                }
            }
        }
        any.then_some(id)
    }

    /// The caller of call `id` no longer waits: the call leaves the table at
    /// once, its entries get no outcome, and a request still waiting for
    /// room on its link is not sent. Replies that come later are counted late.
    pub fn handle_cancel(&mut self, id: u64) {
        if self.calls.cancel(id) {
            self.stats.calls_cancelled += 1;
        }
    }

    /// Sends a cast of `method` to every target in session; returns how many.
    pub fn handle_cast(
        &mut self,
        targets: &[NodeName],
        method: &str,
        args: &[u8],
        now: Instant,
    ) -> usize {
        if self.closed {
            return 0;
        }
        let frame = Arc::new(Message::Cast(Cast { method, args }).encode(self.cfg.incarnation));
        let mut sent = 0;
        for target in targets {
            let link = self
                .peers
                .get(target)
                .filter(|p| p.session.is_some())
                .and_then(|p| p.preferred_link());
            if let Some(link) = link {
                if self.send_message(target, link, frame.clone(), Purpose::Message, now) {
                    sent += 1;
                } else {
                    self.stats.casts_dropped += 1;
                }
            }
        }
        sent
    }

    /// A REQUEST from a peer in session: admit it to the worker pool or refuse it.
    pub(super) fn on_request(
        &mut self,
        name: &NodeName,
        incarnation: u64,
        link: Link,
        r: &Request<'_>,
        now: Instant,
    ) {
        if let Some(peer) = self.peers.get_mut(name) {
            if !peer.recent_requests.insert(r.request_id) {
                // A copy of a request already admitted: each runs at most once.
                self.stats.duplicate_requests += 1;
                return;
            }
            peer.stats.calls_in += 1;
        }
        let cost = job_cost(r.method, r.args);
        let runner = Runner::of(r.method);
        let refusal: Option<&[u8]> = if self.jobs.is_full(runner, &self.cfg.limits) {
            Some(b"handler queue full")
        } else if !self.admits(name, cost) {
            self.refused_for_memory(name, "a request", cost);
            Some(b"no memory for this peer's requests")
        } else {
            None
        };
        if let Some(payload) = refusal {
            self.stats.requests_refused += 1;
            let reply = Message::Reply(Reply {
                request_id: r.request_id,
                status: ReplyStatus::Overloaded,
                payload,
            });
            self.send(name, link, &reply, Purpose::Control);
            return;
        }
        self.jobs.admit(runner);
        self.memory.add_job(name, cost);
        self.recount(name);
        self.actions.push_back(Action::Dispatch(Job {
            runner,
            peer: name.clone(),
            incarnation,
            link,
            request_id: Some(r.request_id),
            deadline: Some(now + Duration::from_millis(u64::from(r.timeout_ms))),
            method: r.method.to_string(),
            args: r.args.to_vec(),
        }));
    }

    /// A CAST from a peer in session: admit it or drop it.
    pub(super) fn on_cast(&mut self, name: &NodeName, incarnation: u64, link: Link, c: &Cast<'_>) {
        let cost = job_cost(c.method, c.args);
        let runner = Runner::of(c.method);
        if self.jobs.is_full(runner, &self.cfg.limits) {
            self.stats.casts_dropped += 1;
            log::debug!("dropped cast {} from {name}: handler queue full", c.method);
            return;
        }
        if !self.admits(name, cost) {
            self.stats.casts_dropped += 1;
            self.refused_for_memory(name, "a cast", cost);
            return;
        }
        self.jobs.admit(runner);
        self.memory.add_job(name, cost);
        self.recount(name);
        self.actions.push_back(Action::Dispatch(Job {
            runner,
            peer: name.clone(),
            incarnation,
            link,
            request_id: None,
            deadline: None,
            method: c.method.to_string(),
            args: c.args.to_vec(),
        }));
    }

    /// A REPLY: settle the matching call entry, or count it as late.
    pub(super) fn on_reply(&mut self, name: &NodeName, r: &Reply<'_>) {
        let text = || String::from_utf8_lossy(r.payload).into_owned();
        let outcome = match r.status {
            ReplyStatus::Ok => Ok(r.payload.to_vec()),
            ReplyStatus::HandlerError => Err(CallError::Remote(RemoteError::new(text()))),
            ReplyStatus::TypedError => Err(CallError::Remote(RemoteError::from_typed_payload(
                r.payload,
            ))),
            ReplyStatus::UnknownMethod => Err(CallError::UnknownMethod),
            ReplyStatus::NoService => Err(CallError::NoService(text())),
            ReplyStatus::BadArguments => Err(CallError::BadArguments(text())),
            ReplyStatus::Overloaded => Err(CallError::Overloaded(Side::Remote)),
            ReplyStatus::TooLarge => Err(CallError::TooLarge(Side::Remote)),
            ReplyStatus::ShuttingDown => Err(CallError::ShuttingDown),
            ReplyStatus::Other(code) => Err(CallError::Remote(RemoteError::new(format!(
                "status {code}: {}",
                text()
            )))),
        };
        match self.calls.resolve(r.request_id, name, outcome) {
            Some(resolved) => self.push_resolved(vec![resolved]),
            None => {
                self.stats.late_replies += 1;
                log::debug!("late or unmatched reply {} from {name}", r.request_id);
            }
        }
    }

    /// A worker finished a job: send its reply if the session still stands.
    pub fn handle_job_done(&mut self, done: JobDone, now: Instant) {
        self.jobs.done(done.runner);
        self.memory.remove_job(&done.peer, done.held);
        self.recount(&done.peer);
        let (status, payload) = match done.outcome {
            JobOutcome::Reply(status, payload) => (status, payload),
            JobOutcome::Expired => {
                self.stats.requests_expired += 1;
                return;
            }
            JobOutcome::CastDone => return,
        };
        let Some(request_id) = done.request_id else {
            return;
        };
        let link = self
            .peers
            .get(&done.peer)
            .filter(|p| p.incarnation() == Some(done.incarnation))
            .and_then(|p| {
                if p.link_up(done.link) {
                    Some(done.link)
                } else {
                    p.preferred_link()
                }
            });
        let Some(link) = link else {
            self.stats.replies_orphaned += 1;
            return;
        };
        let reply = Message::Reply(Reply {
            request_id,
            status,
            payload: &payload,
        })
        .encode(self.cfg.incarnation);
        if reply.len() > self.cfg.limits.max_message_size {
            // Larger than this node sends: the caller is told so at once.
            self.stats.oversized += 1;
            log::debug!(
                "a reply of {} bytes to {} is over max_message_size",
                reply.len(),
                done.peer
            );
            let text = format!(
                "the reply ({} bytes) is larger than the callee's max_message_size ({})",
                reply.len(),
                self.cfg.limits.max_message_size
            );
            let refusal = Message::Reply(Reply {
                request_id,
                status: ReplyStatus::TooLarge,
                payload: text.as_bytes(),
            });
            self.send(&done.peer, link, &refusal, Purpose::Control);
            return;
        }
        if !self.admits(&done.peer, reply.len()) {
            // The handler ran, but the peer cannot be made to hold its reply:
            // the caller learns that, instead of waiting out its deadline.
            self.stats.replies_refused += 1;
            self.refused_for_memory(&done.peer, "a reply", reply.len());
            let refusal = Message::Reply(Reply {
                request_id,
                status: ReplyStatus::Overloaded,
                payload: b"no memory for this peer's replies",
            });
            self.send(&done.peer, link, &refusal, Purpose::Control);
            return;
        }
        if !self.send_message(&done.peer, link, Arc::new(reply), Purpose::Reply, now) {
            self.stats.replies_orphaned += 1;
        }
    }
}

/// What a request or cast holds while its job waits and runs: its arguments
/// and method name.
pub(crate) fn job_cost(method: &str, args: &[u8]) -> usize {
    method.len() + args.len()
}
