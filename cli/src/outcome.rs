//! How a command fails: a kind a script can rely on (its exit code and its
//! `kind` in JSON) and a message for people.

use bilateral::{CallError, Error, Side, StreamError};

/// Why a command failed.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The remote side failed (exit 1).
    Remote(String),
    /// Bad usage: arguments, JSON (exit 2).
    Usage(String),
    /// A peer could not be reached in time (exit 3).
    Unreachable(String),
    /// A local failure: files, keys, binding (exit 4).
    Local(String),
    /// A failure already shown (per peer, as the results were printed):
    /// only its exit code is left to give.
    Printed(Box<Failure>),
}

impl Failure {
    /// The process's exit code.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Remote(_) => 1,
            Failure::Usage(_) => 2,
            Failure::Unreachable(_) => 3,
            Failure::Local(_) => 4,
            Failure::Printed(f) => f.code(),
        }
    }

    /// The failure's kind, as scripts see it in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Remote(_) => "remote",
            Failure::Usage(_) => "usage",
            Failure::Unreachable(_) => "unreachable",
            Failure::Local(_) => "local",
            Failure::Printed(f) => f.kind(),
        }
    }

    /// What went wrong, for people.
    pub fn message(&self) -> &str {
        match self {
            Failure::Remote(m)
            | Failure::Usage(m)
            | Failure::Unreachable(m)
            | Failure::Local(m) => m,
            Failure::Printed(f) => f.message(),
        }
    }

    /// Says what went wrong: on stderr, or as a JSON line on stdout.
    pub fn report(&self, json: bool) {
        if let Failure::Printed(_) = self {
            return;
        }
        if json {
            say!(
                "{}",
                serde_json::json!({"error": {"kind": self.kind(), "message": self.message()}})
            );
        } else {
            eprintln!("bilateral: {}", self.message());
        }
    }

    /// The failure a call's error stands for.
    pub fn of_call(peer: &str, e: &CallError) -> Failure {
        let text = format!("{peer}: {e}");
        match e {
            CallError::Timeout
            | CallError::PeerLost(_)
            | CallError::Unreachable(_)
            | CallError::UnknownPeer => Failure::Unreachable(text),
            CallError::Local(_) => Failure::Usage(text),
            CallError::Closed | CallError::TooLarge(Side::Local) => Failure::Local(text),
            _ => Failure::Remote(text),
        }
    }

    /// The failure a stream's error stands for.
    pub fn of_stream(peer: &str, e: &StreamError) -> Failure {
        let text = format!("{peer}: {e}");
        match e {
            StreamError::Timeout
            | StreamError::PeerLost(_)
            | StreamError::Unreachable(_)
            | StreamError::UnknownPeer => Failure::Unreachable(text),
            _ => Failure::Remote(text),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        match e {
            Error::InvalidName { .. } | Error::InvalidConfig(_) | Error::Encode(_) => {
                Failure::Usage(e.to_string())
            }
            Error::UnknownPeer(_) | Error::Rejected { .. } | Error::Timeout => {
                Failure::Unreachable(e.to_string())
            }
            _ => Failure::Local(e.to_string()),
        }
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Local(e.to_string())
    }
}
