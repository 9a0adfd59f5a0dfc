//! The registry of one node as a sans-IO state machine: what it knows of
//! every node session's entries, which of those it can see, and the
//! messages that keep that true.
//!
//! ## The model
//!
//! Each node session (name + incarnation) is the sole author of one
//! [`Record`]: its entries and the sessions it has with other nodes, with a
//! number `seq` that grows with every change. Records spread by casts:
//! pushed to the owner's peers when it changes, relayed by those peers to
//! theirs (except to nodes the owner is in session with, which have it from
//! the owner), and repaired by anti-entropy: every `sync_interval` a node
//! sends each peer a digest of the versions it sees; a peer whose digest
//! differs answers with a summary, and the node asks for what it lacks.
//!
//! A node **sees** a record when its owner is reachable: there is a chain
//! of sessions from this node to it in which every link is confirmed by
//! both ends (this node's own sessions; for the others, each of the two
//! records lists the other). An owner that crashes is dropped by its peers
//! within `lost_timeout`; their new records no longer list it, so it is
//! unreachable everywhere as soon as those records arrive, and its entries
//! vanish — also on nodes that only ever heard of it through a relay. A
//! restarted owner is a new session: the old one is listed by nobody. A
//! node cut off from an owner but still reaching it through another node
//! keeps seeing its entries: reachability, not a direct session, decides.
//!
//! Records no one can reach are forgotten after `forget_after`. Records of
//! a peer this node is in session with are taken only from that peer.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::reach::Reach;
use super::wire::{self, Held, Message, Owner, Record, Records, Summary, Want, WireEntry};

/// Limits and timers of a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryConfig {
    /// How often each peer is sent the digest of what this node sees.
    pub sync_interval: Duration,
    /// How long a change waits to be pushed, so that changes close together
    /// (sessions forming at start) go out as one.
    pub push_delay: Duration,
    /// How long a record no one can reach is kept.
    pub forget_after: Duration,
    /// How long a record asked for is not asked for again.
    pub want_timeout: Duration,
    /// Entries one node session may register.
    pub max_entries: usize,
    /// Entries one node session may register in one collection.
    pub max_entries_per_collection: usize,
    /// Bytes of one value (its MessagePack).
    pub max_value_bytes: usize,
    /// Node sessions whose records a node keeps.
    pub max_owners: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            sync_interval: Duration::from_secs(1),
            push_delay: Duration::from_millis(10),
            forget_after: Duration::from_secs(60),
            want_timeout: Duration::from_secs(2),
            max_entries: 1024,
            max_entries_per_collection: 256,
            max_value_bytes: 64 * 1024,
            max_owners: 4096,
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $t:ty),* $(,)?) => {
        impl RegistryConfig {
            $($(#[$doc])* pub fn $name(mut self, value: $t) -> Self {
                self.$name = value;
                self
            })*
        }
    };
}

setters! {
    /// Sets [`RegistryConfig::sync_interval`].
    sync_interval: Duration,
    /// Sets [`RegistryConfig::push_delay`].
    push_delay: Duration,
    /// Sets [`RegistryConfig::forget_after`].
    forget_after: Duration,
    /// Sets [`RegistryConfig::want_timeout`].
    want_timeout: Duration,
    /// Sets [`RegistryConfig::max_entries`].
    max_entries: usize,
    /// Sets [`RegistryConfig::max_entries_per_collection`].
    max_entries_per_collection: usize,
    /// Sets [`RegistryConfig::max_value_bytes`].
    max_value_bytes: usize,
    /// Sets [`RegistryConfig::max_owners`].
    max_owners: usize,
}

/// Collection and name lengths, in bytes.
pub(crate) const MAX_NAME: usize = 255;

/// How long a change of who is reachable may wait before it is worked out,
/// so that a burst of records (a mesh forming) costs one traversal, not one
/// each. Readers ([`Book::visible`], [`Book::value`]) never wait.
const REACH_DELAY: Duration = Duration::from_millis(20);

/// Peers sent the digest each `sync_interval`.
const SYNC_FANOUT: usize = 3;

/// A record's bytes that go into one `records` message at most (more
/// records go in further messages).
const BATCH_BYTES: usize = 256 * 1024;

