//! Streams, bulk lanes and large messages, on the simulated network.

use super::sim::*;
use crate::core::errors::StreamError;
use crate::core::*;
use crate::protocol::{Fragment, Message, ResetCode};

const CHUNK: usize = 4096;
const WINDOW: usize = 16_384;
const LINK_WINDOW: usize = 12_288;

/// a dials b, with small chunks and windows so a few frames exercise them.
fn pair() -> Sim {
    let mut sim = Sim::new();
    for n in ["a", "b"] {
        sim.add(n);
        let limits = &mut sim.mesh(n).cfg.limits;
        limits.chunk_size = CHUNK;
        limits.stream_window = WINDOW;
        limits.link_window = LINK_WINDOW;
    }
    sim.connect("a", "b");
    sim.settle();
    sim
}

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

fn failed(sim: &Sim, node: &str, id: StreamId) -> Option<StreamError> {
    sim.nodes[node]
        .signals_of(id)
        .into_iter()
        .find_map(|s| match s {
            StreamSignal::Failed(e) => Some(e),
            _ => None,
        })
}

fn released(sim: &Sim, node: &str, id: StreamId) -> bool {
    sim.nodes[node]
        .signals_of(id)
        .contains(&StreamSignal::Released)
}

/// An accepted stream a → b: (a's id, b's id).
fn stream(sim: &mut Sim) -> (StreamId, StreamId) {
    let s = sim.open("a", "b", "svc");
    sim.settle();
    let r = sim.last_incoming("b");
    assert_eq!(sim.nodes["a"].signals_of(s), [StreamSignal::Accepted]);
    (s, r)
}

#[test]
fn bytes_flow_both_ways_and_finishing_both_sides_forgets_the_stream() {
    let mut sim = pair();
    let (s, r) = stream(&mut sim);
    let incoming = sim.nodes["b"].incoming[0].clone();
    assert_eq!(
        (incoming.peer.as_str(), incoming.service.as_str()),
        ("a", "svc")
    );
    assert_eq!(incoming.init, b"\xc0");

    let up = bytes(2500);
    sim.write("a", s, &up, CHUNK);
    sim.settle();
    assert_eq!(sim.received("b", r), &up[..]);
    let now = sim.now;
    sim.mesh("a").handle_stream_finish(s, now);
    sim.settle();
    assert!(
        sim.nodes["b"]
            .signals_of(r)
            .contains(&StreamSignal::Finished)
    );
    assert!(!released(&sim, "a", s), "a still reads");

    let down = bytes(1200);
    sim.write("b", r, &down, CHUNK);
    sim.mesh("b").handle_stream_finish(r, now);
    sim.settle();
    assert_eq!(sim.received("a", s), &down[..]);
    assert!(
        sim.nodes["a"]
            .signals_of(s)
            .contains(&StreamSignal::Finished)
    );
    assert!(released(&sim, "a", s) && released(&sim, "b", r));
    assert_eq!(failed(&sim, "a", s), None);
    assert_eq!(failed(&sim, "b", r), None);
    assert_eq!(
        sim.mesh("a").stream_count() + sim.mesh("b").stream_count(),
        0
    );
    // Every byte written was reported sent.
    let sent: u64 = sim.nodes["a"]
        .signals_of(s)
        .iter()
        .map(|x| match x {
            StreamSignal::Sent(n) => *n,
            _ => 0,
        })
        .sum();
    assert_eq!(sent, 2500);
}

#[test]
fn a_reader_that_does_not_consume_holds_its_writer_at_the_window() {
    let mut sim = pair();
    let (s, r) = stream(&mut sim);
    let data = bytes(3 * WINDOW + 500);
    sim.write("a", s, &data, CHUNK);
    sim.settle();
    sim.advance(ms(3000));
    // Only the window arrived; the rest waits in a's queue.
    assert_eq!(sim.received("b", r).len(), WINDOW);
    let queued = sim.mesh("a").streams.get_mut(s).unwrap().send.queued();
    assert_eq!(queued as usize, data.len() - WINDOW);
    // Each consumption lets one more window through, never more.
    for round in 2..=4 {
        sim.consume_all("b", r);
        sim.settle();
        let expected = (round * WINDOW).min(data.len());
        assert_eq!(sim.received("b", r).len(), expected);
    }
    assert_eq!(sim.received("b", r), &data[..]);
}

