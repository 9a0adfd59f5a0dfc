//! Discovery between real nodes: one seed is enough to join the whole mesh;
//! partial meshes stop at `max_peers` and still carry every registry entry;
//! garbage and disallowed keys are refused; the gone are forgotten.

mod common;

use std::time::Duration;

use bilateral::testkit::{TestMesh, Topology, Transport};
use bilateral::{Discovery, Keypair, Node, PeerEvent, RegistryConfig};
use common::*;

fn count_sessions(mesh: &TestMesh) -> Vec<usize> {
    mesh.nodes().iter().map(|n| n.connection_count()).collect()
}

#[test]
fn a_partial_mesh_keeps_to_max_peers_and_still_carries_every_entry() {
    let max = 3;
    let mesh = TestMesh::builder(12)
        .topology(Topology::Seed)
        .transport(Transport::Inproc)
        .configure(move |_, b| {
            b.workers(1)
                .discovery(Discovery::default().max_peers(max))
                .registry(RegistryConfig::default().sync_interval(Duration::from_millis(200)))
        })
        .start()
        .unwrap();
    let names: Vec<String> = (0..12).map(|i| mesh.name(i).to_string()).collect();
    let guards: Vec<_> = mesh
        .nodes()
        .iter()
        .map(|n| {
            n.registry()
                .unwrap()
                .register("who", n.name(), n.name())
                .unwrap()
        })
        .collect();
    // Every node sees every node's entry, through relays.
    mesh.wait_until(Duration::from_secs(30), |m| {
        m.nodes()
            .iter()
            .all(|n| n.registry().unwrap().list::<String>("who").unwrap().len() == names.len())
    })
    .unwrap_or_else(|_| panic!("sessions per node: {:?}", count_sessions(&mesh)));
    // Nobody dialled beyond max_peers (sessions others opened to it may add up).
    for n in mesh.nodes() {
        let stats = n.stats();
        let d = stats.service("discovery").unwrap();
        assert!(d.counter("dialled") <= max as u64, "{}: {d:?}", n.name());
    }
    drop(guards);
}

#[test]
fn a_discovered_node_is_reported_and_forgotten_once_gone() {
    let seed = builder("seed")
        .discovery(Discovery::default().seeds_only())
        .start()
        .unwrap();
    // b dials only its seed; c discovers b and dials it.
    let b = builder("b")
        .discovery(Discovery::default().seeds_only())
        .seed("seed", seed.endpoint().unwrap())
        .start()
        .unwrap();
    let c = builder("c")
        .discovery(Discovery::default().forget_after(Duration::from_millis(500)))
        .seed("seed", seed.endpoint().unwrap())
        .start()
        .unwrap();
    let events = c.events();
    assert!(
        events
            .wait_for(
                PATIENCE,
                |e| matches!(e, PeerEvent::Discovered { peer, .. } if peer.as_str() == "b")
            )
            .is_some()
    );
    wait_until(PATIENCE, || c.active_connections().iter().any(|p| p == "b"));
    b.kill();
    // Gone from the registry, then no longer dialled after forget_after.
    wait_until(PATIENCE, || {
        c.stats().service("discovery").unwrap().counter("forgotten") == 1
    });
    assert_eq!(c.peer_state("b"), None, "forgotten");
    assert_eq!(c.stats().service("discovery").unwrap().counter("nodes"), 1);
}

#[test]
fn garbage_in_the_nodes_collection_cannot_be_registered_by_applications() {
    let a = node("a");
    let err = a
        .registry()
        .unwrap()
        .register("bilateral.nodes", "evil", &vec!["tcp://8.8.8.8:53"; 1000])
        .unwrap_err();
    assert!(
        matches!(err, bilateral::RegistryError::Reserved(_)),
        "{err:?}"
    );
}

#[test]
fn under_curve_a_discovered_key_must_pass_the_access_policy() {
    // seed allows a and b; a allows seed only; b allows seed and a. So b may
    // dial a (its policy allows a), but a never dials b.
    let (seed_k, a_k, b_k) = (
        Keypair::generate().unwrap(),
        Keypair::generate().unwrap(),
        Keypair::generate().unwrap(),
    );
    let secure = |k: &Keypair| {
        Node::secure_builder(k)
            .network("test")
            .listen("tcp://127.0.0.1:*")
            .heartbeat_interval(Duration::from_millis(100))
            .lost_timeout(Duration::from_millis(600))
            .discovery(Discovery::default())
    };
    let seed = secure(&seed_k)
        .allow_keys([*a_k.public(), *b_k.public()])
        .start()
        .unwrap();
    let seed_name = seed.name().to_string();
    let seed_ep = seed.endpoint().unwrap().to_string();
    let a = secure(&a_k)
        .allow_keys([*seed_k.public()])
        .seed(&seed_name, &seed_ep)
        .start()
        .unwrap();
    let b = secure(&b_k)
        .allow_keys([*seed_k.public(), *a_k.public()])
        .seed(&seed_name, &seed_ep)
        .start()
        .unwrap();
    wait_until(PATIENCE, || {
        a.connection_count() == 1 && b.connection_count() == 1
    });
    // a sees b in the registry but refuses to dial it.
    wait_until(PATIENCE, || {
        a.stats().service("discovery").unwrap().counter("refused") >= 1
    });
    // b dials a; a refuses b's JOIN (not on its list): no session.
    wait_until(PATIENCE, || {
        b.stats().service("discovery").unwrap().counter("dialled") == 1
    });
    assert!(!a.active_connections().contains(&b.name().to_string()));
}
