//! Whatever arrives from the network: dropped, counted, never a panic.

use proptest::prelude::*;

use super::sim::*;
use crate::core::*;
use crate::protocol::{Message, Request};

fn joined() -> Sim {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b");
    sim.connect("b", "a");
    sim.settle();
    sim
}

#[test]
fn wrong_frame_counts_are_dropped_and_counted() {
    let mut sim = joined();
    let now = sim.now;
    let ping = Message::Ping { nonce: 1 }.encode(sim.mesh("b").incarnation());
    sim.mesh("a").handle_inbound(
        Origin::Router { user_id: None },
        &[b"b", &ping, b"extra"],
        3,
        now,
    );
    sim.mesh("a")
        .handle_inbound(Origin::Router { user_id: None }, &[b"b"], 1, now);
    sim.mesh("a").handle_inbound(
        Origin::Router { user_id: None },
        &[b"b", &ping, b"x", b"y"],
        1_000_000,
        now,
    );
    let stats = sim.mesh("a").stats();
    assert_eq!(stats.wrong_frame_count, 3);
    assert_eq!(sim.mesh("a").peer_info("b").unwrap().stats.malformed, 3);
    sim.settle();
    assert!(sim.active("a", "b"));
}

#[test]
fn garbage_oversized_and_unknown_senders_are_counted() {
    let mut sim = joined();
    sim.mesh("a").cfg.limits.max_message_size = 64;
    let now = sim.now;
    let b_inc = sim.mesh("b").incarnation();
    sim.mesh("a").handle_inbound(
        Origin::Router { user_id: None },
        &[b"b", b"\x01\x07garbage"],
        2,
        now,
    );
    sim.mesh("a").handle_inbound(
        Origin::Router { user_id: None },
        &[b"b", &[1u8; 65]],
        2,
        now,
    );
    let req = Message::Request(Request {
        request_id: 1,
        timeout_ms: 10,
        method: "m",
        args: b"",
    });
    sim.mesh("a").handle_inbound(
        Origin::Router { user_id: None },
        &[b"stranger", &req.encode(5)],
        2,
        now,
    );
    sim.mesh("a").handle_inbound(
        Origin::Router { user_id: None },
        &[b"b", &req.encode(b_inc ^ 1)],
        2,
        now,
    );
    sim.mesh("a").handle_inbound(
        Origin::Router { user_id: None },
        &[&[0u8, 1, 2], &req.encode(5)],
        2,
        now,
    );
    let s = sim.mesh("a").stats();
    assert_eq!(
        (
            s.malformed,
            s.oversized,
            s.unknown_sender,
            s.stale_incarnation,
            s.bad_routing_id
        ),
        (1, 1, 1, 1, 1)
    );
    sim.settle();
    assert!(sim.node("a").jobs.is_empty(), "nothing reached a handler");
    // Strangers are told to join (rate-limited), nothing else.
    assert_eq!(sim.count_sent("a", "REJECT"), 2);
}

#[test]
fn a_message_using_the_nodes_own_name_is_dropped() {
    let mut sim = joined();
    let now = sim.now;
    let req = Message::Request(Request {
        request_id: 1,
        timeout_ms: 10,
        method: "m",
        args: b"",
    });
    sim.mesh("a").handle_inbound(
        Origin::Router { user_id: None },
        &[b"a", &req.encode(5)],
        2,
        now,
    );
    assert_eq!(sim.mesh("a").stats().bad_routing_id, 1);
    sim.settle();
    assert!(sim.node("a").jobs.is_empty());
}

#[test]
fn not_joined_replies_are_rate_limited() {
    let mut sim = joined();
    let now = sim.now;
    let ping = Message::Ping { nonce: 1 }.encode(42);
    for _ in 0..1000 {
        sim.mesh("a").handle_inbound(
            Origin::Router { user_id: None },
            &[b"stranger", &ping],
            2,
            now,
        );
    }
    sim.settle();
    assert_eq!(sim.count_sent("a", "REJECT"), 200);
    assert_eq!(sim.mesh("a").stats().unknown_sender, 1000);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn arbitrary_frames_from_anywhere_never_panic_and_leave_the_session_up(
        frames in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..64), 0usize..4, any::<bool>()),
            1..40,
        )
    ) {
        let mut sim = joined();
        let now = sim.now;
        let b = name("b");
        for (bytes, count, outbound) in &frames {
            if *outbound {
                sim.mesh("a").handle_inbound(Origin::Outbound(&b), &[bytes], *count, now);
            } else {
                sim.mesh("a").handle_inbound(Origin::Router { user_id: None }, &[b"b", bytes], *count, now);
            }
        }
        sim.settle();
        prop_assert!(sim.active("a", "b"));
    }
}
