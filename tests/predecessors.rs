//! One test for each bug BRIEF lists in the predecessor (the Go library
//! bilateralrpc) that applies to the core mesh; test names start with the
//! item's number. Item 6 (CURVE) belongs to the CURVE work.
//!
//! | item | what went wrong there | test(s) |
//! |---|---|---|
//! | 1 | a failed call froze the node for good | `bug01_*` |
//! | 2 | unknown method / undecodable args came back as success | `bug02_*` |
//! | 3 | a handler argument type mismatch crashed the process | `bug03_*` |
//! | 4 | a client using the node's own name crashed the node | `bug04_*` |
//! | 5 | a message with extra frames spun the reactor forever | `bug05_*` |
//! | 7 | `close()` right after start hung; sockets closed from a foreign thread | `bug07_*` |
//! | 8 | timeouts handled one per tick from the head of a list | `bug08_*`, and `core::tests::calls::many_calls_expire_at_their_own_deadlines_all_at_once` |
//! | 9 | the peer table was shared between threads unsynchronised | `bug09_*` |
//! | 10 | dead ends: failed connect / idle served peer stopped for good; backoff to ~2 h without jitter; dead peer alive for ~60 s; PART storms on mutual dial | `bug10a`–`bug10e`, and `core::tests::liveness::backoff_*` |
//! | 11 | fixed ports; tests that hung or crashed one run in three | `bug11_*` (and every test binds `tcp://127.0.0.1:*` and waits with deadlines) |

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bilateral::testkit::zmq::{Context, PollItem, SendFlags, SocketType};
use bilateral::{CallError, LostReason, PeerEvent, PeerState, To};
use common::*;
use serde::{Deserialize, Serialize};

#[test]
fn bug01_a_call_that_fails_does_not_freeze_the_node() {
    let a = node("a");
    let b = node("b");
    b.register("slow", |_c, (): ()| {
        std::thread::sleep(Duration::from_millis(300));
        Ok(1u8)
    })
    .unwrap();
    b.register("fast", |_c, (): ()| Ok(2u8)).unwrap();
    join(&a, &b);
    // The caller gives up before the reply; the reply then arrives to nobody.
    for _ in 0..3 {
        assert_eq!(
            a.call_one::<_, u8>("b", "slow", &(), Duration::from_millis(50)),
            Err(CallError::Timeout)
        );
    }
    // A call to a peer that does not exist fails too.
    assert_eq!(
        a.call_one::<_, u8>("ghost", "fast", &(), Duration::from_millis(50)),
        Err(CallError::UnknownPeer)
    );
    // The node is not stuck: calls keep working, and the late replies were counted.
    for _ in 0..10 {
        assert_eq!(a.call_one::<_, u8>("b", "fast", &(), PATIENCE), Ok(2));
    }
    wait_until(PATIENCE, || a.stats().late_replies == 3);
}

#[test]
fn bug02_unknown_methods_and_undecodable_arguments_are_errors_not_empty_successes() {
    let a = node("a");
    let b = node("b");
    b.register("takes_pair", |_c, (x, y): (u8, u8)| Ok(x + y))
        .unwrap();
    join(&a, &b);
    assert_eq!(
        a.call_one::<_, u8>("b", "no_such_method", &(1u8, 2u8), PATIENCE),
        Err(CallError::UnknownMethod)
    );
    assert!(matches!(
        a.call_one::<_, u8>("b", "takes_pair", &"not a pair", PATIENCE),
        Err(CallError::BadArguments(_))
    ));
    // In a multicast the errors sit next to successes, each typed.
    let r = a
        .call::<_, u8>(["b"], "no_such_method", &(), PATIENCE)
        .unwrap();
    assert!(!r.all_ok());
    assert_eq!(
        r.failures().next().map(|(p, e)| (p, e.clone())),
        Some(("b", CallError::UnknownMethod))
    );
}

#[derive(Serialize, Deserialize)]
struct Expected {
    a: i64,
    b: i64,
}

#[derive(Serialize, Deserialize)]
struct Different {
    name: String,
    tags: Vec<String>,
}

