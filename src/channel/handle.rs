//! [`Channel`]: the typed handle an application uses.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::pin::Pin;
use std::task::{Context, Poll};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::hlc::Version;
use super::replica::{ChannelError, ChannelStats, Permission, Refusal, ReplicaEvent};
use super::service::{Hub, WATCH_CAPACITY, connected, wall_ms};
use crate::mailbox;
use crate::node::Node;

/// A replicated key-value map with values of type `V` (any serde type,
/// stored as MessagePack). Obtained from [`Node::channel`]. Cloning is cheap;
/// every handle of a name on a node is the same map.
pub struct Channel<V> {
    hub: Arc<Hub>,
    node: Node,
    name: String,
    _value: PhantomData<fn() -> V>,
}

impl<V> Clone for Channel<V> {
    fn clone(&self) -> Self {
        Channel {
            hub: self.hub.clone(),
            node: self.node.clone(),
            name: self.name.clone(),
            _value: PhantomData,
        }
    }
}

impl<V> std::fmt::Debug for Channel<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("node", &self.node.name())
            .finish()
    }
}

/// One change of a channel, local or remote.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Change<V> {
    /// The key.
    pub key: String,
    /// The new value, or `None` if the key was removed.
    pub value: Option<V>,
    /// The node that made the change.
    pub by: String,
    /// The change's version.
    pub version: Version,
}

/// What a [`Watch`] reports.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ChannelEvent<V> {
    /// The map changed.
    Changed(Change<V>),
    /// Entries from `peer` were refused.
    Refused {
        /// The peer.
        peer: String,
        /// How many entries.
        entries: usize,
        /// Why.
        reason: Refusal,
    },
}

/// A stream of a channel's changes (and refusals), from [`Channel::watch`].
/// Holds up to 4 096 undelivered events; beyond that, events are dropped
/// for this watcher (the map itself is never affected). Read it blocking,
/// or as a [`futures_core::Stream`] (or [`Watch::next_event`]) from async code.
pub struct Watch<V> {
    rx: mailbox::Receiver<ReplicaEvent>,
    _value: PhantomData<fn() -> V>,
}

impl<V: DeserializeOwned> Watch<V> {
    fn convert(event: ReplicaEvent) -> Option<ChannelEvent<V>> {
        Some(match event {
            ReplicaEvent::Changed(c) => {
                let value = match c.value {
                    Some(bytes) => match rmp_serde::from_slice(&bytes) {
                        Ok(v) => Some(v),
                        Err(e) => {
                            log::warn!("watch: a value of {:?} does not decode: {e}", c.key);
                            return None;
                        }
                    },
                    None => None,
                };
                let by = c.version.node.clone();
                ChannelEvent::Changed(Change {
                    key: c.key,
                    value,
                    by,
                    version: c.version,
                })
            }
            ReplicaEvent::Refused {
                peer,
                entries,
                reason,
            } => ChannelEvent::Refused {
                peer,
                entries,
                reason,
            },
        })
    }

    /// The next event, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<ChannelEvent<V>> {
        let deadline = Instant::now() + timeout;
        loop {
            let event = self.rx.recv_deadline(deadline).ok()?;
            if let Some(event) = Self::convert(event) {
                return Some(event);
            }
        }
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Option<ChannelEvent<V>> {
        loop {
            let event = self.rx.try_recv()?;
            if let Some(event) = Self::convert(event) {
                return Some(event);
            }
        }
    }

    /// The next event, awaited; `None` once the node closed.
    pub async fn next_event(&mut self) -> Option<ChannelEvent<V>> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&self, cx: &mut Context<'_>) -> Poll<Option<ChannelEvent<V>>> {
        loop {
            match self.rx.poll_recv(cx, None) {
                Poll::Ready(Ok(event)) => {
                    if let Some(event) = Self::convert(event) {
                        return Poll::Ready(Some(event));
                    }
                }
                Poll::Ready(Err(_)) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Waits until an event satisfying `pred` arrives (skipping the others),
    /// for at most `timeout`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&ChannelEvent<V>) -> bool,
    ) -> Option<ChannelEvent<V>> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let event = self.recv_timeout(left)?;
            if pred(&event) {
                return Some(event);
            }
        }
    }
}

