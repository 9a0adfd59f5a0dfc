//! JOIN / WELCOME / REJECT / PART, mutual connect, restarts, name conflicts.

use super::sim::*;
use crate::core::*;
use crate::protocol::{Message, RejectCode};

#[test]
fn join_creates_one_session_seen_from_both_sides() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b");
    sim.connect("a", "b");
    sim.settle();
    assert!(sim.active("a", "b") && sim.active("b", "a"));
    assert_eq!(sim.joined("a"), ["b"]);
    assert_eq!(sim.joined("b"), ["a"]);
    let a_inc = sim.mesh("a").incarnation();
    let b_inc = sim.mesh("b").incarnation();
    assert_eq!(
        sim.mesh("a").peer_info("b").unwrap().incarnation,
        Some(b_inc)
    );
    assert_eq!(
        sim.mesh("b").peer_info("a").unwrap().incarnation,
        Some(a_inc)
    );
    let info = sim.mesh("a").peer_info("b").unwrap();
    assert!(info.outbound_up && !info.inbound_up);
    assert!(sim.mesh("b").peer_info("a").unwrap().inbound_up);
}

#[test]
fn join_is_retransmitted_within_an_attempt_then_the_attempt_fails() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b").up = false;
    sim.connect("a", "b");
    sim.settle();
    assert_eq!(sim.count_sent("a", "JOIN"), 1);
    assert!(sim.node("a").links.contains_key("b"), "DEALER opened");
    // join_retry is 500 ms and join_timeout 2 s: JOINs at 0, 0.5, 1.0, 1.5.
    sim.advance(ms(1999));
    assert_eq!(sim.count_sent("a", "JOIN"), 4);
    assert_eq!(
        sim.mesh("a").peer_info("b").unwrap().state,
        PeerState::Joining
    );
    sim.advance(ms(1));
    assert_eq!(
        sim.mesh("a").peer_info("b").unwrap().state,
        PeerState::Backoff
    );
    assert!(
        !sim.node("a").links.contains_key("b"),
        "DEALER closed while backing off"
    );
    let failed: Vec<_> = sim.node("a").events.clone();
    assert_eq!(
        failed,
        [PeerEvent::ConnectFailed {
            peer: name("b"),
            attempt: 1,
            retry_in: ms(100)
        }]
    );
    // The next attempt starts 100 ms later with a fresh DEALER.
    sim.advance(ms(99));
    assert_eq!(sim.count_sent("a", "JOIN"), 4);
    sim.advance(ms(1));
    assert_eq!(sim.count_sent("a", "JOIN"), 5);
    assert!(sim.node("a").links.contains_key("b"));
}

#[test]
fn a_peer_that_comes_up_is_joined_on_the_next_retransmission() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b").up = false;
    sim.connect("a", "b");
    sim.advance(ms(600));
    sim.node("b").up = true;
    sim.advance(ms(400)); // JOIN retransmitted at 1.0 s
    assert!(sim.active("a", "b"));
    assert_eq!(sim.elapsed(), ms(1000));
}

#[test]
fn mutual_connect_converges_at_once_without_part() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b");
    sim.connect("a", "b");
    sim.connect("b", "a");
    sim.settle();
    assert!(sim.active("a", "b") && sim.active("b", "a"));
    assert_eq!(sim.elapsed(), ms(0));
    assert_eq!(sim.joined("a"), ["b"], "exactly one Joined per side");
    assert_eq!(sim.joined("b"), ["a"]);
    let info = sim.mesh("a").peer_info("b").unwrap();
    assert!(
        info.outbound_up && info.inbound_up,
        "both links carry the one session"
    );
    // A minute of heartbeats later: still one session, no PART, no loss.
    sim.advance(ms(60_000));
    assert_eq!(sim.count_sent("a", "PART") + sim.count_sent("b", "PART"), 0);
    assert!(sim.lost("a").is_empty() && sim.lost("b").is_empty());
    assert_eq!(sim.joined("a"), ["b"]);
}

