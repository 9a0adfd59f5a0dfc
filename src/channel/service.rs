//! The channel service of one node (a built-in service, see
//! `node/services.rs`): every replica of the node, the handlers of the
//! replication methods, and the tick that runs the replicas' timers and
//! sends what they produce (as casts). Replication rides on the node's
//! ordinary calls and casts; peers joining and leaving come from the
//! membership feed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;

use super::replica::{ChannelConfig, Out, Replica, ReplicaEvent};
use super::wire::{self, Entries, Hello, Pull, Push, Unpeer};
use crate::core::PeerState;
use crate::node::membership::{Change as MemberChange, Listener};
use crate::node::services::{BuiltIn, Host, Wake};
use crate::node::{CallContext, HandlerError, Node};

/// Events queued per watcher before further ones are dropped.
pub(crate) const WATCH_CAPACITY: usize = 4096;

/// The node's wall clock in milliseconds since the Unix epoch.
pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) struct Slot {
    pub replica: Replica,
    pub watchers: Vec<crate::mailbox::Sender<ReplicaEvent>>,
}

/// Every replica of one node, shared by its channel handles, the
/// replication handlers and the service thread.
pub(crate) struct Hub {
    pub(crate) slots: Mutex<HashMap<String, Slot>>,
    pub(crate) me: String,
    pub(crate) id: u64,
    wake: Wake,
    pub(crate) dropped_events: AtomicU64,
}

impl Hub {
    /// The service's name: its methods are `bilateral.channel.*`.
    pub(crate) const NAME: &'static str = "channel";

    /// The channel service of `node`, started on first use.
    pub(crate) fn of(node: &Node) -> Result<Arc<Hub>, crate::Error> {
        node.service(Self::NAME, Hub::start)
    }

    /// Creates the hub and registers the replication methods.
    fn start(host: &Host<'_>) -> Result<Arc<Hub>, crate::Error> {
        let node = host.node();
        let hub = Arc::new(Hub {
            slots: Mutex::new(HashMap::new()),
            me: node.name().to_string(),
            id: node.incarnation(),
            wake: host.wake(),
            dropped_events: AtomicU64::new(0),
        });
        register(host, &hub);
        Ok(hub)
    }

    /// Asks for a tick, to act on what changed.
    pub(crate) fn wake(&self) {
        self.wake.wake();
    }

    /// Runs `f` on the replica of `channel`, creating it with `config` if needed.
    pub(crate) fn with_replica<R>(
        &self,
        channel: &str,
        config: Option<&ChannelConfig>,
        f: impl FnOnce(&mut Slot) -> R,
    ) -> R {
        let mut slots = self.slots.lock();
        let slot = slots.entry(channel.to_string()).or_insert_with(|| Slot {
            replica: Replica::new(
                channel,
                &self.me,
                self.id,
                config.cloned().unwrap_or_default(),
            ),
            watchers: Vec::new(),
        });
        let result = f(slot);
        drop(slots);
        self.wake();
        result
    }

    /// Runs every replica's timers and sends what they produce.
    fn run_tick(&self, node: &Node, now: Instant) -> Option<Instant> {
        let mut outgoing = Vec::new();
        let next = {
            let mut slots = self.slots.lock();
            let wall = wall_ms();
            for slot in slots.values_mut() {
                slot.replica.handle_timeout(now, wall);
                while let Some(out) = slot.replica.poll_out() {
                    outgoing.push(out);
                }
                self.deliver_events(slot);
            }
            slots
                .values()
                .filter_map(|s| s.replica.poll_timeout())
                .min()
        };
        let failed: Vec<(String, String)> = outgoing
            .into_iter()
            .filter_map(|out| send(node, out))
            .collect();
        if !failed.is_empty() {
            let mut slots = self.slots.lock();
            for (channel, peer) in failed {
                if let Some(slot) = slots.get_mut(&channel) {
                    slot.replica.handle_send_failed(&peer, now);
                }
            }
        }
        next
    }

