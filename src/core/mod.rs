//! The sans-IO core: the protocol's state machines, with no sockets, threads or clock.
//!
//! [`Mesh`] holds every peer session and the pending-call table. The I/O
//! shell feeds it events through `handle_*` methods, each taking the current
//! time as an argument, and drains what it must do from [`Mesh::poll_action`]:
//! frames to transmit, links to open or close, events to publish, handlers to
//! run, call results to deliver. [`Mesh::poll_timeout`] says when
//! [`Mesh::handle_timeout`] must be called next. Because nothing in here reads
//! a clock or touches a socket, every timer and race is unit-tested
//! deterministically in `core::tests`.
//!
//! `Mesh` (`mesh.rs`: inputs, outputs, the tick) holds its state in parts
//! that each keep their own invariants: `peers::Peers` (the peer table
//! and its generation; each `peer::Peer` with its session, links and
//! lanes), `calls::CallTable` (pending calls and their deadlines),
//! `streams::Streams` (streams by id and wire id, their deadlines and
//! per-peer counts), `lane::Bulk` (large messages and blocked lanes,
//! node-wide), `dispatch::JobQueues` (jobs handed out, against their
//! bounds), `memory::Memory` (bytes each peer makes the node hold) and
//! `access::AccessState` (CURVE keys). The protocol's steps that join
//! those parts are `impl Mesh` blocks, one file per concern: joining
//! (`handshake.rs`), liveness, dispatch of calls and casts, streams, bulk
//! lanes and large messages (`lane.rs`, `fragments.rs`), memory, access.

mod access;
mod backoff;
mod calls;
mod config;
mod dispatch;
mod errors;
mod events;
mod fragments;
mod handshake;
mod lane;
mod liveness;
mod memory;
mod mesh;
mod peer;
mod peers;
mod rng;
mod stats;
mod stream;
mod streams;

pub use access::{Access, HandshakeFailure};
pub use calls::Outcome;
pub use config::{Limits, MeshConfig, Timers};
pub(crate) use errors::encode_typed_error;
pub use errors::{CallError, RemoteError, Side, StreamError};
pub use events::{LostReason, PeerEvent, Rejection};
pub use mesh::Purpose;
pub use mesh::{
    Action, Delivery, Job, JobDone, JobOutcome, Mesh, Origin, Runner, SendFailure, Transmit,
};
pub use peer::{Link, PeerInfo, PeerState};
pub use stats::{NodeStats, PeerStats, ServiceStats};
pub use stream::StreamId;
pub use streams::{IncomingStream, StreamSignal};

pub(crate) use rng::Rng;

#[cfg(test)]
mod tests;