#[test]
fn bug03_an_argument_type_mismatch_is_reported_and_harms_nothing() {
    let a = node("a");
    let b = node("b");
    b.register("sum", |_c, e: Expected| Ok(e.a + e.b)).unwrap();
    join(&a, &b);
    let wrong = Different {
        name: "x".into(),
        tags: vec!["y".into()],
    };
    assert!(matches!(
        a.call_one::<_, i64>("b", "sum", &wrong, PATIENCE),
        Err(CallError::BadArguments(_))
    ));
    assert!(matches!(
        a.call_one::<_, i64>("b", "sum", &vec![1u8; 100], PATIENCE),
        Err(CallError::BadArguments(_))
    ));
    assert!(matches!(
        a.call_one::<_, i64>("b", "sum", &(), PATIENCE),
        Err(CallError::BadArguments(_))
    ));
    assert_eq!(
        a.call_one::<_, i64>("b", "sum", &Expected { a: 2, b: 3 }, PATIENCE),
        Ok(5)
    );
}

#[test]
fn bug04_a_client_presenting_the_nodes_own_name_is_refused_and_the_node_keeps_serving() {
    let victim = node("victim");
    victim.register("ping", |_c, (): ()| Ok(1u8)).unwrap();
    let events = victim.events();
    let ctx = Context::new().unwrap();
    let impostor = ctx.socket(SocketType::Dealer).unwrap();
    impostor.set_routing_id(b"victim").unwrap();
    impostor.connect(victim.endpoint().unwrap()).unwrap();
    let mut join_frame = vec![1u8, 1, 0, 0, 0, 0, 0, 0, 0, 9, 1, 1, 0, 0, 0, 3, 0xe8];
    for field in ["test", "victim", "victim"] {
        join_frame.push(field.len() as u8);
        join_frame.extend_from_slice(field.as_bytes());
    }
    impostor.send(&join_frame, SendFlags::NONE).unwrap();
    // The impostor is told why.
    let mut items = [PollItem::readable(&impostor)];
    bilateral::testkit::zmq::poll(&mut items, Some(PATIENCE)).unwrap();
    let (reject, _) = impostor.recv_multipart(true, 2).unwrap();
    assert_eq!(reject[0].as_bytes()[1], 3, "REJECT");
    assert_eq!(reject[0].as_bytes()[10], 4, "code JoiningItself");
    assert!(
        events
            .wait_for(PATIENCE, |e| matches!(e, PeerEvent::Refused { .. }))
            .is_some()
    );
    // Requests under the stolen name reach no handler.
    impostor
        .send(
            &[
                1, 7, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 3, 0xe8, 4, b'p', b'i',
                b'n', b'g', 0xc0,
            ],
            SendFlags::NONE,
        )
        .unwrap();
    wait_until(PATIENCE, || victim.stats().bad_routing_id >= 1);
    // And a real peer is served.
    let friend = node("friend");
    join(&friend, &victim);
    assert_eq!(
        friend.call_one::<_, u8>("victim", "ping", &(), PATIENCE),
        Ok(1)
    );
    assert_eq!(victim.active_connections(), ["friend"]);
}

#[test]
fn bug05_messages_with_more_frames_than_expected_are_dropped_and_the_reactor_moves_on() {
    let victim = node("victim");
    victim.register("ping", |_c, (): ()| Ok(1u8)).unwrap();
    let friend = node("friend");
    join(&friend, &victim);
    let ctx = Context::new().unwrap();
    let rogue = ctx.socket(SocketType::Dealer).unwrap();
    rogue.set_routing_id(b"rogue").unwrap();
    rogue.set_linger(Duration::from_secs(1)).unwrap();
    rogue.connect(victim.endpoint().unwrap()).unwrap();
    for frames in [2usize, 3, 100, 100_000] {
        for i in 0..frames {
            let flags = if i + 1 < frames {
                SendFlags::MORE
            } else {
                SendFlags::NONE
            };
            rogue.send(b"frame", flags).unwrap();
        }
    }
    wait_until(PATIENCE, || victim.stats().wrong_frame_count >= 4);
    for _ in 0..10 {
        assert_eq!(
            friend.call_one::<_, u8>("victim", "ping", &(), PATIENCE),
            Ok(1)
        );
    }
}

