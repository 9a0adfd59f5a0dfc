//! Heartbeats, loss detection, backoff growth and cap, rejoining.

use super::sim::*;
use crate::core::errors::CallError;
use crate::core::*;

#[test]
fn an_idle_session_stays_up_on_heartbeats_alone() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b");
    sim.connect("a", "b");
    sim.advance(ms(120_000));
    assert!(sim.active("a", "b") && sim.active("b", "a"));
    assert!(sim.lost("a").is_empty() && sim.lost("b").is_empty());
    // One PING a second from each side (a over its DEALER, b over its ROUTER).
    let pings = sim.count_sent("a", "PING");
    assert!((119..=121).contains(&pings), "{pings}");
    let rtt = sim.mesh("a").peer_info("b").unwrap().stats.rtt_last;
    assert_eq!(rtt, Some(ms(0)), "simulated delivery is instantaneous");
}

#[test]
fn a_silent_peer_is_lost_exactly_at_the_lost_timeout() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b");
    sim.connect("a", "b");
    sim.settle();
    sim.advance(ms(300));
    sim.node("b").up = false; // b dies: nothing more from it
    let died = sim.elapsed();
    // The last frame from b arrived at 0 (its WELCOME); its first PING would
    // have come at 1 s. Silence counts from the last frame heard.
    sim.advance(ms(4699));
    assert!(sim.active("a", "b"));
    sim.advance(ms(1));
    assert_eq!(sim.lost("a"), [("b".to_string(), LostReason::Timeout)]);
    assert_eq!(sim.elapsed(), died + ms(4700));
    assert_eq!(
        sim.mesh("a").peer_info("b").unwrap().state,
        PeerState::Joining,
        "rejoins at once"
    );
}

#[test]
fn a_served_peer_that_goes_silent_is_forgotten_and_may_come_back() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b");
    sim.connect("b", "a");
    sim.advance(ms(2000));
    sim.partition("a", "b");
    sim.advance(ms(6000));
    assert_eq!(sim.lost("a"), [("b".to_string(), LostReason::Timeout)]);
    assert!(
        sim.mesh("a").peer_info("b").is_none(),
        "a does not dial b: forgotten"
    );
    assert_eq!(sim.lost("b"), [("a".to_string(), LostReason::Timeout)]);
    sim.heal();
    // b keeps dialling a with backoff and gets back in.
    sim.advance(ms(5000));
    assert!(sim.active("a", "b") && sim.active("b", "a"));
}

#[test]
fn a_peer_that_forgot_us_makes_us_rejoin_through_not_joined() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b");
    sim.connect("a", "b");
    sim.settle();
    // One-way loss: b hears nothing from a, a still hears b.
    sim.block("a", "b");
    sim.advance(ms(5000));
    assert_eq!(sim.lost("b"), [("a".to_string(), LostReason::Timeout)]);
    assert!(
        sim.lost("a").is_empty(),
        "a still hears b's heartbeats... until b forgets a"
    );
    sim.heal();
    sim.advance(ms(1000));
    assert_eq!(sim.lost("a"), [("b".to_string(), LostReason::Reset)]);
    assert!(sim.active("a", "b") && sim.active("b", "a"));
}

#[test]
fn pending_calls_fail_at_once_when_the_peer_is_lost() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b").auto_reply = false;
    sim.connect("a", "b");
    sim.settle();
    sim.call("a", &["b"], 1, ms(60_000));
    sim.settle();
    sim.node("b").up = false;
    sim.advance(ms(5000));
    assert_eq!(
        sim.results("a", 1),
        [(0, Err(CallError::PeerLost(LostReason::Timeout)))]
    );
}

#[test]
fn backoff_doubles_from_the_initial_delay_up_to_the_cap_and_never_stops() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b").up = false;
    sim.connect("a", "b");
    // With no jitter: each attempt lasts 2 s, then waits 0.1, 0.2, 0.4 ... 30 s.
    sim.advance(ms(3_600_000));
    let delays: Vec<std::time::Duration> = sim
        .node("a")
        .events
        .iter()
        .filter_map(|e| match e {
            PeerEvent::ConnectFailed { retry_in, .. } => Some(*retry_in),
            _ => None,
        })
        .collect();
    let expected_start: Vec<std::time::Duration> = [
        100, 200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 30_000, 30_000,
    ]
    .map(ms)
    .to_vec();
    assert_eq!(delays[..expected_start.len()], expected_start[..]);
    assert!(delays.iter().all(|d| *d <= ms(30_000)));
    assert!(
        delays.len() > 100,
        "still retrying after an hour: {} attempts",
        delays.len()
    );
    // And when b appears, the next attempt gets in.
    sim.node("b").up = true;
    sim.advance(ms(32_000));
    assert!(sim.active("a", "b"));
}

