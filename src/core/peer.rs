//! One peer: its session, its links and their timers.
//!
//! A peer is reached over up to two links. The *outbound* link is the DEALER
//! this node opened because the application called `connect`; this node is
//! responsible for joining over it and for retrying with backoff. The
//! *inbound* link is the peer's own DEALER arriving on this node's ROUTER.
//! Both carry the same session, identified by the peer's incarnation, so two
//! nodes that dial each other simply end up with two links to one session.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::events::Rejection;
use super::fragments::Reassembly;
use super::lane::Lane;
use super::stats::PeerStats;
use crate::protocol::NodeName;

/// Which of a peer's links a frame travels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Link {
    /// Our DEALER, connected to the peer's ROUTER.
    Outbound,
    /// The peer's DEALER, seen through our ROUTER (addressed by routing id).
    Inbound,
}

impl Link {
    /// 0 for outbound, 1 for inbound: an index into per-link arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Link::Outbound => 0,
            Link::Inbound => 1,
        }
    }
}

/// The application-visible state of a peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerState {
    /// A join attempt is under way.
    Joining,
    /// In session: calls and casts reach it.
    Active,
    /// Waiting before the next join attempt.
    Backoff,
}

/// A snapshot of one peer for introspection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The peer's name.
    pub name: NodeName,
    /// Its state.
    pub state: PeerState,
    /// The incarnation of the current session, if any.
    pub incarnation: Option<u64>,
    /// The endpoint this node dials, if it dials the peer.
    pub endpoint: Option<String>,
    /// Whether our DEALER to the peer is joined.
    pub outbound_up: bool,
    /// Whether the peer's DEALER to us is live.
    pub inbound_up: bool,
    /// Join attempts that failed in a row (reset by a WELCOME).
    pub failed_attempts: u32,
    /// The last refusal the peer sent us, if any.
    pub last_rejection: Option<Rejection>,
    /// Counters.
    pub stats: PeerStats,
    /// Bytes this node holds for the peer right now: its requests in
    /// handlers, messages to it not yet acknowledged, its messages under
    /// reassembly, stream windows (see [`Limits::max_peer_memory`](crate::Limits)).
    pub memory: usize,
}

/// The session with one incarnation of the peer.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub incarnation: u64,
}

/// The state of the link this node dials.
#[derive(Clone, Debug)]
pub(crate) enum OutState {
    /// DEALER open, JOIN sent; WELCOME awaited until `deadline`.
    Joining {
        deadline: Instant,
        next_join: Instant,
    },
    /// Joined; `last_recv` is the last time anything arrived on this link.
    Up { last_recv: Instant },
    /// DEALER closed; the next attempt starts at `until`.
    Waiting { until: Instant },
}

#[derive(Clone, Debug)]
pub(crate) struct Outbound {
    pub endpoint: String,
    pub state: OutState,
    /// Attempts that failed in a row.
    pub failures: u32,
}

#[derive(Clone, Debug)]
pub(crate) struct Inbound {
    pub last_recv: Instant,
}

/// Heartbeat bookkeeping.
#[derive(Clone, Debug)]
pub(crate) struct Pinger {
    pub next_at: Instant,
    pub next_nonce: u64,
    pub outstanding: Option<(u64, Instant)>,
}

/// Request ids recently received from one session, to run each request at
/// most once even if the network (or a fault plan) duplicates it.
#[derive(Clone, Debug, Default)]
pub(crate) struct RecentRequests {
    set: std::collections::HashSet<u64>,
    order: VecDeque<u64>,
}

impl RecentRequests {
    /// How many ids are remembered per session.
    const CAPACITY: usize = 4096;

    /// Records `id`; returns false if it was already recorded.
    pub(crate) fn insert(&mut self, id: u64) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    pub(crate) fn clear(&mut self) {
        self.set.clear();
        self.order.clear();
    }
}

/// Incarnations displaced by a newer one with the same name; a JOIN from one
/// of them is refused as `NameTaken` (two live nodes claiming one name).
const SUPERSEDED_KEPT: usize = 4;

#[derive(Debug)]
pub(crate) struct Peer {
    pub name: NodeName,
    pub session: Option<Session>,
    pub outbound: Option<Outbound>,
    pub inbound: Option<Inbound>,
    pub pinger: Pinger,
    pub superseded: VecDeque<u64>,
    pub last_rejection: Option<Rejection>,
    pub stats: PeerStats,
    pub recent_requests: RecentRequests,
    /// How many times each link came up. What is pinned to a link (a
    /// stream, a lane's accounting) records the epoch it began in: a later
    /// epoch is a new connection, and whatever was in flight on the old one
    /// may be lost.
    pub epochs: [u64; 2],
    /// Bulk traffic to the peer, per link.
    pub lanes: [Lane; 2],
    /// Large messages from the peer being reassembled.
    pub reassembly: Reassembly,
}