#[test]
fn bug07_close_right_after_start_returns_promptly_from_any_thread() {
    within(Duration::from_secs(10), || {
        for i in 0..10 {
            let n = node(&format!("n{i}"));
            // Closed from a thread that did not create it: the sockets are
            // closed by the reactor thread that owns them, not by this one.
            let m = n.clone();
            std::thread::spawn(move || m.close()).join().unwrap();
            assert!(n.is_closed());
        }
        for i in 0..10 {
            // Dropped right after start, with a connection attempt under way.
            let n = node(&format!("d{i}"));
            n.connect("nobody", "tcp://127.0.0.1:1").unwrap();
            drop(n);
        }
    });
}

#[test]
fn bug08_concurrent_calls_each_time_out_at_their_own_deadline() {
    let a = node("a");
    let b = builder("b").workers(1).start().unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let r2 = release.clone();
    b.register("never", move |_c, (): ()| {
        while !r2.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    })
    .unwrap();
    join(&a, &b);
    // Deadlines 100, 200, ... 1000 ms, started together, in reverse order.
    let started = Instant::now();
    let calls: Vec<(Duration, _)> = (1..=10u64)
        .rev()
        .map(|i| {
            let t = Duration::from_millis(100 * i);
            (t, a.start_call::<_, ()>("b", "never", &(), t).unwrap())
        })
        .collect();
    let waiters: Vec<_> = calls
        .into_iter()
        .map(|(t, call)| {
            std::thread::spawn(move || {
                let r = call.wait();
                (t, started.elapsed(), r.get("b").cloned())
            })
        })
        .collect();
    for w in waiters {
        let (t, took, result) = w.join().unwrap();
        assert_eq!(result, Some(Err(CallError::Timeout)));
        assert!(took >= t, "a {t:?} call returned after {took:?}");
        assert!(
            took < t + Duration::from_secs(2),
            "a {t:?} call returned after {took:?}"
        );
    }
    release.store(true, Ordering::Release);
}

#[test]
fn bug09_the_peer_table_is_safe_under_concurrent_use() {
    let hub = node("hub");
    hub.register("id", |c, (): ()| Ok(c.peer().to_string()))
        .unwrap();
    let spokes: Vec<_> = (0..4).map(|i| node(&format!("s{i}"))).collect();
    for s in &spokes {
        s.register("id", |_c, (): ()| Ok(String::new())).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    // Churn: spokes connect and disconnect.
    for s in spokes.clone() {
        let (hub, stop) = (hub.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let _ = s.connect("hub", hub.endpoint().unwrap());
                let _ = s.call::<_, String>(To::All, "id", &(), Duration::from_millis(200));
                let _ = s.disconnect("hub");
            }
        }));
    }
    // Readers and callers on the hub.
    for _ in 0..4 {
        let (hub, stop) = (hub.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let names = hub.active_connections();
                assert!(
                    names.windows(2).all(|w| w[0] < w[1]),
                    "sorted and unique: {names:?}"
                );
                let _ = hub.peers();
                let _ = hub.call::<_, String>(To::All, "id", &(), Duration::from_millis(200));
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Release);
    for t in threads {
        t.join().unwrap();
    }
    // Settles to a consistent state once the churn stops. A call may still
    // meet a connection that is being replaced (Unreachable) for a moment;
    // within the deadline every spoke answers.
    for s in &spokes {
        s.connect("hub", hub.endpoint().unwrap()).unwrap();
        s.wait_for_peer("hub", PATIENCE).unwrap();
    }
    wait_until(PATIENCE, || hub.connection_count() == 4);
    wait_until(PATIENCE, || {
        let r = hub.call::<_, String>(To::All, "id", &(), PATIENCE).unwrap();
        r.len() == 4 && r.all_ok()
    });
}