#[test]
fn a_lane_keeps_at_most_its_window_in_flight_until_acknowledged() {
    let mut sim = pair();
    let (s, r) = stream(&mut sim);
    sim.log.clear();
    sim.write("a", s, &bytes(WINDOW), CHUNK);
    sim.settle();
    // DATA sent before the first ACK came back: the link window (and at
    // most one chunk beyond it).
    let before_ack: usize = sim
        .log
        .iter()
        .take_while(|(from, kind, _)| !(from == "b" && kind == "ACK"))
        .filter(|(from, kind, _)| from == "a" && kind == "DATA")
        .map(|(_, _, len)| *len)
        .sum();
    assert!(before_ack >= LINK_WINDOW, "{before_ack}");
    assert!(before_ack < LINK_WINDOW + CHUNK + 100, "{before_ack}");
    assert_eq!(sim.received("b", r).len(), WINDOW);
    assert!(sim.count_sent("a", "MARK") >= 1);
}

#[test]
fn refusals_and_unknown_services_fail_the_opener_with_their_reason() {
    let mut sim = pair();
    sim.node("b").auto_accept = false;
    let s1 = sim.open("a", "b", "nope");
    sim.settle();
    let r1 = sim.last_incoming("b");
    sim.mesh("b")
        .handle_refuse_stream(r1, ResetCode::UnknownService, "");
    let s2 = sim.open("a", "b", "busy");
    sim.settle();
    let r2 = sim.last_incoming("b");
    sim.mesh("b")
        .handle_refuse_stream(r2, ResetCode::Refused, "disk full");
    sim.settle();
    assert_eq!(
        failed(&sim, "a", s1),
        Some(StreamError::UnknownService("nope".into()))
    );
    assert_eq!(
        failed(&sim, "a", s2),
        Some(StreamError::Refused("disk full".into()))
    );
    // The refusing side was never given a stream: only its release.
    assert_eq!(sim.nodes["b"].signals_of(r1), [StreamSignal::Released]);
    assert_eq!(
        sim.mesh("a").stream_count() + sim.mesh("b").stream_count(),
        0
    );
}

#[test]
fn streams_beyond_the_limit_are_refused_as_overloaded_on_either_side() {
    let mut sim = pair();
    sim.mesh("a").cfg.limits.max_streams = 3;
    sim.mesh("b").cfg.limits.max_streams = 2;
    let first = sim.open("a", "b", "svc");
    let second = sim.open("a", "b", "svc");
    // b holds two streams: a third from a is refused there, not queued.
    let third = sim.open("a", "b", "svc");
    sim.settle();
    assert_eq!(sim.nodes["a"].signals_of(first), [StreamSignal::Accepted]);
    assert_eq!(sim.nodes["a"].signals_of(second), [StreamSignal::Accepted]);
    assert_eq!(
        failed(&sim, "a", third),
        Some(StreamError::Overloaded(crate::core::errors::Side::Remote))
    );
    assert_eq!(sim.mesh("b").stats().streams_refused, 1);
    assert_eq!(sim.mesh("b").stream_count(), 2);
    // The refused stream is forgotten: with two live streams, a may open
    // one more, not two.
    let now = sim.now;
    let fourth = sim
        .mesh("a")
        .handle_open_stream(&name("b"), "svc", b"\xc0", now + ms(1000), now);
    assert!(fourth.is_ok());
    let fifth = sim
        .mesh("a")
        .handle_open_stream(&name("b"), "svc", b"\xc0", now + ms(1000), now);
    assert_eq!(
        fifth.err(),
        Some(StreamError::Overloaded(crate::core::errors::Side::Local))
    );
}

#[test]
fn one_peer_cannot_take_every_stream_of_a_node() {
    let mut sim = Sim::new();
    for n in ["a", "b", "c"] {
        sim.add(n);
    }
    sim.mesh("b").cfg.limits.max_streams_per_peer = 2;
    sim.connect("a", "b");
    sim.connect("c", "b");
    sim.settle();
    let from_a: Vec<_> = (0..3).map(|_| sim.open("a", "b", "svc")).collect();
    let from_c = sim.open("c", "b", "svc");
    sim.settle();
    assert_eq!(
        sim.nodes["a"].signals_of(from_a[0]),
        [StreamSignal::Accepted]
    );
    assert_eq!(
        sim.nodes["a"].signals_of(from_a[1]),
        [StreamSignal::Accepted]
    );
    assert_eq!(
        failed(&sim, "a", from_a[2]),
        Some(StreamError::Overloaded(crate::core::errors::Side::Remote))
    );
    // Another peer still gets its stream.
    assert_eq!(sim.nodes["c"].signals_of(from_c), [StreamSignal::Accepted]);
    assert_eq!(sim.mesh("b").stats().streams_refused, 1);
    // Once one of a's streams is gone, a may open another.
    sim.mesh("a")
        .handle_stream_reset(from_a[0], ResetCode::Cancelled);
    sim.settle();
    let again = sim.open("a", "b", "svc");
    sim.settle();
    assert_eq!(sim.nodes["a"].signals_of(again), [StreamSignal::Accepted]);
    assert_eq!(sim.mesh("b").stream_count(), 3);
}

