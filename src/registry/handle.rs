//! [`Registry`]: the typed handle an application uses, its
//! [`Registration`] guards and [`RegistryWatch`].

use std::collections::HashMap;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::book::{Key, RegistryError};
use super::service::{Pending, Service};
use crate::mailbox;
use crate::node::{Node, WeakNode};

impl Node {
    /// The node's registry (see [`crate::registry`]).
    pub fn registry(&self) -> Result<Registry, crate::Error> {
        Ok(Registry {
            service: Service::of(self, None)?,
            node: self.downgrade(),
        })
    }
}

/// A node's view of the mesh's registry: its own entries, and every entry
/// of every node session it can reach. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    service: Arc<Service>,
    node: WeakNode,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let me = self.service.book.lock().me().clone();
        f.debug_struct("Registry").field("node", &me.name).finish()
    }
}

/// One entry: a value registered by a node session.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry<V> {
    /// Its collection.
    pub collection: String,
    /// Its name in the collection.
    pub name: String,
    /// The name of the node that registered it.
    pub owner: String,
    /// The incarnation of that node when it did.
    pub incarnation: u64,
    /// The value.
    pub value: V,
}

/// A change in a watched collection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryEvent<V> {
    /// An entry became visible: registered, or its owner became reachable.
    Added(Entry<V>),
    /// An entry's value changed.
    Updated(Entry<V>),
    /// An entry is gone: removed, or its owner closed, crashed, restarted
    /// or became unreachable.
    Removed {
        /// Its collection.
        collection: String,
        /// Its name.
        name: String,
        /// Its owner's name.
        owner: String,
        /// Its owner's incarnation.
        incarnation: u64,
    },
}

fn encode<V: Serialize + ?Sized>(value: &V) -> Result<Vec<u8>, RegistryError> {
    rmp_serde::to_vec_named(value).map_err(|e| RegistryError::Encoding(e.to_string()))
}

fn decode<V: DeserializeOwned>(key: &Key, bytes: &[u8]) -> Result<Entry<V>, RegistryError> {
    let value = rmp_serde::from_slice(bytes).map_err(|e| {
        RegistryError::Encoding(format!("{}/{} of {}: {e}", key.0, key.1, key.2.name))
    })?;
    Ok(Entry {
        collection: key.0.clone(),
        name: key.1.clone(),
        owner: key.2.name.clone(),
        incarnation: key.2.incarnation,
        value,
    })
}

impl Registry {
    fn check_open(&self) -> Result<(), RegistryError> {
        match self.node.upgrade() {
            Some(node) if !node.is_closed() => Ok(()),
            _ => Err(RegistryError::Closed),
        }
    }

    /// Registers `value` as this node's entry `name` in `collection`, until
    /// the returned guard is dropped (or [`Registration::remove`]d), or this
    /// node closes or dies. Other nodes may register the same name: a
    /// lookup returns every owner's entry.
    /// Collections whose names begin with `bilateral.` are the node's own
    /// (discovery publishes nodes in `bilateral.nodes`): they can be read
    /// and watched, not registered in.
    pub fn register<V: Serialize + ?Sized>(
        &self,
        collection: &str,
        name: &str,
        value: &V,
    ) -> Result<Registration, RegistryError> {
        if collection.starts_with(crate::protocol::RESERVED_PREFIX) {
            return Err(RegistryError::Reserved(collection.to_string()));
        }
        self.register_reserved(collection, name, value)
    }

    /// [`Registry::register`] in any collection, the reserved ones included.
    pub(crate) fn register_reserved<V: Serialize + ?Sized>(
        &self,
        collection: &str,
        name: &str,
        value: &V,
    ) -> Result<Registration, RegistryError> {
        self.check_open()?;
        let bytes = encode(value)?;
        let now = Instant::now();
        self.service
            .with_book(|book| book.register(collection, name, bytes, now))?;
        Ok(Registration {
            service: self.service.clone(),
            collection: collection.to_string(),
            name: name.to_string(),
            live: true,
        })
    }

    /// Every visible entry `name` of `collection`, one per owner, sorted by
    /// owner.
    pub fn lookup<V: DeserializeOwned>(
        &self,
        collection: &str,
        name: &str,
    ) -> Result<Vec<Entry<V>>, RegistryError> {
        self.entries(|k| k.0 == collection && k.1 == name)
    }

    /// Every visible entry of `collection`, sorted by name, then owner.
    pub fn list<V: DeserializeOwned>(
        &self,
        collection: &str,
    ) -> Result<Vec<Entry<V>>, RegistryError> {
        self.entries(|k| k.0 == collection)
    }

    /// Whether this node has `peer`'s record (the entries it owns, as of its
    /// latest change to reach here) and is waiting for no record from any
    /// peer: what a node that just joined waits for before it trusts a
    /// [`Registry::list`] of what `peer` knows. Records further away keep
    /// arriving by anti-entropy.
    pub fn caught_up(&self, peer: &str) -> bool {
        self.service.view(|book| book.caught_up(peer))
    }

    /// The collections with a visible entry, sorted.
    pub fn collections(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .service
            .view(|book| book.visible().keys().map(|k| k.0.clone()).collect());
        names.dedup();
        names
    }

