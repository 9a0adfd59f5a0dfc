//! What a node reports through the [`metrics`](https://docs.rs/metrics)
//! facade with the `metrics` feature; without it, every call here is an
//! empty inline function and nothing is kept.
//!
//! Everything is recorded on the reactor thread, where it happens: bytes
//! and messages as they cross the sockets, a call's outcome and latency when
//! its result is handed to the caller, a served request when its handler's
//! report comes back. Figures the core already counts (drops by reason,
//! peers by state, queues, memory) are read from it at most once a second,
//! and the built-in services' figures by the service thread as often.
//! Every series carries the label `node` (the node's name), so the nodes of
//! one process stay apart.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `bilateral_calls_total` | counter | `method`, `outcome` (one per target) |
//! | `bilateral_call_duration_seconds` | histogram | `method` |
//! | `bilateral_requests_served_total` | counter | `method` (`(unregistered)` for a name with no handler: peers choose the names), `status` |
//! | `bilateral_casts_served_total` | counter | `method` (likewise) |
//! | `bilateral_messages_total`, `bilateral_bytes_total` | counter | `direction` (`in`, `out`) |
//! | `bilateral_stream_bytes_total` | counter | `direction` |
//! | `bilateral_peers` | gauge | `state` (`joining`, `active`, `backoff`) |
//! | `bilateral_dropped_total` | counter | `reason` (each drop counter of [`NodeStats`](crate::NodeStats)) |
//! | `bilateral_pending_calls`, `bilateral_queued_handlers`, `bilateral_memory_held_bytes` | gauge | |
//! | `bilateral_service` | gauge | `service`, `counter`: each built-in service's own figures ([`ServiceStats`](crate::ServiceStats)), such as a channel's size or the registry's entries |

#[cfg(feature = "metrics")]
pub(crate) use enabled::*;

#[cfg(not(feature = "metrics"))]
pub(crate) use disabled::*;

/// The label value of a call's outcome.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
fn outcome_label(outcome: &crate::core::Outcome) -> &'static str {
    use crate::error::CallError as E;
    match outcome {
        Ok(_) => "ok",
        Err(E::Remote(_)) => "remote_error",
        Err(E::UnknownMethod) => "unknown_method",
        Err(E::NoService(_)) => "no_service",
        Err(E::BadArguments(_)) => "bad_arguments",
        Err(E::BadReply(_)) => "bad_reply",
        Err(E::Overloaded(_)) => "overloaded",
        Err(E::TooLarge(_)) => "too_large",
        Err(E::Timeout) => "timeout",
        Err(E::PeerLost(_)) => "peer_lost",
        Err(E::Unreachable(_)) => "unreachable",
        Err(E::UnknownPeer) => "unknown_peer",
        Err(E::ShuttingDown) => "shutting_down",
        Err(E::Closed) => "closed",
        Err(E::Local(_)) => "local",
    }
}

#[cfg(feature = "metrics")]
mod enabled {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use metrics::{Counter, Gauge, Label, counter, gauge, histogram};

    use super::super::completion::CallSink;
    use super::outcome_label;
    use crate::core::{JobDone, JobOutcome, Mesh, Outcome, PeerState, Purpose};
    use crate::protocol::ReplyStatus;

    /// The method label of requests and casts for a method with no handler.
    pub(crate) const UNREGISTERED: &str = "(unregistered)";

    /// How often the core's own counters are read.
    const SAMPLE_EVERY: Duration = Duration::from_secs(1);

    /// What a call needs to be reported when it ends: its method and when it
    /// started. Kept with the call's sink, one per call.
    #[derive(Debug)]
    pub(crate) struct CallMeter {
        method: Arc<str>,
        started: Instant,
    }

    impl CallMeter {
        /// A call of `method` starting now.
        pub(crate) fn start(method: &str) -> CallMeter {
            CallMeter {
                method: method.into(),
                started: Instant::now(),
            }
        }
    }

