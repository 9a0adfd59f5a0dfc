//! Bilateral.
pub mod core;
pub mod error;
pub mod node;
pub mod protocol;
pub mod zmq;

pub use crate::core::{
    Limits, LostReason, NodeStats, PeerEvent, PeerInfo, PeerState, PeerStats, Rejection, Timers,
};
pub use crate::error::{CallError, Error, Side};
pub use crate::node::{
    CallContext, Events, HandlerError, Node, NodeBuilder, PendingCall, Response, Responses, To,
};
pub use crate::protocol::{NodeName, RejectCode};
