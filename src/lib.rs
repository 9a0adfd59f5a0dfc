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
//! ## What is here
//!
//! - At the root: the [`Node`] and its [`NodeBuilder`], calls ([`To`],
//!   [`PendingCall`], [`Responses`], [`CallError`]), handlers
//!   ([`CallContext`], [`HandlerError`]), membership ([`Events`],
//!   [`PeerEvent`], [`PeerInfo`]), settings ([`Timers`], [`Limits`]), what
//!   nodes of one process can share ([`Context`], [`HandlerPool`]) and errors.
//! - [`channel`]: replicated key-value channels.
//! - [`registry`]: entries owned by node sessions, gone when their owner is.
//! - [`discovery`]: a node given one seed joins the whole mesh (or, on a
//!   LAN, none: the [`Beacon`]).
//! - [`stream`]: data connections, byte streams between two nodes.
//! - [`security`]: CURVE keys and key files.
//! - `testkit` and `faults` (with the `testkit` feature): in-process test
//!   meshes, fault injection, [`Node::kill`](crate::Node), and the raw
//!   ZeroMQ binding for tests that speak the protocol by hand.
//! - With the `metrics` feature: calls, traffic, peers, drops, queues and the
//!   built-in services' sizes through the `metrics` facade (README
//!   "Metrics").
//!
//! Every wait exists blocking and async: [`PendingCall`] is a `Future`,
//! [`Events`] and [`channel::Watch`] are `futures_core::Stream`s, the stream
//! halves implement `futures_io`'s `AsyncRead`/`AsyncWrite` (and tokio's,
//! with the `tokio` feature). No runtime is assumed.
//!
//! Inside, the layers are a small safe binding over libzmq 4.3.5 (the only
//! `unsafe` code), the wire protocol (`PROTOCOL.md`), a sans-IO core of
//! state machines that take events and the current time and return actions,
//! and the I/O shell: one reactor thread per node that owns every socket,
//! and a bounded pool of handler threads, started as calls need them
//! (handlers declared non-blocking run on the reactor itself:
//! [`Node::register_inline`]).
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
mod core;
pub mod discovery;
mod error;
#[cfg(feature = "testkit")]
pub mod faults;
#[cfg(not(feature = "testkit"))]
#[allow(dead_code)] // the injector is on the send path; only `testkit` can set a plan
mod faults;
mod mailbox;
mod node;
mod protocol;
pub mod registry;
pub mod security;
mod service;
pub mod stream;
#[cfg(feature = "testkit")]
pub mod testkit;
mod zmq;

pub use crate::channel::{
    Change, Channel, ChannelConfig, ChannelError, ChannelEvent, Permission, Watch,
};
pub use crate::core::{
    Access, Limits, LostReason, NodeStats, PeerEvent, PeerInfo, PeerState, PeerStats, Rejection,
    ServiceStats, Timers,
};
pub use crate::discovery::{Beacon, ConnectPolicy, Discovery};
pub use crate::error::{CallError, Error, RemoteError, Side, SocketError, StreamError};
pub use crate::node::{
    CallContext, CallFuture, CallOneFuture, Context, Events, HandlerError, HandlerPool, Node,
    NodeBuilder, PendingCall, Response, Responses, To, WeakNode,
};
pub use crate::protocol::{NameError, NodeName, RejectCode};
pub use crate::registry::{
    Entry, Registration, Registry, RegistryConfig, RegistryError, RegistryEvent, RegistryWatch,
};
pub use crate::security::{KeyError, Keypair, PublicKey};
#[doc(hidden)]
pub use crate::service::__private;
pub use crate::service::Service;
pub use crate::stream::{Incoming, Stream, StreamReader, StreamWriter};
/// Generates a typed server and client from a trait: see [`Service`] and
/// the README's "Typed services".
pub use bilateral_macros::service;

/// The README's code, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