    /// The reactor's handles on a node's series.
    pub(crate) struct NodeMetrics {
        node: Arc<str>,
        messages_in: Counter,
        messages_out: Counter,
        bytes_in: Counter,
        bytes_out: Counter,
        stream_in: Counter,
        stream_out: Counter,
        pending: Gauge,
        queued: Gauge,
        memory: Gauge,
        last_sample: Option<Instant>,
    }

    impl NodeMetrics {
        pub(crate) fn new(node: &str) -> NodeMetrics {
            let node: Arc<str> = node.into();
            let n = || Label::new("node", node.to_string());
            let dir = |d: &'static str| vec![n(), Label::new("direction", d)];
            NodeMetrics {
                messages_in: counter!("bilateral_messages_total", dir("in")),
                messages_out: counter!("bilateral_messages_total", dir("out")),
                bytes_in: counter!("bilateral_bytes_total", dir("in")),
                bytes_out: counter!("bilateral_bytes_total", dir("out")),
                stream_in: counter!("bilateral_stream_bytes_total", dir("in")),
                stream_out: counter!("bilateral_stream_bytes_total", dir("out")),
                pending: gauge!("bilateral_pending_calls", vec![n()]),
                queued: gauge!("bilateral_queued_handlers", vec![n()]),
                memory: gauge!("bilateral_memory_held_bytes", vec![n()]),
                last_sample: None,
                node,
            }
        }

        /// A message of `bytes` arrived on a socket.
        #[inline]
        pub(crate) fn received(&self, bytes: usize) {
            self.messages_in.increment(1);
            self.bytes_in.increment(bytes as u64);
        }

        /// `bytes` of a stream reached it.
        #[inline]
        pub(crate) fn stream_received(&self, bytes: usize) {
            self.stream_in.increment(bytes as u64);
        }

        /// A frame of `bytes` went to a socket.
        #[inline]
        pub(crate) fn sent(&self, bytes: usize, purpose: Purpose) {
            self.messages_out.increment(1);
            self.bytes_out.increment(bytes as u64);
            if let Purpose::Stream(_) = purpose {
                self.stream_out.increment(bytes as u64);
            }
        }

        /// A call's target ended with `outcome`.
        pub(crate) fn call_ended(&self, meter: &CallMeter, outcome: &Outcome) {
            let method = meter.method.to_string();
            counter!(
                "bilateral_calls_total",
                "node" => self.node.to_string(),
                "method" => method.clone(),
                "outcome" => outcome_label(outcome),
            )
            .increment(1);
            histogram!(
                "bilateral_call_duration_seconds",
                "node" => self.node.to_string(),
                "method" => method,
            )
            .record(meter.started.elapsed().as_secs_f64());
        }

        /// A request or cast was served and ended as `done` says. Its method
        /// labels the series only if `registered` says a handler has that
        /// name: a peer chooses the names it calls, and a label per name it
        /// makes up would grow the recorder without bound.
        pub(crate) fn served(&self, done: &JobDone, registered: impl FnOnce(&str) -> bool) {
            let node = self.node.to_string();
            let method = if registered(&done.method) {
                done.method.clone()
            } else {
                UNREGISTERED.to_string()
            };
            match &done.outcome {
                JobOutcome::CastDone => {
                    counter!("bilateral_casts_served_total", "node" => node, "method" => method)
                        .increment(1);
                }
                JobOutcome::Reply(..) | JobOutcome::Expired => {
                    let status = match &done.outcome {
                        JobOutcome::Reply(status, _) => status_label(*status),
                        _ => "expired",
                    };
                    counter!(
                        "bilateral_requests_served_total",
                        "node" => node,
                        "method" => method,
                        "status" => status,
                    )
                    .increment(1);
                }
            }
        }

