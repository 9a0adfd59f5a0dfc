//! A ZeroMQ context that nodes can share.

use crate::error::Error;

/// A ZeroMQ context: the I/O threads that move a node's bytes and the table
/// of its sockets. Each node makes its own unless given one with
/// [`NodeBuilder::context`](crate::NodeBuilder::context); nodes that share
/// one can reach each other over `inproc://` and share its I/O threads.
/// Cloning is cheap and shares the context.
#[derive(Clone, Debug)]
pub struct Context(pub(crate) crate::zmq::Context);

impl Context {
    /// A new context with one I/O thread.
    pub fn new() -> Result<Self, Error> {
        Ok(Context(crate::zmq::Context::new()?))
    }

    /// Sets the number of I/O threads (before any node uses the context).
    pub fn set_io_threads(&self, threads: i32) -> Result<(), Error> {
        Ok(self.0.set_io_threads(threads)?)
    }

    /// Sets the most sockets the context may hold (libzmq's default is
    /// 1 023; each node takes a ROUTER, a monitor, and two per dialled peer).
    pub fn set_max_sockets(&self, max: i32) -> Result<(), Error> {
        Ok(self.0.set_max_sockets(max)?)
    }
}
