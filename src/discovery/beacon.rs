//! The LAN beacon, Zyre-style: every `interval` a node sends one UDP
//! datagram (to a broadcast address or a multicast group) saying its
//! network, name and endpoints; nodes of the same network that hear it dial
//! it as their [`ConnectPolicy`](super::ConnectPolicy) says, so a LAN needs
//! no seed at all. Off by default ([`Discovery::beacon`](super::Discovery::beacon)).
//!
//! This file is the sans-IO part: what a beacon says, the checks on what is
//! heard, and who fell silent. The socket is in `service.rs`.
//!
//! A beacon is not authenticated: anyone on the LAN can send one. What it
//! can make a node do is bounded as for the registry's node entries (the
//! planner checks the endpoints, dials at most `max_dials` at a time, keeps
//! at most `max_nodes`); under CURVE a beacon's name is a public key, and
//! the dial that follows authenticates it, so a stranger's beacon gets no
//! session.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The first bytes of every beacon: "BLB" and the format's version.
pub(crate) const MAGIC: &[u8; 4] = b"BLB\x01";

/// The largest beacon sent or read (it fits one Ethernet frame).
pub(crate) const MAX_BEACON: usize = 1024;

/// Beacons of other nodes are read at most this many times an interval,
/// so that a flood of datagrams costs bounded work.
pub(crate) const MAX_READS: usize = 1024;

/// The LAN beacon's settings (IPv4).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Beacon {
    /// Where beacons go and are heard: a broadcast address
    /// (`255.255.255.255`, or the subnet's, such as `192.168.1.255`) or a
    /// multicast group (`239.0.0.0/8` for a site), and the UDP port every
    /// node of the LAN uses.
    pub address: SocketAddrV4,
    /// For a multicast group, the interface to join it on and send from,
    /// by its address; `0.0.0.0` lets the system choose. (A broadcast
    /// leaves by the interface of its subnet.)
    pub interface: Ipv4Addr,
    /// How often a node sends its beacon (and reads the others'). Default 1 s.
    pub interval: Duration,
    /// A node whose beacon has not been heard for this long is no longer
    /// shown by the beacon. Default 5 s.
    pub silence: Duration,
    /// Only beacons of the same network are heard: several meshes can share
    /// a LAN. Default `bilateral`.
    pub network: String,
}

impl Beacon {
    /// Beacons to `address` (see [`Beacon::address`]), with the defaults.
    pub fn new(address: SocketAddrV4) -> Self {
        Beacon {
            address,
            interface: Ipv4Addr::UNSPECIFIED,
            interval: Duration::from_secs(1),
            silence: Duration::from_secs(5),
            network: "bilateral".to_string(),
        }
    }

    /// Sets [`Beacon::interface`].
    pub fn interface(mut self, interface: Ipv4Addr) -> Self {
        self.interface = interface;
        self
    }

    /// Sets [`Beacon::interval`].
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets [`Beacon::silence`].
    pub fn silence(mut self, silence: Duration) -> Self {
        self.silence = silence;
        self
    }

    /// Sets [`Beacon::network`].
    pub fn network(mut self, network: impl Into<String>) -> Self {
        self.network = network.into();
        self
    }
}

/// What a beacon says (MessagePack, a map, after [`MAGIC`]; `PROTOCOL.md` §15.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Hello {
    pub network: String,
    /// The node's name (in CURVE mode, its public key in Z85).
    pub name: String,
    /// Whether the node runs CURVE: nodes of the other mode are not heard.
    pub curve: bool,
    pub endpoints: Vec<String>,
}

/// Counters of the beacon.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BeaconStats {
    pub sent: u64,
    /// Beacons of other nodes of this network and mode.
    pub heard: u64,
    /// Datagrams that are not beacons, or beacons that do not decode.
    pub malformed: u64,
    /// Beacons of another network or mode (and this node's own).
    pub ignored: u64,
    /// Beacons of new nodes dropped because `max_nodes` are heard already.
    pub refused: u64,
}

