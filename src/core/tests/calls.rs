//! Calls: fan-out, per-target results, deadlines, late replies, admission.

use super::sim::*;
use crate::core::errors::{CallError, Side};
use crate::core::*;
use crate::protocol::{Message, Reply, ReplyStatus};

/// a dials b and c; d dials a; e is known to a but down.
fn mesh() -> Sim {
    let mut sim = Sim::new();
    for n in ["a", "b", "c", "d", "e"] {
        sim.add(n);
    }
    sim.node("e").up = false;
    sim.connect("a", "b");
    sim.connect("a", "c");
    sim.connect("a", "e");
    sim.connect("d", "a");
    sim.settle();
    sim
}

#[test]
fn a_multicast_call_returns_one_entry_per_target() {
    let mut sim = mesh();
    sim.node("c").auto_reply = false; // c is slow: never answers
    sim.call("a", &["b", "c", "d", "e", "zed", "a"], 1, ms(2000));
    sim.settle();
    // Everything but the slow peer is known at once.
    let now = sim.results("a", 1);
    assert_eq!(
        now,
        [
            (0, Ok(vec![1])),
            (2, Ok(vec![1])),
            (3, Err(CallError::Unreachable(None))),
            (4, Err(CallError::UnknownPeer)),
            (5, Err(CallError::UnknownPeer)),
        ]
    );
    sim.advance(ms(1999));
    assert_eq!(sim.results("a", 1).len(), 5);
    sim.advance(ms(1));
    assert_eq!(sim.results("a", 1)[1], (1, Err(CallError::Timeout)));
    assert_eq!(sim.mesh("a").pending_calls(), 0);
}

#[test]
fn the_same_request_id_goes_to_every_target_and_replies_match_on_peer_and_id() {
    let mut sim = mesh();
    sim.node("b").auto_reply = false;
    sim.node("c").auto_reply = false;
    sim.call("a", &["b", "c"], 1, ms(1000));
    sim.settle();
    let jb = sim.node("b").jobs.pop_front().unwrap();
    let jc = sim.node("c").jobs.pop_front().unwrap();
    assert_eq!(jb.request_id, jc.request_id);
    // A reply with c's id but coming from d (not a target) matches nothing.
    let forged = Message::Reply(Reply {
        request_id: jc.request_id.unwrap(),
        status: ReplyStatus::Ok,
        payload: b"x",
    });
    let d_inc = sim.mesh("d").incarnation();
    let now = sim.now;
    sim.mesh("a").handle_inbound(
        Origin::Router { user_id: None },
        &[b"d", &forged.encode(d_inc)],
        2,
        now,
    );
    sim.settle();
    assert!(sim.results("a", 1).is_empty());
    assert_eq!(sim.mesh("a").stats().late_replies, 1);
}

#[test]
fn a_late_reply_is_dropped_and_counted() {
    let mut sim = mesh();
    sim.node("b").auto_reply = false;
    sim.call("a", &["b"], 1, ms(100));
    sim.advance(ms(100));
    assert_eq!(sim.results("a", 1), [(0, Err(CallError::Timeout))]);
    // The handler finally answers.
    sim.node("b").auto_reply = true;
    sim.settle();
    assert_eq!(sim.mesh("a").stats().late_replies, 1);
    assert_eq!(sim.results("a", 1).len(), 1, "no second entry");
}

#[test]
fn many_calls_expire_at_their_own_deadlines_all_at_once() {
    let mut sim = mesh();
    sim.node("b").auto_reply = false;
    // 1000 calls with deadlines spread over 1..=100 ms, ten per millisecond.
    for i in 0..1000u32 {
        sim.call("a", &["b"], i, ms(u64::from(i % 100) + 1));
    }
    sim.settle();
    assert_eq!(sim.mesh("a").pending_calls(), 1000);
    let now = sim.now;
    // One timeout call at 50 ms expires every call due by then, not one per tick.
    sim.mesh("a").handle_timeout(now + ms(50));
    sim.settle();
    let expired = sim.node("a").resolved.len();
    assert_eq!(expired, 500);
    assert!(
        sim.node("a")
            .resolved
            .iter()
            .all(|(c, _, o)| c % 100 < 50 && *o == Err(CallError::Timeout))
    );
    assert_eq!(sim.mesh("a").poll_timeout(), Some(now + ms(51)));
    sim.mesh("a").handle_timeout(now + ms(100));
    sim.settle();
    assert_eq!(sim.node("a").resolved.len(), 1000);
    assert_eq!(sim.mesh("a").pending_calls(), 0);
}

