//! What the mesh tells the application about its peers.

use std::fmt;
use std::time::Duration;

use crate::protocol::{NodeName, RejectCode};

/// A change in the mesh, as seen by this node.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerEvent {
    /// A session with `peer` began: calls and casts can now reach it.
    Joined {
        /// The peer.
        peer: NodeName,
        /// The incarnation (per-start random value) of the peer's session.
        incarnation: u64,
    },
    /// The session with `peer` ended; calls pending on it failed at once.
    Lost {
        /// The peer.
        peer: NodeName,
        /// The incarnation of the session that ended.
        incarnation: u64,
        /// Why it ended.
        reason: LostReason,
    },
    /// `peer` refused our JOIN. The node keeps retrying with backoff.
    Rejected {
        /// The peer that refused.
        peer: NodeName,
        /// Its reason.
        rejection: Rejection,
    },
    /// A join attempt to `peer` got no answer in time; the next is scheduled.
    ConnectFailed {
        /// The peer being dialled.
        peer: NodeName,
        /// How many attempts in a row have failed.
        attempt: u32,
        /// When the next attempt starts.
        retry_in: Duration,
    },
    /// A CURVE key was refused at the handshake by this node's access
    /// policy; nothing it sent reached the application.
    Unauthorized {
        /// The key, in Z85.
        key: String,
        /// The address the connection came from.
        address: String,
    },
    /// A connection authenticated as `key` sent messages under the name of
    /// another node (`claimed`); they were dropped. Reported at most once a
    /// second.
    IdentityMismatch {
        /// The routing id the messages carried.
        claimed: String,
        /// The key the connection authenticated with.
        key: String,
    },
    /// This node refused a JOIN from `from` (raw routing id, lossily decoded),
    /// or a connection from address `from` failed its handshake.
    Refused {
        /// Who tried to join.
        from: String,
        /// Why it was refused.
        rejection: Rejection,
    },
    /// Discovery found `peer` in the registry and dials it at `endpoint`.
    Discovered {
        /// The node found.
        peer: NodeName,
        /// The endpoint dialled (the first it advertised).
        endpoint: String,
    },
}

/// Why a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LostReason {
    /// Nothing was heard from the peer for the lost-peer timeout.
    Timeout,
    /// The peer said goodbye (PART): it closed or disconnected from us.
    Parted,
    /// The peer started again with a new incarnation.
    Restarted,
    /// This node's application disconnected from the peer.
    Disconnected,
    /// The peer no longer knew this node (it had timed us out); we rejoin.
    Reset,
    /// This node is closing.
    Closed,
    /// This node revoked the peer's key.
    Revoked,
}

impl fmt::Display for LostReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LostReason::Timeout => "no heartbeat within the lost-peer timeout",
            LostReason::Parted => "the peer left",
            LostReason::Restarted => "the peer restarted",
            LostReason::Disconnected => "disconnected by this node",
            LostReason::Reset => "the peer no longer knew this node",
            LostReason::Closed => "this node closed",
            LostReason::Revoked => "its key was revoked",
        })
    }
}

/// A refusal: its code and the refusing side's explanation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Rejection {
    /// What kind of refusal.
    pub code: RejectCode,
    /// Human-readable detail from the refusing node.
    pub detail: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.code {
            RejectCode::WrongNetwork => "wrong network",
            RejectCode::NameTaken => "name already taken by a live session",
            RejectCode::UnsupportedVersion => "no protocol version in common",
            RejectCode::JoiningItself => "a node cannot join itself",
            RejectCode::NotJoined => "not joined",
            RejectCode::BadName => "invalid node name",
            RejectCode::SecurityMismatch => "security mechanisms differ",
            RejectCode::WrongPeer => "reached a node with another name",
            RejectCode::ShuttingDown => "the peer is shutting down",
            RejectCode::Unauthorized => "key not allowed",
            RejectCode::HandshakeFailed => "handshake failed",
            RejectCode::Other(_) => "refused",
        };
        if self.detail.is_empty() {
            f.write_str(what)
        } else {
            write!(f, "{what}: {}", self.detail)
        }
    }
}
