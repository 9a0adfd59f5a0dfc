//! Messages of any size: a REQUEST, REPLY, CAST or OPEN larger than the
//! chunk size leaves as FRAGMENTs (see `bulk.rs`) and is put back together
//! here before it is handled like any other message.
//!
//! Reassembly is where a peer could make this node hold memory, so it is
//! bounded three ways: a message may not exceed the maximum message size, a
//! peer may have at most [`MAX_PARTIALS`] messages under way, and all peers
//! together may reserve at most the reassembly budget (counted in declared
//! lengths, from the first piece). Pieces must arrive in order on one link;
//! anything else (a gap, a wrong length, a piece without a start) drops the
//! message and is counted. A message that stops arriving is dropped after
//! the lost-peer timeout.

use std::collections::HashMap;
use std::time::Instant;

use super::mesh::{Delivery, Mesh};
use super::peer::Link;
use crate::protocol::{self, Fragment, Message, NodeName};

/// Messages under reassembly per peer.
pub(crate) const MAX_PARTIALS: usize = 64;

/// A message under reassembly.
#[derive(Debug)]
pub(crate) struct Partial {
    total: usize,
    buf: Vec<u8>,
    link: Link,
    last: Instant,
}

/// The messages under reassembly from one peer, by transfer id.
#[derive(Debug, Default)]
pub(crate) struct Reassembly {
    partials: HashMap<u64, Partial>,
}

impl Reassembly {
    /// Bytes reserved by the messages under way.
    pub(crate) fn reserved(&self) -> usize {
        self.partials.values().map(|p| p.total).sum()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.partials.is_empty()
    }

    /// Drops everything; returns the bytes that were reserved.
    pub(crate) fn clear(&mut self) -> usize {
        let reserved = self.reserved();
        self.partials.clear();
        reserved
    }

    /// Drops the messages that made no progress since `before`; returns the
    /// bytes released and how many were dropped.
    fn expire(&mut self, before: Instant) -> (usize, u64) {
        let mut released = 0;
        let mut dropped = 0;
        self.partials.retain(|_, p| {
            let keep = p.last >= before;
            if !keep {
                released += p.total;
                dropped += 1;
            }
            keep
        });
        (released, dropped)
    }
}

impl<C: Clone> Mesh<C> {
    /// A FRAGMENT from a peer in session.
    pub(super) fn on_fragment(
        &mut self,
        name: &NodeName,
        link: Link,
        f: &Fragment<'_>,
        now: Instant,
    ) -> Option<Delivery> {
        let max = self.cfg.limits.max_message_size;
        let budget = self.cfg.limits.max_reassembly;
        let reserved = self.reassembling;
        let peer = self.peers.get_mut(name)?;
        let partials = &mut peer.reassembly.partials;
        let total = usize::try_from(f.total).unwrap_or(usize::MAX);
        if f.offset == 0 {
            if let Some(old) = partials.remove(&f.transfer_id) {
                // A second start: the first copy is broken either way.
                self.reassembling -= old.total;
                self.stats.fragments_dropped += 1;
            }
            let partials = &mut self.peers.get_mut(name)?.reassembly.partials;
            if total > max {
                self.malformed(Some(name), "oversized message", |s| &mut s.oversized);
                return None;
            }
            if partials.len() >= MAX_PARTIALS || reserved.saturating_add(total) > budget {
                self.stats.reassembly_refused += 1;
                log::debug!("no room to reassemble a {total}-byte message from {name}");
                return None;
            }
            partials.insert(
                f.transfer_id,
                Partial {
                    total,
                    buf: Vec::with_capacity(total),
                    link,
                    last: now,
                },
            );
            self.reassembling += total;
            self.need_tick(now);
        }
        let partials = &mut self.peers.get_mut(name)?.reassembly.partials;
        let Some(p) = partials.get_mut(&f.transfer_id) else {
            // Its start was dropped (or never came): so is the rest.
            self.stats.fragments_dropped += 1;
            return None;
        };
        let fits = p.buf.len().checked_add(f.payload.len()) <= Some(p.total);
        if p.total != total || p.link != link || f.offset != p.buf.len() as u64 || !fits {
            let total = p.total;
            partials.remove(&f.transfer_id);
            self.reassembling -= total;
            self.stats.fragments_dropped += 1;
            log::debug!("dropped a message from {name}: a piece is missing or out of place");
            return None;
        }
        p.buf.extend_from_slice(f.payload);
        p.last = now;
        if p.buf.len() < p.total {
            return None;
        }
        let whole = partials.remove(&f.transfer_id)?;
        self.reassembling -= whole.total;
        self.on_reassembled(name, link, &whole.buf, now)
    }

    /// A complete message: handled as if it had arrived in one frame.
    fn on_reassembled(
        &mut self,
        name: &NodeName,
        link: Link,
        frame: &[u8],
        now: Instant,
    ) -> Option<Delivery> {
        let env = match protocol::decode(frame) {
            Ok(env) => env,
            Err(e) => {
                log::debug!("undecodable reassembled message from {name}: {e}");
                self.malformed(Some(name), "undecodable message", |s| &mut s.malformed);
                return None;
            }
        };
        match env.message {
            Message::Request(_) | Message::Reply(_) | Message::Cast(_) | Message::Open(_) => {
                self.on_session_message(name, link, env, frame.len(), now)
            }
            _ => {
                self.malformed(Some(name), "fragmented control message", |s| {
                    &mut s.malformed
                });
                None
            }
        }
    }

    /// Drops messages that stopped arriving.
    pub(super) fn reassembly_timers(&mut self, now: Instant) {
        let Some(before) = now.checked_sub(self.cfg.timers.lost_timeout) else {
            return;
        };
        for peer in self.peers.values_mut() {
            if peer.reassembly.is_empty() {
                continue;
            }
            let (released, dropped) = peer.reassembly.expire(before);
            self.reassembling -= released;
            self.stats.fragments_dropped += dropped;
        }
    }
}