#[test]
fn bug10e_two_nodes_dialling_each_other_converge_at_once_with_no_part_storm() {
    let a = node("a");
    let b = node("b");
    let a_events = a.events();
    let b_events = b.events();
    let started = Instant::now();
    // Both dial at the same moment.
    let (ea, eb) = (
        a.endpoint().unwrap().to_string(),
        b.endpoint().unwrap().to_string(),
    );
    let (a2, b2) = (a.clone(), b.clone());
    let t1 = std::thread::spawn(move || a2.connect("b", &eb).unwrap());
    let t2 = std::thread::spawn(move || b2.connect("a", &ea).unwrap());
    t1.join().unwrap();
    t2.join().unwrap();
    a.wait_for_peer("b", PATIENCE).unwrap();
    b.wait_for_peer("a", PATIENCE).unwrap();
    let converged = started.elapsed();
    assert!(
        converged < Duration::from_secs(1),
        "converged in {converged:?}"
    );
    // Exactly one Joined each, then nothing for several lost timeouts: no
    // PART, no loss, no second session.
    assert!(a_events.wait_for(PATIENCE, |e| is_joined(e, "b")).is_some());
    assert!(b_events.wait_for(PATIENCE, |e| is_joined(e, "a")).is_some());
    let quiet = Duration::from_millis(1500);
    assert_eq!(a_events.wait_for(quiet, |_| true), None);
    assert_eq!(b_events.try_recv(), None);
    let info = a.peer_info("b").unwrap();
    assert!(info.outbound_up && info.inbound_up);
    assert_eq!(info.stats.sessions, 1);
}

#[test]
fn bug10d_a_dead_peer_is_lost_within_the_lost_timeout_and_rejoins_when_it_returns() {
    let a = node("a");
    let b = node("b");
    join(&a, &b);
    let endpoint = b.endpoint().unwrap().to_string();
    let events = a.events();
    // b dies without a goodbye.
    let died = Instant::now();
    b.kill();
    let lost = events.wait_for(PATIENCE, |e| is_lost(e, "b")).unwrap();
    assert!(
        matches!(
            lost,
            PeerEvent::Lost {
                reason: LostReason::Timeout,
                ..
            }
        ),
        "{lost:?}"
    );
    // 600 ms of silence (minus what had passed since the last heartbeat).
    assert!(
        died.elapsed() < Duration::from_secs(3),
        "lost after {:?}",
        died.elapsed()
    );
    assert_ne!(a.peer_state("b"), Some(PeerState::Active));
    // a keeps dialling: a new b on the same endpoint is joined.
    let b2 = builder_on("b", &endpoint).start().unwrap();
    assert!(events.wait_for(PATIENCE, |e| is_joined(e, "b")).is_some());
    assert_eq!(a.active_connections(), ["b"]);
    drop(b2);
}

#[test]
fn bug10a_a_failed_connect_keeps_retrying_until_the_peer_appears() {
    // Reserve a port, then free it: the dialler starts first.
    let probe = node("probe");
    let endpoint = probe.endpoint().unwrap().to_string();
    probe.close();
    let a = node("a");
    let events = a.events();
    a.connect("late", &endpoint).unwrap();
    assert!(
        events
            .wait_for(PATIENCE, |e| matches!(e, PeerEvent::ConnectFailed { .. }))
            .is_some()
    );
    let _late = builder_on("late", &endpoint).start().unwrap();
    a.wait_for_peer("late", PATIENCE).unwrap();
}

#[test]
fn bug10b_an_idle_served_peer_stays_joined_on_heartbeats() {
    let a = node("a");
    let b = node("b");
    join(&a, &b);
    let events = a.events();
    // 600 ms lost timeout: 2 s of silence from the application is 3 of them.
    assert!(
        events
            .wait_for(Duration::from_secs(2), |e| is_lost(e, "b"))
            .is_none()
    );
    assert_eq!(a.active_connections(), ["b"]);
    assert_eq!(b.active_connections(), ["a"]);
    let rtt = a.peer_info("b").unwrap().stats.rtt_smoothed;
    assert!(rtt.is_some(), "heartbeats measure the round trip");
}

#[test]
fn bug11_nodes_start_join_call_and_close_over_and_over_on_free_ports() {
    let deadline = Instant::now() + Duration::from_secs(60);
    for round in 0..20 {
        let a = node("a");
        let b = node("b");
        assert_ne!(a.endpoint(), b.endpoint());
        b.register("round", |_c, r: u32| Ok(r)).unwrap();
        join(&a, &b);
        assert_eq!(
            a.call_one::<_, u32>("b", "round", &round, PATIENCE),
            Ok(round)
        );
        a.close();
        b.close();
        assert!(
            Instant::now() < deadline,
            "round {round} ran past the overall deadline"
        );
    }
}
