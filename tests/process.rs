//! A node in another process, killed with SIGKILL in the middle of traffic:
//! its peers report it lost within the configured bound, calls to it fail
//! fast, and when it starts again they rejoin within the backoff bound.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bilateral::{CallError, PeerEvent};
use common::*;

const CHILD_ENV: &str = "BILATERAL_CHILD_ENDPOINT";

/// The body of the child process, not a test of its own: it does nothing
/// unless the parent test started this binary with `CHILD_ENV` set.
#[test]
fn child_node() {
    let Ok(endpoint) = std::env::var(CHILD_ENV) else {
        return;
    };
    let node = builder_on("child", &endpoint)
        .start()
        .expect("child node starts");
    node.register("work", |_c, x: u64| Ok(x)).unwrap();
    println!("READY {}", node.endpoint().unwrap());
    // Serve until killed; a child the parent forgot exits on its own.
    std::thread::sleep(Duration::from_secs(60));
}

/// Starts `child_node` in a new process listening on `endpoint`; returns it
/// (killed when dropped) and its bound endpoint once it is ready.
fn spawn_child(endpoint: &str) -> (Child, String) {
    let child = Child::spawn("child_node", CHILD_ENV, endpoint);
    let endpoint = child.endpoint.clone();
    (child, endpoint)
}

#[test]
fn a_killed_process_is_lost_in_bound_and_rejoins_when_restarted() {
    // `builder` sets heartbeat 100 ms, lost after 600 ms, backoff up to 500 ms.
    let lost_bound = Duration::from_millis(600 + 100);
    let rejoin_bound = Duration::from_millis(500 + 500); // backoff cap + one join attempt
    let parent = node("parent");
    let (child, endpoint) = spawn_child("tcp://127.0.0.1:*");
    parent.connect("child", &endpoint).unwrap();
    parent.wait_for_peer("child", PATIENCE).unwrap();
    let events = parent.events();

    // Traffic from another thread, all the way through.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (parent, stop, answered) = (parent.clone(), stop.clone(), answered.clone());
        std::thread::spawn(move || {
            let timeout = Duration::from_millis(300);
            let mut x = 0u64;
            while !stop.load(Ordering::Acquire) {
                x += 1;
                let started = Instant::now();
                let r = parent.call_one::<_, u64>("child", "work", &x, timeout);
                assert!(
                    started.elapsed() < timeout + Duration::from_millis(300),
                    "{:?}",
                    started.elapsed()
                );
                match r {
                    Ok(y) => {
                        assert_eq!(y, x);
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(
                        CallError::Timeout | CallError::PeerLost(_) | CallError::Unreachable(_),
                    ) => {
                        // Do not spin while the child is down.
                        std::thread::yield_now();
                    }
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
        })
    };
    wait_until(PATIENCE, || answered.load(Ordering::Relaxed) > 50);

    // SIGKILL in the middle of the traffic.
    let killed = Instant::now();
    drop(child);
    let lost = events
        .wait_for(PATIENCE, |e| is_lost(e, "child"))
        .expect("the child is reported lost");
    let detected = killed.elapsed();
    assert!(matches!(lost, PeerEvent::Lost { .. }));
    assert!(
        detected < lost_bound + Duration::from_millis(500),
        "lost after {detected:?}"
    );

    // Calls to it fail fast now, not at their timeout.
    let started = Instant::now();
    let r = parent.call_one::<_, u64>("child", "work", &0, Duration::from_secs(10));
    assert!(matches!(r, Err(CallError::Unreachable(_))), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(1));

    // Started again on the same endpoint: the parent's backoff finds it.
    let (child, _) = spawn_child(&endpoint);
    let restarted = Instant::now();
    assert!(
        events
            .wait_for(PATIENCE, |e| is_joined(e, "child"))
            .is_some()
    );
    let rejoined = restarted.elapsed();
    assert!(
        rejoined < rejoin_bound + Duration::from_millis(1000),
        "rejoined after {rejoined:?}"
    );
    let before = answered.load(Ordering::Relaxed);
    wait_until(PATIENCE, || answered.load(Ordering::Relaxed) > before + 20);

    stop.store(true, Ordering::Release);
    traffic
        .join()
        .expect("every call ended by its deadline with a reply or a typed reason");
    drop(child);
    eprintln!("lost after {detected:?}, rejoined {rejoined:?} after the restart");
}
