//! Keeping replicas in step: peering, pushes, pulls (anti-entropy), timers,
//! and collecting removals once no peer can still need them.
//!
//! Each replica numbers its own changes (`seq`, per start of its node: `id`).
//! A peer remembers, per replica it syncs with, the number up to which it has
//! everything (`synced`). Changes are pushed as they happen; a push whose
//! `prev` the receiver has not reached reveals a gap. Every `sync_interval`,
//! at once on a gap, a new session or a new peering, and with backoff after
//! a failed attempt, a replica *pulls*: "your changes after `synced`" — only
//! the differences cross the network, whatever the size of the channel. A
//! replica the other side does not know (a new node, a restart) gets every
//! entry instead.

use std::time::Instant;

use super::replica::{Out, Permission, Refusal, Replica, Stored};
use super::wire::{Entries, Hello, Pull, Push, Unpeer, WireEntry};

impl Replica {
    /// Replicates with `peer` from now on (or changes its permission).
    pub fn peer(&mut self, peer: &str, permission: Permission, connected: bool, now: Instant) {
        if peer == self.me {
            return;
        }
        let state = self.peers.entry(peer.to_string()).or_insert_with(|| {
            // Peering again resumes from the markers of the last time.
            self.dormant.remove(peer).unwrap_or_default()
        });
        state.permission = permission;
        if connected && !state.connected {
            state.connected = true;
            state.next_pull = Some(now);
            state.failures = 0;
        }
    }

    /// Replicates with every node that replicates this channel: peers found
    /// through [`Replica::discover`] are added as they answer.
    pub fn peer_with_all(&mut self) {
        self.with_all = true;
    }

    /// Asks `node` (a node in session) whether it replicates this channel.
    pub fn discover(&mut self, node: &str) {
        if node != self.me && !self.peers.contains_key(node) {
            self.announce(node);
        }
    }

    /// Tells `node` that this replica replicates with it: a node that
    /// replicates this channel with everyone then peers back.
    pub fn announce(&mut self, node: &str) {
        if node != self.me {
            self.out.push_back(Out::Hello(
                node.to_string(),
                Hello {
                    channel: self.channel.clone(),
                    reply: false,
                },
            ));
        }
    }

    /// Stops replicating with `peer` and tells it. Returns whether it was a peer.
    pub fn unpeer(&mut self, peer: &str) -> bool {
        let Some(mut state) = self.peers.remove(peer) else {
            return false;
        };
        state.connected = false;
        state.in_flight = None;
        self.dormant.insert(peer.to_string(), state);
        self.out.push_back(Out::Unpeer(
            peer.to_string(),
            Unpeer {
                channel: self.channel.clone(),
            },
        ));
        true
    }

    /// Stops replicating with every peer and with-all discovery.
    pub fn unpeer_all(&mut self) {
        self.with_all = false;
        for peer in self.peers() {
            self.unpeer(&peer);
        }
    }

    /// The mesh has (or no longer has) a session with `node`.
    pub fn set_connected(&mut self, node: &str, up: bool, now: Instant) {
        if up && self.with_all {
            self.discover(node);
        }
        let Some(state) = self.peers.get_mut(node) else {
            return;
        };
        if up && !state.connected {
            state.connected = true;
            state.failures = 0;
            state.next_pull = Some(now);
        } else if !up {
            state.connected = false;
            state.in_flight = None;
            state.next_pull = None;
        }
    }

    /// A [`Hello`] from `from`.
    pub fn handle_hello(&mut self, from: &str, hello: Hello, connected: bool, now: Instant) {
        let known = self.peers.contains_key(from);
        if !known && !self.with_all {
            return;
        }
        if !known {
            self.peer(from, Permission::ReadWrite, connected, now);
        }
        if !hello.reply {
            self.out.push_back(Out::Hello(
                from.to_string(),
                Hello {
                    channel: self.channel.clone(),
                    reply: true,
                },
            ));
        }
    }

    /// An [`Unpeer`] from `from`: it stopped replicating with us.
    pub fn handle_unpeer(&mut self, from: &str) {
        if let Some(mut state) = self.peers.remove(from) {
            state.connected = false;
            state.in_flight = None;
            self.dormant.insert(from.to_string(), state);
        }
    }

