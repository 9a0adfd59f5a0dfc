//! Bulk traffic: stream bytes and the pieces of large messages.
//!
//! Small messages (calls, replies, heartbeats, stream control) go to the
//! socket as soon as they are made. Bulk frames instead wait in a *lane*,
//! one per peer and link, and leave in round-robin order among the streams
//! and transfers that have something to send, one chunk at a time. A lane
//! keeps at most its window of bulk bytes in flight: now and then it sends
//! MARK(offset) and the receiver echoes ACK(offset) as soon as it reads it,
//! which proves that everything sent before the MARK has left the pipe. So a
//! call queued behind a bulk transfer waits for at most a window of bytes,
//! not for the whole transfer, and the window needs no agreement between the
//! two ends: the receiver only echoes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::mesh::{Mesh, Purpose};
use super::peer::Link;
use super::stream::StreamId;
use super::streams::StreamSignal;
use crate::protocol::{Fragment, Message, NodeName, write_data_header};

/// Something with bulk bytes to send, in a lane's round-robin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Stream(StreamId),
    Transfer(u64),
}

/// A message too large for one frame, leaving in FRAGMENTs.
#[derive(Debug)]
pub(crate) struct Transfer {
    /// The whole encoded frame, shared by every target of a multicast.
    pub frame: Arc<Vec<u8>>,
    /// Bytes of `frame` already sent.
    pub offset: usize,
    /// The request it carries, if any: a failed transfer fails the call.
    pub request_id: Option<u64>,
}

/// The bulk traffic of one link to one peer.
#[derive(Debug)]
pub(crate) struct Lane {
    /// The link epoch this accounting belongs to.
    pub epoch: u64,
    /// Bulk bytes (whole frames) handed to the link.
    pub sent: u64,
    /// Bulk bytes known to have left the pipe (the highest ACK).
    pub acked: u64,
    /// The offset of the last MARK sent.
    pub marked: u64,
    /// When `acked` last advanced, or bytes went in flight after none were.
    pub progress_at: Instant,
    /// Sources with something to send, in turn.
    pub ready: VecDeque<Source>,
    /// Outgoing transfers by id.
    pub transfers: HashMap<u64, Transfer>,
    /// Bytes of `transfers` not yet sent.
    pub transfer_bytes: usize,
}

impl Lane {
    pub(crate) fn new(now: Instant) -> Self {
        Lane {
            epoch: 0,
            sent: 0,
            acked: 0,
            marked: 0,
            progress_at: now,
            ready: VecDeque::new(),
            transfers: HashMap::new(),
            transfer_bytes: 0,
        }
    }

    /// Bulk bytes sent and not yet acknowledged.
    pub(crate) fn in_flight(&self) -> u64 {
        self.sent - self.acked
    }

    fn on_sent(&mut self, bytes: usize, now: Instant) {
        if self.in_flight() == 0 {
            self.progress_at = now;
        }
        self.sent += bytes as u64;
    }

    /// An ACK for `offset`; returns whether it freed room.
    pub(crate) fn on_ack(&mut self, offset: u64, now: Instant) -> bool {
        let offset = offset.min(self.sent);
        if offset <= self.acked {
            return false;
        }
        self.acked = offset;
        self.progress_at = now;
        true
    }

    /// Whether a MARK should follow what was just sent: a quarter of the
    /// window went out since the last one, or the lane is full and needs an
    /// ACK to move on.
    fn mark_due(&self, window: u64) -> bool {
        self.sent > self.marked
            && (self.sent - self.marked >= (window / 4).max(1) || self.in_flight() >= window)
    }

    /// Forgets the accounting of a connection that is gone; returns the
    /// transfers that were under way on it.
    pub(crate) fn reset(&mut self, epoch: u64, now: Instant) -> Vec<Transfer> {
        let transfers = self.transfers.drain().map(|(_, t)| t).collect();
        *self = Lane::new(now);
        self.epoch = epoch;
        transfers
    }
}

impl<C: Clone> Mesh<C> {
    /// Queues a frame larger than the chunk size as a transfer on `link`.
    pub(super) fn start_transfer(
        &mut self,
        peer: &NodeName,
        link: Link,
        frame: Arc<Vec<u8>>,
        request_id: Option<u64>,
        now: Instant,
    ) -> bool {
        let limit = self.cfg.limits.max_message_size.saturating_mul(4);
        self.sync_lane(peer, link, now);
        let id = self.next_transfer_id;
        let Some(p) = self.peers.get_mut(peer) else {
            return false;
        };
        let lane = &mut p.lanes[link.index()];
        if lane.transfer_bytes.saturating_add(frame.len()) > limit {
            self.stats.transfers_refused += 1;
            return false;
        }
        self.next_transfer_id = id.wrapping_add(1);
        lane.transfer_bytes += frame.len();
        lane.transfers.insert(
            id,
            Transfer {
                frame,
                offset: 0,
                request_id,
            },
        );
        lane.ready.push_back(Source::Transfer(id));
        self.pump(peer, link, now);
        true
    }

    /// Resets a lane whose link came up again since its accounting began;
    /// transfers under way on the old connection are abandoned.
    pub(super) fn sync_lane(&mut self, peer: &NodeName, link: Link, now: Instant) {
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        let epoch = p.epoch(link);
        let lane = &mut p.lanes[link.index()];
        if lane.epoch == epoch {
            return;
        }
        let abandoned = lane.reset(epoch, now);
        for t in abandoned {
            self.abandon_transfer(peer, t);
        }
    }