#[test]
fn an_open_without_answer_times_out_on_both_sides() {
    let mut sim = pair();
    sim.node("b").auto_accept = false;
    let s = sim.open("a", "b", "slow");
    sim.settle();
    let r = sim.last_incoming("b");
    sim.advance(ms(999));
    assert_eq!(failed(&sim, "a", s), None);
    sim.advance(ms(1));
    assert_eq!(failed(&sim, "a", s), Some(StreamError::Timeout));
    assert_eq!(failed(&sim, "b", r), Some(StreamError::Timeout));
    // A late acceptance changes nothing.
    let now = sim.now;
    sim.mesh("b").handle_accept_stream(r, now);
    sim.settle();
    assert_eq!(
        sim.mesh("a").stream_count() + sim.mesh("b").stream_count(),
        0
    );
}

#[test]
fn a_lost_peer_fails_its_streams_on_both_sides() {
    let mut sim = pair();
    let (s, r) = stream(&mut sim);
    sim.partition("a", "b");
    sim.advance(ms(5000));
    assert_eq!(
        failed(&sim, "a", s),
        Some(StreamError::PeerLost(LostReason::Timeout))
    );
    assert_eq!(
        failed(&sim, "b", r),
        Some(StreamError::PeerLost(LostReason::Timeout))
    );
}

#[test]
fn a_lost_data_frame_fails_the_stream_instead_of_leaving_a_gap() {
    let mut sim = pair();
    let (s, r) = stream(&mut sim);
    sim.lose.push(("a".into(), "DATA".into()));
    sim.write("a", s, &bytes(3 * CHUNK), CHUNK);
    sim.settle();
    assert!(sim.received("b", r).is_empty(), "nothing after the gap");
    assert_eq!(failed(&sim, "b", r), Some(StreamError::DataLost));
    assert_eq!(failed(&sim, "a", s), Some(StreamError::DataLost));
    assert_eq!(sim.mesh("b").stats().streams_broken, 1);
}

#[test]
fn a_lost_last_frame_is_caught_by_the_fin_that_follows() {
    let mut sim = pair();
    let (s, r) = stream(&mut sim);
    sim.write("a", s, &bytes(CHUNK), CHUNK);
    sim.settle();
    sim.lose.push(("a".into(), "DATA".into()));
    sim.write("a", s, &bytes(CHUNK), CHUNK);
    let now = sim.now;
    sim.mesh("a").handle_stream_finish(s, now);
    sim.settle();
    assert_eq!(sim.received("b", r).len(), CHUNK);
    assert_eq!(failed(&sim, "b", r), Some(StreamError::DataLost));
    assert!(
        !sim.nodes["b"]
            .signals_of(r)
            .contains(&StreamSignal::Finished)
    );
}

#[test]
fn a_lost_fin_is_recovered_by_a_probe_after_a_quiet_period() {
    let mut sim = pair();
    let (s, r) = stream(&mut sim);
    sim.write("a", s, &bytes(10), CHUNK);
    sim.settle();
    sim.lose.push(("a".into(), "STATUS".into()));
    let now = sim.now;
    sim.mesh("a").handle_stream_finish(s, now);
    sim.settle();
    assert!(
        !sim.nodes["b"]
            .signals_of(r)
            .contains(&StreamSignal::Finished)
    );
    // After a lost-peer timeout of silence on the stream, b asks.
    sim.advance(ms(6000));
    assert!(
        sim.nodes["b"]
            .signals_of(r)
            .contains(&StreamSignal::Finished)
    );
    assert_eq!(failed(&sim, "b", r), None);
}

