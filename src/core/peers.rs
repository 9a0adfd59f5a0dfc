//! The peers one node knows, by name, and a generation number that changes
//! whenever one appears, disappears or changes state (so that whoever shows
//! the directory knows when to look again).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::peer::Peer;
use crate::protocol::NodeName;

/// Every peer of one node (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Peers {
    by_name: HashMap<NodeName, Peer>,
    generation: u64,
}

impl Peers {
    /// The peer named `name`.
    pub(crate) fn get<Q>(&self, name: &Q) -> Option<&Peer>
    where
        NodeName: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.by_name.get(name)
    }

    /// The peer named `name`, to change it (say [`Peers::changed`] if its
    /// state changes).
    pub(crate) fn get_mut<Q>(&mut self, name: &Q) -> Option<&mut Peer>
    where
        NodeName: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.by_name.get_mut(name)
    }

    /// Whether a peer is named `name`.
    pub(crate) fn contains<Q>(&self, name: &Q) -> bool
    where
        NodeName: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.by_name.contains_key(name)
    }

    /// The peer named `name`, new (and not yet dialled or in session) if
    /// there was none.
    pub(crate) fn get_or_insert(&mut self, name: &NodeName, now: Instant) -> &mut Peer {
        if !self.by_name.contains_key(name) {
            self.generation += 1;
        }
        self.by_name
            .entry(name.clone())
            .or_insert_with(|| Peer::new(name.clone(), now))
    }

    /// Forgets the peer named `name`.
    pub(crate) fn remove(&mut self, name: &NodeName) -> Option<Peer> {
        let removed = self.by_name.remove(name);
        if removed.is_some() {
            self.generation += 1;
        }
        removed
    }

    /// Forgets every peer.
    pub(crate) fn clear(&mut self) {
        self.by_name.clear();
        self.generation += 1;
    }

    /// A peer's state changed.
    pub(crate) fn changed(&mut self) {
        self.generation += 1;
    }

    /// Changes whenever a peer appears, disappears or changes state.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &Peer> {
        self.by_name.values()
    }

    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut Peer> {
        self.by_name.values_mut()
    }

    /// Every peer's name, in no order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &NodeName> {
        self.by_name.keys()
    }

    /// Peers in session now.
    pub(crate) fn in_session(&self) -> usize {
        self.values().filter(|p| p.session.is_some()).count()
    }

    /// The earliest of the peers' own deadlines (joins, heartbeats, losses).
    pub(crate) fn next_deadline(&self, lost_timeout: Duration) -> Option<Instant> {
        self.values()
            .filter_map(|p| p.next_deadline(lost_timeout))
            .min()
    }
}