impl Peer {
    pub(crate) fn new(name: NodeName, now: Instant) -> Self {
        Peer {
            name,
            session: None,
            outbound: None,
            inbound: None,
            pinger: Pinger {
                next_at: now,
                next_nonce: 1,
                outstanding: None,
            },
            superseded: VecDeque::new(),
            last_rejection: None,
            stats: PeerStats::default(),
            recent_requests: RecentRequests::default(),
            epochs: [0; 2],
            lanes: [Lane::new(now), Lane::new(now)],
            reassembly: Reassembly::default(),
        }
    }

    /// Bytes this peer's own structures make the node hold: messages to it
    /// waiting or unacknowledged on its lanes, and its messages under
    /// reassembly (see `memory.rs` for the rest).
    pub(crate) fn held_bytes(&self) -> usize {
        self.lanes[0].held_bytes() + self.lanes[1].held_bytes() + self.reassembly.held()
    }

    /// The current epoch of `link` (see [`Peer::epochs`]).
    pub(crate) fn epoch(&self, link: Link) -> u64 {
        self.epochs[link.index()]
    }

    /// Whether `link` is up and still the connection of `epoch`.
    pub(crate) fn link_current(&self, link: Link, epoch: u64) -> bool {
        self.link_up(link) && self.epoch(link) == epoch
    }

    pub(crate) fn incarnation(&self) -> Option<u64> {
        self.session.as_ref().map(|s| s.incarnation)
    }

    pub(crate) fn outbound_up(&self) -> bool {
        matches!(
            self.outbound,
            Some(Outbound {
                state: OutState::Up { .. },
                ..
            })
        )
    }

    /// The link to send on: our own DEALER when joined, else the peer's.
    pub(crate) fn preferred_link(&self) -> Option<Link> {
        if self.outbound_up() {
            Some(Link::Outbound)
        } else if self.inbound.is_some() {
            Some(Link::Inbound)
        } else {
            None
        }
    }

    /// Whether `link` can carry frames now.
    pub(crate) fn link_up(&self, link: Link) -> bool {
        match link {
            Link::Outbound => self.outbound_up(),
            Link::Inbound => self.inbound.is_some(),
        }
    }

    /// Records that something valid arrived on `link` at `now`.
    pub(crate) fn heard_on(&mut self, link: Link, now: Instant) {
        match link {
            Link::Outbound => {
                if let Some(Outbound {
                    state: OutState::Up { last_recv },
                    ..
                }) = &mut self.outbound
                {
                    *last_recv = now;
                }
            }
            Link::Inbound => {
                if self.inbound.is_none() {
                    self.epochs[Link::Inbound.index()] += 1;
                }
                self.inbound = Some(Inbound { last_recv: now });
            }
        }
    }

    pub(crate) fn supersede(&mut self, incarnation: u64) {
        if self.superseded.len() == SUPERSEDED_KEPT {
            self.superseded.pop_front();
        }
        self.superseded.push_back(incarnation);
    }

    pub(crate) fn state(&self) -> PeerState {
        if self.session.is_some() {
            return PeerState::Active;
        }
        match &self.outbound {
            Some(Outbound {
                state: OutState::Waiting { .. },
                ..
            }) => PeerState::Backoff,
            _ => PeerState::Joining,
        }
    }

    /// The earliest instant at which one of this peer's timers fires.
    pub(crate) fn next_deadline(&self, lost_timeout: Duration) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(out) = &self.outbound {
            match out.state {
                OutState::Joining {
                    deadline,
                    next_join,
                } => {
                    consider(deadline);
                    consider(next_join);
                }
                OutState::Up { last_recv } => consider(last_recv + lost_timeout),
                OutState::Waiting { until } => consider(until),
            }
        }
        if let Some(inbound) = &self.inbound {
            consider(inbound.last_recv + lost_timeout);
        }
        if self.session.is_some() {
            consider(self.pinger.next_at);
        }
        next
    }

    pub(crate) fn info(&self) -> PeerInfo {
        PeerInfo {
            name: self.name.clone(),
            state: self.state(),
            incarnation: self.incarnation(),
            endpoint: self.outbound.as_ref().map(|o| o.endpoint.clone()),
            outbound_up: self.outbound_up(),
            inbound_up: self.inbound.is_some(),
            failed_attempts: self.outbound.as_ref().map_or(0, |o| o.failures),
            last_rejection: self.last_rejection.clone(),
            stats: self.stats,
            memory: 0,
        }
    }
}