    /// A [`Push`] from `from`.
    pub fn handle_push(&mut self, from: &str, push: Push, wall_ms: u64, now: Instant) {
        let Some(state) = self.peers.get(from) else {
            self.refused(from, push.entries.len(), Refusal::NotPeered);
            return;
        };
        if push.from_id == state.their_id && push.seq <= state.synced {
            // A late or repeated push: we have that change or newer already.
            // Ignoring it whole also keeps a stale copy of a removed entry
            // from coming back once its removal has been collected.
            return;
        }
        self.apply_remote(from, push.entries, wall_ms);
        let Some(state) = self.peers.get_mut(from) else {
            return;
        };
        if push.from_id == state.their_id && state.synced >= push.prev {
            state.synced = state.synced.max(push.seq);
        } else if push.from_id != state.their_id && push.prev == 0 {
            // Every earlier change of this replica came from us: we have
            // them all, so its numbering can be adopted as it is.
            state.their_id = push.from_id;
            state.synced = push.seq;
        } else if state.in_flight.is_none() {
            // A gap, or a replica we have not synced with: pull now.
            state.next_pull = Some(now);
        }
    }

    /// A [`Pull`] from `from`: answers with what changed since its marker.
    pub fn handle_pull(&mut self, from: &str, pull: Pull) {
        let Some(state) = self.peers.get_mut(from) else {
            self.refused(from, 0, Refusal::NotPeered);
            return;
        };
        let since = if pull.your_id == self.id {
            // It has everything of ours up to `since`.
            if state.acked_id != self.id || state.acked < pull.since {
                state.acked_id = self.id;
                state.acked = pull.since;
                state.ack_their_id = pull.from_id;
                state.ack_their_seq = pull.from_seq;
            }
            pull.since
        } else {
            0
        };
        // Changed entries in change order; a page ends on a change boundary
        // so that `upto` means "everything up to here".
        let (mut entries, mut bytes, mut more) = (Vec::new(), 0usize, false);
        let mut changes = self.order.range((since + 1, String::new())..).peekable();
        while let Some((changed_at, key)) = changes.next() {
            if let Some(stored) = self.entries.get(key) {
                bytes += Stored::bytes(key, &stored.value);
                entries.push((*changed_at, stored.wire(key)));
            }
            let full = entries.len() >= self.cfg.page_entries || bytes >= self.cfg.page_bytes;
            let next_is_same_change = changes.peek().is_some_and(|(c, _)| c == changed_at);
            if full && !next_is_same_change {
                more = changes.peek().is_some();
                break;
            }
        }
        let upto = if more {
            entries.last().map_or(since, |(c, _)| *c)
        } else {
            self.seq
        };
        if let Some(state) = self.peers.get_mut(from) {
            state.pushed = state.pushed.max(upto);
        }
        let entries: Vec<WireEntry> = entries.into_iter().map(|(_, e)| e).collect();
        self.stats.entries_sent += entries.len() as u64;
        self.stats.bytes_sent += entries
            .iter()
            .map(|e| Stored::bytes(&e.key, &e.value) as u64)
            .sum::<u64>();
        let answer = Entries {
            channel: self.channel.clone(),
            from_id: self.id,
            pull_id: pull.pull_id,
            upto,
            more,
            entries,
        };
        self.out.push_back(Out::Entries(from.to_string(), answer));
    }

    /// An [`Entries`] answer from `from`.
    pub fn handle_entries(&mut self, from: &str, answer: Entries, wall_ms: u64, now: Instant) {
        let Some(state) = self.peers.get(from) else {
            self.refused(from, answer.entries.len(), Refusal::NotPeered);
            return;
        };
        if state.in_flight.map(|(id, _)| id) != Some(answer.pull_id) {
            // A late answer to a pull given up on: it may predate what we
            // know; the next pull brings whatever it had that is still news.
            return;
        }
        self.apply_remote(from, answer.entries, wall_ms);
        let interval = self.cfg.sync_interval;
        let Some(state) = self.peers.get_mut(from) else {
            return;
        };
        state.in_flight = None;
        state.failures = 0;
        state.their_id = answer.from_id;
        state.synced = answer.upto;
        state.next_pull = Some(if answer.more { now } else { now + interval });
        if answer.more {
            self.send_pull(from, now);
        }
    }