    fn entries<V: DeserializeOwned>(
        &self,
        select: impl Fn(&Key) -> bool,
    ) -> Result<Vec<Entry<V>>, RegistryError> {
        self.service.view(|book| {
            book.visible()
                .iter()
                .filter(|(k, _)| select(k))
                .map(|(k, v)| decode(k, v))
                .collect()
        })
    }

    /// A stream of the changes of `collection`: first an `Added` for every
    /// entry visible now, then every change (see [`RegistryWatch`]).
    pub fn watch<V: DeserializeOwned>(&self, collection: &str) -> RegistryWatch<V> {
        let (pending, ring) = self.service.watch(collection);
        RegistryWatch {
            service: self.service.clone(),
            pending,
            ring,
            seen: Mutex::new(HashMap::new()),
            _value: PhantomData,
        }
    }
}

/// This node's entry in the registry, for as long as the guard lives.
#[must_use = "dropping the registration removes the entry"]
pub struct Registration {
    service: Arc<Service>,
    collection: String,
    name: String,
    live: bool,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("collection", &self.collection)
            .field("name", &self.name)
            .finish()
    }
}

impl Registration {
    /// The entry's collection.
    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// The entry's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Replaces the entry's value, here and (soon) on every node that sees it.
    pub fn update<V: Serialize + ?Sized>(&self, value: &V) -> Result<(), RegistryError> {
        let bytes = encode(value)?;
        let now = Instant::now();
        let (collection, name) = (&self.collection, &self.name);
        match self
            .service
            .with_book(|book| book.update(collection, name, bytes, now))?
        {
            true => Ok(()),
            false => Err(RegistryError::Closed),
        }
    }

    /// Removes the entry (as dropping the guard does).
    pub fn remove(mut self) {
        self.withdraw();
    }

    fn withdraw(&mut self) {
        if std::mem::take(&mut self.live) {
            let now = Instant::now();
            let (collection, name) = (&self.collection, &self.name);
            self.service
                .with_book(|book| book.remove(collection, name, now));
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.withdraw();
    }
}

/// The changes of one collection, from [`Registry::watch`].
///
/// Nothing is lost to a slow reader: the watch keeps, per entry, only that
/// it changed, and reports the difference between what it last reported
/// and what is visible when it is read. An entry added and removed again
/// before it is read is therefore never reported, and many updates read
/// late are one `Updated` with the latest value; what the watch has
/// reported always ends equal to what [`Registry::list`] returns. Its
/// memory is bounded by the size of the collection. A value that does not
/// decode into `V` is skipped (and logged).
///
/// Read it blocking, or as a [`futures_core::Stream`] from async code. It
/// ends when the node closes (after what was pending).
pub struct RegistryWatch<V> {
    service: Arc<Service>,
    pending: Arc<Pending>,
    ring: mailbox::Receiver<()>,
    /// What was last reported, per entry.
    seen: Mutex<HashMap<Key, Vec<u8>>>,
    _value: PhantomData<fn() -> V>,
}

impl<V> std::fmt::Debug for RegistryWatch<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryWatch")
            .field("collection", &self.pending.collection)
            .finish()
    }
}

impl<V: DeserializeOwned> RegistryWatch<V> {
    /// The next change already known, if any.
    pub fn try_recv(&self) -> Option<RegistryEvent<V>> {
        while let Some(key) = self.pending.take() {
            if let Some(event) = self.compare(key) {
                return Some(event);
            }
        }
        None
    }

    /// The next change, waiting at most `timeout`; `None` at the deadline
    /// or once the node closed.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<RegistryEvent<V>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.try_recv() {
                return Some(event);
            }
            self.ring.recv_deadline(deadline).ok()?;
        }
    }

    /// The next change, awaited; `None` once the node closed.
    pub async fn next_event(&mut self) -> Option<RegistryEvent<V>> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&self, cx: &mut Context<'_>) -> Poll<Option<RegistryEvent<V>>> {
        loop {
            if let Some(event) = self.try_recv() {
                return Poll::Ready(Some(event));
            }
            match self.ring.poll_recv(cx, None) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// What changed for `key` since it was last reported.
    fn compare(&self, key: Key) -> Option<RegistryEvent<V>> {
        let now = self.service.view(|book| book.value(&key).cloned());
        let mut seen = self.seen.lock();
        let before = seen.get(&key);
        if before == now.as_ref() {
            return None;
        }
        let Some(bytes) = now else {
            seen.remove(&key);
            return Some(RegistryEvent::Removed {
                collection: key.0,
                name: key.1,
                owner: key.2.name,
                incarnation: key.2.incarnation,
            });
        };
        let added = before.is_none();
        match decode::<V>(&key, &bytes) {
            Ok(entry) => {
                seen.insert(key, bytes);
                Some(if added {
                    RegistryEvent::Added(entry)
                } else {
                    RegistryEvent::Updated(entry)
                })
            }
            Err(e) => {
                log::warn!("registry watch: {e}; skipped");
                None
            }
        }
    }
}

impl<V: DeserializeOwned> futures_core::Stream for RegistryWatch<V> {
    type Item = RegistryEvent<V>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RegistryEvent<V>>> {
        self.poll_event(cx)
    }
}
