//! The registry's messages, exchanged as casts between registry services
//! (MessagePack, structs as maps; `PROTOCOL.md` §14).

use serde::{Deserialize, Serialize};

/// Method names of the registry service.
pub(crate) mod method {
    pub const RECORDS: &str = "bilateral.registry.records";
    pub const SYNC: &str = "bilateral.registry.sync";
    pub const SUMMARY: &str = "bilateral.registry.summary";
    pub const WANT: &str = "bilateral.registry.want";
}

/// A node session: a name and the incarnation of one start of it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub(crate) struct Owner {
    /// The node's name.
    pub name: String,
    /// Its incarnation.
    pub incarnation: u64,
}

/// One entry of a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct WireEntry {
    pub collection: String,
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// Everything one node session says about itself: its entries and the
/// sessions it has, numbered by `seq` (higher is newer, per owner).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub owner: Owner,
    pub seq: u64,
    /// The sessions the owner has with other nodes.
    pub neighbours: Vec<Owner>,
    pub entries: Vec<WireEntry>,
}

/// `bilateral.registry.records`: records, pushed or asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Records {
    pub records: Vec<Record>,
}

/// `bilateral.registry.sync`: the digest of the records the sender sees
/// (see [`digest`]), sent to each peer now and then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sync {
    pub digest: u64,
}

/// Which version of a record a node holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Held {
    pub owner: Owner,
    pub seq: u64,
}

/// `bilateral.registry.summary`: every record the sender sees, by version
/// (the answer to a `sync` whose digest differs, and sent on joining).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Summary {
    pub held: Vec<Held>,
}

/// `bilateral.registry.want`: the records the sender asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Want {
    pub owners: Vec<Owner>,
}

/// One message of the registry protocol; it encodes as the message it
/// holds (the method says which).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub(crate) enum Message {
    Records(Records),
    Sync(Sync),
    Summary(Summary),
    Want(Want),
}

impl Message {
    /// The method this message is cast to.
    pub(crate) fn method(&self) -> &'static str {
        match self {
            Message::Records(_) => method::RECORDS,
            Message::Sync(_) => method::SYNC,
            Message::Summary(_) => method::SUMMARY,
            Message::Want(_) => method::WANT,
        }
    }
}

/// The digest of a set of record versions: the XOR of [`version_hash`] of
/// each, so that it does not depend on order.
pub(crate) fn version_hash(owner: &Owner, seq: u64) -> u64 {
    // FNV-1a, 64 bits, over the name's bytes, a 0 byte, the incarnation and
    // the seq as little-endian u64s: fixed, so every implementation agrees.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |byte: u8| {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    };
    owner.name.bytes().for_each(&mut eat);
    eat(0);
    owner
        .incarnation
        .to_le_bytes()
        .into_iter()
        .for_each(&mut eat);
    seq.to_le_bytes().into_iter().for_each(&mut eat);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_hash_is_fixed() {
        let owner = Owner {
            name: "a".into(),
            incarnation: 1,
        };
        // FNV-1a of b"a\0" + 1u64 LE + 2u64 LE, computed independently
        // (in Python): what another implementation must get.
        assert_eq!(version_hash(&owner, 2), 0x34bb_6b89_69d6_7767);
        assert_ne!(version_hash(&owner, 2), version_hash(&owner, 3));
        let other = Owner {
            name: "b".into(),
            incarnation: 1,
        };
        assert_ne!(version_hash(&owner, 2), version_hash(&other, 2));
    }
}