/// What hearing beacons changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Heard {
    /// A node's beacon (the first, or one again).
    Node {
        name: String,
        endpoints: Vec<String>,
    },
    /// A node fell silent.
    Silent { name: String },
}

/// The beacon of one node.
pub(crate) struct Beacons {
    cfg: Beacon,
    me: String,
    curve: bool,
    /// This node's beacon, encoded once.
    datagram: Vec<u8>,
    next_send: Instant,
    /// Nodes heard, and when last.
    heard: HashMap<String, Instant>,
    max_nodes: usize,
    stats: BeaconStats,
}

impl Beacons {
    /// The beacon of node `me` advertising `endpoints`; fails if it would
    /// not fit in [`MAX_BEACON`] bytes.
    pub(crate) fn new(
        cfg: Beacon,
        me: &str,
        curve: bool,
        endpoints: Vec<String>,
        max_nodes: usize,
        now: Instant,
    ) -> Result<Self, String> {
        let hello = Hello {
            network: cfg.network.clone(),
            name: me.to_string(),
            curve,
            endpoints,
        };
        let mut datagram = MAGIC.to_vec();
        rmp_serde::encode::write_named(&mut datagram, &hello).map_err(|e| e.to_string())?;
        if datagram.len() > MAX_BEACON {
            return Err(format!(
                "the beacon would be {} bytes; at most {MAX_BEACON} fit (advertise fewer endpoints)",
                datagram.len()
            ));
        }
        Ok(Beacons {
            cfg,
            me: me.to_string(),
            curve,
            datagram,
            next_send: now,
            heard: HashMap::new(),
            max_nodes,
            stats: BeaconStats::default(),
        })
    }

    pub(crate) fn stats(&self) -> BeaconStats {
        self.stats
    }

    /// Nodes heard now.
    pub(crate) fn heard(&self) -> usize {
        self.heard.len()
    }

    /// A datagram arrived (`bytes`, as read: at most [`MAX_BEACON`] + 1
    /// bytes, so a longer one shows as too long).
    pub(crate) fn handle_datagram(&mut self, bytes: &[u8], now: Instant) -> Option<Heard> {
        let Some(hello) = decode(bytes) else {
            self.stats.malformed += 1;
            log::debug!(
                "beacon: a datagram of {} bytes that is no beacon",
                bytes.len()
            );
            return None;
        };
        if hello.network != self.cfg.network || hello.curve != self.curve || hello.name == self.me {
            self.stats.ignored += 1;
            return None;
        }
        if !self.heard.contains_key(&hello.name) && self.heard.len() >= self.max_nodes {
            self.stats.refused += 1;
            return None;
        }
        self.stats.heard += 1;
        self.heard.insert(hello.name.clone(), now);
        Some(Heard::Node {
            name: hello.name,
            endpoints: hello.endpoints,
        })
    }

    /// The beacon to send now, if one is due.
    pub(crate) fn poll_transmit(&mut self, now: Instant) -> Option<&[u8]> {
        if now < self.next_send {
            return None;
        }
        self.next_send = now + self.cfg.interval;
        self.stats.sent += 1;
        Some(&self.datagram)
    }

    /// The nodes silent for longer than `silence`, forgotten here.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Vec<Heard> {
        let silence = self.cfg.silence;
        let silent: Vec<String> = self
            .heard
            .iter()
            .filter(|(_, at)| now >= **at + silence)
            .map(|(name, _)| name.clone())
            .collect();
        silent
            .into_iter()
            .map(|name| {
                self.heard.remove(&name);
                Heard::Silent { name }
            })
            .collect()
    }

    /// When to send the next beacon (reads happen then too), or to tell
    /// that a node fell silent.
    pub(crate) fn poll_timeout(&self) -> Instant {
        let silent = self.heard.values().map(|&at| at + self.cfg.silence).min();
        silent.map_or(self.next_send, |t| t.min(self.next_send))
    }
}

