//! One replica of a channel: entries with versions, applied locally or from
//! peers, highest version winning. Sans-IO: the caller passes the time and
//! drains what must be sent from [`Replica::poll_out`]. Synchronisation with
//! peers (pushes, pulls, timers, tombstone collection) is in `sync.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::hlc::{Hlc, Version};
use super::wire::{Entries, Hello, Pull, Push, Unpeer, WireEntry};

/// Limits and timers of a channel.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ChannelConfig {
    /// Most entries (removals included, until collected). Default 1 000 000.
    pub max_entries: usize,
    /// Most bytes of keys and values. Default 256 MiB.
    pub max_bytes: usize,
    /// How often each peer is asked for what changed (anti-entropy). Default 5 s.
    pub sync_interval: Duration,
    /// How long a pull may go unanswered before it is retried. Default 3 s.
    pub pull_timeout: Duration,
    /// First delay before retrying a failed pull; doubles to `sync_interval`.
    /// Default 100 ms.
    pub retry_initial: Duration,
    /// Removals are forgotten once every peer has them, or after this long
    /// whatever the peers. Default 24 h.
    pub tombstone_max_age: Duration,
    /// Most entries in one answer to a pull. Default 1 000.
    pub page_entries: usize,
    /// Most bytes of values in one answer to a pull. Default 1 MiB.
    pub page_bytes: usize,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            max_entries: 1_000_000,
            max_bytes: 256 << 20,
            sync_interval: Duration::from_secs(5),
            pull_timeout: Duration::from_secs(3),
            retry_initial: Duration::from_millis(100),
            tombstone_max_age: Duration::from_secs(24 * 3600),
            page_entries: 1000,
            page_bytes: 1 << 20,
        }
    }
}

impl ChannelConfig {
    /// Sets [`ChannelConfig::max_entries`].
    pub fn max_entries(mut self, entries: usize) -> Self {
        self.max_entries = entries;
        self
    }

    /// Sets [`ChannelConfig::max_bytes`].
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets [`ChannelConfig::sync_interval`].
    pub fn sync_interval(mut self, interval: Duration) -> Self {
        self.sync_interval = interval;
        self
    }

    /// Sets [`ChannelConfig::pull_timeout`].
    pub fn pull_timeout(mut self, timeout: Duration) -> Self {
        self.pull_timeout = timeout;
        self
    }

    /// Sets [`ChannelConfig::retry_initial`].
    pub fn retry_initial(mut self, delay: Duration) -> Self {
        self.retry_initial = delay;
        self
    }

    /// Sets [`ChannelConfig::tombstone_max_age`].
    pub fn tombstone_max_age(mut self, age: Duration) -> Self {
        self.tombstone_max_age = age;
        self
    }

    /// Sets [`ChannelConfig::page_entries`] and [`ChannelConfig::page_bytes`].
    pub fn page(mut self, entries: usize, bytes: usize) -> Self {
        self.page_entries = entries;
        self.page_bytes = bytes;
        self
    }
}

/// What a peer may do to this replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Permission {
    /// Its writes are applied (and spread further).
    #[default]
    ReadWrite,
    /// It receives the channel, but its own writes are refused and reported.
    ReadOnly,
}

/// Why a write was not applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The channel would hold more entries than its limit.
    #[error("channel full: {limit} entries at most")]
    TooManyEntries {
        /// The limit.
        limit: usize,
    },
    /// The channel would hold more bytes than its limit.
    #[error("channel full: {limit} bytes at most")]
    TooManyBytes {
        /// The limit.
        limit: usize,
    },
    /// A key must be 1 to 4096 bytes.
    #[error("invalid key: keys are 1 to 4096 bytes")]
    InvalidKey,
    /// The value could not be encoded or decoded.
    #[error("value encoding: {0}")]
    Encoding(String),
    /// The node is closed.
    #[error("node closed")]
    Closed,
}

/// Longest key accepted.
pub(crate) const MAX_KEY: usize = 4096;

/// One change of the map, local or remote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawChange {
    /// The key.
    pub key: String,
    /// The new value (MessagePack), or `None` for a removal.
    pub value: Option<Vec<u8>>,
    /// The write's version; `version.node` made it.
    pub version: Version,
}

/// Something for the application: a change, or a refusal to apply one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaEvent {
    /// The map changed.
    Changed(RawChange),
    /// Entries from `peer` were not applied.
    Refused {
        /// The peer that sent them.
        peer: String,
        /// How many.
        entries: usize,
        /// Why.
        reason: Refusal,
    },
}

/// Why entries from a peer were not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The peer may only read this channel, and the entries are its own writes.
    ReadOnly,
    /// Applying them would exceed this replica's limits.
    Limits,
    /// The peer is not peered for this channel.
    NotPeered,
    /// A key or value is malformed.
    Malformed,
}