#[test]
fn backoff_jitter_stays_within_its_band() {
    let timers = Timers {
        backoff_jitter: 0.5,
        ..Timers::default()
    };
    let mut rng = crate::core::rng::Rng::new(7);
    for failures in 1..200 {
        let nominal = (ms(100) * 2u32.pow(failures.min(20) - 1)).min(ms(30_000));
        let d = crate::core::backoff::delay(&timers, failures, &mut rng);
        assert!(
            d <= nominal && d > nominal / 2,
            "attempt {failures}: {d:?} vs {nominal:?}"
        );
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        seen.insert(crate::core::backoff::delay(&timers, 3, &mut rng));
    }
    assert!(
        seen.len() > 40,
        "jitter spreads retries: {} distinct delays",
        seen.len()
    );
}

#[test]
fn a_successful_join_resets_the_backoff() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b").up = false;
    sim.connect("a", "b");
    sim.advance(ms(20_000));
    assert!(sim.mesh("a").peer_info("b").unwrap().failed_attempts >= 4);
    sim.node("b").up = true;
    sim.advance(ms(15_000));
    assert!(sim.active("a", "b"));
    assert_eq!(sim.mesh("a").peer_info("b").unwrap().failed_attempts, 0);
}

#[test]
fn poll_timeout_tracks_the_earliest_timer() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b");
    assert_eq!(
        sim.mesh("a").poll_timeout(),
        None,
        "no peers, no calls: nothing to wake for"
    );
    sim.connect("a", "b");
    sim.settle();
    let t0 = sim.now;
    assert_eq!(
        sim.mesh("a").poll_timeout(),
        Some(t0 + ms(1000)),
        "first heartbeat"
    );
    sim.call("a", &["b"], 1, ms(300));
    sim.node("b").auto_reply = false;
    // The call was answered during settle? No: settle has not run yet.
    assert_eq!(sim.mesh("a").poll_timeout(), Some(t0 + ms(300)));
}

#[test]
fn a_peer_that_only_keeps_joining_is_lost_on_the_listening_side_too() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b");
    sim.connect("a", "b");
    sim.settle();
    // a hears nothing from b any more; b still hears a.
    sim.block("b", "a");
    sim.advance(ms(5000));
    assert_eq!(sim.lost("a"), [("b".to_string(), LostReason::Timeout)]);
    // a now only sends JOINs, which b answers in vain: b must not take them
    // for a live session.
    sim.advance(ms(6000));
    assert_eq!(sim.lost("b"), [("a".to_string(), LostReason::Timeout)]);
    sim.heal();
    sim.advance(ms(35_000));
    assert!(sim.active("a", "b") && sim.active("b", "a"));
}

#[test]
fn a_reply_whose_connection_is_gone_takes_the_peers_other_link() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b").auto_reply = false;
    sim.connect("a", "b");
    sim.connect("b", "a");
    sim.settle();
    let info = sim.mesh("b").peer_info("a").unwrap();
    assert!(info.outbound_up && info.inbound_up, "two links: {info:?}");
    sim.call("a", &["b"], 7, ms(5_000));
    sim.settle();
    let job = sim
        .node("b")
        .jobs
        .pop_front()
        .expect("the request reached b");
    let now = sim.now;
    let outcome = job.answer(crate::protocol::ReplyStatus::Ok, job.args.clone());
    sim.mesh("b").handle_job_done(job.done(outcome), now);
    // The socket refuses the REPLY: its connection is gone.
    let mut refused = None;
    while let Some(action) = sim.mesh("b").poll_action() {
        if let Action::Transmit(t) = action {
            if t.purpose == Purpose::Reply {
                refused = Some(t);
            }
        }
    }
    let t = refused.expect("b sent the REPLY");
    sim.mesh("b").handle_send_failed(
        &name("a"),
        t.link,
        t.purpose,
        SendFailure::Unreachable,
        Some(t.frame),
        now,
    );
    sim.settle();
    let replies: Vec<Link> = sim
        .node("b")
        .sent
        .iter()
        .filter(|(_, _, k)| k == "REPLY")
        .map(|(_, l, _)| *l)
        .collect();
    assert_eq!(
        replies,
        vec![if t.link == Link::Inbound {
            Link::Outbound
        } else {
            Link::Inbound
        }]
    );
    assert!(
        matches!(&sim.results("a", 7)[..], [(0, Ok(_))]),
        "{:?}",
        sim.results("a", 7)
    );
    assert_eq!(sim.mesh("b").stats().replies_orphaned, 0);
}
