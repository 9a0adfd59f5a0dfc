//! Bilateral.
pub mod core;
pub mod error;
pub mod protocol;
pub mod zmq;
