//! What peers make this node hold, in bytes, and who may hold more.
//!
//! Everything a peer can make a node keep is counted against that peer:
//! the arguments of its requests and casts until their handlers finish,
//! messages to it that wait for room on its links or have not been
//! acknowledged yet (replies, but also this node's own calls and casts),
//! replies too large for one frame until their last piece is acknowledged,
//! the pieces of its large messages under reassembly, and a receive window
//! for each stream with it. [`Memory`] keeps the counts; the peers'
//! structures say how much each holds, and [`Mesh::recount`] brings the
//! two together after every change, so the total can never drift from
//! what is really held.
//!
//! Admission ([`admits`]) bounds two things. A peer may hold at most
//! `max_peer_memory`. All peers together may hold at most `max_memory`,
//! of which one half is shared first come, first served and the other half
//! is split evenly among the peers in session: however much the others
//! have taken, a peer can always hold `max_memory / (2 × sessions)`.
//! What does not fit is refused with a reason the sender can see
//! (`Overloaded`), never dropped silently.

use std::collections::HashMap;

use super::config::Limits;
use super::mesh::Mesh;
use crate::protocol::NodeName;

/// The bytes held for each peer, and in total.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    /// What each peer holds, as last counted (no entry: nothing).
    held: HashMap<NodeName, usize>,
    /// Of that, arguments of its jobs not yet done. Kept here rather than
    /// in the peer's entry because a job can outlive its peer's session.
    jobs: HashMap<NodeName, usize>,
    total: usize,
}

impl Memory {
    /// Bytes held for all peers.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Bytes held for `peer`.
    pub(crate) fn held(&self, peer: &NodeName) -> usize {
        self.held.get(peer).copied().unwrap_or(0)
    }

    /// Job arguments held for `peer`.
    pub(crate) fn jobs(&self, peer: &NodeName) -> usize {
        self.jobs.get(peer).copied().unwrap_or(0)
    }

    pub(crate) fn add_job(&mut self, peer: &NodeName, bytes: usize) {
        *self.jobs.entry(peer.clone()).or_insert(0) += bytes;
    }

    pub(crate) fn remove_job(&mut self, peer: &NodeName, bytes: usize) {
        if let Some(held) = self.jobs.get_mut(peer) {
            *held = held.saturating_sub(bytes);
            if *held == 0 {
                self.jobs.remove(peer);
            }
        }
    }

    /// Records that `peer` now holds `bytes`.
    fn set(&mut self, peer: &NodeName, bytes: usize) {
        let before = match bytes {
            0 => self.held.remove(peer).unwrap_or(0),
            _ => self.held.insert(peer.clone(), bytes).unwrap_or(0),
        };
        self.total = self.total - before + bytes;
    }
}

/// Whether a peer holding `held` bytes may hold `extra` more, when all
/// peers hold `total` and `sessions` peers are in session.
pub(crate) fn admits(
    limits: &Limits,
    total: usize,
    held: usize,
    extra: usize,
    sessions: impl FnOnce() -> usize,
) -> bool {
    let (after, total_after) = (held.saturating_add(extra), total.saturating_add(extra));
    if after > limits.max_peer_memory || total_after > limits.max_memory {
        return false;
    }
    // The shared half, first come, first served; else the peer's own part
    // of the other half (counting it only now: the common case never does).
    total_after <= limits.max_memory / 2 || after <= limits.max_memory / 2 / sessions().max(1)
}

impl<C: Clone> Mesh<C> {
    /// Counts again what `peer` holds, from the structures that hold it.
    pub(super) fn recount(&mut self, peer: &NodeName) {
        let bytes = self.held_by(peer);
        self.memory.set(peer, bytes);
    }

    /// What the structures say `peer` holds now.
    fn held_by(&self, peer: &NodeName) -> usize {
        let window = self.cfg.limits.stream_window;
        let structures = self.peers.get(peer).map_or(0, |p| p.held_bytes());
        let streams = self.streams.of_peer_count(peer).saturating_mul(window);
        structures + streams + self.memory.jobs(peer)
    }

