//! The discovery service of one node (a built-in service, see
//! `node/services.rs`): publishes the node in the registry, follows the
//! nodes published there and the node's sessions, and carries out what its
//! [`Planner`] decides.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::planner::{Plan, Planner};
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
    wake: Wake,
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
        let mut planner = self.planner.lock();
        while let Some(event) = self.nodes.try_recv() {
            match event {
                RegistryEvent::Added(e) | RegistryEvent::Updated(e) => {
                    let allowed = self.allowed(node, &e.name, &mut allow_list);
                    planner.handle_node(&e.name, e.value.endpoints, allowed, now);
                }
                RegistryEvent::Removed { name, .. } => planner.handle_node_gone(&name, now),
            }
        }
        planner.handle_timeout(now);
        let plans: Vec<Plan> = std::iter::from_fn(|| planner.poll_action()).collect();
        let next = planner.poll_timeout();
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
        vec![
            ("nodes", shown as u64),
            ("dialling", dialled as u64),
            ("dialled", stats.dialled),
            ("refused", stats.refused),
            ("forgotten", stats.forgotten),
        ]
    }
}
