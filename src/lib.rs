//! Bilateral.
pub mod zmq;