#[test]
fn a_reader_that_stops_stops_its_writer() {
    let mut sim = pair();
    let (s, r) = stream(&mut sim);
    sim.write("a", s, &bytes(2 * WINDOW), CHUNK);
    sim.settle();
    let now = sim.now;
    sim.mesh("b").handle_stream_stop(r, now);
    sim.settle();
    assert!(
        sim.nodes["a"]
            .signals_of(s)
            .contains(&StreamSignal::Stopped)
    );
    assert_eq!(sim.mesh("a").streams.get_mut(s).unwrap().send.queued(), 0);
    // a can still finish and b still... has nothing more to read.
    let before = sim.received("b", r).len();
    sim.write("a", s, &bytes(CHUNK), CHUNK);
    sim.settle();
    assert_eq!(sim.received("b", r).len(), before);
}

#[test]
fn sending_beyond_the_credit_is_a_protocol_violation() {
    let mut sim = pair();
    let (s, r) = stream(&mut sim);
    // A buggy or hostile writer ignores the credit it was given.
    sim.mesh("a").streams.get_mut(s).unwrap().send.limit = u64::MAX;
    sim.write("a", s, &bytes(2 * WINDOW), CHUNK);
    sim.settle();
    assert_eq!(failed(&sim, "b", r), Some(StreamError::Protocol));
    assert_eq!(failed(&sim, "a", s), Some(StreamError::Protocol));
    assert_eq!(sim.received("b", r).len(), WINDOW);
}

#[test]
fn a_stream_whose_link_came_back_as_a_new_connection_is_interrupted() {
    let mut sim = pair();
    let (s, _r) = stream(&mut sim);
    // The DEALER under the stream was replaced: frames in flight may be lost.
    let b = name("b");
    sim.mesh("a").peers.get_mut(&b).unwrap().epochs[0] += 1;
    sim.advance(ms(1000));
    assert_eq!(failed(&sim, "a", s), Some(StreamError::Interrupted));
}

#[test]
fn frames_for_unknown_streams_are_answered_with_reset_and_counted() {
    let mut sim = pair();
    let (s, r) = stream(&mut sim);
    let now = sim.now;
    // b forgets the stream (its application abandons it) while a writes.
    sim.mesh("b").handle_stream_reset(r, ResetCode::Cancelled);
    sim.lose.push(("b".into(), "RESET".into()));
    sim.settle();
    sim.mesh("a")
        .handle_stream_write(s, data_frame(b"late"), now);
    sim.settle();
    assert!(sim.mesh("b").stats().stream_frames_dropped >= 1);
    assert_eq!(failed(&sim, "a", s), Some(StreamError::DataLost));
}

#[test]
fn a_large_call_travels_in_fragments_and_comes_back_whole() {
    let mut sim = pair();
    let args = bytes(10 * CHUNK + 17);
    let now = sim.now;
    sim.mesh("a")
        .handle_call(&[name("b")], "echo", &args, now + ms(1000), 1, now);
    sim.settle();
    let result = sim.results("a", 1);
    assert_eq!(result.len(), 1);
    // The echo handler replies with the arguments, MessagePack-opaque here.
    assert_eq!(result[0].1.as_ref().unwrap(), &args);
    assert!(sim.count_sent("a", "FRAGMENT") > 10);
    assert!(sim.count_sent("b", "FRAGMENT") > 10);
    assert_eq!(sim.mesh("b").stats().fragments_dropped, 0);
}

#[test]
fn a_small_call_overtakes_a_large_one_on_the_same_link() {
    let mut sim = pair();
    sim.node("b").auto_reply = false;
    let now = sim.now;
    sim.mesh("a").handle_call(
        &[name("b")],
        "big",
        &bytes(20 * CHUNK),
        now + ms(1000),
        1,
        now,
    );
    sim.mesh("a")
        .handle_call(&[name("b")], "small", b"x", now + ms(1000), 2, now);
    sim.settle();
    let order: Vec<String> = sim.nodes["b"]
        .jobs
        .iter()
        .map(|j| j.method.clone())
        .collect();
    assert_eq!(order, ["small", "big"]);
}

fn fragment(id: u64, total: u64, offset: u64, payload: &[u8], incarnation: u64) -> Vec<u8> {
    Message::Fragment(Fragment {
        transfer_id: id,
        total,
        offset,
        payload,
    })
    .encode(incarnation)
}

