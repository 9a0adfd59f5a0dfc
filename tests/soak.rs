//! Soak: five nodes on a lossy, slow, duplicating network; thousands of
//! calls from several threads. Every call ends by its deadline with a reply
//! or a typed reason; nothing panics or hangs; threads, descriptors and
//! memory are flat at the end.
//!
//! Bounded: it runs for `BILATERAL_SOAK_SECS` seconds (default 20; CI uses
//! the default), then stops. A longer run:
//! `BILATERAL_SOAK_SECS=600 cargo test --release --test soak`.
//!
//! A call returns by its deadline: the caller's own thread enforces it, so
//! the only lateness allowed is the scheduling of that thread once the
//! deadline has passed, [`SLACK`].

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bilateral::faults::{FaultPlan, Faults};
use bilateral::testkit::{TestMesh, Topology};
use bilateral::{CallError, To};
use common::*;

/// How late a call may return after its deadline: the time for the
/// caller's thread to be scheduled again on a busy two-core machine.
const SLACK: Duration = Duration::from_millis(50);

fn outcome_name(e: &CallError) -> &'static str {
    match e {
        CallError::Timeout => "timeout",
        CallError::PeerLost(_) => "peer lost",
        CallError::Unreachable(_) => "unreachable",
        CallError::Overloaded(_) => "overloaded",
        CallError::Remote(_) => "remote error",
        CallError::UnknownPeer => "unknown peer",
        _ => "other",
    }
}

#[test]
fn five_nodes_on_a_bad_network_answer_every_call_by_its_deadline() {
    init_logging();
    let secs: u64 = std::env::var("BILATERAL_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let (threads_before, fds_before) = (thread_count(), fd_count());
    let bad_network = Faults {
        drop: 0.05,
        duplicate: 0.02,
        delay: Duration::from_millis(1),
        jitter: Duration::from_millis(4),
        reorder: 0.02,
        reorder_window: Duration::from_millis(10),
    };
    let mesh = Arc::new(
        TestMesh::builder(5)
            .topology(Topology::Full)
            .configure(move |i, b| {
                b.faults(FaultPlan::new(1000 + i as u64).send(bad_network.clone()))
                    .workers(2)
            })
            .start()
            .unwrap(),
    );
    mesh.wait_all_joined(PATIENCE).unwrap();
    for node in mesh.nodes() {
        node.register("echo", |_c, x: u64| Ok(x)).unwrap();
        node.register("work", |ctx, x: u64| {
            std::thread::sleep(Duration::from_millis(x % 7));
            Ok(ctx.request_id().unwrap_or(0) ^ x)
        })
        .unwrap();
    }

    let outcomes = Arc::new(Mutex::new(BTreeMap::<&'static str, u64>::new()));
    let run_start = Instant::now();
    let deadline = run_start + Duration::from_secs(secs);
    let warm = Instant::now() + Duration::from_secs(secs / 5);
    let rss_warm = Arc::new(Mutex::new(None));
    let callers: Vec<_> = (0..4u64)
        .map(|t| {
            let (mesh, outcomes, rss_warm) = (mesh.clone(), outcomes.clone(), rss_warm.clone());
            std::thread::spawn(move || {
                let mut x = t * 1_000_003 + 17;
                let mut calls = 0u64;
                let mut latest = Duration::ZERO;
                while Instant::now() < deadline {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let from = (x >> 33) as usize % 5;
                    let to = match (x >> 40) % 5 {
                        4 => To::All,
                        k => To::peer(mesh.name((from + 1 + k as usize) % 5)),
                    };
                    let method = if (x >> 50) % 2 == 0 { "echo" } else { "work" };
                    let timeout = Duration::from_millis(100 + (x >> 20) % 300);
                    let started = Instant::now();
                    let responses = mesh
                        .node(from)
                        .call::<_, u64>(to, method, &(x % 1000), timeout)
                        .unwrap();
                    let took = started.elapsed();
                    let late = took.saturating_sub(timeout);
                    assert!(late <= SLACK, "a {timeout:?} call returned after {took:?}");
                    latest = latest.max(late);
                    let mut tally = outcomes.lock().unwrap();
                    for r in &responses {
                        let key = match &r.result {
                            Ok(_) => "ok",
                            Err(e) => outcome_name(e),
                        };
                        *tally.entry(key).or_default() += 1;
                    }
                    drop(tally);
                    calls += 1;
                    if t == 0 && Instant::now() > warm {
                        rss_warm.lock().unwrap().get_or_insert_with(rss_bytes);
                    }
                }
                (calls, latest)
            })
        })
        .collect();
    let (mut calls, mut latest) = (0, Duration::ZERO);
    for caller in callers {
        let (n, late) = caller.join().expect("no caller panicked");
        calls += n;
        latest = latest.max(late);
    }
    let ran = run_start.elapsed();
    let rss_end = rss_bytes();
    let tally = outcomes.lock().unwrap().clone();
    eprintln!(
        "soak: {calls} calls in {:.1} s (asked for {secs} s), outcomes {tally:?}, \
         latest return {latest:?} after a deadline",
        ran.as_secs_f64()
    );
    // It ran for its duration: the callers stop at the deadline, and the
    // last call started before it ends within its own timeout (< 400 ms).
    assert!(
        ran >= Duration::from_secs(secs),
        "stopped after {ran:?} of {secs} s"
    );
    for node in mesh.nodes() {
        eprintln!(
            "  {}: faults {:?}, dropped on input {:?}",
            node.name(),
            node.fault_stats(),
            node.stats()
        );
    }
    assert!(calls >= 40 * secs, "only {calls} calls in {secs} s");
    let ok = tally.get("ok").copied().unwrap_or(0);
    let total: u64 = tally.values().sum();
    assert!(ok * 10 >= total * 6, "{ok} of {total} answered");
    for kind in ["other", "remote error"] {
        assert!(
            !tally.contains_key(kind),
            "only the expected failure kinds: {tally:?}"
        );
    }
    if let Some(rss_warm) = *rss_warm.lock().unwrap() {
        let growth = rss_end.saturating_sub(rss_warm);
        assert!(
            growth < 48 << 20,
            "memory grew by {} MiB during the run",
            growth >> 20
        );
    }
    drop(Arc::try_unwrap(mesh).ok().expect("the callers are done"));
    wait_for_baseline(threads_before, fds_before);
}
