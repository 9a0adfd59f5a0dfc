//! Fault injection on real nodes: partitions, losses, duplicates, delays.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bilateral::faults::{FaultPlan, Faults};
use bilateral::testkit::{TestMesh, Topology, Transport};
use bilateral::{CallError, PeerEvent, To};
use common::*;

#[test]
fn a_partition_is_seen_as_loss_and_healing_rejoins_without_restarting_anything() {
    init_logging();
    let mesh = TestMesh::builder(3)
        .topology(Topology::Full)
        .start()
        .unwrap();
    mesh.wait_all_joined(PATIENCE).unwrap();
    let events = mesh.node(1).events();
    // Cut n0 off from both others (from n0's side only: the others just hear nothing).
    mesh.node(0)
        .partition([mesh.name(1), mesh.name(2)])
        .unwrap();
    mesh.wait_lost(1, 0, PATIENCE).unwrap();
    mesh.wait_lost(2, 0, PATIENCE).unwrap();
    mesh.wait_lost(0, 1, PATIENCE).unwrap();
    assert!(events.wait_for(PATIENCE, |e| is_lost(e, "n0")).is_some());
    assert!(mesh.fault_free_between(1, 2), "n1 and n2 still talk");
    assert!(mesh.node(0).fault_stats().unwrap().partitioned > 0);
    mesh.node(0).heal().unwrap();
    mesh.wait_all_joined(PATIENCE).unwrap();
}

trait Probe {
    fn fault_free_between(&self, a: usize, b: usize) -> bool;
}

impl Probe for TestMesh {
    fn fault_free_between(&self, a: usize, b: usize) -> bool {
        self.node(a)
            .active_connections()
            .contains(&self.name(b).to_string())
    }
}

#[test]
fn under_heavy_loss_every_call_still_ends_by_its_deadline() {
    init_logging();
    let mesh = TestMesh::builder(2)
        .topology(Topology::Line)
        .configure(|_, b| b.faults(FaultPlan::new(11).send(Faults::loss(0.2))))
        .start()
        .unwrap();
    mesh.wait_all_joined(PATIENCE).unwrap();
    mesh.node(1).register("echo", |_c, x: u32| Ok(x)).unwrap();
    let timeout = Duration::from_millis(150);
    let (mut ok, mut timed_out) = (0, 0);
    for i in 0..200u32 {
        let started = Instant::now();
        let r = mesh
            .node(0)
            .call::<_, u32>(To::peer("n1"), "echo", &i, timeout)
            .unwrap();
        assert!(
            started.elapsed() < timeout + Duration::from_millis(250),
            "call {i} took {:?}",
            started.elapsed()
        );
        match r.get("n1").unwrap() {
            Ok(x) => {
                assert_eq!(*x, i);
                ok += 1;
            }
            Err(CallError::Timeout) => timed_out += 1,
            // The session may break and rejoin under such losses.
            Err(CallError::PeerLost(_) | CallError::Unreachable(_)) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    // Round trip survives both ways with probability 0.8 × 0.8 = 0.64.
    assert!(ok > 80, "{ok} of 200 answered");
    assert!(
        timed_out > 15,
        "{timed_out} of 200 timed out: the faults bite"
    );
    assert!(mesh.node(0).fault_stats().unwrap().dropped > 0);
}

#[test]
fn duplicated_requests_run_their_handler_once() {
    init_logging();
    let mesh = TestMesh::builder(2)
        .topology(Topology::Line)
        .configure(|i, b| {
            if i == 0 {
                b.faults(FaultPlan::new(5).send(Faults {
                    duplicate: 1.0,
                    ..Faults::none()
                }))
            } else {
                b
            }
        })
        .start()
        .unwrap();
    mesh.wait_all_joined(PATIENCE).unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    mesh.node(1)
        .register("count", move |_c, (): ()| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
    for _ in 0..50 {
        mesh.node(0)
            .call_one::<_, ()>("n1", "count", &(), PATIENCE)
            .unwrap();
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        50,
        "every request was sent twice, each ran once"
    );
    assert!(mesh.node(0).fault_stats().unwrap().duplicated >= 50);
    assert!(mesh.node(1).stats().duplicate_requests >= 50);
}

#[test]
fn delays_apply_to_every_message_and_reorder_them() {
    init_logging();
    let delay = Duration::from_millis(30);
    let mesh = TestMesh::builder(2)
        .topology(Topology::Line)
        .transport(Transport::Tcp)
        .configure(move |i, b| {
            let faults = Faults {
                delay,
                jitter: Duration::from_millis(20),
                ..Faults::none()
            };
            if i == 0 {
                b.faults(FaultPlan::new(3).send(faults))
                    .lost_timeout(Duration::from_secs(2))
            } else {
                b.lost_timeout(Duration::from_secs(2))
            }
        })
        .start()
        .unwrap();
    mesh.wait_all_joined(PATIENCE).unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    mesh.node(1)
        .register("note", move |_c, i: u32| {
            tx.send(i).unwrap();
            Ok(())
        })
        .unwrap();
    let started = Instant::now();
    let r: Result<(), _> = mesh.node(0).call_one("n1", "note", &u32::MAX, PATIENCE);
    r.unwrap();
    assert!(
        started.elapsed() >= delay,
        "the request waited {:?}",
        started.elapsed()
    );
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap(), u32::MAX);
    for i in 0..100u32 {
        assert_eq!(mesh.node(0).cast(To::peer("n1"), "note", &i).unwrap(), 1);
    }
    let got: Vec<u32> = (0..100)
        .map(|_| rx.recv_timeout(PATIENCE).unwrap())
        .collect();
    assert!(
        got.windows(2).any(|w| w[0] > w[1]),
        "jitter reordered the casts"
    );
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..100).collect::<Vec<_>>(),
        "none lost, none doubled"
    );
    // Turning faults off delivers nothing twice and keeps the session.
    mesh.node(0).set_faults(None).unwrap();
    assert!(mesh.node(0).fault_stats().is_none());
    mesh.node(0)
        .call_one::<_, ()>("n1", "note", &7u32, PATIENCE)
        .unwrap();
}

