//! One byte stream between this node and a peer: its two directions, their
//! credit, and when each is over.
//!
//! Each direction is a byte sequence with absolute offsets. The receiving end
//! grants credit as an absolute *limit* (bytes up to that offset may be
//! sent), raised as the application consumes what arrived, so a slow reader
//! holds back its writer instead of growing memory. Offsets make every loss
//! visible: a DATA frame that does not start where the last one ended, or a
//! STATUS that reports more bytes sent than arrived, means bytes were lost
//! and the stream fails instead of delivering a silently shortened sequence.
//!
//! This file holds the bookkeeping of one stream; `streams.rs` connects it to
//! the mesh (frames, links, signals to the application).

use std::collections::VecDeque;
use std::time::Instant;

use super::peer::Link;
use crate::protocol::{DATA_HEADER_LEN, NodeName, ResetCode, Status};

/// A stream's number on this node: unique among the node's streams for as
/// long as it runs (the wire carries the opener's own id instead).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

/// Where a stream is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Opener: OPEN sent, the answer is awaited until `deadline`.
    Opening { deadline: Instant },
    /// Acceptor: OPEN received, the application decides until `deadline`.
    Pending { deadline: Instant },
    /// Accepted: bytes flow.
    Open,
}

/// The sending direction.
#[derive(Debug, Default)]
pub(crate) struct SendSide {
    /// DATA frames not yet sent, each with [`DATA_HEADER_LEN`] bytes of room
    /// in front of its payload.
    queue: VecDeque<Vec<u8>>,
    /// Payload bytes in `queue`.
    queued: u64,
    /// Payload bytes sent so far (the offset of the next one).
    pub sent: u64,
    /// The peer's credit: bytes up to this offset may be sent.
    pub limit: u64,
    /// The application finished writing: FIN follows the queue.
    finishing: bool,
    /// FIN was sent: this direction is over.
    pub fin_sent: bool,
    /// The peer reads no more: this direction is over.
    pub stopped: bool,
}

impl SendSide {
    /// Queues a DATA frame (payload after [`DATA_HEADER_LEN`] bytes of room).
    /// Returns `false` (and drops it) once this direction is finished or stopped.
    pub(crate) fn push(&mut self, frame: Vec<u8>) -> bool {
        if self.finishing || self.stopped || frame.len() <= DATA_HEADER_LEN {
            return false;
        }
        self.queued += (frame.len() - DATA_HEADER_LEN) as u64;
        self.queue.push_back(frame);
        true
    }

    /// Payload bytes waiting to be sent.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> u64 {
        self.queued
    }

    /// Whether a DATA frame could go now (credit permitting).
    pub(crate) fn sendable(&self) -> bool {
        !self.stopped && !self.queue.is_empty() && self.sent < self.limit
    }

    /// Whether bytes wait for credit.
    pub(crate) fn blocked(&self) -> bool {
        !self.stopped && !self.queue.is_empty() && self.sent >= self.limit
    }

    /// Takes the next DATA frame, cut to the credit left, and accounts for
    /// it. Returns the frame (header still to be written), its offset and
    /// its payload length.
    pub(crate) fn next_frame(&mut self) -> Option<(Vec<u8>, u64, usize)> {
        if !self.sendable() {
            return None;
        }
        let credit = usize::try_from(self.limit - self.sent).unwrap_or(usize::MAX);
        let mut frame = self.queue.pop_front()?;
        let len = frame.len() - DATA_HEADER_LEN;
        if len > credit {
            // Keep the part beyond the credit for later, with its own header room.
            let mut rest = Vec::with_capacity(DATA_HEADER_LEN + len - credit);
            rest.resize(DATA_HEADER_LEN, 0);
            rest.extend_from_slice(&frame[DATA_HEADER_LEN + credit..]);
            frame.truncate(DATA_HEADER_LEN + credit);
            self.queue.push_front(rest);
        }
        let len = frame.len() - DATA_HEADER_LEN;
        let offset = self.sent;
        self.sent += len as u64;
        self.queued -= len as u64;
        Some((frame, offset, len))
    }

    /// The application finished writing.
    pub(crate) fn finish(&mut self) {
        self.finishing = true;
    }

    /// Whether FIN is due: finished, and every byte has left.
    pub(crate) fn fin_due(&self) -> bool {
        self.finishing && self.queue.is_empty() && !self.fin_sent && !self.stopped
    }

    /// The peer stopped reading: drop what is queued; returns its length.
    pub(crate) fn stop(&mut self) -> u64 {
        self.stopped = true;
        self.queue.clear();
        std::mem::take(&mut self.queued)
    }

    /// Whether this direction is over.
    pub(crate) fn done(&self) -> bool {
        self.fin_sent || self.stopped
    }
}

/// The receiving direction.
#[derive(Debug)]
pub(crate) struct RecvSide {
    /// Bytes received so far (the offset the next DATA must start at).
    pub received: u64,
    /// Credit granted beyond what the application consumed.
    pub window: u64,
    /// The limit last granted to the peer.
    pub granted: u64,
    /// Bytes the application has consumed.
    pub consumed: u64,
    /// The final length, once the peer finished.
    pub fin: Option<u64>,
    /// The application reads no more (STOP sent).
    pub stopped: bool,
}