        /// Reads the core's counters if a second has passed since the last time.
        pub(crate) fn sample(&mut self, mesh: &Mesh<CallSink>, now: Instant) {
            if self
                .last_sample
                .is_some_and(|t| now.duration_since(t) < SAMPLE_EVERY)
            {
                return;
            }
            self.last_sample = Some(now);
            self.pending.set(mesh.pending_calls() as f64);
            self.queued.set(mesh.queued_handlers() as f64);
            self.memory.set(mesh.memory_held() as f64);
            let (mut joining, mut active, mut backoff) = (0u32, 0u32, 0u32);
            for p in mesh.peer_infos() {
                match p.state {
                    PeerState::Joining => joining += 1,
                    PeerState::Active => active += 1,
                    PeerState::Backoff => backoff += 1,
                }
            }
            for (state, n) in [
                ("joining", joining),
                ("active", active),
                ("backoff", backoff),
            ] {
                gauge!("bilateral_peers", "node" => self.node.to_string(), "state" => state)
                    .set(f64::from(n));
            }
            for (reason, n) in mesh.stats().drops() {
                counter!(
                    "bilateral_dropped_total",
                    "node" => self.node.to_string(),
                    "reason" => reason,
                )
                .absolute(n);
            }
        }
    }

    /// The built-in services' own figures (channels, registry entries,
    /// discovered nodes, ...), one gauge per service and counter.
    pub(crate) fn services(node: &str, stats: &[crate::core::ServiceStats]) {
        for service in stats {
            for (name, value) in &service.counters {
                gauge!(
                    "bilateral_service",
                    "node" => node.to_string(),
                    "service" => service.name.clone(),
                    "counter" => name.clone(),
                )
                .set(*value as f64);
            }
        }
    }

    fn status_label(status: ReplyStatus) -> &'static str {
        match status {
            ReplyStatus::Ok => "ok",
            ReplyStatus::HandlerError => "handler_error",
            ReplyStatus::UnknownMethod => "unknown_method",
            ReplyStatus::BadArguments => "bad_arguments",
            ReplyStatus::Overloaded => "overloaded",
            ReplyStatus::ShuttingDown => "shutting_down",
            ReplyStatus::TypedError => "typed_error",
            ReplyStatus::NoService => "no_service",
            ReplyStatus::TooLarge => "too_large",
            ReplyStatus::Other(_) => "other",
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod disabled {
    /// Nothing: the `metrics` feature is off.
    #[inline(always)]
    pub(crate) fn services(_node: &str, _stats: &[crate::core::ServiceStats]) {}

    use std::time::Instant;

    use super::super::completion::CallSink;
    use crate::core::{JobDone, Mesh, Outcome, Purpose};

    /// Nothing: the `metrics` feature is off.
    #[derive(Debug)]
    pub(crate) struct CallMeter;

    impl CallMeter {
        #[inline(always)]
        pub(crate) fn start(_method: &str) -> CallMeter {
            CallMeter
        }
    }

    /// Nothing: the `metrics` feature is off.
    pub(crate) struct NodeMetrics;

    impl NodeMetrics {
        #[inline(always)]
        pub(crate) fn new(_node: &str) -> NodeMetrics {
            NodeMetrics
        }
        #[inline(always)]
        pub(crate) fn received(&self, _bytes: usize) {}
        #[inline(always)]
        pub(crate) fn stream_received(&self, _bytes: usize) {}
        #[inline(always)]
        pub(crate) fn sent(&self, _bytes: usize, _purpose: Purpose) {}
        #[inline(always)]
        pub(crate) fn call_ended(&self, _meter: &CallMeter, _outcome: &Outcome) {}
        #[inline(always)]
        pub(crate) fn served(&self, _done: &JobDone, _registered: impl FnOnce(&str) -> bool) {}
        #[inline(always)]
        pub(crate) fn sample(&mut self, _mesh: &Mesh<CallSink>, _now: Instant) {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CallError;

    #[test]
    fn every_outcome_has_its_own_label() {
        let outcomes = [
            Ok(Vec::new()),
            Err(CallError::UnknownMethod),
            Err(CallError::Timeout),
            Err(CallError::BadArguments(String::new())),
            Err(CallError::Unreachable(None)),
        ];
        let labels: std::collections::HashSet<_> = outcomes.iter().map(outcome_label).collect();
        assert_eq!(labels.len(), outcomes.len());
    }
}