impl<V: DeserializeOwned> futures_core::Stream for Watch<V> {
    type Item = ChannelEvent<V>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ChannelEvent<V>>> {
        self.poll_event(cx)
    }
}

fn encode<V: Serialize>(value: &V) -> Result<Vec<u8>, ChannelError> {
    rmp_serde::to_vec_named(value).map_err(|e| ChannelError::Encoding(e.to_string()))
}

fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, ChannelError> {
    rmp_serde::from_slice(bytes).map_err(|e| ChannelError::Encoding(e.to_string()))
}

/// The channel service's entry points on the node.
impl Node {
    /// The replicated channel `name` on this node, with values of type `V`
    /// (created empty on first use; see [`crate::channel`]).
    pub fn channel<V>(&self, name: &str) -> Result<Channel<V>, crate::Error>
    where
        V: Serialize + DeserializeOwned,
    {
        self.channel_with(name, None)
    }

    /// The same, with limits and timers for a channel created by this call.
    pub fn channel_with<V>(
        &self,
        name: &str,
        config: Option<super::ChannelConfig>,
    ) -> Result<Channel<V>, crate::Error>
    where
        V: Serialize + DeserializeOwned,
    {
        crate::protocol::MethodName::new(name).map_err(|reason| crate::Error::InvalidName {
            name: name.to_string(),
            reason,
        })?;
        if self.is_closed() {
            return Err(crate::Error::Closed);
        }
        let hub = Hub::of(self)?;
        Ok(Channel::open(self, hub, name, config.as_ref()))
    }
}

impl<V: Serialize + DeserializeOwned> Channel<V> {
    fn open(node: &Node, hub: Arc<Hub>, name: &str, config: Option<&super::ChannelConfig>) -> Self {
        hub.with_replica(name, config, |_| ());
        Channel {
            hub,
            node: node.clone(),
            name: name.to_string(),
            _value: PhantomData,
        }
    }

    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn write(&self, ops: Vec<(String, Option<Vec<u8>>)>) -> Result<(), ChannelError> {
        if self.node.is_closed() {
            return Err(ChannelError::Closed);
        }
        self.hub.with_replica(&self.name, None, |slot| {
            let result = slot.replica.write(ops, wall_ms());
            self.hub.deliver_events(slot);
            result
        })
    }

    /// Sets `key` to `value` here and on every peer. The value may be
    /// given owned or borrowed, as in [`Channel::set_all`].
    pub fn set(&self, key: impl Into<String>, value: impl Borrow<V>) -> Result<(), ChannelError> {
        self.write(vec![(key.into(), Some(encode(value.borrow())?))])
    }

    /// Sets many entries as one replicated operation (one version, one
    /// message); values owned or borrowed.
    pub fn set_all<K: Into<String>, B: Borrow<V>>(
        &self,
        entries: impl IntoIterator<Item = (K, B)>,
    ) -> Result<(), ChannelError> {
        let ops = entries
            .into_iter()
            .map(|(k, v)| Ok((k.into(), Some(encode(v.borrow())?))))
            .collect::<Result<_, ChannelError>>()?;
        self.write(ops)
    }

    /// Removes `key` here and on every peer (a tombstone travels).
    pub fn unset(&self, key: impl Into<String>) -> Result<(), ChannelError> {
        self.write(vec![(key.into(), None)])
    }

    /// Removes many keys as one replicated operation.
    pub fn unset_all<K: Into<String>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<(), ChannelError> {
        self.write(keys.into_iter().map(|k| (k.into(), None)).collect())
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Result<Option<V>, ChannelError> {
        let bytes = self.hub.with_replica(&self.name, None, |slot| {
            slot.replica.get(key).map(<[u8]>::to_vec)
        });
        bytes.map(|b| decode(&b)).transpose()
    }

    /// How many entries are present.
    pub fn size(&self) -> usize {
        self.hub
            .with_replica(&self.name, None, |slot| slot.replica.len())
    }

    /// The present keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        self.hub
            .with_replica(&self.name, None, |slot| slot.replica.keys())
    }

