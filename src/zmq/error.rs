//! Errors reported by libzmq, as its `errno` value.

use std::ffi::CStr;
use std::fmt;

use super::ffi;

/// Result of a libzmq operation.
pub type Result<T> = std::result::Result<T, Error>;

/// An error reported by libzmq (an `errno` value) or by the binding's checks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Error {
    errno: i32,
}

impl Error {
    /// The error libzmq reported for the last call on this thread.
    pub(crate) fn last() -> Self {
        // SAFETY: zmq_errno has no preconditions; it reads thread-local errno.
        Error {
            errno: unsafe { ffi::zmq_errno() },
        }
    }

    /// An error for an argument the binding refuses before calling libzmq.
    pub(crate) fn invalid_argument() -> Self {
        Error { errno: 22 } // EINVAL
    }

    /// The raw `errno` value.
    pub fn errno(&self) -> i32 {
        self.errno
    }

    /// The operation would block (`EAGAIN`): a full queue or nothing to read.
    pub fn is_again(&self) -> bool {
        self.errno == ffi::EAGAIN
    }

    /// The context is being terminated (`ETERM`).
    pub fn is_term(&self) -> bool {
        self.errno == ffi::ETERM
    }

    /// The call was interrupted by a signal (`EINTR`).
    pub fn is_interrupted(&self) -> bool {
        self.errno == ffi::EINTR
    }

    /// A ROUTER in mandatory mode has no connection with that routing id.
    pub fn is_host_unreachable(&self) -> bool {
        self.errno == ffi::EHOSTUNREACH
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: zmq_strerror returns a pointer to a static NUL-terminated string
        // for every errno value, known or not.
        let text = unsafe { CStr::from_ptr(ffi::zmq_strerror(self.errno)) };
        write!(f, "{} (errno {})", text.to_string_lossy(), self.errno)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "zmq::Error({self})")
    }
}

impl std::error::Error for Error {}

/// Turns a libzmq return code (`-1` on failure) into a `Result`.
pub(crate) fn check(rc: i32) -> Result<i32> {
    if rc == -1 { Err(Error::last()) } else { Ok(rc) }
}
