//! Fifty nodes started from one seed (alone in its test binary: it loads
//! both cores, and the other tests' short timers would suffer beside it).

mod common;

use std::time::Duration;

use bilateral::testkit::{TestMesh, Topology, Transport};
use common::*;

fn count_sessions(mesh: &TestMesh) -> Vec<usize> {
    mesh.nodes().iter().map(|n| n.connection_count()).collect()
}

#[test]
fn fifty_nodes_started_from_one_seed_all_join_each_other() {
    // About 7 700 sockets (a DEALER per peer and a ROUTER per node, each
    // with a monitor pair), each with a descriptor: far beyond a default
    // soft limit of 1 024, so the test raises it to what the hard limit allows.
    let limit = rlimit::increase_nofile_limit(16_384).unwrap_or(0);
    if limit < 10_000 {
        eprintln!("skipped: the descriptor limit is {limit} (10 000 needed)");
        return;
    }
    let mesh = TestMesh::builder(50)
        .topology(Topology::Seed)
        .transport(Transport::Inproc)
        // Fifty nodes share two cores here: timers of a real deployment
        // (the test kit's 600 ms lost_timeout would starve), no spinning.
        .configure(|_, b| {
            b.workers(1)
                .reactor_spin(Duration::ZERO)
                .heartbeat_interval(Duration::from_millis(500))
                .lost_timeout(Duration::from_secs(5))
        })
        .start()
        .unwrap();
    mesh.wait_all_joined(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("sessions per node: {:?}", count_sessions(&mesh)));
    // A registry entry is visible on all.
    let _entry = mesh
        .node(17)
        .registry()
        .unwrap()
        .register("svc", "x", "17")
        .unwrap();
    mesh.wait_until(PATIENCE, |m| {
        m.nodes().iter().all(|n| {
            n.registry()
                .unwrap()
                .lookup::<String>("svc", "x")
                .unwrap()
                .len()
                == 1
        })
    })
    .unwrap_or_else(|_| {
        for n in mesh.nodes() {
            let seen = n
                .registry()
                .unwrap()
                .lookup::<String>("svc", "x")
                .unwrap()
                .len();
            if seen == 0 {
                eprintln!(
                    "{} sees nothing: {:?} {:?}",
                    n.name(),
                    n.stats().service("registry"),
                    n.stats()
                );
            }
        }
        panic!("not everywhere");
    });
    let stats = mesh.node(3).stats();
    let discovery = stats.service("discovery").expect("discovery runs");
    assert_eq!(discovery.counter("nodes"), 49);
    assert_eq!(discovery.counter("refused"), 0);
}
