//! Message frames: owned `zmq_msg_t` values and their metadata.

use std::ffi::{CStr, CString};
use std::os::raw::c_void;

use super::ffi;

/// One frame of a ZeroMQ message. Closed on drop.
pub struct Message {
    raw: ffi::zmq_msg_t,
}

// SAFETY: a zmq_msg_t owns its content (or a reference count on it, updated
// atomically by libzmq); nothing ties it to the thread that created it.
unsafe impl Send for Message {}

/// Below this size libzmq stores the bytes inside the `zmq_msg_t` itself, so a
/// copy is cheaper than handing over a heap buffer.
const INLINE_LIMIT: usize = 32;

impl Message {
    /// An empty frame.
    pub fn new() -> Self {
        let mut raw = ffi::zmq_msg_t::zeroed();
        // SAFETY: `raw` is writable; zmq_msg_init cannot fail.
        unsafe { ffi::zmq_msg_init(&mut raw) };
        Message { raw }
    }

    /// A frame holding a copy of `data`.
    pub fn from_slice(data: &[u8]) -> Self {
        let mut raw = ffi::zmq_msg_t::zeroed();
        // SAFETY: `raw` is writable. On success the frame owns `data.len()`
        // writable bytes at zmq_msg_data, which we fill from `data` (the two
        // regions cannot overlap: one was just allocated by libzmq).
        unsafe {
            if ffi::zmq_msg_init_size(&mut raw, data.len()) != 0 {
                // Out of memory inside libzmq: fall back to an empty frame
                // rather than touching an uninitialised message.
                ffi::zmq_msg_init(&mut raw);
                return Message { raw };
            }
            if !data.is_empty() {
                let dst = ffi::zmq_msg_data(&mut raw).cast::<u8>();
                std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len());
            }
        }
        Message { raw }
    }

    /// A frame that takes ownership of `data` without copying it.
    pub fn from_vec(data: Vec<u8>) -> Self {
        if data.len() <= INLINE_LIMIT {
            return Message::from_slice(&data);
        }
        let boxed: Box<[u8]> = data.into_boxed_slice();
        let len = boxed.len();
        let ptr = Box::into_raw(boxed).cast::<u8>();
        let mut raw = ffi::zmq_msg_t::zeroed();
        // SAFETY: `ptr`/`len` describe a leaked Box<[u8]>; libzmq calls
        // `free_boxed` exactly once with that pointer and `len` as the hint when
        // the last reference to the frame goes away, which rebuilds and drops
        // the Box. The hint carries the length as an integer, not a pointer.
        let rc = unsafe {
            ffi::zmq_msg_init_data(
                &mut raw,
                ptr.cast(),
                len,
                Some(free_boxed),
                len as *mut c_void,
            )
        };
        if rc != 0 {
            // SAFETY: libzmq did not take ownership, so we still own the Box.
            let boxed = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) };
            return Message::from_slice(&boxed);
        }
        Message { raw }
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut ffi::zmq_msg_t {
        &mut self.raw
    }

    /// Number of bytes in the frame.
    pub fn len(&self) -> usize {
        // SAFETY: `raw` is an initialised message.
        unsafe { ffi::zmq_msg_size(&self.raw) }
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        let len = self.len();
        if len == 0 {
            return &[];
        }
        // SAFETY: `raw` is initialised; zmq_msg_data only reads the message
        // (its parameter is non-const for historical reasons) and returns a
        // pointer to `len` readable bytes that live as long as the message,
        // which the returned borrow of `self` guarantees.
        unsafe {
            let ptr = ffi::zmq_msg_data(std::ptr::from_ref(&self.raw).cast_mut());
            std::slice::from_raw_parts(ptr.cast::<u8>(), len)
        }
    }

    /// Whether more frames of the same message follow this one.
    pub fn more(&self) -> bool {
        // SAFETY: `raw` is an initialised message.
        unsafe { ffi::zmq_msg_more(&self.raw) == 1 }
    }

    /// A metadata property of a received frame, such as `"User-Id"` (the
    /// authenticated CURVE public key, in Z85, as set by the ZAP handler),
    /// `"Socket-Type"`, `"Routing-Id"` or `"Peer-Address"`.
    pub fn property(&self, name: &str) -> Option<String> {
        let c = CString::new(name).ok()?;
        // SAFETY: `raw` is initialised and `c` outlives the call. The returned
        // pointer, when not null, is a NUL-terminated string owned by the
        // message's metadata, valid while the message is; we copy it at once.
        unsafe {
            let value = ffi::zmq_msg_gets(&self.raw, c.as_ptr());
            if value.is_null() {
                None
            } else {
                Some(CStr::from_ptr(value).to_string_lossy().into_owned())
            }
        }
    }
}

impl Default for Message {
    fn default() -> Self {
        Message::new()
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        // SAFETY: `raw` is initialised and closed exactly once.
        unsafe { ffi::zmq_msg_close(&mut self.raw) };
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Message({} bytes)", self.len())
    }
}

/// Deallocation callback for frames built by [`Message::from_vec`].
unsafe extern "C" fn free_boxed(data: *mut c_void, hint: *mut c_void) {
    let len = hint as usize;
    // SAFETY: `data` and `len` are exactly the pointer and length of the Box
    // leaked in `from_vec`; libzmq calls this once per frame.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(data.cast::<u8>(), len)) });
}
