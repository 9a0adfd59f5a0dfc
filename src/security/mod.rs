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

/// Reads a list of public keys: one Z85 key per line, or ZeroMQ public
/// certificates (what `bilateral keygen` writes, so `cat keys/*.key >
/// allowed` makes a list) whose `public-key = "..."` lines are the keys.
/// Blank lines and lines starting with `#` are skipped, and so are the
/// certificates' other lines (`metadata`, `curve`, other properties); any
/// other line is an error, and so is a `secret-key` line.
pub fn read_key_list(path: impl AsRef<std::path::Path>) -> Result<Vec<PublicKey>, KeyError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.into(),
        source,
    })?;
    let mut keys = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // A bare key first: Z85 has '=' among its digits.
        if let Ok(key) = PublicKey::from_z85(line) {
            keys.push(key);
            continue;
        }
        match line.split_once('=') {
            Some((name, value)) => match name.trim() {
                "public-key" => keys.push(PublicKey::from_z85(value.trim().trim_matches('"'))?),
                "secret-key" => return Err(KeyError::SecretInList { path: path.into() }),
                // A certificate's metadata (name = "value").
                other if is_property_name(other) => {}
                _ => return Err(KeyError::BadZ85(line.to_string())),
            },
            None if line == "metadata" || line == "curve" => {}
            None => return Err(KeyError::BadZ85(line.to_string())),
        }
    }
    Ok(keys)
}

/// A ZeroMQ certificate property name: letters, digits, `-`, `_`, `.`.
fn is_property_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests;
