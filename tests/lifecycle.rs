//! Starting and closing nodes: promptness, pending calls, dropping handles.

mod common;

use std::time::{Duration, Instant};

use bilateral::{CallError, Error, LostReason, PeerEvent};
use common::*;

#[test]
fn close_right_after_start_returns_promptly() {
    within(Duration::from_secs(5), || {
        for i in 0..20 {
            let n = node(&format!("n{i}"));
            n.close();
        }
    });
}

#[test]
fn close_with_calls_in_flight_fails_them_with_closed() {
    let a = node("a");
    let b = node("b");
    b.register("hang", |_c, (): ()| {
        std::thread::sleep(Duration::from_millis(500));
        Ok(())
    })
    .unwrap();
    join(&a, &b);
    let calls: Vec<_> = (0..10)
        .map(|_| {
            a.start_call::<_, ()>("b", "hang", &(), Duration::from_secs(6))
                .unwrap()
        })
        .collect();
    let started = Instant::now();
    a.close();
    for c in calls {
        assert_eq!(c.wait().get("b"), Some(&Err(CallError::Closed)));
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        a.call::<_, ()>("b", "hang", &(), Duration::from_secs(1)),
        Err(Error::Closed)
    ));
    assert!(matches!(
        a.connect("c", "tcp://127.0.0.1:1"),
        Err(Error::Closed)
    ));
    a.close(); // idempotent
}

#[test]
fn dropping_the_last_handle_closes_the_node_and_says_goodbye() {
    let a = node("a");
    let b = node("b");
    join(&a, &b);
    let events = b.events();
    let clone = a.clone();
    drop(a);
    assert!(
        events
            .wait_for(Duration::from_millis(300), |e| is_lost(e, "a"))
            .is_none(),
        "a clone is still alive"
    );
    drop(clone);
    let lost = events.wait_for(PATIENCE, |e| is_lost(e, "a")).unwrap();
    assert!(matches!(
        lost,
        PeerEvent::Lost {
            reason: LostReason::Parted,
            ..
        }
    ));
}

#[test]
fn a_handler_may_close_its_own_node() {
    let a = node("a");
    let b = node("b");
    let b2 = b.clone();
    b.register("stop", move |_c, (): ()| {
        b2.close();
        Ok(())
    })
    .unwrap();
    join(&a, &b);
    within(Duration::from_secs(5), move || {
        let _ = a.call_one::<_, ()>("b", "stop", &(), Duration::from_secs(2));
    });
    assert!(b.is_closed());
}

#[test]
fn closing_ends_event_streams() {
    let a = node("a");
    let events = a.events();
    a.close();
    assert_eq!(events.iter().count(), 0);
}

#[test]
fn nodes_pick_distinct_free_ports() {
    let nodes: Vec<_> = (0..8).map(|i| node(&format!("p{i}"))).collect();
    let mut endpoints: Vec<&str> = nodes.iter().map(|n| n.endpoint().unwrap()).collect();
    assert!(
        endpoints
            .iter()
            .all(|e| e.starts_with("tcp://127.0.0.1:") && !e.ends_with(":*"))
    );
    endpoints.sort();
    endpoints.dedup();
    assert_eq!(endpoints.len(), 8);
}

#[test]
fn nodes_sharing_a_context_talk_over_inproc() {
    let ctx = bilateral::Context::new().unwrap();
    let a = builder_on("a", "inproc://lifecycle-a")
        .context(ctx.clone())
        .start()
        .unwrap();
    let b = builder_on("b", "inproc://lifecycle-b")
        .context(ctx)
        .start()
        .unwrap();
    b.register("hi", |c, (): ()| Ok(format!("hi {}", c.peer())))
        .unwrap();
    join(&a, &b);
    assert_eq!(
        a.call_one::<_, String>("b", "hi", &(), PATIENCE).unwrap(),
        "hi a"
    );
    // A node with a context of its own cannot reach b over inproc: it is
    // told so at once instead of waiting for a join that cannot happen.
    let alone = node("alone");
    match alone.connect("b", "inproc://lifecycle-b") {
        Err(bilateral::Error::InvalidConfig(why)) => assert!(why.contains("share"), "{why}"),
        other => panic!("connect over inproc from its own context gave {other:?}"),
    }
}

#[test]
fn nodes_talk_over_ipc() {
    let dir = std::env::temp_dir().join(format!("bilateral-ipc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let endpoint = format!("ipc://{}/b.sock", dir.display());
    let a = node("a");
    let b = builder_on("b", &endpoint).start().unwrap();
    b.register("hi", |_c, (): ()| Ok(1u8)).unwrap();
    join(&a, &b);
    assert_eq!(a.call_one::<_, u8>("b", "hi", &(), PATIENCE).unwrap(), 1);
    drop((a, b));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn casts_queued_before_close_leave_before_the_goodbye() {
    let b = node("cast-b");
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    b.register("record", move |_c, n: u32| {
        let _ = tx.lock().unwrap().send(n);
        Ok(())
    })
    .unwrap();
    // Inline, so that the noise never fills b's handler queue: a full queue
    // drops casts (as it should), and the casts counted here must not be.
    b.register_inline("noise", |_c, (): ()| Ok(())).unwrap();
    // A race, so several rounds, each with a new node.
    for round in 0..20u32 {
        let a = node(&format!("cast-a{round}"));
        join(&a, &b);
        // Another thread keeps queueing while the node closes (as the
        // built-in services do): its commands must not take ours with them.
        let noisy = {
            let a = a.clone();
            std::thread::spawn(move || while matches!(a.cast("cast-b", "noise", &()), Ok(1)) {})
        };
        for n in 0..20 {
            assert_eq!(a.cast("cast-b", "record", &(round * 100 + n)).unwrap(), 1);
        }
        // At once: the casts may still be on their way to the reactor.
        a.close();
        noisy.join().unwrap();
        let mut got: Vec<u32> = (0..20)
            .map(|_| {
                rx.recv_timeout(PATIENCE)
                    .unwrap_or_else(|_| panic!("a cast is missing; b's counters: {:?}", b.stats()))
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got, (round * 100..round * 100 + 20).collect::<Vec<_>>());
    }
}

/// Casts beyond a peer's message window wait in the node for the peer's
/// acknowledgements; a close lets them leave before the PART (within the
/// linger) instead of dropping them.
#[test]
fn a_close_lets_casts_waiting_behind_the_window_leave_first() {
    let b = node("window-b");
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    b.register("record", move |_c, bytes: serde_bytes::ByteBuf| {
        let _ = tx.lock().unwrap().send(bytes.len());
        Ok(())
    })
    .unwrap();
    // A window of 1 MiB, 2 MiB of casts: most wait in a when it closes.
    let a = builder("window-a")
        .message_window(1 << 20)
        .linger(Duration::from_secs(5))
        .start()
        .unwrap();
    join(&a, &b);
    let big = serde_bytes::ByteBuf::from(vec![5u8; 100 * 1024]);
    for _ in 0..20 {
        assert_eq!(a.cast("window-b", "record", &big).unwrap(), 1);
    }
    a.close();
    let got: Vec<usize> = (0..20)
        .map(|i| {
            rx.recv_timeout(PATIENCE)
                .unwrap_or_else(|_| panic!("cast {i} is missing; b: {:?}", b.stats()))
        })
        .collect();
    assert!(got.iter().all(|&n| n == 100 * 1024));
}