/// Why a local registration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// This node already registered that collection and name.
    #[error("{collection}/{name} is already registered by this node")]
    Exists {
        /// The collection.
        collection: String,
        /// The name.
        name: String,
    },
    /// A collection or name is empty or longer than 255 bytes.
    #[error("invalid collection or name: {0:?}")]
    InvalidName(String),
    /// The collection's name begins with `bilateral.`: it is the node's own.
    #[error("the collection {0:?} is reserved for the node's own services")]
    Reserved(String),
    /// The value's MessagePack is larger than `max_value_bytes`.
    #[error("the value is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// This node has registered `max_entries` (or `max_entries_per_collection`).
    #[error("too many entries (the limit is {limit})")]
    TooMany {
        /// The limit.
        limit: usize,
    },
    /// The value does not encode or decode as MessagePack.
    #[error("encoding: {0}")]
    Encoding(String),
    /// The node is closed.
    #[error("the node is closed")]
    Closed,
}

/// Where a visible entry is: collection, name, owner.
pub(crate) type Key = (String, String, Owner);

/// Counters of one registry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BookStats {
    /// Records taken (new versions).
    pub records_in: u64,
    /// Records sent.
    pub records_out: u64,
    /// Records refused: over a bound, or claiming to be from a peer that
    /// did not send them.
    pub refused: u64,
    /// Records ignored as stale or duplicated.
    pub stale: u64,
    /// Records forgotten after being unreachable for `forget_after`.
    pub forgotten: u64,
}

struct Stored {
    record: Record,
    /// What this record adds to [`Book::digest`] now (its version, while
    /// its owner is reachable).
    in_digest: Option<u64>,
    /// Since when no chain of sessions reaches the owner.
    unreachable_since: Option<Instant>,
}

/// One node's registry state.
pub(crate) struct Book {
    cfg: RegistryConfig,
    me: Owner,
    own: BTreeMap<(String, String), Vec<u8>>,
    /// The seq of the last own record pushed.
    own_seq: u64,
    /// When the own record, changed, is to be pushed.
    push_at: Option<Instant>,
    /// This node's sessions: peer name → incarnation.
    sessions: BTreeMap<String, u64>,
    records: HashMap<Owner, Stored>,
    /// Records asked for: the seq expected, and when.
    wanted: HashMap<Owner, (u64, Instant)>,
    /// Who is reachable (kept up to date as records and sessions change;
    /// after a loss, worked out again at `reach_due` or when read).
    reach: Reach,
    /// When a loss of sessions waits no longer for others to join it
    /// (see [`REACH_DELAY`]).
    reach_due: Option<Instant>,
    /// The versions of the reachable records, XORed: the digest but for
    /// this node's own version.
    digest: u64,
    /// The latest time this book was told of.
    last_now: Instant,
    /// Owners whose records changed since `visible` was brought up to date.
    dirty_owners: HashSet<Owner>,
    /// This node's own entries that changed since then.
    dirty_own: Vec<(String, String)>,
    /// The visible entries of each owner (an index of `visible`).
    by_owner: HashMap<Owner, HashSet<(String, String)>>,
    /// Every entry this node sees, with its value.
    visible: BTreeMap<Key, Vec<u8>>,
    /// Keys whose visible value changed, for watchers.
    changed: VecDeque<Key>,
    next_sync: Instant,
    /// The last peer sent the digest (peers take turns in name order).
    synced_up_to: String,
    out: VecDeque<(String, Message)>,
    stats: BookStats,
}

impl Book {
    pub(crate) fn new(name: &str, incarnation: u64, cfg: RegistryConfig, now: Instant) -> Self {
        Book {
            next_sync: now + cfg.sync_interval,
            synced_up_to: String::new(),
            cfg,
            me: Owner {
                name: name.to_string(),
                incarnation,
            },
            own: BTreeMap::new(),
            own_seq: 0,
            push_at: None,
            sessions: BTreeMap::new(),
            records: HashMap::new(),
            wanted: HashMap::new(),
            reach: Reach::default(),
            reach_due: None,
            digest: 0,
            last_now: now,
            dirty_owners: HashSet::new(),
            dirty_own: Vec::new(),
            by_owner: HashMap::new(),
            visible: BTreeMap::new(),
            changed: VecDeque::new(),
            out: VecDeque::new(),
            stats: BookStats::default(),
        }
    }

