//! Joining, losing, restarting and refusing peers over TCP loopback.

mod common;

use std::time::Duration;

use bilateral::{CallError, Error, LostReason, PeerEvent, RejectCode};
use common::*;

#[test]
fn a_restarted_peer_is_reported_lost_then_joined_and_its_old_calls_fail_at_once() {
    let a = node("a");
    let b = node("b");
    let (started_tx, started_rx) = crossbeam_channel::bounded(1);
    b.register("hang", move |_c, (): ()| {
        let _ = started_tx.send(());
        std::thread::sleep(Duration::from_secs(3));
        Ok(())
    })
    .unwrap();
    join(&a, &b);
    let events = a.events();
    let endpoint = b.endpoint().unwrap().to_string();
    let old_incarnation = b.incarnation();
    let call = a
        .start_call::<_, ()>("b", "hang", &(), Duration::from_secs(60))
        .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();

    // A crash (no goodbye) and a restart on the same endpoint, well within
    // a's lost timeout: a learns of it from the new incarnation.
    b.kill();
    let b2 = builder_on("b", &endpoint).start().unwrap();
    assert_ne!(b2.incarnation(), old_incarnation);

    // Lost (of the old incarnation) strictly before Joined (of the new one).
    let lost = events.wait_for(PATIENCE, |e| is_lost(e, "b")).unwrap();
    let PeerEvent::Lost { incarnation, .. } = lost else {
        unreachable!()
    };
    assert_eq!(incarnation, old_incarnation);
    let joined = events.wait_for(PATIENCE, |e| is_joined(e, "b")).unwrap();
    assert!(
        matches!(joined, PeerEvent::Joined { incarnation, .. } if incarnation == b2.incarnation())
    );
    // The call on the old session failed when the session ended, long before its deadline.
    let r = call.wait();
    assert!(
        matches!(r.get("b"), Some(Err(CallError::PeerLost(_)))),
        "{r:?}"
    );
    assert_eq!(
        a.peer_info("b").unwrap().incarnation,
        Some(b2.incarnation())
    );
}

#[test]
fn a_wrong_network_name_is_an_event_and_an_error_on_the_connecting_side() {
    let a = builder("a").network("blue").start().unwrap();
    let b = node("b"); // network "test"
    let a_events = a.events();
    let b_events = b.events();
    a.connect("b", b.endpoint().unwrap()).unwrap();
    match a.wait_for_peer("b", PATIENCE) {
        Err(Error::Rejected { peer, rejection }) => {
            assert_eq!(peer, "b");
            assert_eq!(rejection.code, RejectCode::WrongNetwork);
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(
        a_events
            .wait_for(PATIENCE, |e| matches!(e, PeerEvent::Rejected { .. }))
            .is_some()
    );
    assert!(b_events
        .wait_for(PATIENCE, |e| matches!(e, PeerEvent::Refused { rejection, .. } if rejection.code == RejectCode::WrongNetwork))
        .is_some());
    // The refusal is remembered: a later wait that sees no join says why, and
    // so does a call.
    assert!(matches!(
        a.wait_for_peer("b", Duration::from_millis(1)),
        Err(Error::Rejected { .. })
    ));
    match a.call_one::<_, ()>("b", "m", &(), PATIENCE) {
        Err(CallError::Unreachable(Some(r))) => assert_eq!(r.code, RejectCode::WrongNetwork),
        other => panic!("{other:?}"),
    }
    assert!(b.active_connections().is_empty());
}

#[test]
fn heartbeats_keep_flowing_while_every_handler_is_blocked() {
    let a = node("a");
    let b = builder("b").workers(2).start().unwrap();
    let (release, blocked) = crossbeam_channel::bounded::<()>(0);
    b.register("block", move |_c, (): ()| {
        let _ = blocked.recv_timeout(PATIENCE);
        Ok(())
    })
    .unwrap();
    join(&a, &b);
    let events = a.events();
    let b_events = b.events();
    let calls: Vec<_> = (0..4)
        .map(|_| a.start_call::<_, ()>("b", "block", &(), PATIENCE).unwrap())
        .collect();
    // Both workers are blocked for 3 lost timeouts.
    assert!(
        events
            .wait_for(Duration::from_millis(1800), |e| is_lost(e, "b"))
            .is_none()
    );
    assert!(
        !std::iter::from_fn(|| b_events.try_recv()).any(|e| is_lost(&e, "a")),
        "b lost nobody either"
    );
    for _ in 0..4 {
        release.send_timeout((), PATIENCE).unwrap();
    }
    for c in calls {
        assert_eq!(c.wait().get("b"), Some(&Ok(())));
    }
}

#[test]
fn disconnect_tells_the_peer_and_forgets_it() {
    let a = node("a");
    let b = node("b");
    join(&a, &b);
    let b_events = b.events();
    a.disconnect("b").unwrap();
    let lost = b_events.wait_for(PATIENCE, |e| is_lost(e, "a")).unwrap();
    assert!(matches!(
        lost,
        PeerEvent::Lost {
            reason: LostReason::Parted,
            ..
        }
    ));
    assert!(a.peer_info("b").is_none());
    assert!(a.active_connections().is_empty());
    assert!(matches!(a.disconnect("b"), Err(Error::UnknownPeer(_))));
}

#[test]
fn connect_refuses_bad_names_bad_endpoints_and_itself() {
    let a = node("a");
    assert!(matches!(
        a.connect("", "tcp://127.0.0.1:1"),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        a.connect("a", "tcp://127.0.0.1:1"),
        Err(Error::SelfConnect)
    ));
    assert!(matches!(
        a.connect("b", "bogus://nowhere"),
        Err(Error::Socket(_))
    ));
    assert!(
        a.peer_info("b").is_none(),
        "a failed connect leaves nothing behind"
    );
    assert!(matches!(
        bilateral::Node::builder("bad\0name").start(),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        bilateral::Node::builder("x")
            .listen("tcp://256.0.0.1:0")
            .start(),
        Err(Error::Bind { .. })
    ));
}

#[test]
fn a_subscription_made_after_peers_joined_starts_with_them_each_once() {
    let a = node("a");
    let b = node("b");
    let c = node("c");
    join(&b, &a);
    join(&c, &a);
    // a never subscribed before: its first events describe who is there.
    let events = a.events();
    let mut first: Vec<String> = (0..2)
        .map(|_| match events.recv_timeout(PATIENCE) {
            Some(PeerEvent::Joined { peer, .. }) => peer.to_string(),
            other => panic!("expected the open sessions first, got {other:?}"),
        })
        .collect();
    first.sort();
    assert_eq!(first, ["b", "c"]);
    // Then only what happens next: c leaves, nothing is repeated.
    c.close();
    let next = events.recv_timeout(PATIENCE);
    assert!(
        matches!(&next, Some(PeerEvent::Lost { peer, reason: LostReason::Parted, .. }) if peer.as_str() == "c"),
        "got {next:?}"
    );
}
