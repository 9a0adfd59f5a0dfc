//! The libzmq context: I/O threads and the registry of sockets.

use std::os::raw::c_void;
use std::sync::Arc;

use super::error::{Error, Result, check};
use super::ffi;
use super::socket::{Socket, SocketType};

/// A libzmq context. Cloning is cheap and shares the same context.
///
/// The context is terminated when the last clone and the last socket made
/// from it are dropped. New sockets default to a linger of zero.
#[derive(Clone)]
pub struct Context {
    pub(crate) inner: Arc<RawContext>,
}

/// Owns the `void *` context; terminated on drop.
pub(crate) struct RawContext {
    pub(crate) ptr: *mut c_void,
}

// SAFETY: a libzmq context is documented as thread-safe; every operation on it
// may be called from any thread concurrently.
unsafe impl Send for RawContext {}
// SAFETY: as above.
unsafe impl Sync for RawContext {}

impl Drop for RawContext {
    fn drop(&mut self) {
        loop {
            // SAFETY: `ptr` came from zmq_ctx_new and is terminated exactly once;
            // every socket holds an Arc to this value, so none is still open.
            let rc = unsafe { ffi::zmq_ctx_term(self.ptr) };
            if rc == 0 || !Error::last().is_interrupted() {
                break;
            }
        }
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Context({:p})", self.inner.ptr)
    }
}

impl Context {
    /// Creates a context with one I/O thread.
    pub fn new() -> Result<Self> {
        // SAFETY: zmq_ctx_new has no preconditions; a null return is an error.
        let ptr = unsafe { ffi::zmq_ctx_new() };
        if ptr.is_null() {
            return Err(Error::last());
        }
        let ctx = Context {
            inner: Arc::new(RawContext { ptr }),
        };
        // Sockets that are not given a linger never block termination.
        ctx.set(ffi::ZMQ_BLOCKY, 0)?;
        Ok(ctx)
    }

    /// Sets the number of libzmq I/O threads (before any socket is created).
    pub fn set_io_threads(&self, threads: i32) -> Result<()> {
        self.set(ffi::ZMQ_IO_THREADS, threads)
    }

    /// Sets the maximum number of sockets this context may hold.
    pub fn set_max_sockets(&self, max: i32) -> Result<()> {
        self.set(ffi::ZMQ_MAX_SOCKETS, max)
    }

    fn set(&self, option: i32, value: i32) -> Result<()> {
        // SAFETY: the context pointer is live for as long as `self.inner`.
        check(unsafe { ffi::zmq_ctx_set(self.inner.ptr, option, value) }).map(|_| ())
    }

    /// Creates a socket of the given type.
    pub fn socket(&self, kind: SocketType) -> Result<Socket> {
        Socket::new(self, kind)
    }
}
