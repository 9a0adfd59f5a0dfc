//! CURVE security: keys and key files, and the ZAP exchange that lets a node
//! decide which keys may connect to it.
//!
//! In CURVE mode every socket of a node encrypts with ZeroMQ's CURVE
//! mechanism, the node's name is its public key in Z85, and a ZAP handler on
//! the node's own context asks the node's access policy
//! ([`crate::core::Access`]) about every key that completes a handshake.

mod keys;
mod z85;
pub(crate) mod zap;

pub use keys::{KeyError, Keypair, PublicKey, load_public_key, secret_path};

/// Reads a list of public keys, one Z85 key per line; blank lines and lines
/// starting with `#` are skipped.
pub fn read_key_list(path: impl AsRef<std::path::Path>) -> Result<Vec<PublicKey>, KeyError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.into(),
        source,
    })?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(PublicKey::from_z85)
        .collect()
}

#[cfg(test)]
mod tests;