    pub(crate) fn me(&self) -> &Owner {
        &self.me
    }

    pub(crate) fn stats(&self) -> BookStats {
        self.stats
    }

    /// Records kept (seen or not), and entries seen.
    pub(crate) fn sizes(&self) -> (usize, usize) {
        (self.records.len(), self.visible.len())
    }

    /// Records asked for and not yet received.
    #[cfg(test)]
    pub(crate) fn wanted(&self) -> usize {
        self.wanted.len()
    }

    /// Whether this book holds the record of `peer`'s current session and
    /// wants no record from anyone (see `Registry::caught_up`).
    pub(crate) fn caught_up(&self, peer: &str) -> bool {
        let Some(&incarnation) = self.sessions.get(peer) else {
            return false;
        };
        self.wanted.is_empty()
            && self.records.contains_key(&Owner {
                name: peer.to_string(),
                incarnation,
            })
    }

    /// Peers in session.
    pub(crate) fn sessions(&self) -> usize {
        self.sessions.len()
    }

    // ---- local entries ----

    /// Registers this node's entry `collection`/`name`.
    pub(crate) fn register(
        &mut self,
        collection: &str,
        name: &str,
        value: Vec<u8>,
        now: Instant,
    ) -> Result<(), RegistryError> {
        let key = (collection.to_string(), name.to_string());
        if self.own.contains_key(&key) {
            return Err(RegistryError::Exists {
                collection: key.0,
                name: key.1,
            });
        }
        check_name(collection)?;
        check_name(name)?;
        self.check_value(&value)?;
        if self.own.len() >= self.cfg.max_entries {
            return Err(RegistryError::TooMany {
                limit: self.cfg.max_entries,
            });
        }
        let in_collection = self.own.keys().filter(|(c, _)| c == collection).count();
        if in_collection >= self.cfg.max_entries_per_collection {
            return Err(RegistryError::TooMany {
                limit: self.cfg.max_entries_per_collection,
            });
        }
        self.dirty_own.push(key.clone());
        self.own.insert(key, value);
        self.own_changed(now);
        Ok(())
    }

