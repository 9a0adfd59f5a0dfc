//! Message windows and memory bounds: what waits, what leaves, what is
//! refused, and that nothing computed is lost.

use super::sim::*;
use crate::core::errors::{CallError, Side};
use crate::core::*;
use crate::protocol::Message;

/// b dials a (so a answers b on its ROUTER), with `configure` applied to
/// both nodes' limits.
fn pair(configure: impl Fn(&mut Limits)) -> Sim {
    let mut sim = Sim::new();
    for n in ["a", "b"] {
        sim.add(n);
        configure(&mut sim.mesh(n).cfg.limits);
    }
    sim.connect("b", "a");
    sim.settle();
    sim
}

#[test]
fn messages_beyond_the_window_wait_for_acks_and_then_leave() {
    let mut sim = pair(|l| l.message_window_count = 4);
    sim.node("a").auto_reply = false;
    // a reads nothing for a while: b's window fills, the rest waits in b.
    sim.stall("b", "a");
    for call in 1..=10 {
        sim.call_with("b", "a", &[7; 100], call, ms(5000));
    }
    sim.settle();
    assert_eq!(sim.count_sent("b", "REQUEST"), 4);
    let held = sim.mesh("b").peer_memory(&name("a"));
    assert!(
        held >= 10 * 100,
        "queued and unacknowledged requests count: {held}"
    );
    // a reads again: ACKs come back and every request leaves, in order.
    sim.unstall();
    sim.settle();
    assert_eq!(sim.count_sent("b", "REQUEST"), 10);
    let ids: Vec<u64> = sim.nodes["a"]
        .jobs
        .iter()
        .filter_map(|j| j.request_id)
        .collect();
    assert_eq!(ids.len(), 10);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
    // Once acknowledged, nothing is held for a any more.
    sim.advance(ms(1000));
    assert_eq!(sim.mesh("b").peer_memory(&name("a")), 0);
}

#[test]
fn an_ack_must_echo_a_mark_to_free_anything() {
    let mut sim = pair(|l| l.message_window_count = 2);
    sim.node("a").auto_reply = false;
    sim.stall("b", "a");
    for call in 1..=5 {
        sim.call_with("b", "a", b"\x01", call, ms(5000));
    }
    sim.settle();
    assert_eq!(sim.count_sent("b", "REQUEST"), 2);
    // A peer acknowledging what it never read, at any offset, frees nothing.
    let a_inc = sim.mesh("a").incarnation();
    let now = sim.now;
    for offset in [0, 1, 2, 60, 1 << 20, u64::MAX] {
        let ack = Message::Ack { offset }.encode(a_inc);
        let b = sim.mesh("b");
        b.handle_inbound(Origin::Outbound(&name("a")), &[&ack], 1, now);
    }
    sim.settle();
    assert_eq!(sim.count_sent("b", "REQUEST"), 2);
}

#[test]
fn a_lost_mark_is_sent_again_and_the_window_moves_on() {
    let mut sim = pair(|l| l.message_window_count = 2);
    sim.node("a").auto_reply = false;
    // Both MARKs covering the first two requests are lost.
    sim.lose.push(("b".into(), "MARK".into()));
    sim.lose.push(("b".into(), "MARK".into()));
    for call in 1..=4 {
        sim.call_with("b", "a", b"\x01", call, ms(5000));
    }
    sim.settle();
    assert_eq!(
        sim.count_sent("b", "REQUEST"),
        2,
        "waiting for an ACK that cannot come"
    );
    // After a heartbeat interval without progress, a new MARK goes.
    sim.advance(ms(1000));
    assert_eq!(sim.count_sent("b", "REQUEST"), 4);
}

#[test]
fn a_request_that_waited_leaves_with_its_callers_time_or_not_at_all() {
    let mut sim = pair(|l| l.message_window_count = 1);
    sim.node("a").auto_reply = false;
    sim.stall("b", "a");
    sim.call_with("b", "a", b"\x01", 1, ms(10_000));
    sim.call_with("b", "a", b"\x02", 2, ms(5_000));
    sim.call_with("b", "a", b"\x03", 3, ms(1_000));
    sim.settle();
    assert_eq!(sim.count_sent("b", "REQUEST"), 1);
    sim.advance(ms(2_000));
    assert_eq!(sim.results("b", 3), [(0, Err(CallError::Timeout))]);
    let sent_at = sim.now;
    sim.unstall();
    sim.settle();
    let jobs: Vec<Job> = sim.nodes["a"].jobs.iter().cloned().collect();
    assert_eq!(jobs.len(), 2, "call 3 gave up while its request waited");
    assert_eq!(sim.mesh("b").stats().requests_withdrawn, 1);
    // Call 2 had 3 s left when its request left, not the 5 s it started with.
    let deadline = jobs[1].deadline.unwrap();
    assert!(deadline <= sent_at + ms(3_001), "{:?}", deadline - sent_at);
    assert!(deadline >= sent_at + ms(2_999));
}

