//! CURVE key generation and the Z85 text encoding of keys.

use std::ffi::{CStr, CString};
use std::os::raw::c_char;

use super::error::{Error, Result, check};
use super::ffi;

/// A CURVE key pair as two 40-character Z85 strings.
#[derive(Clone, PartialEq, Eq)]
pub struct CurveKeyPair {
    /// The public key, 40 Z85 characters.
    pub public: String,
    /// The secret key, 40 Z85 characters.
    pub secret: String,
}

impl std::fmt::Debug for CurveKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurveKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

fn z85_string(buf: &[c_char; 41]) -> String {
    // SAFETY: libzmq wrote a NUL-terminated 40-character string into the
    // 41-byte buffer, which we zeroed beforehand so a terminator always exists.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Generates a new CURVE key pair with libzmq (backed by libsodium).
pub fn curve_keypair() -> Result<CurveKeyPair> {
    let mut public = [0 as c_char; 41];
    let mut secret = [0 as c_char; 41];
    // SAFETY: both buffers are 41 bytes, the size zmq_curve_keypair writes.
    check(unsafe { ffi::zmq_curve_keypair(public.as_mut_ptr(), secret.as_mut_ptr()) })?;
    Ok(CurveKeyPair {
        public: z85_string(&public),
        secret: z85_string(&secret),
    })
}

/// Derives the Z85 public key from a Z85 secret key.
pub fn curve_public(secret_z85: &str) -> Result<String> {
    if secret_z85.len() != 40 {
        return Err(Error::invalid_argument());
    }
    let secret = CString::new(secret_z85).map_err(|_| Error::invalid_argument())?;
    let mut public = [0 as c_char; 41];
    // SAFETY: `public` is 41 bytes; `secret` is a NUL-terminated 40-character
    // string, the input length zmq_curve_public reads.
    check(unsafe { ffi::zmq_curve_public(public.as_mut_ptr(), secret.as_ptr()) })?;
    Ok(z85_string(&public))
}

/// Encodes bytes (a multiple of 4 long) as Z85 text.
pub fn z85_encode(data: &[u8]) -> Result<String> {
    if data.len() % 4 != 0 {
        return Err(Error::invalid_argument());
    }
    let mut out = vec![0 as c_char; data.len() / 4 * 5 + 1];
    // SAFETY: `out` holds len*5/4 + 1 bytes, exactly what zmq_z85_encode writes
    // for an input whose length is a multiple of 4.
    let rc = unsafe { ffi::zmq_z85_encode(out.as_mut_ptr(), data.as_ptr(), data.len()) };
    if rc.is_null() {
        return Err(Error::invalid_argument());
    }
    let bytes: Vec<u8> = out[..out.len() - 1].iter().map(|&c| c as u8).collect();
    String::from_utf8(bytes).map_err(|_| Error::invalid_argument())
}

/// Decodes Z85 text (a multiple of 5 long) into bytes.
pub fn z85_decode(text: &str) -> Result<Vec<u8>> {
    if text.len() % 5 != 0 {
        return Err(Error::invalid_argument());
    }
    let c = CString::new(text).map_err(|_| Error::invalid_argument())?;
    let mut out = vec![0u8; text.len() / 5 * 4];
    // SAFETY: `out` holds len*4/5 bytes, exactly what zmq_z85_decode writes for
    // a NUL-terminated input whose length is a multiple of 5.
    let rc = unsafe { ffi::zmq_z85_decode(out.as_mut_ptr(), c.as_ptr()) };
    if rc.is_null() {
        return Err(Error::invalid_argument());
    }
    Ok(out)
}