    pub(super) fn abandon_transfer(&mut self, peer: &NodeName, t: Transfer) {
        self.stats.transfers_abandoned += 1;
        if let Some(id) = t.request_id {
            let error = crate::error::CallError::Unreachable(None);
            if let Some(r) = self.calls.resolve(id, peer, Err(error)) {
                self.push_resolved(vec![r]);
            }
        }
    }

    /// Sends bulk frames on `link` to `peer` while its window has room,
    /// taking one chunk from each ready source in turn.
    pub(super) fn pump(&mut self, peer: &NodeName, link: Link, now: Instant) {
        self.sync_lane(peer, link, now);
        let window = self.cfg.limits.link_window as u64;
        let chunk = self.cfg.limits.chunk_size;
        let incarnation = self.cfg.incarnation;
        let mut out: Vec<(Vec<u8>, Purpose)> = Vec::new();
        let mut progressed: Vec<(StreamId, u64)> = Vec::new();
        let Some(p) = self.peers.get_mut(peer) else {
            return;
        };
        let lane = &mut p.lanes[link.index()];
        while lane.in_flight() < window {
            let Some(source) = lane.ready.pop_front() else {
                break;
            };
            match source {
                Source::Stream(id) => {
                    let Some(s) = self.streams.get_mut(id) else {
                        continue;
                    };
                    s.scheduled = false;
                    let Some((mut frame, offset, len)) = s.send.next_frame() else {
                        continue;
                    };
                    write_data_header(&mut frame, incarnation, s.wire_id, s.opener, offset);
                    if s.send.sendable() {
                        s.scheduled = true;
                        lane.ready.push_back(source);
                    }
                    match progressed.iter_mut().find(|(i, _)| *i == id) {
                        Some((_, n)) => *n += len as u64,
                        None => progressed.push((id, len as u64)),
                    }
                    lane.on_sent(frame.len(), now);
                    out.push((frame, Purpose::Stream(id)));
                }
                Source::Transfer(tid) => {
                    let Some(t) = lane.transfers.get_mut(&tid) else {
                        continue;
                    };
                    let end = (t.offset + chunk).min(t.frame.len());
                    let piece = Message::Fragment(Fragment {
                        transfer_id: tid,
                        total: t.frame.len() as u64,
                        offset: t.offset as u64,
                        payload: &t.frame[t.offset..end],
                    })
                    .encode(incarnation);
                    lane.transfer_bytes -= end - t.offset;
                    t.offset = end;
                    if end == t.frame.len() {
                        lane.transfers.remove(&tid);
                    } else {
                        lane.ready.push_back(source);
                    }
                    lane.on_sent(piece.len(), now);
                    out.push((piece, Purpose::Transfer(tid)));
                }
            }
        }
        let mark = lane.mark_due(window).then(|| {
            lane.marked = lane.sent;
            lane.sent
        });
        if !out.is_empty() {
            self.need_tick(now);
        }
        for (frame, purpose) in out {
            self.transmit(peer, link, frame, purpose);
        }
        if let Some(offset) = mark {
            self.send(peer, link, &Message::Mark { offset }, Purpose::Control);
        }
        for (id, bytes) in progressed {
            self.signal(id, StreamSignal::Sent(bytes));
            self.after_send(id, now);
        }
    }

    /// A MARK: everything sent before it on this link has arrived or is lost.
    pub(super) fn on_mark(&mut self, name: &NodeName, link: Link, offset: u64) {
        self.send(name, link, &Message::Ack { offset }, Purpose::Control);
    }

    /// An ACK: room in the lane of the link it came back on.
    pub(super) fn on_ack(&mut self, name: &NodeName, link: Link, offset: u64, now: Instant) {
        let Some(p) = self.peers.get_mut(name) else {
            return;
        };
        if p.lanes[link.index()].on_ack(offset, now) {
            self.pump(name, link, now);
        }
    }

    /// Lane timers: a full lane whose MARK got no ACK for a heartbeat
    /// interval sends it again (a MARK or its ACK can be lost with a
    /// connection that broke and came back).
    pub(super) fn lane_timers(&mut self, now: Instant) {
        let interval = self.cfg.timers.heartbeat_interval;
        let window = self.cfg.limits.link_window as u64;
        let mut marks = Vec::new();
        for p in self.peers.values_mut() {
            for link in [Link::Outbound, Link::Inbound] {
                let lane = &mut p.lanes[link.index()];
                if lane.in_flight() > 0
                    && (lane.in_flight() >= window || lane.ready.is_empty())
                    && now.saturating_duration_since(lane.progress_at) >= interval
                {
                    lane.progress_at = now;
                    lane.marked = lane.sent;
                    marks.push((p.name.clone(), link, lane.sent));
                }
            }
        }
        for (peer, link, offset) in marks {
            self.send(&peer, link, &Message::Mark { offset }, Purpose::Control);
        }
    }

    /// Whether any lane has bytes in flight (and so needs the tick).
    pub(super) fn lanes_busy(&self) -> bool {
        self.peers
            .values()
            .any(|p| p.lanes.iter().any(|l| l.in_flight() > 0))
    }
}