/// A message to send to a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Out {
    /// Cast [`Push`].
    Push(String, Push),
    /// Cast [`Pull`].
    Pull(String, Pull),
    /// Cast [`Entries`].
    Entries(String, Entries),
    /// Cast [`Hello`].
    Hello(String, Hello),
    /// Cast [`Unpeer`].
    Unpeer(String, Unpeer),
}

/// Counters of a replica.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelStats {
    /// Entries sent to peers (pushes and pull answers).
    pub entries_sent: u64,
    /// Bytes of keys and values sent to peers.
    pub bytes_sent: u64,
    /// Entries received from peers.
    pub entries_received: u64,
    /// Received entries that changed this replica.
    pub entries_applied: u64,
    /// Pulls sent.
    pub pulls: u64,
    /// Pulls that got no answer in time.
    pub pulls_failed: u64,
    /// Entries refused (read-only peers, limits, strangers, malformed).
    pub refused: u64,
    /// Removals collected.
    pub tombstones_collected: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct Stored {
    pub version: Version,
    pub value: Option<Vec<u8>>,
    /// This replica's change number when the entry last changed here.
    pub changed_at: u64,
    /// When this replica stored the removal (wall ms), for its maximum age.
    pub removed_ms: u64,
}

impl Stored {
    pub(crate) fn bytes(key: &str, value: &Option<Vec<u8>>) -> usize {
        key.len() + value.as_ref().map_or(0, Vec::len)
    }

    pub(crate) fn wire(&self, key: &str) -> WireEntry {
        WireEntry {
            key: key.to_string(),
            version: self.version.clone(),
            value: self.value.clone(),
        }
    }
}

/// What this replica knows of its exchange with one peer.
#[derive(Clone, Debug, Default)]
pub(crate) struct PeerSync {
    pub permission: Permission,
    /// Whether the mesh has a session with the peer.
    pub connected: bool,
    /// The peer's replica id as last seen, and that we have all its changes
    /// up to `synced`.
    pub their_id: u64,
    pub synced: u64,
    /// That the peer has all our changes up to `acked` (of our id `acked_id`),
    /// as it said when its own latest change was `ack_their_seq` of its
    /// replica `ack_their_id`.
    pub acked_id: u64,
    pub acked: u64,
    pub ack_their_id: u64,
    pub ack_their_seq: u64,
    /// The last change number we told the peer about (see `Push::prev`).
    pub pushed: u64,
    /// A pull under way: its id and deadline.
    pub in_flight: Option<(u64, Instant)>,
    /// When the next pull is due.
    pub next_pull: Option<Instant>,
    /// Pulls that failed in a row.
    pub failures: u32,
}

/// One replica of a channel.
#[derive(Debug)]
pub struct Replica {
    pub(crate) channel: String,
    pub(crate) me: String,
    /// Changes at every start of the node: change numbers are only
    /// meaningful together with it.
    pub(crate) id: u64,
    pub(crate) cfg: ChannelConfig,
    pub(crate) hlc: Hlc,
    pub(crate) entries: HashMap<String, Stored>,
    /// Every key by the change number it last changed at.
    pub(crate) order: BTreeSet<(u64, String)>,
    /// Removals by change number, for collection.
    pub(crate) tombstones: BTreeSet<(u64, String)>,
    pub(crate) seq: u64,
    pub(crate) bytes: usize,
    pub(crate) peers: BTreeMap<String, PeerSync>,
    /// Markers of peers no longer peered, kept so peering again resumes
    /// where it stopped instead of copying everything.
    pub(crate) dormant: BTreeMap<String, PeerSync>,
    /// Replicate with every node that replicates this channel.
    pub(crate) with_all: bool,
    pub(crate) out: VecDeque<Out>,
    pub(crate) events: VecDeque<ReplicaEvent>,
    pub(crate) next_pull_id: u64,
    pub(crate) next_collect: Option<Instant>,
    pub(crate) stats: ChannelStats,
}

impl Replica {
    /// An empty replica of `channel` on node `me`, whose current start is `id`.
    pub fn new(channel: &str, me: &str, id: u64, cfg: ChannelConfig) -> Self {
        Replica {
            channel: channel.to_string(),
            me: me.to_string(),
            id,
            cfg,
            hlc: Hlc::default(),
            entries: HashMap::new(),
            order: BTreeSet::new(),
            tombstones: BTreeSet::new(),
            seq: 0,
            bytes: 0,
            peers: BTreeMap::new(),
            dormant: BTreeMap::new(),
            with_all: false,
            out: VecDeque::new(),
            events: VecDeque::new(),
            next_pull_id: 1,
            next_collect: None,
            stats: ChannelStats::default(),
        }
    }