    /// Replaces the value of this node's entry; `false` if there is none.
    pub(crate) fn update(
        &mut self,
        collection: &str,
        name: &str,
        value: Vec<u8>,
        now: Instant,
    ) -> Result<bool, RegistryError> {
        self.check_value(&value)?;
        let key = (collection.to_string(), name.to_string());
        match self.own.get_mut(&key) {
            Some(v) => {
                *v = value;
                self.dirty_own.push(key);
                self.own_changed(now);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Removes this node's entry; `false` if there was none.
    pub(crate) fn remove(&mut self, collection: &str, name: &str, now: Instant) -> bool {
        let key = (collection.to_string(), name.to_string());
        let removed = self.own.remove(&key).is_some();
        if removed {
            self.dirty_own.push(key);
            self.own_changed(now);
        }
        removed
    }

    fn check_value(&self, value: &[u8]) -> Result<(), RegistryError> {
        if value.len() > self.cfg.max_value_bytes {
            return Err(RegistryError::TooLarge {
                size: value.len(),
                limit: self.cfg.max_value_bytes,
            });
        }
        Ok(())
    }

    /// After a change of sessions or records: a loss that may have cut
    /// owners off is worked out within [`REACH_DELAY`].
    fn reach_changed(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        if self.reach.is_stale() {
            self.reach_due.get_or_insert(now + REACH_DELAY);
        }
    }

    fn own_changed(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        let at = now + self.cfg.push_delay;
        self.push_at = Some(self.push_at.map_or(at, |t| t.min(at)));
    }

    /// A new session changes the own record too, but only adds ways to reach
    /// nodes (the new peer has the record at once, from the summary): it
    /// waits up to a `sync_interval`, so that the sessions a node forms as
    /// it joins a mesh go out in a few pushes, not one each. (Lost sessions
    /// and entries wait one push delay: others must learn of them soon.)
    fn own_changed_later(&mut self, now: Instant) {
        let at = now + self.cfg.sync_interval.max(self.cfg.push_delay);
        self.push_at = Some(self.push_at.map_or(at, |t| t.min(at)));
    }

    fn own_record(&self) -> Record {
        Record {
            owner: self.me.clone(),
            seq: self.own_seq,
            neighbours: self
                .sessions
                .iter()
                .map(|(name, &incarnation)| Owner {
                    name: name.clone(),
                    incarnation,
                })
                .collect(),
            entries: self
                .own
                .iter()
                .map(|((collection, name), value)| WireEntry {
                    collection: collection.clone(),
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
        }
    }

    // ---- membership ----

    /// A session with `peer` began.
    pub(crate) fn handle_joined(&mut self, peer: &str, incarnation: u64, now: Instant) {
        if let Some(old) = self.sessions.insert(peer.to_string(), incarnation) {
            self.reach.remove_root(&Owner {
                name: peer.to_string(),
                incarnation: old,
            });
        }
        // Another incarnation of a peer in session is over.
        let over: Vec<Owner> = self
            .records
            .keys()
            .filter(|o| o.name == peer && o.incarnation != incarnation)
            .cloned()
            .collect();
        for owner in over {
            self.drop_record(&owner);
        }
        self.wanted
            .retain(|o, _| o.name != peer || o.incarnation == incarnation);
        self.reach.add_root(&Owner {
            name: peer.to_string(),
            incarnation,
        });
        self.reach_changed(now);
        self.own_changed_later(now);
        let summary = self.summary();
        self.out.push_back((peer.to_string(), summary));
    }

    /// The session with `peer` ended.
    pub(crate) fn handle_left(&mut self, peer: &str, now: Instant) {
        if let Some(incarnation) = self.sessions.remove(peer) {
            self.reach.remove_root(&Owner {
                name: peer.to_string(),
                incarnation,
            });
            self.reach_changed(now);
            self.own_changed(now);
        }
    }

    // ---- messages ----

    /// A message from `from` (a peer in session).
    pub(crate) fn handle_message(&mut self, from: &str, message: Message, now: Instant) {
        self.last_now = self.last_now.max(now);
        if !self.sessions.contains_key(from) {
            // Its session ended while the message waited: what it says is
            // repaired by anti-entropy if it still matters.
            return;
        }
        match message {
            Message::Records(r) => {
                for record in r.records {
                    self.take_record(from, record);
                }
            }
            Message::Sync(s) => {
                if s.digest != self.digest() {
                    let summary = self.summary();
                    self.out.push_back((from.to_string(), summary));
                }
            }
            Message::Summary(s) => self.handle_summary(from, s, now),
            Message::Want(w) => self.handle_want(from, w),
        }
    }

    fn take_record(&mut self, from: &str, record: Record) {
        let owner = &record.owner;
        if owner.name == self.me.name {
            self.stats.stale += 1;
            return;
        }
        if let Some(&incarnation) = self.sessions.get(&owner.name) {
            if owner.incarnation != incarnation {
                self.stats.stale += 1;
                return;
            }
            if from != owner.name {
                // A peer in session speaks for itself only. (A relay that
                // did not know of the session yet sends this too: ignored,
                // not refused.)
                self.stats.stale += 1;
                return;
            }
        }
        if let Some(stored) = self.records.get(owner) {
            if stored.record.seq >= record.seq {
                self.stats.stale += 1;
                return;
            }
        } else if self.records.len() >= self.cfg.max_owners {
            self.stats.refused += 1;
            log::debug!(
                "registry: record of {} refused, {} kept",
                owner.name,
                self.records.len()
            );
            return;
        }
        if let Err(why) = self.check_record(&record) {
            self.stats.refused += 1;
            log::debug!(
                "registry: record of {} from {from} refused: {why}",
                owner.name
            );
            return;
        }
        self.stats.records_in += 1;
        if self
            .wanted
            .get(owner)
            .is_some_and(|(seq, _)| *seq <= record.seq)
        {
            self.wanted.remove(owner);
        }
        // Relay to the peers the owner is not in session with.
        // Relay a record that came from its owner to the peers that do not
        // have it from the owner: neither does the record list them, nor do
        // their records list the owner. (Further away, anti-entropy carries
        // it: relaying relayed records floods a mesh that is still forming.)
        let relay: Vec<String> = if from != owner.name {
            Vec::new()
        } else {
            let listed: HashSet<&str> = record.neighbours.iter().map(|n| n.name.as_str()).collect();
            self.sessions
                .iter()
                .filter(|(p, _)| **p != owner.name && !listed.contains(p.as_str()))
                .filter(|(p, incarnation)| {
                    let peer = Owner {
                        name: (*p).clone(),
                        incarnation: **incarnation,
                    };
                    !self.reach.lists(&peer, owner)
                })
                .map(|(p, _)| p.clone())
                .collect()
        };
        for peer in relay {
            self.stats.records_out += 1;
            self.out.push_back((
                peer,
                Message::Records(Records {
                    records: vec![record.clone()],
                }),
            ));
        }
        let old = self.records.get(&record.owner);
        let in_digest = old.and_then(|old| old.in_digest);
        if old.is_none_or(|old| old.record.neighbours != record.neighbours) {
            self.reach.set_record(&record.owner, &record.neighbours);
            self.reach_changed(self.last_now);
        }
        self.dirty_owners.insert(record.owner.clone());
        self.records.insert(
            record.owner.clone(),
            Stored {
                record,
                in_digest,
                unreachable_since: None,
            },
        );
    }

    /// Forgets `owner`'s record.
    fn drop_record(&mut self, owner: &Owner) {
        if let Some(stored) = self.records.remove(owner) {
            self.digest ^= stored.in_digest.unwrap_or(0);
            self.reach.remove_record(owner);
        }
    }

    /// Whether a record from the network keeps the bounds a local
    /// registration keeps.
    fn check_record(&self, record: &Record) -> Result<(), String> {
        if record.entries.len() > self.cfg.max_entries {
            return Err(format!("{} entries", record.entries.len()));
        }
        if record.neighbours.len() > self.cfg.max_owners {
            return Err(format!("{} neighbours", record.neighbours.len()));
        }
        let mut per_collection: HashMap<&str, usize> = HashMap::new();
        let mut keys = HashSet::new();
        for e in &record.entries {
            if check_name(&e.collection).is_err() || check_name(&e.name).is_err() {
                return Err("an invalid collection or name".into());
            }
            if e.value.len() > self.cfg.max_value_bytes {
                return Err(format!("a value of {} bytes", e.value.len()));
            }
            let n = per_collection.entry(&e.collection).or_default();
            *n += 1;
            if *n > self.cfg.max_entries_per_collection {
                return Err(format!("more than {} in {}", *n - 1, e.collection));
            }
            if !keys.insert((&e.collection, &e.name)) {
                return Err("a key twice".into());
            }
        }
        Ok(())
    }

    fn handle_summary(&mut self, from: &str, summary: Summary, now: Instant) {
        let mut owners = Vec::new();
        for held in summary.held.into_iter().take(self.cfg.max_owners) {
            let owner = &held.owner;
            if owner.name == self.me.name {
                continue;
            }
            if let Some(&incarnation) = self.sessions.get(&owner.name) {
                // Only from the peer itself, and only its current incarnation.
                if owner.name != from || owner.incarnation != incarnation {
                    continue;
                }
            }
            if self
                .records
                .get(owner)
                .is_some_and(|s| s.record.seq >= held.seq)
            {
                continue;
            }
            if self
                .wanted
                .get(owner)
                .is_some_and(|&(seq, at)| seq >= held.seq && now < at + self.cfg.want_timeout)
            {
                continue;
            }
            self.wanted.insert(owner.clone(), (held.seq, now));
            owners.push(held.owner);
        }
        if !owners.is_empty() {
            self.out
                .push_back((from.to_string(), Message::Want(Want { owners })));
        }
    }

    fn handle_want(&mut self, from: &str, want: Want) {
        self.refresh();
        let mut records = Vec::new();
        for owner in want.owners.iter().take(self.cfg.max_owners) {
            if *owner == self.me {
                records.push(self.own_record());
            } else if self.reach.reaches(owner) {
                if let Some(stored) = self.records.get(owner) {
                    records.push(stored.record.clone());
                }
            }
        }
        self.send_records(from, records);
    }

    fn send_records(&mut self, to: &str, records: Vec<Record>) {
        let mut batch = Vec::new();
        let mut bytes = 0;
        for record in records {
            let size = record_size(&record);
            if !batch.is_empty() && bytes + size > BATCH_BYTES {
                self.push_records(to, std::mem::take(&mut batch));
                bytes = 0;
            }
            bytes += size;
            batch.push(record);
        }
        if !batch.is_empty() {
            self.push_records(to, batch);
        }
    }

    fn push_records(&mut self, to: &str, records: Vec<Record>) {
        self.stats.records_out += records.len() as u64;
        self.out
            .push_back((to.to_string(), Message::Records(Records { records })));
    }

    // ---- what this node sees ----

    fn summary(&mut self) -> Message {
        self.refresh();
        let mut held: Vec<Held> = Vec::with_capacity(self.reach.reached_count() + 1);
        held.extend(
            self.reach
                .reached()
                .filter_map(|o| self.records.get(o))
                .map(|s| Held {
                    owner: s.record.owner.clone(),
                    seq: s.record.seq,
                }),
        );
        held.push(Held {
            owner: self.me.clone(),
            seq: self.own_seq,
        });
        held.sort_by(|a, b| a.owner.cmp(&b.owner));
        Message::Summary(Summary { held })
    }

    /// The digest of the versions this node sees (its own included).
    pub(crate) fn digest(&mut self) -> u64 {
        self.refresh();
        self.digest ^ wire::version_hash(&self.me, self.own_seq)
    }

    /// [`Book::digest`] worked out from every record, to check the one
    /// kept up to date.
    #[cfg(test)]
    pub(crate) fn digest_from_scratch(&mut self) -> u64 {
        self.refresh_now();
        self.reach
            .reached()
            .filter_map(|o| self.records.get(o))
            .map(|s| wire::version_hash(&s.record.owner, s.record.seq))
            .fold(wire::version_hash(&self.me, self.own_seq), |a, b| a ^ b)
    }

    /// Brings who is reachable and what is visible up to date; changed keys
    /// go to [`Book::poll_changed`]. Only what changed is looked at: the
    /// entries of owners whose records changed or who became reachable or
    /// unreachable, and this node's own entries that changed.
    pub(crate) fn refresh(&mut self) {
        self.bring_up_to_date(false);
    }

    /// [`Book::refresh`], reachability included even if it is not due.
    pub(crate) fn refresh_now(&mut self) {
        self.bring_up_to_date(true);
    }

    /// [`Book::refresh`]; reachability too if `now` or due.
    fn bring_up_to_date(&mut self, now: bool) {
        let mut touched = std::mem::take(&mut self.dirty_owners);
        let due = self.reach_due.is_none_or(|t| t <= self.last_now);
        if self.reach.is_stale() && (now || due) {
            self.reach_due = None;
            self.reach.recompute();
        }
        touched.extend(self.reach.take_flipped());
        for owner in touched {
            self.resync_owner(owner);
        }
        for (collection, name) in std::mem::take(&mut self.dirty_own) {
            let value = self.own.get(&(collection.clone(), name.clone())).cloned();
            let me = self.me.clone();
            self.set_visible((collection, name, me), value);
        }
    }

    /// Makes the visible entries of `owner` those of its record if it is
    /// reachable, or none.
    fn resync_owner(&mut self, owner: Owner) {
        let reached = self.reach.reaches(&owner);
        if let Some(stored) = self.records.get_mut(&owner) {
            let now = reached.then(|| wire::version_hash(&owner, stored.record.seq));
            self.digest ^= stored.in_digest.unwrap_or(0) ^ now.unwrap_or(0);
            stored.in_digest = now;
        }
        let entries: Vec<((String, String), Vec<u8>)> = match self.records.get(&owner) {
            Some(stored) if reached => stored
                .record
                .entries
                .iter()
                .map(|e| ((e.collection.clone(), e.name.clone()), e.value.clone()))
                .collect(),
            _ => Vec::new(),
        };
        let keep: HashSet<&(String, String)> = entries.iter().map(|(k, _)| k).collect();
        let gone: Vec<(String, String)> = self
            .by_owner
            .get(&owner)
            .map(|keys| keys.iter().filter(|k| !keep.contains(k)).cloned().collect())
            .unwrap_or_default();
        for (collection, name) in gone {
            self.set_visible((collection, name, owner.clone()), None);
        }
        for ((collection, name), value) in entries {
            self.set_visible((collection, name, owner.clone()), Some(value));
        }
    }

    /// Sets (or clears) one visible entry, noting the change.
    fn set_visible(&mut self, key: Key, value: Option<Vec<u8>>) {
        let changed = match value {
            Some(value) if self.visible.get(&key) == Some(&value) => false,
            Some(value) => {
                self.by_owner
                    .entry(key.2.clone())
                    .or_default()
                    .insert((key.0.clone(), key.1.clone()));
                self.visible.insert(key.clone(), value);
                true
            }
            None => {
                let removed = self.visible.remove(&key).is_some();
                if let Some(keys) = self.by_owner.get_mut(&key.2) {
                    keys.remove(&(key.0.clone(), key.1.clone()));
                    if keys.is_empty() {
                        self.by_owner.remove(&key.2);
                    }
                }
                removed
            }
        };
        if changed {
            self.changed.push_back(key);
        }
    }

    /// Every visible entry.
    pub(crate) fn visible(&mut self) -> &BTreeMap<Key, Vec<u8>> {
        self.bring_up_to_date(true);
        &self.visible
    }

    /// The value now visible under `key`, if any.
    pub(crate) fn value(&mut self, key: &Key) -> Option<&Vec<u8>> {
        self.bring_up_to_date(true);
        self.visible.get(key)
    }

    /// The next key whose visible value changed.
    pub(crate) fn poll_changed(&mut self) -> Option<Key> {
        self.refresh();
        self.changed.pop_front()
    }

    // ---- time and output ----

    /// Pushes a changed own record, sends digests, forgets the unreachable.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.last_now = self.last_now.max(now);
        self.refresh();
        if self.push_at.is_some_and(|t| t <= now) {
            self.push_at = None;
            self.own_seq += 1;
            let record = self.own_record();
            let peers: Vec<String> = self.sessions.keys().cloned().collect();
            for peer in peers {
                self.push_records(&peer, vec![record.clone()]);
            }
        }
        if self.next_sync <= now {
            self.next_sync = now + self.cfg.sync_interval;
            // A few peers per round, in turn: every peer hears from this
            // node every `peers / SYNC_FANOUT` rounds, and the mesh sends
            // `SYNC_FANOUT × nodes` digests a round, not `nodes²`.
            let digest = self.digest();
            let peers: Vec<String> = self
                .sessions
                .range::<String, _>((
                    std::ops::Bound::Excluded(self.synced_up_to.clone()),
                    std::ops::Bound::Unbounded,
                ))
                .chain(self.sessions.iter())
                .map(|(p, _)| p.clone())
                .take(SYNC_FANOUT.min(self.sessions.len()))
                .collect();
            if let Some(last) = peers.last() {
                self.synced_up_to = last.clone();
            }
            for peer in peers {
                self.out
                    .push_back((peer, Message::Sync(wire::Sync { digest })));
            }
            self.forget(now);
            let timeout = self.cfg.want_timeout;
            self.wanted.retain(|_, (_, at)| now < *at + timeout);
        }
    }

    fn forget(&mut self, now: Instant) {
        self.bring_up_to_date(true);
        let forget_after = self.cfg.forget_after;
        let mut forgotten = Vec::new();
        for (owner, stored) in &mut self.records {
            if self.reach.reaches(owner) {
                stored.unreachable_since = None;
                continue;
            }
            let since = *stored.unreachable_since.get_or_insert(now);
            if now >= since + forget_after {
                forgotten.push(owner.clone());
            }
        }
        self.stats.forgotten += forgotten.len() as u64;
        for owner in forgotten {
            self.drop_record(&owner);
        }
    }

    /// When [`Book::handle_timeout`] must run next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        [self.push_at, self.reach_due]
            .into_iter()
            .flatten()
            .chain([self.next_sync])
            .min()
    }

    /// The next message to send.
    pub(crate) fn poll_out(&mut self) -> Option<(String, Message)> {
        self.out.pop_front()
    }
}

fn check_name(name: &str) -> Result<(), RegistryError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(RegistryError::InvalidName(name.to_string()));
    }
    Ok(())
}

/// About the bytes a record takes on the wire.
fn record_size(record: &Record) -> usize {
    let entries: usize = record
        .entries
        .iter()
        .map(|e| e.collection.len() + e.name.len() + e.value.len() + 8)
        .sum();
    let neighbours: usize = record.neighbours.iter().map(|n| n.name.len() + 10).sum();
    record.owner.name.len() + 32 + entries + neighbours
}
