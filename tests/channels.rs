//! Replicated channels between real nodes over TCP loopback.

mod common;

use std::time::Duration;

use bilateral::testkit::{TestMesh, Topology, Transport};
use bilateral::{Channel, ChannelConfig, ChannelError, ChannelEvent, Node};
use common::*;

fn quick() -> Option<ChannelConfig> {
    Some(
        ChannelConfig::default()
            .sync_interval(Duration::from_millis(200))
            .pull_timeout(Duration::from_millis(500)),
    )
}

fn open(node: &Node) -> Channel<String> {
    node.channel_with("data", quick()).unwrap()
}

fn tcp_mesh(n: usize, topology: Topology) -> TestMesh {
    init_logging();
    let mesh = TestMesh::builder(n)
        .topology(topology)
        .transport(Transport::Tcp)
        .start()
        .unwrap();
    mesh.wait_all_joined(PATIENCE).unwrap();
    mesh
}

/// Waits until every channel holds exactly `want` entries, equal to the first's.
fn converged(channels: &[Channel<String>], want: usize) {
    wait_until(PATIENCE, || {
        let first = channels[0].get_all().unwrap();
        first.len() == want && channels.iter().all(|c| c.get_all().unwrap() == first)
    });
}

#[test]
fn a_write_on_one_node_reaches_every_peer() {
    let mesh = tcp_mesh(3, Topology::Full);
    let chans: Vec<_> = mesh.nodes().iter().map(open).collect();
    for (i, c) in chans.iter().enumerate() {
        c.peer((0..3).filter(|&j| j != i).map(|j| mesh.name(j).to_string()));
    }
    chans[0]
        .set_all((0..25).map(|i| (format!("files/{i:02}.txt"), format!("size {i}"))))
        .unwrap();
    converged(&chans, 25);
    assert_eq!(
        chans[2].get("files/07.txt").unwrap().as_deref(),
        Some("size 7")
    );
    chans[1].unset("files/07.txt").unwrap();
    converged(&chans, 24);
    assert_eq!(chans[0].get("files/07.txt").unwrap(), None);
}

#[test]
fn concurrent_writes_to_one_key_converge_to_one_value_everywhere() {
    let mesh = tcp_mesh(2, Topology::Full);
    let (a, b) = (open(mesh.node(0)), open(mesh.node(1)));
    a.peer([mesh.name(1)]);
    b.peer([mesh.name(0)]);
    for round in 0..20 {
        let (ta, tb) = (a.clone(), b.clone());
        let x = std::thread::spawn(move || ta.set("shared", format!("a{round}")).unwrap());
        let y = std::thread::spawn(move || tb.set("shared", format!("b{round}")).unwrap());
        x.join().unwrap();
        y.join().unwrap();
    }
    wait_until(PATIENCE, || {
        a.get("shared").unwrap() == b.get("shared").unwrap()
    });
    let winner = a.get("shared").unwrap().unwrap();
    assert!(winner.ends_with("19"), "the last round wins: {winner}");
}

#[test]
fn a_line_converges_through_its_middle_node() {
    // n0 – n1 – n2: n0 and n2 are not connected and do not peer each other.
    let mesh = tcp_mesh(3, Topology::Line);
    let chans: Vec<_> = mesh.nodes().iter().map(open).collect();
    chans[0].peer([mesh.name(1)]);
    chans[1].peer([mesh.name(0), mesh.name(2)]);
    chans[2].peer([mesh.name(1)]);
    let watch = chans[2].watch();
    chans[0].set("from/n0", "hello".to_string()).unwrap();
    let change = watch
        .wait_for(PATIENCE, |e| matches!(e, ChannelEvent::Changed(_)))
        .unwrap();
    let ChannelEvent::Changed(change) = change else {
        unreachable!()
    };
    assert_eq!(
        (change.key.as_str(), change.by.as_str()),
        ("from/n0", "n0"),
        "watch says who wrote it"
    );
    chans[2].set("from/n2", "hi".to_string()).unwrap();
    converged(&chans, 2);
}

#[test]
fn unpeer_stops_replication_and_peering_again_catches_up() {
    let mesh = tcp_mesh(2, Topology::Full);
    let (a, b) = (open(mesh.node(0)), open(mesh.node(1)));
    a.peer([mesh.name(1)]);
    b.peer([mesh.name(0)]);
    a.set("before", "1".to_string()).unwrap();
    converged(&[a.clone(), b.clone()], 1);
    b.unpeer([mesh.name(0)]);
    wait_until(PATIENCE, || a.peers().is_empty()); // a was told
    a.set("while apart", "2".to_string()).unwrap();
    // Not replicated while apart (checked over several sync intervals).
    let watch = b.watch();
    assert!(watch.recv_timeout(Duration::from_millis(800)).is_none());
    assert_eq!(b.get("while apart").unwrap(), None);
    a.peer([mesh.name(1)]);
    b.peer([mesh.name(0)]);
    converged(&[a.clone(), b.clone()], 2);
}

#[test]
fn the_writes_of_a_read_only_peer_are_refused_and_reported() {
    let mesh = tcp_mesh(3, Topology::Full);
    let chans: Vec<_> = mesh.nodes().iter().map(open).collect();
    // n1 may read n0's channel but not write to it; n0 and n2 write freely.
    chans[0].peer_read_only([mesh.name(1)]);
    chans[0].peer([mesh.name(2)]);
    chans[1].peer([mesh.name(0)]);
    chans[2].peer([mesh.name(0)]);
    let watch = chans[0].watch();
    chans[1].set("forged", "by n1".to_string()).unwrap();
    let refused = watch
        .wait_for(PATIENCE, |e| matches!(e, ChannelEvent::Refused { .. }))
        .unwrap();
    assert!(
        matches!(refused, ChannelEvent::Refused { ref peer, reason: bilateral::channel::Refusal::ReadOnly, .. } if peer == "n1")
    );
    chans[2].set("real", "by n2".to_string()).unwrap();
    wait_until(PATIENCE, || chans[1].get("real").unwrap().is_some());
    assert_eq!(chans[0].get("forged").unwrap(), None);
    assert_eq!(
        chans[2].get("forged").unwrap(),
        None,
        "the refused write did not spread"
    );
    assert!(chans[0].stats().refused >= 1);
}

#[test]
fn peer_all_finds_every_node_that_replicates_the_channel() {
    let mesh = tcp_mesh(4, Topology::Full);
    let chans: Vec<_> = mesh.nodes()[..3].iter().map(open).collect();
    for c in &chans {
        c.peer_all();
    }
    // n3 is in the mesh but has no such channel: it is not involved.
    wait_until(PATIENCE, || chans.iter().all(|c| c.peers().len() == 2));
    chans[1].set("k", "v".to_string()).unwrap();
    converged(&chans, 1);
    assert!(chans[0].peers().iter().all(|p| p != "n3"));
}

#[test]
fn limits_refuse_the_write_with_a_clear_error() {
    let mesh = tcp_mesh(1, Topology::Full);
    let config = ChannelConfig::default().max_entries(3);
    let c: Channel<u32> = mesh.node(0).channel_with("small", Some(config)).unwrap();
    c.set_all([("a", 1), ("b", 2), ("c", 3)]).unwrap();
    assert_eq!(
        c.set("d", 4),
        Err(ChannelError::TooManyEntries { limit: 3 })
    );
    assert_eq!(c.size(), 3);
    assert_eq!(c.keys(), ["a", "b", "c"]);
}
