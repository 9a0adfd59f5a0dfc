//! Fault injection: make a node's own network misbehave, reproducibly.
//!
//! A [`FaultPlan`] says what happens to the messages a node sends and
//! receives — dropped, delayed (fixed plus random), duplicated, reordered — for
//! all peers or per peer, and which peers it is partitioned from. It acts on
//! the node's real send and receive path, below the protocol: heartbeats,
//! joins, calls, replies and everything built on them see the faults exactly
//! as they would see a bad network. Randomness comes from the plan's seed, so
//! a run can be replayed.
//!
//! Faults are off by default and cost one branch per message when off. Set a
//! plan with [`crate::NodeBuilder::faults`] or at run time with
//! [`crate::Node::set_faults`]; partition and heal with
//! [`crate::Node::partition`] and [`crate::Node::heal`].
//!
//! ```no_run
//! use std::time::Duration;
//! use bilateral::faults::{FaultPlan, Faults};
//!
//! let lossy = Faults { drop: 0.05, duplicate: 0.01, delay: Duration::from_millis(2), jitter: Duration::from_millis(8), ..Faults::default() };
//! let plan = FaultPlan::new(42).send(lossy.clone()).receive(lossy).partition("beta");
//! # let _ = plan;
//! ```

mod injector;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

pub use injector::FaultStats;
pub(crate) use injector::{Direction, FaultInjector};

/// What happens to messages travelling one way.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Fraction of messages dropped, `0.0..=1.0`.
    pub drop: f64,
    /// Fraction of messages delivered twice.
    pub duplicate: f64,
    /// Delay added to every message.
    pub delay: Duration,
    /// Random extra delay, uniform in `[0, jitter]`, drawn per message (so
    /// messages overtake each other when it exceeds the gap between them).
    pub jitter: Duration,
    /// Fraction of messages held back by up to `reorder_window` more, so that
    /// later messages overtake them.
    pub reorder: f64,
    /// How long a reordered message may be held back.
    pub reorder_window: Duration,
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Faults::default()
    }

    /// Only losses: drop this fraction of messages.
    pub fn loss(fraction: f64) -> Self {
        Faults {
            drop: fraction,
            ..Faults::default()
        }
    }

    pub(crate) fn is_clean(&self) -> bool {
        self.drop <= 0.0
            && self.duplicate <= 0.0
            && self.delay.is_zero()
            && self.jitter.is_zero()
            && (self.reorder <= 0.0 || self.reorder_window.is_zero())
    }

    fn valid(&self) -> bool {
        let fraction = |f: f64| (0.0..=1.0).contains(&f);
        fraction(self.drop) && fraction(self.duplicate) && fraction(self.reorder)
    }
}

/// A node's fault plan: faults per direction, overrides per peer, partitions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FaultPlan {
    /// Seed of the plan's random choices.
    pub seed: u64,
    /// Faults on messages this node sends.
    pub send: Faults,
    /// Faults on messages this node receives.
    pub receive: Faults,
    /// Per-peer faults on sending, replacing `send` for that peer.
    pub peer_send: HashMap<String, Faults>,
    /// Per-peer faults on receiving, replacing `receive` for that peer.
    pub peer_receive: HashMap<String, Faults>,
    /// Peers this node sends nothing to.
    pub cut_send: HashSet<String>,
    /// Peers whose messages this node drops on receipt.
    pub cut_receive: HashSet<String>,
}

impl FaultPlan {
    /// A plan with no faults, whose random choices follow `seed`.
    pub fn new(seed: u64) -> Self {
        FaultPlan {
            seed,
            ..FaultPlan::default()
        }
    }

    /// Faults on everything this node sends.
    pub fn send(mut self, faults: Faults) -> Self {
        self.send = faults;
        self
    }

    /// Faults on everything this node receives.
    pub fn receive(mut self, faults: Faults) -> Self {
        self.receive = faults;
        self
    }

    /// Faults on what this node sends to `peer` (instead of the general ones).
    pub fn send_to(mut self, peer: impl Into<String>, faults: Faults) -> Self {
        self.peer_send.insert(peer.into(), faults);
        self
    }

    /// Faults on what this node receives from `peer` (instead of the general ones).
    pub fn receive_from(mut self, peer: impl Into<String>, faults: Faults) -> Self {
        self.peer_receive.insert(peer.into(), faults);
        self
    }

    /// Cuts `peer` off both ways until healed.
    pub fn partition(mut self, peer: impl Into<String>) -> Self {
        let peer = peer.into();
        self.cut_send.insert(peer.clone());
        self.cut_receive.insert(peer);
        self
    }

    /// Cuts only what this node sends to `peer` (a one-way partition).
    pub fn cut_sending_to(mut self, peer: impl Into<String>) -> Self {
        self.cut_send.insert(peer.into());
        self
    }

    /// Cuts only what this node receives from `peer`.
    pub fn cut_receiving_from(mut self, peer: impl Into<String>) -> Self {
        self.cut_receive.insert(peer.into());
        self
    }

    /// Removes every partition, keeping the other faults.
    pub fn heal(mut self) -> Self {
        self.cut_send.clear();
        self.cut_receive.clear();
        self
    }

    /// Whether every fraction is within `0.0..=1.0`.
    pub fn is_valid(&self) -> bool {
        [&self.send, &self.receive]
            .into_iter()
            .chain(self.peer_send.values())
            .chain(self.peer_receive.values())
            .all(Faults::valid)
    }
}

#[cfg(test)]
mod tests;
