//! The replication messages, exchanged as casts between channel services
//! (MessagePack, structs as maps). Specified in `PROTOCOL.md`.

use serde::{Deserialize, Serialize};

use super::hlc::Version;

/// Method names of the channel service (reserved: `bilateral.` prefix).
pub(crate) mod method {
    pub const PUSH: &str = "bilateral.channel.push";
    pub const PULL: &str = "bilateral.channel.pull";
    pub const ENTRIES: &str = "bilateral.channel.entries";
    pub const HELLO: &str = "bilateral.channel.hello";
    pub const UNPEER: &str = "bilateral.channel.unpeer";
}

/// One entry as it travels: a value, or a removal (tombstone).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    /// The key.
    pub key: String,
    /// The write's version.
    pub version: Version,
    /// The value (MessagePack of the channel's type); `None` for a removal.
    #[serde(with = "serde_bytes")]
    pub value: Option<Vec<u8>>,
}

/// A change just made on the sender (cast to each peer): the entries of one
/// write, which is change number `seq` of replica `from_id`. Every change of
/// that replica numbered in `(prev, seq)` came from the receiver itself, so a
/// receiver that had everything up to `prev` now has everything up to `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    /// The channel.
    pub channel: String,
    /// The sender's replica id (changes at every start of its node).
    pub from_id: u64,
    /// The change's number in the sender's replica.
    pub seq: u64,
    /// The previous change number this receiver was sent (see above).
    pub prev: u64,
    /// What changed.
    pub entries: Vec<WireEntry>,
}

/// "Send me your changes after `since` of your replica `your_id`" — or every
/// entry when `your_id` is not the receiver's current replica id. Also tells
/// the receiver how far the requester has its changes (for tombstone
/// collection).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pull {
    /// The channel.
    pub channel: String,
    /// The requester's replica id.
    pub from_id: u64,
    /// The requester's own latest change number (with `from_id`): the
    /// receiver may forget a removal the requester acknowledges only once it
    /// has every change of the requester up to this one.
    pub from_seq: u64,
    /// The receiver's replica id as the requester last saw it (0: never).
    pub your_id: u64,
    /// The receiver's change number the requester has everything up to.
    pub since: u64,
    /// Identifies the pull; echoed in the answer.
    pub pull_id: u64,
}

/// An answer to a [`Pull`]: changed entries in change order, up to `upto`.
/// When `more` is set the requester asks again from `upto`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entries {
    /// The channel.
    pub channel: String,
    /// The sender's replica id.
    pub from_id: u64,
    /// The pull this answers.
    pub pull_id: u64,
    /// The sender's change number these entries bring the requester up to.
    pub upto: u64,
    /// Whether more changes follow.
    pub more: bool,
    /// The entries.
    pub entries: Vec<WireEntry>,
}

/// "I replicate `channel`; do you, with me?" Sent when peering with every
/// peer of the mesh, and answered with `Hello { reply: true }` by a node that
/// does (which then peers back).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The channel.
    pub channel: String,
    /// Whether this answers another hello.
    pub reply: bool,
}

/// "Stop replicating `channel` with me."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unpeer {
    /// The channel.
    pub channel: String,
}