#[test]
fn replies_the_callers_share_cannot_hold_are_answered_overloaded() {
    let mut sim = pair(|l| l.max_message_size = 20_000);
    sim.mesh("a").cfg.limits.max_peer_memory = 20_000;
    // b reads nothing: a's replies (echoes of 6 000 bytes) pile up in a.
    sim.stall("a", "b");
    for call in 1..=5 {
        sim.call_with("b", "a", &[9; 6_000], call, ms(5_000));
    }
    sim.settle();
    assert!(sim.mesh("a").memory_held() <= 20_000);
    assert!(sim.mesh("a").stats().memory_refused >= 2);
    sim.unstall();
    let outcomes: Vec<bool> = (1..=5)
        .map(|call| match &sim.results("b", call)[..] {
            [(0, Ok(reply))] => reply.len() == 6_000,
            [(0, Err(CallError::Overloaded(Side::Remote)))] => false,
            other => panic!("call {call}: {other:?}"),
        })
        .collect();
    // The first ones fit, the rest were refused: none timed out.
    assert_eq!(outcomes, [true, true, true, false, false]);
}

#[test]
fn a_greedy_peer_cannot_take_the_share_of_others() {
    let mut sim = Sim::new();
    for n in ["hub", "greedy", "modest"] {
        sim.add(n);
        let limits = &mut sim.mesh(n).cfg.limits;
        limits.max_message_size = 100_000;
        limits.max_peer_memory = 100_000;
        limits.max_memory = 100_000;
    }
    sim.node("hub").auto_reply = false; // its handlers hold their arguments
    sim.connect("greedy", "hub");
    sim.connect("modest", "hub");
    sim.settle();
    for call in 1..=20 {
        sim.call_with("greedy", "hub", &[1; 10_000], call, ms(5_000));
        sim.settle();
    }
    // The shared half (50 000) went first come, first served.
    let admitted = sim.nodes["hub"].jobs.len();
    assert_eq!(admitted, 4, "greedy: 4 jobs, then the shared half is spent");
    let refused = (1..=20)
        .filter(|&c| sim.results("greedy", c) == [(0, Err(CallError::Overloaded(Side::Remote)))])
        .count();
    assert_eq!(refused, 16);
    // Two peers in session: modest still has its own 25 000.
    for call in 1..=3 {
        sim.call_with("modest", "hub", &[2; 10_000], call, ms(5_000));
        sim.settle();
    }
    assert_eq!(sim.nodes["hub"].jobs.len(), admitted + 2);
    assert_eq!(
        sim.results("modest", 3),
        [(0, Err(CallError::Overloaded(Side::Remote)))]
    );
    assert!(sim.mesh("hub").memory_held() <= 100_000);
}

#[test]
fn memory_held_for_a_peer_is_released_when_its_session_ends() {
    let mut sim = pair(|l| l.message_window_count = 1);
    sim.node("a").auto_reply = false;
    sim.stall("b", "a");
    for call in 1..=5 {
        sim.call_with("b", "a", &[3; 1_000], call, ms(60_000));
    }
    sim.settle();
    assert!(sim.mesh("b").peer_memory(&name("a")) > 0);
    // a is gone: b's calls fail at once and b holds nothing for it.
    sim.node("a").up = false;
    sim.advance(ms(6_000));
    assert_eq!(sim.lost("b"), [("a".to_string(), LostReason::Timeout)]);
    assert_eq!(sim.mesh("b").peer_memory(&name("a")), 0);
    assert_eq!(sim.mesh("b").memory_held(), 0);
}

#[test]
fn calls_over_a_max_message_size_fail_at_once_on_either_side() {
    const LIMIT: usize = 64 * 1024;
    let mut sim = Sim::new();
    sim.add("a").mesh.cfg.limits.max_message_size = LIMIT;
    sim.add("b");
    sim.connect("b", "a");
    sim.settle();
    // Over a's limit in one frame (under b's chunk) and in pieces.
    sim.call_with("b", "a", &[7; 100 * 1024], 1, ms(5000));
    sim.call_with("b", "a", &[7; 300 * 1024], 2, ms(5000));
    // Over a's own limit: nothing leaves.
    let before = sim.count_sent("a", "REQUEST");
    sim.call_with("a", "b", &[7; 100 * 1024], 3, ms(5000));
    assert_eq!(sim.count_sent("a", "REQUEST"), before);
    // Settled without any time passing: no caller waits for its deadline.
    sim.settle();
    let too_large = |side| vec![(0, Err(CallError::TooLarge(side)))];
    assert_eq!(sim.results("b", 1), too_large(Side::Remote));
    assert_eq!(sim.results("b", 2), too_large(Side::Remote));
    assert_eq!(sim.results("a", 3), too_large(Side::Local));
    // The one frame, and the two 128 KiB pieces (the 44 KiB last one is
    // dropped as the rest of a message whose start was).
    assert_eq!(sim.mesh("a").stats().oversized, 3);
    assert!(sim.nodes["a"].jobs.is_empty(), "no handler ran");
    // What fits still goes through.
    sim.call_with("b", "a", &[7; 1024], 4, ms(5000));
    sim.settle();
    assert_eq!(sim.results("b", 4), vec![(0, Ok(vec![7; 1024]))]);
}