#[test]
fn wrong_network_is_rejected_with_an_event_on_both_sides_and_retried() {
    let mut sim = Sim::new();
    sim.add_with("a", "red", timers());
    sim.add_with("b", "blue", timers());
    sim.connect("a", "b");
    sim.settle();
    assert!(!sim.active("a", "b"));
    let rejected = sim.node("a").events.iter().find_map(|e| match e {
        PeerEvent::Rejected { peer, rejection } => Some((peer.to_string(), rejection.code)),
        _ => None,
    });
    assert_eq!(rejected, Some(("b".to_string(), RejectCode::WrongNetwork)));
    let refused = sim.node("b").events.iter().any(|e| {
        matches!(e, PeerEvent::Refused { from, rejection } if from == "a" && rejection.code == RejectCode::WrongNetwork)
    });
    assert!(refused);
    let info = sim.mesh("a").peer_info("b").unwrap();
    assert_eq!(info.state, PeerState::Backoff);
    assert_eq!(info.last_rejection.unwrap().code, RejectCode::WrongNetwork);
    assert_eq!(sim.mesh("b").stats().joins_refused, 1);
    assert!(
        sim.mesh("b").peer_info("a").is_none(),
        "a refused joiner leaves no state behind"
    );
    // Retried after backoff: a second refusal.
    sim.advance(ms(100));
    assert_eq!(sim.mesh("b").stats().joins_refused, 2);
}

#[test]
fn joining_a_node_with_its_own_name_is_refused() {
    let mut sim = Sim::new();
    sim.add("a");
    let join = Message::Join(crate::protocol::Join {
        min_version: 1,
        max_version: 1,
        security: 0,
        heartbeat_ms: 1000,
        network: "net",
        name: "a",
        target: "a",
    })
    .encode(77);
    let now = sim.now;
    sim.mesh("a")
        .handle_inbound(Origin::Router { user_id: None }, &[b"a", &join], 2, now);
    sim.settle();
    assert_eq!(sim.count_sent("a", "REJECT"), 1);
    assert!(sim.mesh("a").peer_info("a").is_none());
    assert!(matches!(
        &sim.node("a").events[..],
        [PeerEvent::Refused { rejection, .. }] if rejection.code == RejectCode::JoiningItself
    ));
}

#[test]
fn dialling_the_wrong_node_is_refused_as_wrong_peer() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("c");
    // a believes the node at c's endpoint is called "b".
    let now = sim.now;
    sim.mesh("a").handle_connect(name("b"), "c".into(), now);
    sim.settle();
    assert!(sim.node("a").events.iter().any(|e| matches!(
        e, PeerEvent::Rejected { rejection, .. } if rejection.code == RejectCode::WrongPeer
    )));
    assert!(sim.mesh("c").peer_info("a").is_none());
}

#[test]
fn restart_of_the_dialled_peer_is_lost_then_joined_and_fails_pending_calls() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b").auto_reply = false;
    sim.connect("a", "b");
    sim.settle();
    let old = sim.mesh("a").peer_info("b").unwrap().incarnation.unwrap();
    sim.call("a", &["b"], 1, ms(10_000));
    sim.settle();
    assert!(
        sim.results("a", 1).is_empty(),
        "the handler has not answered"
    );

    sim.restart("b");
    // a's next heartbeat reaches the new b, which does not know a.
    sim.advance(ms(1000));
    let new = sim.mesh("a").peer_info("b").unwrap().incarnation.unwrap();
    assert_ne!(old, new);
    let events: Vec<String> = sim
        .node("a")
        .events
        .iter()
        .map(|e| format!("{e:?}"))
        .collect();
    let lost_at = events
        .iter()
        .position(|e| e.contains("Lost") && e.contains("Restarted"))
        .unwrap();
    let joined_again = events.iter().rposition(|e| e.contains("Joined")).unwrap();
    assert!(lost_at < joined_again, "lost before joined: {events:?}");
    assert_eq!(
        sim.results("a", 1),
        [(
            0,
            Err(crate::core::errors::CallError::PeerLost(
                LostReason::Restarted
            ))
        )],
        "the pending call failed when the restart was seen, not at its deadline"
    );
    assert!(sim.elapsed() < ms(10_000));
}

#[test]
fn restart_of_a_dialling_peer_is_lost_then_joined() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b");
    sim.connect("b", "a");
    sim.settle();
    sim.restart("b");
    sim.connect("b", "a");
    sim.settle();
    let events = &sim.node("a").events;
    assert!(
        matches!(
            &events[..],
            [
                PeerEvent::Joined { .. },
                PeerEvent::Lost {
                    reason: LostReason::Restarted,
                    ..
                },
                PeerEvent::Joined { .. }
            ]
        ),
        "{events:?}"
    );
    assert!(sim.active("a", "b") && sim.active("b", "a"));
}

