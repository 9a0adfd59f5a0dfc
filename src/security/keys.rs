//! CURVE keys: generation, Z85 text, and key files an operator can keep.
//!
//! Key files use the layout of CZMQ's certificates (`zcert`), so keys made by
//! other ZeroMQ tools can be loaded and ours read by them:
//!
//! ```text
//! #   ZeroMQ CURVE **Secret** Certificate
//! #   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.
//! metadata
//! curve
//!     public-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
//!     secret-key = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"
//! ```
//!
//! `save` writes `<path>` (public key only, readable by all) and
//! `<path>_secret` (both keys, created with mode 0600). `load` refuses a
//! secret key file that group or others may read.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::zmq;

/// Why a key or key file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not a 40-character Z85 encoding of 32 bytes.
    #[error("not a CURVE key in Z85 (40 characters): {0:?}")]
    BadZ85(String),
    /// The secret key does not belong to the public key next to it.
    #[error("the secret key does not match the public key {0}")]
    Mismatch(String),
    /// The key file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The key file holds no key of the expected kind.
    #[error("{path}: no {what} found")]
    Missing {
        /// The file.
        path: PathBuf,
        /// `"public-key"` or `"secret-key"`.
        what: &'static str,
    },
    /// A secret key file that users other than its owner may read.
    #[error(
        "{path}: secret key file is readable by others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A list of allowed keys holds a secret key (a `_secret` file was
    /// copied into it): only public keys belong there.
    #[error("{path}: holds a secret key; a key list needs public keys only")]
    SecretInList {
        /// The file.
        path: PathBuf,
    },
    /// libzmq could not generate or derive a key.
    #[error("libzmq: {0}")]
    Zmq(#[from] zmq::Error),
}

/// A CURVE public key: 32 bytes, written as 40 characters of Z85. In CURVE
/// mode a node's name is its public key in Z85.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// The key from its 40-character Z85 text.
    pub fn from_z85(text: &str) -> Result<Self, KeyError> {
        let bad = || KeyError::BadZ85(text.chars().take(64).collect());
        if text.len() != 40 {
            return Err(bad());
        }
        let bytes = super::z85::decode(text).ok_or_else(bad)?;
        Ok(PublicKey(bytes.try_into().map_err(|_| bad())?))
    }

    /// The key from its 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PublicKey(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 40-character Z85 text (the node name in CURVE mode).
    pub fn to_z85(&self) -> String {
        // 32 bytes is a multiple of 4: encoding cannot fail.
        super::z85::encode(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_z85())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_z85())
    }
}

impl std::str::FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        PublicKey::from_z85(s.trim())
    }
}

/// A CURVE key pair. The secret half is wiped from memory on drop and never
/// appears in `Debug` output.
#[derive(Clone)]
pub struct Keypair {
    public: PublicKey,
    secret: [u8; 32],
}

impl Drop for Keypair {
    fn drop(&mut self) {
        self.secret.iter_mut().for_each(|b| *b = 0);
        std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl Keypair {
    /// A new key pair from libzmq's generator (libsodium's randomness).
    pub fn generate() -> Result<Self, KeyError> {
        let pair = zmq::curve_keypair()?;
        Keypair::from_z85(&pair.public, &pair.secret)
    }

    /// The pair from its two Z85 halves; fails if they do not belong together.
    pub fn from_z85(public: &str, secret: &str) -> Result<Self, KeyError> {
        let pair = Keypair::from_secret_z85(secret)?;
        let claimed = PublicKey::from_z85(public)?;
        if claimed != pair.public {
            return Err(KeyError::Mismatch(claimed.to_z85()));
        }
        Ok(pair)
    }

    /// The pair from the secret key alone (the public key is derived).
    pub fn from_secret_z85(secret: &str) -> Result<Self, KeyError> {
        let bad = || KeyError::BadZ85("<secret key>".to_string());
        if secret.len() != 40 {
            return Err(bad());
        }
        let public = zmq::curve_public(secret).map_err(|_| bad())?;
        let bytes = zmq::z85_decode(secret).map_err(|_| bad())?;
        Ok(Keypair {
            public: PublicKey::from_z85(&public)?,
            secret: bytes.try_into().map_err(|_| bad())?,
        })
    }

    /// The public key.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The secret key's raw bytes (for socket options).
    pub(crate) fn secret_bytes(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The secret key in Z85. Handle with care.
    pub fn secret_z85(&self) -> String {
        zmq::z85_encode(&self.secret).unwrap_or_default()
    }

    /// Writes `path` (the public key, mode 0644) and `path` + `_secret` (both
    /// keys, created with mode 0600; an existing file is replaced only if it
    /// already has owner-only permissions). Returns the secret file's path.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<PathBuf, KeyError> {
        let public_path = path.as_ref().to_path_buf();
        let secret_path = secret_path(&public_path);
        if secret_path.exists() {
            check_private(&secret_path)?;
        }
        let public = self.public.to_z85();
        let mut text = String::from("#   ZeroMQ CURVE **Secret** Certificate\n");
        text.push_str("#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n");
        text.push_str(&format!(
            "metadata\ncurve\n    public-key = \"{public}\"\n    secret-key = \"{}\"\n",
            self.secret_z85()
        ));
        write_file(&secret_path, &text, 0o600)?;
        let text = format!(
            "#   ZeroMQ CURVE Public Certificate\n#   Exchange securely, or use a secure mechanism to verify the contents\n#   of this file after exchange. Store public certificates in your home\n#   directory, in the .curve subdirectory.\nmetadata\ncurve\n    public-key = \"{public}\"\n"
        );
        write_file(&public_path, &text, 0o644)?;
        Ok(secret_path)
    }

    /// Reads a key pair from a secret key file written by [`Keypair::save`]
    /// (or by CZMQ). Refuses a file that group or others may read.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        check_private(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.into(),
            source,
        })?;
        let secret = field(&text, "secret-key").ok_or(KeyError::Missing {
            path: path.into(),
            what: "secret-key",
        })?;
        match field(&text, "public-key") {
            Some(public) => Keypair::from_z85(&public, &secret),
            None => Keypair::from_secret_z85(&secret),
        }
    }
}

/// Reads the public key from a public (or secret) key file.
pub fn load_public_key(path: impl AsRef<Path>) -> Result<PublicKey, KeyError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.into(),
        source,
    })?;
    let public = field(&text, "public-key").ok_or(KeyError::Missing {
        path: path.into(),
        what: "public-key",
    })?;
    PublicKey::from_z85(&public)
}

/// The secret file that goes with public key file `path`.
pub fn secret_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push("_secret");
    PathBuf::from(name)
}

/// The value of `name = "value"` in a zcert-style file.
fn field(text: &str, name: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == name).then(|| value.trim().trim_matches('"').to_string())
        })
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| KeyError::Io {
        path: path.into(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.into(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), KeyError> {
    Ok(())
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.into(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut file: File = options.open(path).map_err(io)?;
    // `mode` only applies to a file that did not exist; make sure it holds.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(io)?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}