    /// The channel's name.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Whether `peer` has said (in its last pull) that it holds every change
    /// of this replica (see [`Channel::delivered_to`](crate::channel::Channel::delivered_to)).
    pub fn delivered_to(&self, peer: &str) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| p.acked_id == self.id && p.acked >= self.seq)
    }

    /// Whether the last pull from `peer` was answered in full and none is
    /// under way (see [`Channel::synced_with`](crate::channel::Channel::synced_with)).
    pub fn synced_with(&self, peer: &str) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|p| p.their_id != 0 && p.in_flight.is_none())
    }

    /// The value of `key`, if present (not removed).
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.entries.get(key).and_then(|e| e.value.as_deref())
    }

    /// The version of `key`'s last write or removal, if any is remembered.
    pub fn version(&self, key: &str) -> Option<&Version> {
        self.entries.get(key).map(|e| &e.version)
    }

    /// Entries present (removals not counted).
    pub fn len(&self) -> usize {
        self.entries.len() - self.tombstones.len()
    }

    /// Whether no entry is present.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Present keys, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.value.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    /// Present entries, sorted by key.
    pub fn entries(&self) -> Vec<(String, Vec<u8>)> {
        let mut all: Vec<(String, Vec<u8>)> = self
            .entries
            .iter()
            .filter_map(|(k, e)| e.value.as_ref().map(|v| (k.clone(), v.clone())))
            .collect();
        all.sort();
        all
    }

    /// Every entry with its version, removals included, sorted by key (for
    /// comparing replicas).
    pub fn snapshot(&self) -> Vec<(String, Version, Option<Vec<u8>>)> {
        let mut all: Vec<_> = self
            .entries
            .iter()
            .map(|(k, e)| (k.clone(), e.version.clone(), e.value.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Counters.
    pub fn stats(&self) -> ChannelStats {
        self.stats
    }

    /// The names of the peers this replica replicates with.
    pub fn peers(&self) -> Vec<String> {
        self.peers.keys().cloned().collect()
    }

    /// The next message to send.
    pub fn poll_out(&mut self) -> Option<Out> {
        self.out.pop_front()
    }

    /// The next change or refusal to report.
    pub fn poll_event(&mut self) -> Option<ReplicaEvent> {
        self.events.pop_front()
    }

    /// Writes (`Some`) or removes (`None`) keys as one operation with one
    /// version, at wall time `wall_ms`. Fails without changing anything if a
    /// key is invalid or a limit would be exceeded.
    pub fn write(
        &mut self,
        ops: Vec<(String, Option<Vec<u8>>)>,
        wall_ms: u64,
    ) -> Result<(), ChannelError> {
        if ops.iter().any(|(k, _)| k.is_empty() || k.len() > MAX_KEY) {
            return Err(ChannelError::InvalidKey);
        }
        // A key named twice in one operation: the last one counts.
        let mut seen = std::collections::HashSet::new();
        let mut ops: Vec<_> = ops
            .into_iter()
            .rev()
            .filter(|(k, _)| seen.insert(k.clone()))
            .collect();
        ops.reverse();
        // Removing what is absent changes nothing and is not replicated.
        let ops: Vec<_> = ops
            .into_iter()
            .filter(|(k, v)| v.is_some() || self.entries.get(k).is_some_and(|e| e.value.is_some()))
            .collect();
        if ops.is_empty() {
            return Ok(());
        }
        self.check_limits(ops.iter().map(|(k, v)| (k.as_str(), v)))?;
        let (time, counter) = self.hlc.tick(wall_ms);
        let version = Version {
            time,
            counter,
            node: self.me.clone(),
        };
        self.seq += 1;
        let seq = self.seq;
        let mut changed = Vec::with_capacity(ops.len());
        for (key, value) in ops {
            let entry = WireEntry {
                key,
                version: version.clone(),
                value,
            };
            self.store(&entry, seq, wall_ms);
            changed.push(entry);
        }
        self.spread(seq, None, changed);
        Ok(())
    }

    /// Whether storing `entries` would stay within the limits.
    pub(crate) fn check_limits<'a>(
        &self,
        entries: impl Iterator<Item = (&'a str, &'a Option<Vec<u8>>)>,
    ) -> Result<(), ChannelError> {
        let (mut count, mut bytes) = (self.entries.len(), self.bytes);
        for (key, value) in entries {
            match self.entries.get(key) {
                Some(old) => {
                    bytes = bytes.saturating_sub(Stored::bytes(key, &old.value))
                        + Stored::bytes(key, value)
                }
                None => {
                    count += 1;
                    bytes += Stored::bytes(key, value);
                }
            }
        }
        if count > self.cfg.max_entries {
            return Err(ChannelError::TooManyEntries {
                limit: self.cfg.max_entries,
            });
        }
        if bytes > self.cfg.max_bytes {
            return Err(ChannelError::TooManyBytes {
                limit: self.cfg.max_bytes,
            });
        }
        Ok(())
    }

    /// Stores one entry as change `seq` and reports it.
    pub(crate) fn store(&mut self, entry: &WireEntry, seq: u64, wall_ms: u64) {
        if let Some(old) = self.entries.remove(&entry.key) {
            self.order.remove(&(old.changed_at, entry.key.clone()));
            self.tombstones.remove(&(old.changed_at, entry.key.clone()));
            self.bytes -= Stored::bytes(&entry.key, &old.value);
        }
        self.bytes += Stored::bytes(&entry.key, &entry.value);
        self.order.insert((seq, entry.key.clone()));
        if entry.value.is_none() {
            self.tombstones.insert((seq, entry.key.clone()));
        }
        self.entries.insert(
            entry.key.clone(),
            Stored {
                version: entry.version.clone(),
                value: entry.value.clone(),
                changed_at: seq,
                removed_ms: wall_ms,
            },
        );
        self.events.push_back(ReplicaEvent::Changed(RawChange {
            key: entry.key.clone(),
            value: entry.value.clone(),
            version: entry.version.clone(),
        }));
    }

    /// Applies entries received from `from`: the newer ones are stored (as
    /// one change) and spread to the other peers. Returns how many changed
    /// this replica.
    pub(crate) fn apply_remote(
        &mut self,
        from: &str,
        entries: Vec<WireEntry>,
        wall_ms: u64,
    ) -> usize {
        self.stats.entries_received += entries.len() as u64;
        let permission = self
            .peers
            .get(from)
            .map(|p| p.permission)
            .unwrap_or_default();
        let (mut read_only, mut malformed) = (0, 0);
        let mut newer = Vec::new();
        for entry in entries {
            if entry.key.is_empty() || entry.key.len() > MAX_KEY || entry.version.node.is_empty() {
                malformed += 1;
                continue;
            }
            if permission == Permission::ReadOnly && entry.version.node == from {
                read_only += 1;
                continue;
            }
            self.hlc.observe(&entry.version, wall_ms);
            if self
                .entries
                .get(&entry.key)
                .is_some_and(|e| e.version >= entry.version)
            {
                continue; // seen already, or superseded: de-duplicated
            }
            newer.push(entry);
        }
        // Within one batch, the highest version of a key wins too.
        newer.sort_by(|a, b| a.key.cmp(&b.key).then(b.version.cmp(&a.version)));
        newer.dedup_by(|later, earlier| later.key == earlier.key);
        let mut limited = 0;
        if self
            .check_limits(newer.iter().map(|e| (e.key.as_str(), &e.value)))
            .is_err()
        {
            limited = newer.len();
            newer.clear();
        }
        for (count, reason) in [
            (read_only, Refusal::ReadOnly),
            (malformed, Refusal::Malformed),
            (limited, Refusal::Limits),
        ] {
            if count > 0 {
                self.refused(from, count, reason);
            }
        }
        if newer.is_empty() {
            return 0;
        }
        self.seq += 1;
        let seq = self.seq;
        for entry in &newer {
            self.store(entry, seq, wall_ms);
        }
        let applied = newer.len();
        self.stats.entries_applied += applied as u64;
        self.spread(seq, Some(from), newer);
        applied
    }

    pub(crate) fn refused(&mut self, peer: &str, entries: usize, reason: Refusal) {
        self.stats.refused += entries as u64;
        log::warn!(
            "channel {}: refused {entries} entries from {peer}: {reason:?}",
            self.channel
        );
        self.events.push_back(ReplicaEvent::Refused {
            peer: peer.to_string(),
            entries,
            reason,
        });
    }

    /// Pushes change `seq` to every connected peer but its source.
    ///
    /// The source is skipped without moving its `pushed` marker: the changes
    /// a later push declares covered by `prev` must all have come from the
    /// receiver. A peer that is disconnected is skipped *with* its marker
    /// moved, so the push it missed shows up as a gap and is pulled.
    fn spread(&mut self, seq: u64, source: Option<&str>, entries: Vec<WireEntry>) {
        let bytes: usize = entries
            .iter()
            .map(|e| Stored::bytes(&e.key, &e.value))
            .sum();
        let targets: Vec<String> = self
            .peers
            .keys()
            .filter(|name| Some(name.as_str()) != source)
            .cloned()
            .collect();
        for name in targets {
            let Some(peer) = self.peers.get_mut(&name) else {
                continue;
            };
            if !peer.connected {
                peer.pushed = seq;
                continue;
            }
            let push = Push {
                channel: self.channel.clone(),
                from_id: self.id,
                seq,
                prev: peer.pushed,
                entries: entries.clone(),
            };
            peer.pushed = seq;
            self.stats.entries_sent += entries.len() as u64;
            self.stats.bytes_sent += bytes as u64;
            self.out.push_back(Out::Push(name, push));
        }
    }
}