#[test]
fn an_older_incarnation_that_comes_back_is_refused_as_name_taken() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b");
    sim.connect("b", "a");
    sim.settle();
    // Keep the old b aside, start a new b that takes the name.
    let old_b = sim.nodes.remove("b").unwrap();
    sim.add("b");
    sim.connect("b", "a");
    sim.settle();
    let old_join = old_b.mesh.incarnation();
    let join = Message::Join(crate::protocol::Join {
        min_version: 1,
        max_version: 1,
        security: 0,
        heartbeat_ms: 1000,
        network: "net",
        name: "b",
        target: "a",
    })
    .encode(old_join);
    let now = sim.now;
    sim.mesh("a")
        .handle_inbound(Origin::Router { user_id: None }, &[b"b", &join], 2, now);
    sim.settle();
    assert!(sim.node("a").events.iter().any(|e| matches!(
        e, PeerEvent::Refused { rejection, .. } if rejection.code == RejectCode::NameTaken
    )));
    assert!(sim.active("a", "b"), "the newer session is untouched");
}

#[test]
fn disconnect_sends_part_and_the_peer_backs_off_then_rejoins() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b");
    sim.connect("a", "b");
    sim.settle();
    let now = sim.now;
    assert!(sim.mesh("b").handle_disconnect(&name("a"), now));
    sim.settle();
    assert_eq!(sim.count_sent("b", "PART"), 1);
    assert_eq!(sim.lost("b"), [("a".to_string(), LostReason::Disconnected)]);
    assert_eq!(sim.lost("a"), [("b".to_string(), LostReason::Parted)]);
    assert!(sim.mesh("b").peer_info("a").is_none(), "b forgot a");
    assert_eq!(
        sim.mesh("a").peer_info("b").unwrap().state,
        PeerState::Backoff
    );
    // a still dials b, and b accepts it again.
    sim.advance(ms(100));
    assert!(sim.active("a", "b"));
}

#[test]
fn close_parts_from_every_peer_and_fails_every_call_with_closed() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b").auto_reply = false;
    sim.add("c").auto_reply = false;
    sim.connect("a", "b");
    sim.connect("c", "a");
    sim.settle();
    sim.call("a", &["b", "c"], 9, ms(5000));
    sim.settle();
    let now = sim.now;
    sim.mesh("a").handle_close(now);
    sim.settle();
    assert_eq!(sim.count_sent("a", "PART"), 2);
    let results = sim.results("a", 9);
    assert_eq!(results.len(), 2);
    assert!(
        results
            .iter()
            .all(|(_, o)| *o == Err(crate::core::errors::CallError::Closed))
    );
    assert!(sim.node("a").links.is_empty());
    assert_eq!(sim.lost("b"), [("a".to_string(), LostReason::Parted)]);
    assert_eq!(sim.lost("c"), [("a".to_string(), LostReason::Parted)]);
    // Calls after close fail at once.
    sim.call("a", &["b"], 10, ms(5000));
    sim.settle();
    assert_eq!(
        sim.results("a", 10),
        [(0, Err(crate::core::errors::CallError::Closed))]
    );
}

fn raw_join(min: u8, max: u8, security: u8) -> Vec<u8> {
    Message::Join(crate::protocol::Join {
        min_version: min,
        max_version: max,
        security,
        heartbeat_ms: 1000,
        network: "net",
        name: "x",
        target: "a",
    })
    .encode(5)
}

#[test]
fn joins_a_node_cannot_accept_are_answered_not_dropped() {
    let mut sim = Sim::new();
    sim.add("a");
    let now = sim.now;
    for (frame, code) in [
        (raw_join(1, 1, 7), RejectCode::SecurityMismatch),
        (raw_join(1, 1, 1), RejectCode::SecurityMismatch),
        (raw_join(2, 9, 0), RejectCode::UnsupportedVersion),
        (raw_join(1, 0, 0), RejectCode::UnsupportedVersion),
    ] {
        sim.node("a").events.clear();
        sim.mesh("a")
            .handle_inbound(Origin::Router { user_id: None }, &[b"x", &frame], 2, now);
        sim.settle();
        assert!(
            matches!(&sim.node("a").events[..], [PeerEvent::Refused { rejection, .. }] if rejection.code == code),
            "{:?}",
            sim.node("a").events
        );
    }
    assert_eq!(sim.count_sent("a", "REJECT"), 4);
}

#[test]
fn a_session_whose_link_vanished_is_still_lost_by_silence() {
    let mut sim = Sim::new();
    sim.add("a");
    sim.add("b");
    sim.connect("b", "a");
    sim.settle();
    // a's ROUTER reports b's connection gone on a send, and b falls silent.
    let now = sim.now;
    sim.mesh("a").handle_send_failed(
        &name("b"),
        Link::Inbound,
        Purpose::Control,
        SendFailure::Unreachable,
        None,
        now,
    );
    sim.node("b").up = false;
    sim.advance(ms(5000));
    assert_eq!(sim.lost("a"), [("b".to_string(), LostReason::Timeout)]);
}