/// A beacon, or `None` for anything else.
fn decode(bytes: &[u8]) -> Option<Hello> {
    if bytes.len() > MAX_BEACON {
        return None;
    }
    let body = bytes.strip_prefix(MAGIC.as_slice())?;
    let hello: Hello = rmp_serde::from_slice(body).ok()?;
    let sane = |s: &str| !s.is_empty() && s.len() <= 255;
    (sane(&hello.network) && sane(&hello.name)).then_some(hello)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beacons(name: &str, now: Instant) -> Beacons {
        let cfg = Beacon::new(SocketAddrV4::new(Ipv4Addr::BROADCAST, 5670));
        Beacons::new(cfg, name, false, vec!["tcp://10.0.0.1:1".into()], 2, now).unwrap()
    }

    #[test]
    fn a_beacon_is_heard_by_the_others_and_not_by_itself() {
        let now = Instant::now();
        let mut a = beacons("a", now);
        let mut b = beacons("b", now);
        let sent = a.poll_transmit(now).unwrap().to_vec();
        assert!(a.poll_transmit(now).is_none(), "one per interval");
        assert_eq!(a.poll_timeout(), now + Duration::from_secs(1));
        assert_eq!(
            b.handle_datagram(&sent, now),
            Some(Heard::Node {
                name: "a".into(),
                endpoints: vec!["tcp://10.0.0.1:1".into()]
            })
        );
        assert_eq!(a.handle_datagram(&sent, now), None);
        assert_eq!(a.stats().ignored, 1);
        // Silent for `silence`: told once.
        let later = now + Duration::from_secs(5);
        b.poll_transmit(now);
        assert_eq!(b.poll_timeout(), now + Duration::from_secs(1));
        assert_eq!(
            b.handle_timeout(later),
            [Heard::Silent { name: "a".into() }]
        );
        assert!(b.handle_timeout(later).is_empty());
    }

    #[test]
    fn other_networks_modes_and_garbage_are_not_heard() {
        let now = Instant::now();
        let mut b = beacons("b", now);
        let at = SocketAddrV4::new(Ipv4Addr::BROADCAST, 5670);
        let other = Beacon::new(at).network("other");
        let mut x = Beacons::new(other, "x", false, vec![], 8, now).unwrap();
        let mut y = Beacons::new(Beacon::new(at), "y", true, vec![], 8, now).unwrap();
        for datagram in [
            x.poll_transmit(now).unwrap().to_vec(),
            y.poll_transmit(now).unwrap().to_vec(),
        ] {
            assert_eq!(b.handle_datagram(&datagram, now), None);
        }
        assert_eq!(b.stats().ignored, 2);
        let mut long = MAGIC.to_vec();
        long.resize(MAX_BEACON + 1, 0x90);
        for garbage in [&b""[..], b"BLB", b"BLB\x02\x80", b"\xff\xff\xff\xff", &long] {
            assert_eq!(b.handle_datagram(garbage, now), None);
        }
        assert_eq!(b.stats().malformed, 5);
        // A valid encoding with an empty name is refused too.
        let mut empty = MAGIC.to_vec();
        let hello = Hello {
            network: "bilateral".into(),
            name: String::new(),
            curve: false,
            endpoints: vec![],
        };
        rmp_serde::encode::write_named(&mut empty, &hello).unwrap();
        assert_eq!(b.handle_datagram(&empty, now), None);
        assert_eq!(b.stats().malformed, 6);
    }

    #[test]
    fn nodes_heard_are_bounded_and_a_beacon_too_large_is_refused() {
        let now = Instant::now();
        let mut b = beacons("b", now);
        for name in ["n1", "n2", "n3"] {
            let mut n = beacons(name, now);
            let datagram = n.poll_transmit(now).unwrap().to_vec();
            b.handle_datagram(&datagram, now);
        }
        assert_eq!((b.heard(), b.stats().refused), (2, 1));
        let cfg = Beacon::new(SocketAddrV4::new(Ipv4Addr::BROADCAST, 5670));
        let many = (0..100)
            .map(|i| format!("tcp://10.0.0.1:{}", 1000 + i))
            .collect();
        assert!(Beacons::new(cfg, "big", false, many, 8, now).is_err());
    }
}