#[test]
fn a_full_handler_queue_answers_overloaded_and_drops_casts() {
    let mut sim = Sim::new();
    sim.add("a");
    let mut t = timers();
    t.heartbeat_interval = ms(1000);
    sim.add_with("b", "net", t).auto_reply = false;
    sim.mesh("b").cfg.limits.max_queued_handlers = 2;
    sim.connect("a", "b");
    sim.settle();
    for i in 0..3 {
        sim.call("a", &["b"], i, ms(1000));
    }
    sim.settle();
    assert_eq!(
        sim.results("a", 2),
        [(0, Err(CallError::Overloaded(Side::Remote)))]
    );
    let now = sim.now;
    assert_eq!(sim.mesh("a").handle_cast(&[name("b")], "log", b"", now), 1);
    sim.settle();
    assert_eq!(sim.mesh("b").stats().casts_dropped, 1);
    assert_eq!(sim.mesh("b").stats().requests_refused, 1);
    // Finishing one frees a slot.
    sim.node("b").auto_reply = true;
    sim.settle();
    assert_eq!(sim.mesh("b").queued_handlers(), 0);
    assert_eq!(sim.results("a", 0), [(0, Ok(vec![1]))]);
}

#[test]
fn the_pending_call_table_is_bounded() {
    let mut sim = mesh();
    sim.node("b").auto_reply = false;
    sim.mesh("a").cfg.limits.max_pending_calls = 3;
    for i in 0..4 {
        sim.call("a", &["b"], i, ms(1000));
    }
    sim.settle();
    assert_eq!(
        sim.results("a", 3),
        [(0, Err(CallError::Overloaded(Side::Local)))]
    );
}

#[test]
fn a_reply_whose_session_ended_is_not_sent() {
    let mut sim = mesh();
    sim.node("b").auto_reply = false;
    sim.call("a", &["b"], 1, ms(10_000));
    sim.settle();
    let job = sim.node("b").jobs.pop_front().unwrap();
    let now = sim.now;
    sim.mesh("b").handle_disconnect(&name("a"), now);
    sim.settle();
    let done = job.done(JobOutcome::Reply(ReplyStatus::Ok, vec![]));
    sim.mesh("b").handle_job_done(done, now);
    sim.settle();
    assert_eq!(sim.mesh("b").stats().replies_orphaned, 1);
    assert_eq!(sim.count_sent("b", "REPLY"), 0);
}

/// The REQUEST of a call `a` just made, taken from its actions before the
/// simulated network sees it.
fn take_request(sim: &mut Sim) -> Transmit {
    loop {
        match sim.mesh("a").poll_action() {
            Some(Action::Transmit(t)) if matches!(t.purpose, Purpose::Request(_)) => break t,
            Some(_) => continue,
            None => panic!("no REQUEST transmitted"),
        }
    }
}

#[test]
fn a_failed_send_that_loses_its_frame_fails_its_call_entry_at_once() {
    let mut sim = mesh();
    sim.node("b").auto_reply = false;
    sim.call("a", &["b"], 1, ms(1000));
    let now = sim.now;
    // The shell reports the DEALER queue was full, without the frame.
    let t = take_request(&mut sim);
    sim.mesh("a").handle_send_failed(
        &t.peer,
        t.link,
        t.purpose,
        SendFailure::QueueFull,
        None,
        now,
    );
    sim.settle();
    assert_eq!(
        sim.results("a", 1),
        [(0, Err(CallError::Overloaded(Side::Local)))]
    );
}

#[test]
fn a_request_refused_by_a_full_queue_is_offered_again() {
    let mut sim = mesh();
    sim.call("a", &["b"], 1, ms(1000));
    let now = sim.now;
    let t = take_request(&mut sim);
    let frame = Some(t.frame.clone());
    sim.mesh("a").handle_send_failed(
        &t.peer,
        t.link,
        t.purpose,
        SendFailure::QueueFull,
        frame,
        now,
    );
    sim.settle();
    assert!(sim.results("a", 1).is_empty(), "still waiting");
    // The lane waits a moment, then the same request leaves and is answered.
    sim.advance(ms(9));
    assert!(sim.results("a", 1).is_empty());
    sim.advance(ms(1));
    assert_eq!(sim.results("a", 1).len(), 1);
    assert!(sim.results("a", 1)[0].1.is_ok());
}

#[test]
fn a_duplicated_request_runs_once() {
    let mut sim = mesh();
    sim.node("b").auto_reply = false;
    sim.call("a", &["b"], 1, ms(1000));
    // Deliver the REQUEST twice: the shell of a faulty network would.
    let frame = loop {
        match sim.mesh("a").poll_action() {
            Some(Action::Transmit(t)) if matches!(t.purpose, Purpose::Request(_)) => break t.frame,
            Some(_) => continue,
            None => panic!("no REQUEST"),
        }
    };
    let now = sim.now;
    for _ in 0..3 {
        sim.mesh("b")
            .handle_inbound(Origin::Router { user_id: None }, &[b"a", &frame], 2, now);
    }
    sim.settle();
    assert_eq!(sim.node("b").jobs.len(), 1, "the handler runs once");
    assert_eq!(sim.mesh("b").stats().duplicate_requests, 2);
}