#[test]
fn a_request_past_the_reassembly_limit_is_answered_overloaded_at_once() {
    let mut sim = pair();
    let a_inc = sim.mesh("a").incarnation();
    let inject = |sim: &mut Sim, frame: Vec<u8>| {
        let now = sim.now;
        sim.mesh("b")
            .handle_inbound(Origin::Router { user_id: None }, &[b"a", &frame], 2, now);
    };
    let piece = [0; 4096];
    for id in 0..64 {
        inject(&mut sim, fragment(id, 100_000, 0, &piece, a_inc));
    }
    sim.settle();
    let before = sim.count_sent("b", "REPLY");
    // The 65th message under way is a request: its caller hears at once.
    let args = vec![7u8; 50_000];
    let request = Message::Request(crate::protocol::Request {
        request_id: 4242,
        timeout_ms: 60_000,
        method: "big",
        args: &args,
    })
    .encode(a_inc);
    inject(
        &mut sim,
        fragment(99, request.len() as u64, 0, &request[..4096], a_inc),
    );
    // And one that is not a request is only dropped.
    inject(&mut sim, fragment(100, 100_000, 0, &piece, a_inc));
    sim.settle();
    assert_eq!(sim.mesh("b").stats().reassembly_refused, 2);
    assert_eq!(sim.count_sent("b", "REPLY"), before + 1);
}

#[test]
fn reassembly_refuses_oversized_gapped_and_over_budget_messages() {
    let mut sim = pair();
    let a_inc = sim.mesh("a").incarnation();
    let limits = &mut sim.mesh("b").cfg.limits;
    limits.max_message_size = 100_000;
    limits.max_peer_memory = 150_000;
    let inject = |sim: &mut Sim, frame: Vec<u8>| {
        let now = sim.now;
        sim.mesh("b")
            .handle_inbound(Origin::Router { user_id: None }, &[b"a", &frame], 2, now);
    };
    let piece = [0; 4096];
    // Declares more than the maximum message size.
    inject(&mut sim, fragment(1, 200_000, 0, b"x", a_inc));
    assert_eq!(sim.mesh("b").stats().oversized, 1);
    // A piece out of place drops the message.
    inject(&mut sim, fragment(2, 50_000, 0, &piece, a_inc));
    inject(&mut sim, fragment(2, 50_000, 8192, &piece, a_inc));
    assert_eq!(sim.mesh("b").stats().fragments_dropped, 1);
    // A piece without a start is dropped.
    inject(&mut sim, fragment(3, 50_000, 4096, &piece, a_inc));
    assert_eq!(sim.mesh("b").stats().fragments_dropped, 2);
    // A piece that is not the last must carry at least 4 KiB.
    inject(&mut sim, fragment(4, 50_000, 0, &[0; 100], a_inc));
    assert_eq!(sim.mesh("b").stats().fragments_dropped, 3);
    assert_eq!(sim.mesh("b").bulk.reassembling(), 0);
    // Declared sizes hold nothing: what holds memory is what arrived.
    for id in 10..20 {
        inject(&mut sim, fragment(id, 100_000, 0, &piece, a_inc));
    }
    assert_eq!(sim.mesh("b").bulk.reassembling(), 10 * 4096);
    assert_eq!(sim.mesh("b").stats().reassembly_refused, 0);
    // Growing them past the peer's 150 000 bytes is refused.
    for id in 10..20 {
        inject(&mut sim, fragment(id, 100_000, 4096, &[1; 12_288], a_inc));
    }
    assert!(sim.mesh("b").stats().reassembly_refused > 0);
    assert!(sim.mesh("b").memory_held() <= 150_000);
    let (held, counted) = sim.mesh("b").memory_audit();
    assert_eq!(held, counted);
    // A message that stops arriving is dropped after the lost timeout.
    sim.advance(ms(6000));
    assert_eq!(sim.mesh("b").bulk.reassembling(), 0);
    assert_eq!(sim.mesh("b").memory_held(), 0);
    // The session is intact.
    assert!(sim.active("b", "a"));
}

#[test]
fn a_reassembled_message_must_be_a_call_reply_cast_or_open() {
    let mut sim = pair();
    let a_inc = sim.mesh("a").incarnation();
    let ping = Message::Ping { nonce: 1 }.encode(a_inc);
    let frame = fragment(9, ping.len() as u64, 0, &ping, a_inc);
    let before = sim.mesh("b").stats().malformed;
    let now = sim.now;
    sim.mesh("b")
        .handle_inbound(Origin::Router { user_id: None }, &[b"a", &frame], 2, now);
    assert_eq!(sim.mesh("b").stats().malformed, before + 1);
}
