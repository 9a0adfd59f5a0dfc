//! Node and method names, validated once at the edge.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// Why a name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Names must not be empty.
    #[error("name is empty")]
    Empty,
    /// Longer than 255 bytes, the limit of a ZeroMQ routing id.
    #[error("name is {0} bytes long; the limit is 255")]
    TooLong(usize),
    /// Contains a control character (including NUL, which ZeroMQ reserves as a
    /// first byte for generated routing ids).
    #[error("name contains the control character {0:?}")]
    ControlCharacter(char),
    /// Not UTF-8 (only possible for names read from the network).
    #[error("name is not valid UTF-8")]
    NotUtf8,
    /// Begins with `bilateral.`, the namespace of the node's built-in
    /// services (only for names the application registers).
    #[error("names beginning with \"bilateral.\" are reserved for the node's own services")]
    Reserved,
}

fn validate(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > 255 {
        return Err(NameError::TooLong(name.len()));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(NameError::ControlCharacter(c));
    }
    Ok(())
}

/// The name of a node: its ZeroMQ routing id and its identity in the mesh.
///
/// 1 to 255 bytes of UTF-8 without control characters: exactly what ZeroMQ
/// accepts as a routing id (which must not start with a NUL byte), restricted
/// to printable text so names are safe in logs. In CURVE mode the name is the
/// node's public key in Z85 (40 characters), which satisfies the same rules.
/// Cloning is cheap (a shared string).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName(Arc<str>);

impl NodeName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, NameError> {
        validate(name)?;
        Ok(NodeName(Arc::from(name)))
    }

    /// Validates raw bytes received from the network.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, NameError> {
        let s = std::str::from_utf8(bytes).map_err(|_| NameError::NotUtf8)?;
        NodeName::new(s)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl Borrow<str> for NodeName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for NodeName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for NodeName {
    type Error = NameError;
    fn try_from(s: &str) -> Result<Self, NameError> {
        NodeName::new(s)
    }
}

impl TryFrom<String> for NodeName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        NodeName::new(&s)
    }
}

impl std::str::FromStr for NodeName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        NodeName::new(s)
    }
}

/// The name of a registered method: 1 to 255 bytes of UTF-8 without control
/// characters, such as `"Arith.SumDiff"`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct MethodName(Arc<str>);

/// The prefix of the built-in services' methods (`PROTOCOL.md` §7.6).
pub const RESERVED_PREFIX: &str = "bilateral.";

/// The built-in service a method belongs to (`bilateral.<service>.…`), or
/// `None` for an application's method.
pub fn reserved_service(method: &str) -> Option<&str> {
    let rest = method.strip_prefix(RESERVED_PREFIX)?;
    Some(rest.split('.').next().unwrap_or(rest))
}

impl MethodName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, NameError> {
        validate(name)?;
        Ok(MethodName(Arc::from(name)))
    }
}

impl fmt::Display for MethodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Borrow<str> for MethodName {
    fn borrow(&self) -> &str {
        &self.0
    }
}