#[test]
fn a_one_way_cut_is_detected_by_both_sides() {
    init_logging();
    let mesh = TestMesh::builder(2)
        .topology(Topology::Line)
        .start()
        .unwrap();
    mesh.wait_all_joined(PATIENCE).unwrap();
    let events = mesh.node(1).events();
    // n0 stops hearing n1; n1 still hears n0 but gets no answers.
    mesh.node(0)
        .set_faults(Some(FaultPlan::new(1).cut_receiving_from("n1")))
        .unwrap();
    mesh.wait_lost(0, 1, PATIENCE).unwrap();
    assert!(
        events
            .wait_for(PATIENCE, |e| matches!(e, PeerEvent::Lost { .. }))
            .is_some()
    );
    mesh.node(0).set_faults(None).unwrap();
    mesh.wait_all_joined(PATIENCE).unwrap();
}

#[test]
fn invalid_plans_are_refused() {
    let mesh = TestMesh::builder(1).start().unwrap();
    let bad = FaultPlan::new(1).send(Faults::loss(2.0));
    assert!(mesh.node(0).set_faults(Some(bad.clone())).is_err());
    assert!(bilateral::Node::builder("x").faults(bad).start().is_err());
}

/// Losses, duplicates and reordering in both directions of a stream's and a
/// large call's path: each transfer arrives whole and in order or ends in an
/// error the protocol detected — never truncated, never corrupted, never
/// left hanging until the caller's own deadline.
#[test]
fn under_loss_duplication_and_reordering_large_transfers_arrive_intact_or_fail() {
    init_logging();
    let faults = Faults {
        drop: 0.005,
        duplicate: 0.01,
        reorder: 0.01,
        reorder_window: Duration::from_millis(5),
        ..Faults::none()
    };
    let mesh = TestMesh::builder(2)
        .topology(Topology::Line)
        .transport(Transport::Tcp)
        .configure(move |i, b| {
            // Small chunks: a transfer is many frames, so faults land inside it.
            b.chunk_size(16 * 1024)
                .faults(FaultPlan::new(31 + i as u64).send(faults.clone()))
        })
        .start()
        .unwrap();
    mesh.wait_all_joined(PATIENCE).unwrap();
    let (n0, n1) = (mesh.node(0), mesh.node(1));
    // The service answers with the length and checksum of what it read.
    n1.on_stream("sum", |incoming: bilateral::Incoming<()>| {
        let ((), mut stream) = incoming.accept()?;
        stream.set_read_timeout(Some(PATIENCE));
        let mut got = Vec::new();
        stream.read_to_end(&mut got)?;
        stream.write_all(format!("{} {}", got.len(), Fnv::of(&got)).as_bytes())?;
        stream.finish()?;
        Ok(())
    })
    .unwrap();
    n1.register("sum", |_c, v: Vec<u8>| Ok((v.len(), Fnv::of(&v))))
        .unwrap();

    let data: Vec<u8> = (0..512 * 1024u32).map(|i| (i * 31 % 251) as u8).collect();
    let expected = (data.len(), Fnv::of(&data));
    let (mut intact, mut failed) = (0, 0);
    for round in 0..12 {
        // A stream.
        // A lost OPEN or answer legitimately ends in the open's timeout;
        // once open, the stream's own loss detection must act first.
        match n0.open_stream("n1", "sum", &(), Duration::from_secs(1)) {
            Ok(stream) => match sum_through(stream, &data) {
                Ok(answer) => {
                    assert_eq!(answer, format!("{} {}", expected.0, expected.1));
                    intact += 1;
                }
                Err(e) => {
                    assert_ne!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut,
                        "stream {round}: {e}: the protocol should have noticed"
                    );
                    log::info!("stream {round}: {e}");
                    failed += 1;
                }
            },
            Err(e) => {
                log::info!("open {round}: {e}");
                failed += 1;
            }
        }
        // A call whose argument travels in fragments (a lost fragment loses
        // the request, which ends in the call's timeout).
        let r = n0.call_one::<_, (usize, u64)>("n1", "sum", &data, Duration::from_secs(1));
        match r {
            Ok(answer) => {
                assert_eq!(answer, expected, "call {round}");
                intact += 1;
            }
            Err(e) => {
                log::info!("call {round}: {e}");
                failed += 1;
            }
        }
    }
    log::info!("{intact} intact, {failed} failed");
    assert!(intact > 0, "nothing got through: {failed} failures");
    let stats = n0.fault_stats().unwrap();
    assert!(stats.dropped + stats.duplicated > 0, "the faults bite");
}

/// Writes `data` to the "sum" service and returns its answer.
fn sum_through(mut stream: bilateral::Stream, data: &[u8]) -> std::io::Result<String> {
    stream.set_read_timeout(Some(PATIENCE));
    stream.set_write_timeout(Some(PATIENCE));
    stream.write_all(data)?;
    stream.finish()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}
