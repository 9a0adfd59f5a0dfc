//! The discovery service of one node (a built-in service, see
//! `node/services.rs`): publishes the node in the registry, follows the
//! nodes published there, its LAN beacon and the node's sessions, and
//! carries out what its [`Planner`] decides.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::beacon::{Beacon, Beacons, Heard, MAX_BEACON, MAX_READS};
use super::planner::{Plan, Planner, Source};
use super::{COLLECTION, Discovery, NodeEntry};
use crate::core::{Access, PeerEvent};
use crate::node::membership::{Change, Listener};
use crate::node::services::{BuiltIn, Host, Wake};
use crate::protocol::NodeName;
use crate::registry::{Registration, RegistryEvent, RegistryWatch};
use crate::security::PublicKey;
use crate::{Error, Node};

/// The discovery of one node.
pub(crate) struct Service {
    planner: Mutex<Planner>,
    nodes: RegistryWatch<NodeEntry>,
    /// This node's own entry, for as long as the service runs.
    published: Mutex<Option<Registration>>,
    /// CURVE mode: the access policy that discovered keys must pass.
    access: Option<Access>,
    /// The LAN beacon, if on.
    lan: Option<Mutex<Lan>>,
    wake: Wake,
}

/// A beacon and its UDP socket.
struct Lan {
    beacons: Beacons,
    socket: UdpSocket,
    to: SocketAddrV4,
    send_failures: u64,
}

impl Lan {
    fn open(cfg: Beacon, beacons: Beacons) -> io::Result<Lan> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        // Every node of a host hears the beacons on the same port.
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.set_broadcast(true)?;
        // Never past the first router.
        socket.set_ttl_v4(1)?;
        let group = *cfg.address.ip();
        if group.is_multicast() {
            socket.set_multicast_ttl_v4(1)?;
            socket.set_multicast_loop_v4(true)?;
            if !cfg.interface.is_unspecified() {
                socket.set_multicast_if_v4(&cfg.interface)?;
            }
        }
        socket.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, cfg.address.port()).into())?;
        if group.is_multicast() {
            socket.join_multicast_v4(&group, &cfg.interface)?;
        }
        socket.set_nonblocking(true)?;
        Ok(Lan {
            beacons,
            socket: socket.into(),
            to: cfg.address,
            send_failures: 0,
        })
    }

    /// Reads what arrived (a bounded number of datagrams), tells who fell
    /// silent, and sends this node's beacon when due.
    fn turn(&mut self, now: Instant) -> Vec<Heard> {
        let mut heard = Vec::new();
        let mut buf = [0u8; MAX_BEACON + 1];
        for _ in 0..MAX_READS {
            match self.socket.recv_from(&mut buf) {
                // Longer datagrams come truncated to MAX_BEACON + 1 bytes:
                // too long, and refused.
                Ok((n, _)) => heard.extend(self.beacons.handle_datagram(&buf[..n], now)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::debug!("beacon: cannot read: {e}");
                    break;
                }
            }
        }
        heard.extend(self.beacons.handle_timeout(now));
        if let Some(datagram) = self.beacons.poll_transmit(now) {
            if let Err(e) = self.socket.send_to(datagram, self.to) {
                self.send_failures += 1;
                log::debug!("beacon: cannot send to {}: {e}", self.to);
            }
        }
        heard
    }
}

impl Service {
    /// The service's name.
    pub(crate) const NAME: &'static str = "discovery";

    /// Starts discovery on `node`: publishes `advertise` and follows the
    /// others; `seeds` are the nodes the application dials itself.
    pub(crate) fn start_on(
        node: &Node,
        cfg: Discovery,
        advertise: Vec<String>,
        seeds: &[String],
        access: Option<Access>,
    ) -> Result<Arc<Service>, Error> {
        let registry = node.registry()?;
        let nodes = registry.watch::<NodeEntry>(COLLECTION);
        let lan = match cfg.beacon.clone() {
            Some(beacon) => {
                let beacons = Beacons::new(
                    beacon.clone(),
                    node.name(),
                    access.is_some(),
                    advertise.clone(),
                    cfg.max_nodes,
                    Instant::now(),
                )
                .map_err(Error::InvalidConfig)?;
                let lan = Lan::open(beacon.clone(), beacons).map_err(|e| {
                    Error::InvalidConfig(format!("beacon on {}: {e}", beacon.address))
                })?;
                Some(Mutex::new(lan))
            }
            None => None,
        };
        let published = if advertise.is_empty() {
            log::warn!(
                "node {}: discovery has no endpoint to advertise (bind a routable address or set advertise)",
                node.name()
            );
            None
        } else {
            let entry = NodeEntry {
                endpoints: advertise,
            };
            Some(
                registry
                    .register_reserved(COLLECTION, node.name(), &entry)
                    .map_err(|e| Error::InvalidConfig(format!("cannot publish the node: {e}")))?,
            )
        };
        node.service(Self::NAME, move |host: &Host<'_>| {
            let mut planner = Planner::new(host.node().name(), cfg);
            for seed in seeds {
                planner.add_seed(seed);
            }
            Ok(Arc::new(Service {
                planner: Mutex::new(planner),
                nodes,
                published: Mutex::new(published),
                access,
                lan,
                wake: host.wake(),
            }))
        })
    }

    /// Whether the access policy lets this node talk to `peer` (CURVE: its
    /// name is its key).
    fn allowed(&self, node: &Node, peer: &str, allow_list: &mut Option<Vec<PublicKey>>) -> bool {
        let Some(access) = &self.access else {
            return true;
        };
        let Ok(key) = PublicKey::from_z85(peer) else {
            return false;
        };
        match access {
            Access::AllowAny => true,
            Access::Callback(allow) => allow(&key),
            Access::AllowList => allow_list
                .get_or_insert_with(|| node.allowed_keys().unwrap_or_default())
                .contains(&key),
        }
    }
}