    /// Every present entry, by key.
    pub fn get_all(&self) -> Result<BTreeMap<String, V>, ChannelError> {
        let all = self
            .hub
            .with_replica(&self.name, None, |slot| slot.replica.entries());
        all.into_iter().map(|(k, v)| Ok((k, decode(&v)?))).collect()
    }

    /// Counters of this replica.
    pub fn stats(&self) -> ChannelStats {
        self.hub
            .with_replica(&self.name, None, |slot| slot.replica.stats())
    }

    /// Changes from now on, local and remote, and refused writes.
    pub fn watch(&self) -> Watch<V> {
        let (tx, rx) = mailbox::mailbox(WATCH_CAPACITY);
        self.hub
            .with_replica(&self.name, None, |slot| slot.watchers.push(tx));
        Watch {
            rx,
            _value: PhantomData,
        }
    }

    /// Replicates with these peers, which may read and write. The peers
    /// replicate back once they peer this channel with this node too (or peer
    /// it with everyone, [`Channel::peer_all`]).
    pub fn peer<I, S>(&self, peers: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.peer_as(peers, Permission::ReadWrite);
    }

    /// Replicates with these peers, which may only read: their own writes
    /// are refused (reported to [`Channel::watch`]) and do not spread.
    pub fn peer_read_only<I, S>(&self, peers: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.peer_as(peers, Permission::ReadOnly);
    }

    fn peer_as<I, S>(&self, peers: I, permission: Permission)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let now = Instant::now();
        let peers: Vec<(String, bool)> = peers
            .into_iter()
            .map(|p| (p.as_ref().to_string(), connected(&self.node, p.as_ref())))
            .collect();
        self.hub.with_replica(&self.name, None, |slot| {
            for (peer, up) in &peers {
                slot.replica.peer(peer, permission, *up, now);
                if *up {
                    slot.replica.announce(peer);
                }
            }
        });
    }

    /// Replicates with every node of the mesh that replicates this channel
    /// (now or later), read-write.
    pub fn peer_all(&self) {
        let active = self.node.active_connections();
        self.hub.with_replica(&self.name, None, |slot| {
            slot.replica.peer_with_all();
            for node in &active {
                slot.replica.discover(node);
            }
        });
    }

    /// Stops replicating with these peers and tells them. Their data stays
    /// here; peering again later resumes from where the two replicas were.
    pub fn unpeer<I, S>(&self, peers: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let peers: Vec<String> = peers.into_iter().map(|p| p.as_ref().to_string()).collect();
        self.hub.with_replica(&self.name, None, |slot| {
            for peer in &peers {
                slot.replica.unpeer(peer);
            }
        });
    }

    /// Stops replicating with every peer (and with-all discovery).
    pub fn unpeer_all(&self) {
        self.hub
            .with_replica(&self.name, None, |slot| slot.replica.unpeer_all());
    }

    /// The peers this channel replicates with.
    pub fn peers(&self) -> Vec<String> {
        self.hub
            .with_replica(&self.name, None, |slot| slot.replica.peers())
    }

    /// Whether `peer` has confirmed every change of this replica so far.
    /// Changes are pushed at once; the confirmation comes with the peer's
    /// next pull (its `sync_interval`), so a writer that must know its
    /// write arrived (one about to exit, say) waits for this.
    pub fn delivered_to(&self, peer: &str) -> bool {
        self.hub
            .with_replica(&self.name, None, |slot| slot.replica.delivered_to(peer))
    }

    /// Whether this replica holds every entry `peer` had when it answered
    /// this replica's last pull (and no pull to it is under way): what a
    /// reader that just peered waits for before it trusts [`Channel::get`].
    pub fn synced_with(&self, peer: &str) -> bool {
        self.hub
            .with_replica(&self.name, None, |slot| slot.replica.synced_with(peer))
    }
}