    /// Hands the replica's events to its watchers, without ever blocking.
    pub(crate) fn deliver_events(&self, slot: &mut Slot) {
        while let Some(event) = slot.replica.poll_event() {
            slot.watchers.retain(|w| match w.try_send(event.clone()) {
                Ok(()) => true,
                Err(crate::mailbox::TrySendError::Full(_)) => {
                    self.dropped_events.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(crate::mailbox::TrySendError::Disconnected(_)) => false,
            });
        }
    }
}

impl Listener for Hub {
    /// A peer joined or left: every replica learns it at once (and the
    /// service thread acts on it).
    fn on_change(&self, change: &MemberChange) {
        let (peer, up) = match change {
            MemberChange::Joined(session) => (&session.peer, true),
            MemberChange::Left(session, _) => (&session.peer, false),
        };
        let now = Instant::now();
        let mut slots = self.slots.lock();
        for slot in slots.values_mut() {
            slot.replica.set_connected(peer.as_str(), up, now);
        }
        drop(slots);
        self.wake();
    }
}

impl BuiltIn for Hub {
    fn tick(&self, node: &Node, now: Instant) -> Option<Instant> {
        self.run_tick(node, now)
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let slots = self.slots.lock();
        vec![
            ("channels", slots.len() as u64),
            (
                "entries",
                slots.values().map(|s| s.replica.len() as u64).sum(),
            ),
            (
                "watchers",
                slots.values().map(|s| s.watchers.len() as u64).sum(),
            ),
            (
                "events_dropped",
                self.dropped_events.load(Ordering::Relaxed),
            ),
        ]
    }
}

/// Sends one message as a cast. Returns `(channel, peer)` when a pull could
/// not be sent (no session), so the replica retries it later.
fn send(node: &Node, out: Out) -> Option<(String, String)> {
    fn cast<M: Serialize>(node: &Node, to: &str, method: &str, message: &M) -> bool {
        matches!(node.service_cast(to, method, message), Ok(n) if n > 0)
    }
    match out {
        Out::Push(to, m) => {
            cast(node, &to, wire::method::PUSH, &m);
            None
        }
        Out::Pull(to, m) => {
            let channel = m.channel.clone();
            (!cast(node, &to, wire::method::PULL, &m)).then_some((channel, to))
        }
        Out::Entries(to, m) => {
            cast(node, &to, wire::method::ENTRIES, &m);
            None
        }
        Out::Hello(to, m) => {
            cast(node, &to, wire::method::HELLO, &m);
            None
        }
        Out::Unpeer(to, m) => {
            cast(node, &to, wire::method::UNPEER, &m);
            None
        }
    }
}

/// Registers the replication methods, each applying what arrives to the
/// named replica (if this node has one).
fn register(host: &Host<'_>, hub: &Arc<Hub>) {
    fn on<M, F>(host: &Host<'_>, hub: &Arc<Hub>, method: &str, apply: F)
    where
        M: serde::de::DeserializeOwned + HasChannel,
        F: Fn(&mut Replica, &str, M, u64, Instant) + Send + Sync + 'static,
    {
        let hub = hub.clone();
        host.register(
            method,
            move |ctx: &CallContext, message: M| -> Result<(), HandlerError> {
                let mut slots = hub.slots.lock();
                if let Some(slot) = slots.get_mut(message.channel()) {
                    apply(
                        &mut slot.replica,
                        ctx.peer(),
                        message,
                        wall_ms(),
                        Instant::now(),
                    );
                    hub.deliver_events(slot);
                }
                drop(slots);
                hub.wake();
                Ok(())
            },
        );
    }
    on::<Push, _>(host, hub, wire::method::PUSH, |r, from, m, wall, now| {
        r.handle_push(from, m, wall, now)
    });
    on::<Pull, _>(host, hub, wire::method::PULL, |r, from, m, _, _| {
        r.handle_pull(from, m)
    });
    on::<Entries, _>(host, hub, wire::method::ENTRIES, |r, from, m, wall, now| {
        r.handle_entries(from, m, wall, now)
    });
    on::<Hello, _>(host, hub, wire::method::HELLO, |r, from, m, _, now| {
        r.handle_hello(from, m, true, now)
    });
    on::<Unpeer, _>(host, hub, wire::method::UNPEER, |r, from, _, _, _| {
        r.handle_unpeer(from)
    });
}

/// Every replication message names its channel.
trait HasChannel {
    fn channel(&self) -> &str;
}

macro_rules! has_channel {
    ($($t:ty),*) => {$(impl HasChannel for $t { fn channel(&self) -> &str { &self.channel } })*};
}
has_channel!(Push, Pull, Entries, Hello, Unpeer);

/// Whether `node` has a session with `peer` now.
pub(crate) fn connected(node: &Node, peer: &str) -> bool {
    node.peer_state(peer) == Some(PeerState::Active)
}
