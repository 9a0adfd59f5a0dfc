//! A ZeroMQ context that nodes can share, and the process-wide one.

use std::sync::OnceLock;

use crate::error::Error;

/// A ZeroMQ context: the I/O threads that move a node's bytes and the table
/// of its sockets. Each node makes its own unless given one with
/// [`NodeBuilder::context`](crate::NodeBuilder::context). Nodes that share
/// one ([`Context::shared`], or one of the application's) reach each other
/// over `inproc://` and share its I/O threads: a hundred nodes in one
/// process then take two I/O threads, not two hundred. Cloning is cheap and
/// shares the context.
///
/// A node closing on a context of its own waits up to its linger (200 ms)
/// for its goodbyes (PART) to leave; on a shared context they leave in the
/// background, so a process that exits right after closing may not send
/// them, and its peers see it lost after `lost_timeout` instead.
#[derive(Clone, Debug)]
pub struct Context(pub(crate) crate::zmq::Context);

/// Sockets a context made here may hold: a node takes a ROUTER and its
/// monitor, and a DEALER and its monitor per peer it dials, so this is
/// enough for a hub dialling thousands, or a few hundred nodes of a star
/// (libzmq's own default is 1 023).
const MAX_SOCKETS: i32 = 32_768;

/// I/O threads of the shared context: two, so that the two ends of a
/// connection inside one process do not take turns on one thread.
const SHARED_IO_THREADS: i32 = 2;

/// Open files the process may hold, raised to this (or the hard limit) when
/// the first node starts: each socket takes a descriptor for its mailbox and
/// each connection one more, and the common soft limit of 1 024 is reached
/// by a hundred nodes in one process.
const WANTED_OPEN_FILES: u64 = 65_536;

/// Sockets of a node's own context: enough to dial over a thousand peers
/// (libzmq's default of 1 023 stops a hub at about three hundred), and
/// small, since libzmq sizes its tables by it.
const OWN_MAX_SOCKETS: i32 = 4_096;

/// A context for one node.
pub(crate) fn own() -> Result<crate::zmq::Context, Error> {
    let ctx = crate::zmq::Context::new()?;
    ctx.set_max_sockets(OWN_MAX_SOCKETS)?;
    Ok(ctx)
}

/// Raises the process's soft limit of open files towards its hard limit
/// (at most [`WANTED_OPEN_FILES`]), once, as Go's runtime does at start.
pub(crate) fn raise_open_files() {
    static RAISED: OnceLock<()> = OnceLock::new();
    RAISED.get_or_init(|| match rlimit::increase_nofile_limit(WANTED_OPEN_FILES) {
        Ok(limit) => log::debug!("open files limit: {limit}"),
        Err(e) => log::debug!("open files limit not raised: {e}"),
    });
}

impl Context {
    /// One context for the whole process (made on first use): two I/O
    /// threads, up to 32 768 sockets. Give it to the nodes that should share
    /// it (plaintext ones: a CURVE node's ZAP handler needs a context of its
    /// own).
    pub fn shared() -> Result<Self, Error> {
        static SHARED: OnceLock<Context> = OnceLock::new();
        if let Some(ctx) = SHARED.get() {
            return Ok(ctx.clone());
        }
        let ctx = Context::new()?;
        ctx.set_io_threads(SHARED_IO_THREADS)?;
        // Another thread may have made one meanwhile: all use the first.
        Ok(SHARED.get_or_init(|| ctx).clone())
    }

    /// A new context with one I/O thread, for up to 32 768 sockets.
    pub fn new() -> Result<Self, Error> {
        let ctx = crate::zmq::Context::new()?;
        ctx.set_max_sockets(MAX_SOCKETS)?;
        Ok(Context(ctx))
    }

    /// Sets the number of I/O threads (before any node uses the context).
    pub fn set_io_threads(&self, threads: i32) -> Result<(), Error> {
        Ok(self.0.set_io_threads(threads)?)
    }

    /// Sets the most sockets the context may hold (32 768 here; each node
    /// takes a ROUTER, a monitor, and two per dialled peer).
    pub fn set_max_sockets(&self, max: i32) -> Result<(), Error> {
        Ok(self.0.set_max_sockets(max)?)
    }
}