    /// Whether `peer` may be made to hold `extra` more bytes (see [`admits`]).
    pub(super) fn admits(&self, peer: &NodeName, extra: usize) -> bool {
        let peers = &self.peers;
        admits(
            &self.cfg.limits,
            self.memory.total(),
            self.memory.held(peer),
            extra,
            || peers.in_session(),
        )
    }

    /// Like [`Mesh::admits`] for what this node itself sends to `peer`: only
    /// the peer's own bound applies, since the application decides how much
    /// it sends.
    pub(super) fn admits_own(&self, peer: &NodeName, extra: usize) -> bool {
        self.memory.held(peer).saturating_add(extra) <= self.cfg.limits.max_peer_memory
    }

    /// Counts a refusal for lack of memory.
    pub(super) fn refused_for_memory(&mut self, peer: &NodeName, what: &str, bytes: usize) {
        self.stats.memory_refused += 1;
        log::debug!(
            "refused {what} of {bytes} bytes for {peer}: it holds {} of {} (node: {} of {})",
            self.memory.held(peer),
            self.cfg.limits.max_peer_memory,
            self.memory.total(),
            self.cfg.limits.max_memory
        );
    }

    /// Bytes held for all peers (see the module docs).
    pub fn memory_held(&self) -> usize {
        self.memory.total()
    }

    #[cfg(test)]
    /// Bytes held for `peer`.
    pub fn peer_memory(&self, peer: &NodeName) -> usize {
        self.memory.held(peer)
    }

    /// Test support: what [`Memory`] says against a count from scratch.
    #[cfg(test)]
    pub(crate) fn memory_audit(&self) -> (usize, usize) {
        let mut names: Vec<&NodeName> = self.peers.names().collect();
        names.extend(self.memory.jobs.keys());
        names.sort();
        names.dedup();
        let counted = names.into_iter().map(|n| self.held_by(n)).sum();
        (self.memory.total(), counted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_memory: usize, max_peer_memory: usize) -> Limits {
        Limits {
            max_memory,
            max_peer_memory,
            ..Limits::default()
        }
    }

    #[test]
    fn a_peer_may_not_pass_its_own_bound() {
        let l = limits(1000, 100);
        assert!(admits(&l, 0, 0, 100, || 1));
        assert!(!admits(&l, 0, 0, 101, || 1));
        assert!(!admits(&l, 50, 50, 51, || 1));
    }

    #[test]
    fn the_shared_half_is_first_come_first_served() {
        let l = limits(1000, 1000);
        // 10 peers in session: each owns 50 of the reserved half.
        assert!(admits(&l, 400, 400, 100, || 10));
        assert!(!admits(&l, 450, 450, 100, || 10), "beyond the shared half");
        // A peer under its own part still gets room.
        assert!(admits(&l, 500, 0, 50, || 10));
        assert!(!admits(&l, 500, 0, 51, || 10));
    }

    #[test]
    fn the_total_never_passes_the_bound() {
        let l = limits(1000, 1000);
        assert!(!admits(&l, 990, 0, 20, || 1));
        assert!(admits(&l, 980, 0, 20, || 1));
    }

    #[test]
    fn sessions_are_only_counted_under_pressure() {
        let l = limits(1000, 1000);
        assert!(admits(&l, 0, 0, 10, || panic!("not needed")));
    }

    #[test]
    fn held_bytes_add_up_and_leave_no_entries() {
        let mut m = Memory::default();
        let (a, b) = (NodeName::new("a").unwrap(), NodeName::new("b").unwrap());
        m.set(&a, 10);
        m.set(&b, 5);
        m.set(&a, 3);
        assert_eq!((m.total(), m.held(&a), m.held(&b)), (8, 3, 5));
        m.set(&a, 0);
        m.set(&b, 0);
        assert_eq!(m.total(), 0);
        assert!(m.held.is_empty());
        m.add_job(&a, 7);
        m.remove_job(&a, 9);
        assert!(m.jobs.is_empty());
    }
}
