//! # Bilateral: a symmetric RPC mesh over ZeroMQ
//!
//! Every node binds one ROUTER and dials each named peer with one DEALER;
//! over that single connection either side can call the other. A call can
//! go to one peer, a list, or every peer in session, and comes back with
//! **one entry per targeted peer**: its reply, or a typed reason why there
//! is none. Peers are kept joined by a join / heartbeat / backoff state
//! machine that never gives up, detects restarts (a new *incarnation*), and
//! reports every change as an event.
//!
//! ```no_run
//! use std::time::Duration;
//! use bilateral::{Node, To};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Node::builder("server").network("demo").listen("tcp://127.0.0.1:*").start()?;
//! server.register("add", |_ctx, (a, b): (i64, i64)| Ok(a + b))?;
//!
//! let client = Node::builder("client").network("demo").start()?;
//! client.connect("server", server.endpoint().unwrap())?;
//! client.wait_for_peer("server", Duration::from_secs(5))?;
//!
//! let sum: i64 = client.call_one("server", "add", &(2, 3), Duration::from_secs(1))?;
//! assert_eq!(sum, 5);
//! for response in client.call::<_, i64>(To::All, "add", &(1, 1), Duration::from_secs(1))? {
//!     println!("{}: {:?}", response.peer, response.result);
//! }
//! # Ok(()) }
//! ```
//!
//! ## Layers
//!
//! - [`zmq`]: a small safe binding over libzmq 4.3.5 (built from source with
//!   CURVE through libsodium). The only module with unsafe code.
//! - [`protocol`]: names, messages and their byte encoding (`PROTOCOL.md`).
//! - [`core`]: the sans-IO state machines — peer sessions, join and
//!   heartbeat timers, backoff, the pending-call table. They take events and
//!   the current time and return actions; no sockets, threads or clocks.
//! - [`node`]: the I/O shell — the [`Node`] handle, one reactor thread that
//!   owns every socket, and a bounded worker pool for handlers.
//!
//! ## Guarantees
//!
//! - A call returns by its deadline, whatever the node's threads are doing,
//!   with one entry per target: a reply or a [`CallError`].
//! - Calls to unknown or inactive peers fail at once, not at the deadline;
//!   calls pending on a session fail as soon as the session ends.
//! - Nothing received from the network can panic or wedge a node: malformed
//!   input is dropped, counted ([`NodeStats`]) and logged.
//! - Every queue is bounded; a full one is reported as
//!   [`CallError::Overloaded`] or [`Error::Overloaded`], never unbounded memory.
//! - The library logs through the `log` crate and never prints.

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod channel;
pub mod core;
pub mod error;
pub mod faults;
mod mailbox;
pub mod node;
pub mod protocol;
pub mod security;
pub mod stream;
pub mod testkit;
pub mod zmq;

pub use crate::channel::{
    Change, Channel, ChannelConfig, ChannelError, ChannelEvent, Permission, Watch,
};
pub use crate::core::{
    Access, Limits, LostReason, NodeStats, PeerEvent, PeerInfo, PeerState, PeerStats, Rejection,
    Timers,
};
pub use crate::error::{CallError, Error, RemoteError, Side, StreamError};
pub use crate::node::{
    CallContext, Events, HandlerError, Node, NodeBuilder, PendingCall, Response, Responses, To,
    WeakNode,
};
pub use crate::protocol::{NodeName, RejectCode};
pub use crate::security::{KeyError, Keypair, PublicKey};
pub use crate::stream::{Incoming, Stream, StreamReader, StreamWriter};

/// The README's code, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
