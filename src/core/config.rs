//! The knobs of the core: identity, timers and limits.

use std::time::Duration;

use super::access::Access;
use crate::protocol::{NodeName, Security};
use crate::security::PublicKey;

/// Every timer of the peer state machine.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Timers {
    /// How often a heartbeat (PING) goes to every joined peer. Default 1 s.
    pub heartbeat_interval: Duration,
    /// Silence on a link after which it is dead; a peer with no live link is
    /// lost. Default 5 s.
    pub lost_timeout: Duration,
    /// How long one join attempt waits for WELCOME before it counts as failed.
    /// Default 2 s.
    pub join_timeout: Duration,
    /// Interval between JOIN retransmissions within one attempt. Default 500 ms.
    pub join_retry: Duration,
    /// Delay before the first retry after a failed attempt. Default 100 ms.
    pub backoff_initial: Duration,
    /// Cap of the exponentially growing retry delay. Default 30 s.
    pub backoff_max: Duration,
    /// Fraction of each delay that is randomised: a delay `d` becomes a value in
    /// `(d·(1−jitter), d]`. Default 0.5; 0 disables jitter.
    pub backoff_jitter: f64,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            heartbeat_interval: Duration::from_secs(1),
            lost_timeout: Duration::from_secs(5),
            join_timeout: Duration::from_secs(2),
            join_retry: Duration::from_millis(500),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            backoff_jitter: 0.5,
        }
    }
}

/// Bounds on memory and work the network can make a node spend.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest message (call, reply, cast, stream open, with its headers)
    /// sent or accepted; larger ones are refused, or dropped and counted.
    /// Default 128 MiB.
    pub max_message_size: usize,
    /// Payload of one DATA or FRAGMENT frame: messages above it travel in
    /// pieces, interleaved with other traffic. 4 KiB to 1 MiB; default 128 KiB.
    pub chunk_size: usize,
    /// Bytes a stream's writer may send beyond what its reader consumed,
    /// and also bytes a writer may queue before `write` blocks: the memory a
    /// stream holds on each side. Default 1 MiB.
    pub stream_window: usize,
    /// Bulk bytes (stream data, pieces of large messages) in flight on one
    /// link at a time; a call waits behind at most this much. Throughput per
    /// link is at most this divided by the round trip. Default 512 KiB.
    pub link_window: usize,
    /// Most streams open at once, both directions together. Default 1024.
    pub max_streams: usize,
    /// Most streams one peer may have opened here at once, so that no peer
    /// takes every stream (and handler thread) of the node. Default 256.
    pub max_streams_per_peer: usize,
    /// Calls, replies, casts and stream opens in flight on one link: sent
    /// and not yet acknowledged by the peer, in bytes. Beyond it they wait
    /// in the node, counted against the peer's memory. Throughput of
    /// messages on a link is at most this divided by the round trip.
    /// Default 4 MiB.
    pub message_window: usize,
    /// The same in messages; a quarter of the sockets' high-water mark by
    /// default (2 500), so that a socket's queue never fills with them.
    pub message_window_count: usize,
    /// Most bytes one peer can make this node hold: its requests and casts
    /// until their handlers finish, messages waiting for it or not yet
    /// acknowledged, its large messages under reassembly, the receive
    /// windows of streams with it. Default 256 MiB.
    pub max_peer_memory: usize,
    /// Most bytes all peers together can make this node hold. Half of it is
    /// shared first come, first served; the other half is split evenly among
    /// the peers in session, so each can always hold
    /// `max_memory / (2 × peers in session)`. Default 1 GiB.
    pub max_memory: usize,
    /// Most calls (multicast counts once) awaiting replies at a time; beyond it
    /// a call fails with `Overloaded`. Default 100 000.
    pub max_pending_calls: usize,
    /// Most requests and casts queued for or running on the worker pool; beyond
    /// it requests are answered `Overloaded` and casts dropped. Default 10 000.
    pub max_queued_handlers: usize,
    /// The same for the built-in services' methods (`bilateral.…`), which
    /// run on the node's service thread. Default 4 096.
    pub max_queued_service_jobs: usize,
    /// Most REJECT(NotJoined) answers per second to senders without a session.
    /// Default 200.
    pub max_not_joined_replies_per_sec: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 128 * 1024 * 1024,
            chunk_size: 128 * 1024,
            stream_window: 1024 * 1024,
            link_window: 512 * 1024,
            max_streams: 1024,
            max_streams_per_peer: 256,
            message_window: 4 * 1024 * 1024,
            message_window_count: 2_500,
            max_peer_memory: 256 * 1024 * 1024,
            max_memory: 1024 * 1024 * 1024,
            max_pending_calls: 100_000,
            max_queued_handlers: 10_000,
            max_queued_service_jobs: 4_096,
            max_not_joined_replies_per_sec: 200,
        }
    }
}

/// Everything the core needs to know about the node it runs.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// This node's name.
    pub name: NodeName,
    /// The network name; only nodes with the same one can join each other.
    pub network: String,
    /// This start's random incarnation.
    pub incarnation: u64,
    /// The security mechanism of every socket of the node.
    pub security: Security,
    /// In CURVE mode, who may connect.
    pub access: Access,
    /// In CURVE mode, the initial allow-list.
    pub allowed_keys: Vec<PublicKey>,
    /// Timers.
    pub timers: Timers,
    /// Limits.
    pub limits: Limits,
    /// Seed of the random source used for backoff jitter.
    pub seed: u64,
}
