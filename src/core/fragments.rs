//! Messages of any size: a REQUEST, REPLY, CAST or OPEN larger than the
//! chunk size leaves as FRAGMENTs (see `lane.rs`) and is put back together
//! here before it is handled like any other message.
//!
//! Reassembly is where a peer could make this node hold memory, so what it
//! holds is what has **arrived**, not what a first piece declares: a
//! message's buffer grows with its pieces, and every growth is admitted
//! against the peer's memory share (`memory.rs`) like anything else the
//! peer makes the node hold. A message that does not fit is dropped; when
//! it is a request, its caller is told `Overloaded`. A message may not
//! exceed the maximum message size, a peer may have at most
//! [`MAX_PARTIALS`] messages under way, and every piece but a message's
//! last must carry at least [`MIN_PIECE`] bytes, so that holding a slot
//! costs a sender real traffic. Pieces must arrive in order on one link;
//! anything else (a gap, a wrong length, a piece without a start) drops
//! the message and is counted. A message that stops arriving is dropped
//! after the lost-peer timeout without a piece.

use std::collections::HashMap;
use std::time::Instant;

use super::mesh::{Delivery, Mesh, Purpose};
use super::peer::Link;
use crate::protocol::{self, Fragment, Message, NodeName, Reply, ReplyStatus};

/// Messages under reassembly per peer.
pub(crate) const MAX_PARTIALS: usize = 64;

/// The smallest piece but the last of a message (the smallest chunk size a
/// sender may use).
pub(crate) const MIN_PIECE: usize = 4096;

/// A message under reassembly.
#[derive(Debug)]
pub(crate) struct Partial {
    total: usize,
    buf: Vec<u8>,
    link: Link,
    last: Instant,
    /// The request it carries, read from its first piece, so that a refusal
    /// can be answered.
    request_id: Option<u64>,
}

/// The messages under reassembly from one peer, by transfer id.
#[derive(Debug, Default)]
pub(crate) struct Reassembly {
    partials: HashMap<u64, Partial>,
    /// Bytes of buffer the partials hold.
    held: usize,
}

impl Reassembly {
    /// Bytes held by the messages under way.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.partials.is_empty()
    }

    fn remove(&mut self, id: u64) -> Option<Partial> {
        let p = self.partials.remove(&id)?;
        self.held -= p.buf.capacity();
        Some(p)
    }

    /// Drops everything; returns the bytes that were held.
    pub(crate) fn clear(&mut self) -> usize {
        self.partials.clear();
        std::mem::take(&mut self.held)
    }

    /// Drops the messages that made no progress since `before`; returns the
    /// bytes released and how many were dropped.
    fn expire(&mut self, before: Instant) -> (usize, u64) {
        let mut released = 0;
        let mut dropped = 0;
        self.partials.retain(|_, p| {
            let keep = p.last >= before;
            if !keep {
                released += p.buf.capacity();
                dropped += 1;
            }
            keep
        });
        self.held -= released;
        (released, dropped)
    }
}