    /// Runs what is due at `now`: pulls, retries, removal collection.
    pub fn handle_timeout(&mut self, now: Instant, wall_ms: u64) {
        let names: Vec<String> = self.peers.keys().cloned().collect();
        for name in names {
            let Some(state) = self.peers.get_mut(&name) else {
                continue;
            };
            if !state.connected {
                continue;
            }
            if let Some((_, deadline)) = state.in_flight {
                if now < deadline {
                    continue;
                }
                state.in_flight = None;
                state.failures = state.failures.saturating_add(1);
                let backoff = self
                    .cfg
                    .retry_initial
                    .saturating_mul(1 << state.failures.min(16))
                    .min(self.cfg.sync_interval);
                state.next_pull = Some(now + backoff);
                self.stats.pulls_failed += 1;
                continue;
            }
            if state.next_pull.is_none_or(|t| now >= t) {
                self.send_pull(&name, now);
            }
        }
        if self.next_collect.is_none_or(|t| now >= t) {
            self.collect(wall_ms);
            self.next_collect = Some(now + self.cfg.sync_interval);
        }
    }

    fn send_pull(&mut self, peer: &str, now: Instant) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        let pull_id = self.next_pull_id;
        self.next_pull_id += 1;
        state.in_flight = Some((pull_id, now + self.cfg.pull_timeout));
        state.next_pull = None;
        self.stats.pulls += 1;
        let pull = Pull {
            channel: self.channel.clone(),
            from_id: self.id,
            from_seq: self.seq,
            your_id: state.their_id,
            since: state.synced,
            pull_id,
        };
        self.out.push_back(Out::Pull(peer.to_string(), pull));
    }

    /// A pull could not be sent (no session): retried as a failure.
    pub fn handle_send_failed(&mut self, peer: &str, now: Instant) {
        if let Some(state) = self.peers.get_mut(peer) {
            if state.in_flight.is_some() {
                state.in_flight = Some((0, now));
            }
        }
    }

    /// When [`Replica::handle_timeout`] must run next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter(|p| p.connected)
            .filter_map(|p| p.in_flight.map(|(_, d)| d).or(p.next_pull))
            .chain(self.next_collect)
            .min()
    }

    /// Forgets removals no peer can still need (or older than the maximum age).
    ///
    /// A removal numbered `c` here is forgotten once every peer has said it
    /// has our changes up to `c` *and* we have every change that peer had
    /// made when it said so: from then on nothing the peer sent before can
    /// carry the removed value back (anything older is ignored as stale).
    pub(crate) fn collect(&mut self, wall_ms: u64) {
        let all_have = self
            .peers
            .values()
            .map(|p| {
                let acked = p.acked_id == self.id;
                let caught_up = p.their_id == p.ack_their_id && p.synced >= p.ack_their_seq;
                if acked && caught_up { p.acked } else { 0 }
            })
            .min()
            .unwrap_or(self.seq);
        let max_age = u64::try_from(self.cfg.tombstone_max_age.as_millis()).unwrap_or(u64::MAX);
        let expired: Vec<(u64, String)> = self
            .tombstones
            .iter()
            .filter(|(changed_at, key)| {
                *changed_at <= all_have
                    || self
                        .entries
                        .get(key)
                        .is_some_and(|e| wall_ms.saturating_sub(e.removed_ms) > max_age)
            })
            .cloned()
            .collect();
        for (changed_at, key) in expired {
            self.tombstones.remove(&(changed_at, key.clone()));
            self.order.remove(&(changed_at, key.clone()));
            if let Some(old) = self.entries.remove(&key) {
                self.bytes -= Stored::bytes(&key, &old.value);
            }
            self.stats.tombstones_collected += 1;
        }
    }
}
