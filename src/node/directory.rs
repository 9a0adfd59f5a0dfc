//! The membership snapshot user threads read without asking the reactor.

use std::collections::HashMap;

use crate::core::PeerState;
use crate::protocol::NodeName;

/// Every known peer's state and session incarnation, as last published by
/// the reactor (which republishes whenever the mesh's state changes).
#[derive(Debug, Default)]
pub(crate) struct Directory {
    peers: HashMap<NodeName, (PeerState, Option<u64>)>,
}

impl Directory {
    pub(crate) fn replace(&mut self, entries: Vec<(NodeName, PeerState, Option<u64>)>) {
        self.peers = entries.into_iter().map(|(n, s, i)| (n, (s, i))).collect();
    }

    pub(crate) fn state(&self, peer: &str) -> Option<PeerState> {
        self.peers.get(peer).map(|(s, _)| *s)
    }

    /// Names of peers in session, sorted.
    pub(crate) fn active(&self) -> Vec<NodeName> {
        let mut v: Vec<NodeName> = self
            .peers
            .iter()
            .filter(|(_, (s, _))| *s == PeerState::Active)
            .map(|(n, _)| n.clone())
            .collect();
        v.sort();
        v
    }

    pub(crate) fn active_count(&self) -> usize {
        self.peers
            .values()
            .filter(|(s, _)| *s == PeerState::Active)
            .count()
    }
}