/// The capacity a buffer holding `len` bytes of a `total`-byte message
/// needs for `more` bytes: doubling, so that a message is copied about
/// once more as it grows, and never beyond its total.
fn grown(capacity: usize, len: usize, more: usize, total: usize) -> usize {
    let needed = len + more;
    if needed <= capacity {
        capacity
    } else {
        needed.max(capacity.saturating_mul(2)).min(total)
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
        let total = usize::try_from(f.total).unwrap_or(usize::MAX);
        let peer = self.peers.get_mut(name)?;
        if f.offset == 0 {
            if let Some(old) = peer.reassembly.remove(f.transfer_id) {
                // A second start: the first copy is broken either way.
                self.bulk.release(old.buf.capacity());
                self.stats.fragments_dropped += 1;
            }
            if total > max {
                self.recount(name);
                self.malformed(Some(name), "oversized message", |s| &mut s.oversized);
                self.refuse_oversized(name, link, f.payload, total);
                return None;
            }
            let peer = self.peers.get_mut(name)?;
            if peer.reassembly.partials.len() >= MAX_PARTIALS {
                self.stats.reassembly_refused += 1;
                log::debug!("{name} has {MAX_PARTIALS} messages under way; one more refused");
                self.recount(name);
                // A request's caller is told at once instead of timing out.
                if let Some(request_id) = protocol::request_id_of(f.payload) {
                    let reply = Message::Reply(Reply {
                        request_id,
                        status: ReplyStatus::Overloaded,
                        payload: b"too many large messages under way",
                    });
                    self.send(name, link, &reply, Purpose::Control);
                }
                return None;
            }
            peer.reassembly.partials.insert(
                f.transfer_id,
                Partial {
                    total,
                    buf: Vec::new(),
                    link,
                    last: now,
                    request_id: protocol::request_id_of(f.payload),
                },
            );
            self.need_tick(now);
        }
        let peer = self.peers.get_mut(name)?;
        let Some(p) = peer.reassembly.partials.get_mut(&f.transfer_id) else {
            // Its start was dropped (or never came): so is the rest.
            self.stats.fragments_dropped += 1;
            return None;
        };
        let end = p.buf.len().checked_add(f.payload.len());
        let last = end == Some(p.total);
        let in_place = p.total == total && p.link == link && f.offset == p.buf.len() as u64;
        if !in_place || end.is_none_or(|e| e > p.total) || (!last && f.payload.len() < MIN_PIECE) {
            let reason = if in_place {
                "a piece is too small"
            } else {
                "a piece is missing or out of place"
            };
            self.drop_partial(name, f.transfer_id);
            self.stats.fragments_dropped += 1;
            log::debug!("dropped a message from {name}: {reason}");
            return None;
        }
        let capacity = grown(p.buf.capacity(), p.buf.len(), f.payload.len(), p.total);
        let growth = capacity - p.buf.capacity();
        if growth > 0 && !self.admits(name, growth) {
            self.refuse_partial(name, f.transfer_id, growth);
            return None;
        }
        let peer = self.peers.get_mut(name)?;
        let reassembly = &mut peer.reassembly;
        let p = reassembly.partials.get_mut(&f.transfer_id)?;
        if growth > 0 {
            p.buf.reserve_exact(capacity - p.buf.len());
            // `reserve_exact` may give more; count what is really held.
            let real = p.buf.capacity() - (capacity - growth);
            reassembly.held += real;
            self.bulk.hold(real);
        }
        p.buf.extend_from_slice(f.payload);
        p.last = now;
        if !last {
            self.recount(name);
            return None;
        }
        let whole = reassembly.remove(f.transfer_id)?;
        self.bulk.release(whole.buf.capacity());
        self.recount(name);
        self.on_reassembled(name, link, &whole.buf, now)
    }

    /// Forgets a partial message and what it held.
    fn drop_partial(&mut self, name: &NodeName, transfer_id: u64) {
        if let Some(p) = self.peers.get_mut(name) {
            if let Some(old) = p.reassembly.remove(transfer_id) {
                self.bulk.release(old.buf.capacity());
            }
        }
        self.recount(name);
    }

    /// A message that cannot grow within the peer's share: dropped, and a
    /// request's caller told so.
    fn refuse_partial(&mut self, name: &NodeName, transfer_id: u64, growth: usize) {
        let refused = self
            .peers
            .get(name)
            .and_then(|p| p.reassembly.partials.get(&transfer_id))
            .map(|p| (p.request_id, p.link));
        self.drop_partial(name, transfer_id);
        self.stats.reassembly_refused += 1;
        self.refused_for_memory(name, "a large message", growth);
        if let Some((Some(request_id), link)) = refused {
            let reply = Message::Reply(Reply {
                request_id,
                status: ReplyStatus::Overloaded,
                payload: b"no memory for a message this large",
            });
            self.send(name, link, &reply, Purpose::Control);
        }
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
        let mut touched = Vec::new();
        for peer in self.peers.values_mut() {
            if peer.reassembly.is_empty() {
                continue;
            }
            let (released, dropped) = peer.reassembly.expire(before);
            if dropped > 0 {
                self.bulk.release(released);
                self.stats.fragments_dropped += dropped;
                touched.push(peer.name.clone());
            }
        }
        for name in touched {
            self.recount(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::grown;

    #[test]
    fn buffers_double_up_to_the_total() {
        assert_eq!(grown(0, 0, 4096, 1 << 20), 4096);
        assert_eq!(grown(4096, 4096, 4096, 1 << 20), 8192);
        assert_eq!(grown(8192, 4096, 4096, 1 << 20), 8192);
        assert_eq!(grown(1 << 19, 1 << 19, 4096, 600_000), 600_000);
        assert_eq!(grown(0, 0, 10, 10), 10);
    }
}
