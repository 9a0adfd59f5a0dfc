//! Counters kept by the core, per node and per peer.

use std::time::Duration;

/// Node-wide counters. Everything dropped is counted here under its reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// Frames received on all sockets.
    pub frames_in: u64,
    /// Frames handed to sockets.
    pub frames_out: u64,
    /// Frames dropped because they did not decode (garbage, unknown kind, truncated).
    pub malformed: u64,
    /// Messages dropped because they had the wrong number of ZeroMQ frames.
    pub wrong_frame_count: u64,
    /// Frames dropped for exceeding the maximum message size.
    pub oversized: u64,
    /// Messages from senders with no session (never joined, or forgotten).
    pub unknown_sender: u64,
    /// Messages carrying another node's routing id that this node cannot accept
    /// (its own name, or a name that is not valid).
    pub bad_routing_id: u64,
    /// Messages from an earlier incarnation of a known peer.
    pub stale_incarnation: u64,
    /// Replies that matched no pending call (late, duplicated or forged).
    pub late_replies: u64,
    /// Requests answered `Overloaded` because the handler queue was full,
    /// or the peer's share of memory was spent.
    pub requests_refused: u64,
    /// Casts dropped because the handler queue was full, or the peer's
    /// share of memory (receiving) or its memory bound (sending) was spent.
    pub casts_dropped: u64,
    /// Copies of requests already received in the same session, dropped
    /// (a request runs at most once).
    pub duplicate_requests: u64,
    /// Requests whose caller's deadline passed before a worker could start them.
    pub requests_expired: u64,
    /// Frames a socket refused (full queue or vanished connection).
    pub send_failures: u64,
    /// JOINs this node refused.
    pub joins_refused: u64,
    /// Replies not sent: their session had ended, or their connection was
    /// gone and the peer had no other link up.
    pub replies_orphaned: u64,
    /// CURVE keys refused by the access policy (at the handshake or a JOIN).
    pub unauthorized: u64,
    /// Messages whose routing id was not the key that authenticated them.
    pub identity_mismatch: u64,
    /// ZeroMQ handshakes that failed (security mismatch, wrong key, refused).
    pub handshakes_failed: u64,
    /// Streams refused because the node had too many.
    pub streams_refused: u64,
    /// Streams reset because bytes were lost or the peer broke flow control.
    pub streams_broken: u64,
    /// Stream frames dropped: for an unknown stream, or after this end stopped reading.
    pub stream_frames_dropped: u64,
    /// Pieces of large messages dropped (out of order, without a start, or
    /// of a message that stopped arriving).
    pub fragments_dropped: u64,
    /// Large messages refused because the peer's share of memory was spent.
    pub reassembly_refused: u64,
    /// Large messages not sent because too many bytes were already queued for the peer.
    pub transfers_refused: u64,
    /// Large messages abandoned halfway because their link broke.
    pub transfers_abandoned: u64,
    /// Anything refused because it would have passed a peer's memory bound
    /// or share (requests, casts, replies, large messages, streams; each
    /// also counted under its own kind where it has one).
    pub memory_refused: u64,
    /// Replies replaced by an `Overloaded` answer because the peer's share
    /// of memory could not hold them.
    pub replies_refused: u64,
    /// Requests that waited for room on their link and were not sent
    /// because their caller had stopped waiting.
    pub requests_withdrawn: u64,
    /// Calls whose caller stopped waiting before they were over (dropped
    /// its `PendingCall` or future, or passed its deadline first).
    pub calls_cancelled: u64,
    /// The counters of each built-in service running on the node (the
    /// channels, ...), sorted by name.
    pub services: Vec<ServiceStats>,
}

impl NodeStats {
    /// Every counter of something dropped or refused, by its field's name
    /// (all but `frames_in`, `frames_out`, `calls_cancelled` and the
    /// services'), for exporting them one series per reason.
    pub fn drops(&self) -> [(&'static str, u64); 27] {
        [
            ("malformed", self.malformed),
            ("wrong_frame_count", self.wrong_frame_count),
            ("oversized", self.oversized),
            ("unknown_sender", self.unknown_sender),
            ("bad_routing_id", self.bad_routing_id),
            ("stale_incarnation", self.stale_incarnation),
            ("late_replies", self.late_replies),
            ("requests_refused", self.requests_refused),
            ("casts_dropped", self.casts_dropped),
            ("duplicate_requests", self.duplicate_requests),
            ("requests_expired", self.requests_expired),
            ("send_failures", self.send_failures),
            ("joins_refused", self.joins_refused),
            ("replies_orphaned", self.replies_orphaned),
            ("unauthorized", self.unauthorized),
            ("identity_mismatch", self.identity_mismatch),
            ("handshakes_failed", self.handshakes_failed),
            ("streams_refused", self.streams_refused),
            ("streams_broken", self.streams_broken),
            ("stream_frames_dropped", self.stream_frames_dropped),
            ("fragments_dropped", self.fragments_dropped),
            ("reassembly_refused", self.reassembly_refused),
            ("transfers_refused", self.transfers_refused),
            ("transfers_abandoned", self.transfers_abandoned),
            ("memory_refused", self.memory_refused),
            ("replies_refused", self.replies_refused),
            ("requests_withdrawn", self.requests_withdrawn),
        ]
    }

    /// The counters of the built-in service `name` (such as `"channel"`), if
    /// it runs on the node.
    pub fn service(&self, name: &str) -> Option<&ServiceStats> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// Counters of one built-in service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceStats {
    /// The service's name: its methods are `bilateral.<name>.<method>`.
    pub name: String,
    /// Calls and casts its methods received.
    pub received: u64,
    /// Of those, the ones whose arguments did not decode (dropped, logged).
    pub malformed: u64,
    /// The service's own counters, by name.
    pub counters: Vec<(String, u64)>,
}

impl ServiceStats {
    /// The service's own counter `name`, or 0.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .find(|(k, _)| k == name)
            .map_or(0, |(_, v)| *v)
    }
}

/// Counters and measurements for one peer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerStats {
    /// Messages received from the peer.
    pub messages_in: u64,
    /// Messages sent to the peer.
    pub messages_out: u64,
    /// Bytes received from the peer (protocol frames).
    pub bytes_in: u64,
    /// Bytes sent to the peer (protocol frames).
    pub bytes_out: u64,
    /// Frames from the peer dropped as malformed or oversized.
    pub malformed: u64,
    /// Calls sent to the peer.
    pub calls_out: u64,
    /// Requests received from the peer.
    pub calls_in: u64,
    /// Sessions that have begun with this peer.
    pub sessions: u64,
    /// Last heartbeat round trip.
    pub rtt_last: Option<Duration>,
    /// Smoothed heartbeat round trip (weight 1/8 per sample, as TCP's SRTT).
    pub rtt_smoothed: Option<Duration>,
}

impl PeerStats {
    pub(crate) fn record_rtt(&mut self, sample: Duration) {
        self.rtt_last = Some(sample);
        self.rtt_smoothed = Some(match self.rtt_smoothed {
            None => sample,
            Some(s) => (s * 7 + sample) / 8,
        });
    }
}
