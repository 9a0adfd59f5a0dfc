//! Discovery: a node given one seed joins the whole mesh.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use bilateral::{Discovery, Node};
//! let node = Node::builder("n7")
//!     .listen("tcp://0.0.0.0:9080")
//!     .advertise("tcp://10.0.0.7:9080")      // what the others dial
//!     .discovery(Discovery::default())        // full mesh (or .max_peers(16))
//!     .seed("n1", "tcp://10.0.0.1:9080")      // any node already in the mesh
//!     .start()?;
//! # Ok(()) }
//! ```
//!
//! A node with discovery on publishes its name and advertised endpoints in
//! the [registry](crate::registry), in the reserved collection
//! `bilateral.nodes`, and dials the nodes it finds there, as its
//! [`ConnectPolicy`] says. So discovery inherits the registry's guarantees:
//! the entries travel through relays, and a node's entry is gone everywhere
//! when the node is. A discovered node that has been gone for
//! `forget_after` is forgotten (no longer dialled). Under CURVE a node's
//! name is its key, and a discovered key is dialled only if the access
//! policy allows it. Advertised endpoints are checked (a ZeroMQ transport,
//! not a wildcard address, at most `max_endpoints`); dials in progress are
//! bounded (`max_dials`), as are the nodes kept (`max_nodes`): a peer that
//! advertises garbage or thousands of nodes cannot make a node dial the
//! world. Each dial of a discovered node is reported as
//! [`PeerEvent::Discovered`](crate::PeerEvent::Discovered).

mod beacon;
mod planner;
mod service;
#[cfg(test)]
mod sim;

use std::time::Duration;

pub use beacon::Beacon;
pub(crate) use planner::usable;
pub(crate) use service::Service;

/// Which discovered nodes a node dials.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectPolicy {
    /// Every node discovered: a full mesh.
    #[default]
    Full,
    /// Until the node has this many sessions (its own dials and the others'
    /// alike): a partial mesh, in which the registry's relays still carry
    /// every entry everywhere. Each node prefers its own spread of peers.
    MaxPeers(usize),
    /// None: only the seeds (the node is still published, so others may
    /// dial it).
    SeedsOnly,
}

/// Discovery's settings (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Discovery {
    /// Which discovered nodes to dial.
    pub policy: ConnectPolicy,
    /// How long a discovered node that is gone (and not in session) is
    /// still dialled. Default 60 s.
    pub forget_after: Duration,
    /// How long a dial of a discovered node may take before it no longer
    /// holds one of the `max_dials` places. Default 10 s.
    pub dial_timeout: Duration,
    /// Dials of discovered nodes in progress at a time. Default 32.
    pub max_dials: usize,
    /// Endpoints a node may advertise; one advertising more is ignored.
    /// Default 8.
    pub max_endpoints: usize,
    /// Discovered nodes kept. Default 4 096.
    pub max_nodes: usize,
    /// The LAN beacon, which finds nodes without a seed. Off by default.
    pub beacon: Option<Beacon>,
}

impl Default for Discovery {
    fn default() -> Self {
        Discovery {
            policy: ConnectPolicy::Full,
            forget_after: Duration::from_secs(60),
            dial_timeout: Duration::from_secs(10),
            max_dials: 32,
            max_endpoints: 8,
            max_nodes: 4096,
            beacon: None,
        }
    }
}

impl Discovery {
    /// Sets [`Discovery::policy`].
    pub fn policy(mut self, policy: ConnectPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// A partial mesh: [`ConnectPolicy::MaxPeers`].
    pub fn max_peers(self, peers: usize) -> Self {
        self.policy(ConnectPolicy::MaxPeers(peers))
    }

    /// Only the seeds: [`ConnectPolicy::SeedsOnly`].
    pub fn seeds_only(self) -> Self {
        self.policy(ConnectPolicy::SeedsOnly)
    }

    /// Sets [`Discovery::forget_after`].
    pub fn forget_after(mut self, after: Duration) -> Self {
        self.forget_after = after;
        self
    }

    /// Sets [`Discovery::dial_timeout`].
    pub fn dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// Sets [`Discovery::max_dials`].
    pub fn max_dials(mut self, dials: usize) -> Self {
        self.max_dials = dials;
        self
    }

    /// Sets [`Discovery::max_endpoints`].
    pub fn max_endpoints(mut self, endpoints: usize) -> Self {
        self.max_endpoints = endpoints;
        self
    }

    /// Sets [`Discovery::max_nodes`].
    pub fn max_nodes(mut self, nodes: usize) -> Self {
        self.max_nodes = nodes;
        self
    }

    /// Turns the LAN beacon on (see [`Beacon`]).
    pub fn beacon(mut self, beacon: Beacon) -> Self {
        self.beacon = Some(beacon);
        self
    }
}

/// The registry collection where nodes publish themselves.
pub(crate) const COLLECTION: &str = "bilateral.nodes";

/// What a node publishes about itself.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct NodeEntry {
    /// Where it can be dialled.
    pub endpoints: Vec<String>,
}