impl Listener for Service {
    fn on_change(&self, change: &Change) {
        let now = Instant::now();
        {
            let mut planner = self.planner.lock();
            match change {
                Change::Joined(s) => planner.handle_joined(s.peer.as_str()),
                Change::Left(s, _) => planner.handle_left(s.peer.as_str(), now),
            }
        }
        self.wake.wake();
    }
}

impl BuiltIn for Service {
    fn tick(&self, node: &Node, now: Instant) -> Option<Instant> {
        let mut allow_list = None;
        let (heard, beacon_due) = match &self.lan {
            Some(lan) => {
                let mut lan = lan.lock();
                (lan.turn(now), Some(lan.beacons.poll_timeout()))
            }
            None => (Vec::new(), None),
        };
        let mut planner = self.planner.lock();
        while let Some(event) = self.nodes.try_recv() {
            match event {
                RegistryEvent::Added(e) | RegistryEvent::Updated(e) => {
                    let allowed = self.allowed(node, &e.name, &mut allow_list);
                    planner.handle_node(&e.name, e.value.endpoints, allowed, Source::Registry, now);
                }
                RegistryEvent::Removed { name, .. } => {
                    planner.handle_node_gone(&name, Source::Registry, now)
                }
            }
        }
        for h in heard {
            match h {
                Heard::Node { name, endpoints } => {
                    let allowed = self.allowed(node, &name, &mut allow_list);
                    planner.handle_node(&name, endpoints, allowed, Source::Beacon, now);
                }
                Heard::Silent { name } => planner.handle_node_gone(&name, Source::Beacon, now),
            }
        }
        planner.handle_timeout(now);
        let plans: Vec<Plan> = std::iter::from_fn(|| planner.poll_action()).collect();
        let next = [planner.poll_timeout(), beacon_due]
            .into_iter()
            .flatten()
            .min();
        drop(planner);
        for plan in plans {
            match plan {
                Plan::Connect { peer, endpoint } => match node.connect(&peer, &endpoint) {
                    Ok(()) => {
                        if let Ok(name) = NodeName::new(&peer) {
                            node.publish_event(&PeerEvent::Discovered {
                                peer: name,
                                endpoint,
                            });
                        }
                    }
                    Err(e) => log::debug!("discovery: cannot dial {peer} at {endpoint}: {e}"),
                },
                Plan::Forget { peer } => {
                    if let Err(e) = node.disconnect(&peer) {
                        log::debug!("discovery: cannot forget {peer}: {e}");
                    }
                }
            }
        }
        next
    }

    fn stop(&self) {
        self.published.lock().take();
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let planner = self.planner.lock();
        let stats = planner.stats();
        let (shown, dialled) = planner.sizes();
        let mut counters = vec![
            ("nodes", shown as u64),
            ("dialling", dialled as u64),
            ("dialled", stats.dialled),
            ("refused", stats.refused),
            ("forgotten", stats.forgotten),
        ];
        if let Some(lan) = &self.lan {
            let lan = lan.lock();
            let b = lan.beacons.stats();
            counters.extend([
                ("beacon_nodes", lan.beacons.heard() as u64),
                ("beacons_sent", b.sent),
                ("beacons_heard", b.heard),
                ("beacons_malformed", b.malformed),
                ("beacons_ignored", b.ignored),
                ("beacons_refused", b.refused),
                ("beacon_send_failures", lan.send_failures),
            ]);
        }
        counters
    }
}