/// What to do with an inbound DATA payload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Accept {
    /// Hand it to the application.
    Deliver,
    /// The application stopped reading: drop it.
    Discard,
}

impl RecvSide {
    pub(crate) fn new(window: u64) -> Self {
        RecvSide {
            received: 0,
            window,
            granted: window,
            consumed: 0,
            fin: None,
            stopped: false,
        }
    }

    /// Checks a DATA frame at `offset` with `len` bytes against the sequence
    /// and the credit.
    pub(crate) fn on_data(&mut self, offset: u64, len: usize) -> Result<Accept, ResetCode> {
        let end = offset.saturating_add(len as u64);
        if self.fin.is_some_and(|fin| end > fin) {
            return Err(ResetCode::FlowControl);
        }
        if offset != self.received {
            return Err(ResetCode::DataLost);
        }
        if end > self.granted {
            return Err(ResetCode::FlowControl);
        }
        self.received = end;
        Ok(if self.stopped {
            Accept::Discard
        } else {
            Accept::Deliver
        })
    }

    /// The application consumed `bytes` more. Returns the new limit when it
    /// grew enough to be worth a STATUS (a quarter of the window).
    pub(crate) fn on_consumed(&mut self, bytes: u64) -> Option<u64> {
        self.consumed = self.consumed.saturating_add(bytes).min(self.received);
        if self.done() {
            return None;
        }
        let limit = self.consumed + self.window;
        if limit >= self.granted + (self.window / 4).max(1) {
            self.granted = limit;
            Some(limit)
        } else {
            None
        }
    }

    /// Whether this direction is over: every byte up to FIN arrived, or the
    /// application stopped reading.
    pub(crate) fn done(&self) -> bool {
        self.stopped || self.fin == Some(self.received)
    }
}

/// What a peer's STATUS changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct StatusEffect {
    /// The peer accepted the stream (opener, in `Opening`).
    pub accepted: bool,
    /// New credit arrived.
    pub credit: bool,
    /// The peer finished and every byte has arrived: the reader reaches EOF.
    pub finished: bool,
    /// The peer stopped reading; `dropped` queued bytes were discarded.
    pub stopped: Option<u64>,
    /// The peer asked for our STATUS.
    pub probe: bool,
}

/// One stream.
#[derive(Debug)]
pub(crate) struct Stream {
    pub peer: NodeName,
    /// The opener's id (on the wire).
    pub wire_id: u64,
    /// Whether this node opened it.
    pub opener: bool,
    pub service: String,
    /// The link every frame of the stream travels on, and that link's epoch
    /// when the stream began: order holds only within one connection.
    pub link: Link,
    pub epoch: u64,
    pub phase: Phase,
    pub send: SendSide,
    pub recv: RecvSide,
    /// When a frame of this stream last arrived.
    pub last_heard: Instant,
    /// Whether the stream is in its lane's round-robin.
    pub scheduled: bool,
}

impl Stream {
    /// Applies a peer's STATUS. An error means the stream must be reset.
    pub(crate) fn on_status(&mut self, s: &Status) -> Result<StatusEffect, ResetCode> {
        let mut effect = StatusEffect {
            probe: s.probe,
            ..StatusEffect::default()
        };
        // The caller moves an accepted stream to `Open` (and off its deadline).
        effect.accepted = matches!(self.phase, Phase::Opening { .. });
        if s.limit > self.send.limit && !self.send.done() {
            self.send.limit = s.limit;
            effect.credit = true;
        }
        if s.stop && !self.send.stopped {
            effect.stopped = Some(self.send.stop());
        }
        if !self.recv.stopped {
            // STATUS travels behind the DATA it accounts for, on the same
            // link: claiming more than arrived means some was lost.
            if s.sent > self.recv.received {
                return Err(ResetCode::DataLost);
            }
            if s.fin && self.recv.fin.is_none() {
                if s.sent < self.recv.received {
                    return Err(ResetCode::FlowControl);
                }
                self.recv.fin = Some(s.sent);
                effect.finished = true;
            }
        }
        Ok(effect)
    }

    /// Our STATUS, as the peer should see it.
    pub(crate) fn status(&self, probe: bool) -> Status {
        Status {
            stream_id: self.wire_id,
            from_opener: self.opener,
            sent: self.send.sent,
            limit: self.recv.granted,
            fin: self.send.fin_sent,
            stop: self.recv.stopped,
            probe,
        }
    }

    /// Whether both directions are over, so the stream can be forgotten.
    pub(crate) fn done(&self) -> bool {
        self.phase == Phase::Open && self.send.done() && self.recv.done()
    }

    /// Whether the stream waits for something from the peer (bytes, FIN,
    /// credit), so that a long silence deserves a probe.
    pub(crate) fn waiting(&self) -> bool {
        self.phase == Phase::Open && (!self.recv.done() || self.send.blocked())
    }
}
