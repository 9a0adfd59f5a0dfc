//! The LAN beacon on loopback (broadcast to 127.255.255.255, which never
//! leaves the host): nodes with no seed find each other; what arrives on
//! the beacon's port that is not a beacon of this network is counted and
//! ignored; strangers' beacons are bounded. Each test has its own port
//! (the system's choice) and its own network name.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use bilateral::{Beacon, Discovery, Node, PeerEvent};
use common::*;
use serde::{Deserialize, Serialize};

/// A socket on a port of the system's choice that nodes may share, to read
/// what they send and to send them what a stranger would.
fn listener() -> (UdpSocket, u16) {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_reuse_port(true).unwrap();
    s.set_broadcast(true).unwrap();
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0).into())
        .unwrap();
    let socket: UdpSocket = s.into();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

fn loopback(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(127, 255, 255, 255), port)
}

fn beacon(port: u16, network: &str) -> Beacon {
    Beacon::new(loopback(port))
        .interval(Duration::from_millis(50))
        .silence(Duration::from_millis(500))
        .network(network)
}

fn beaconing(name: &str, port: u16, network: &str, discovery: Discovery) -> Node {
    builder(name)
        .discovery(discovery.beacon(beacon(port, network)))
        .start()
        .expect("node starts with its beacon")
}

/// A beacon as PROTOCOL.md §15.3 says: "BLB", version 1, a MessagePack map.
#[derive(Serialize)]
struct Hello<'a> {
    network: &'a str,
    name: &'a str,
    curve: bool,
    endpoints: Vec<String>,
}

/// A beacon as read.
#[derive(Deserialize)]
struct Heard {
    network: String,
    name: String,
    curve: bool,
    endpoints: Vec<String>,
}

fn hello(network: &str, name: &str, endpoints: Vec<String>) -> Vec<u8> {
    let mut datagram = b"BLB\x01".to_vec();
    let h = Hello {
        network,
        name,
        curve: false,
        endpoints,
    };
    rmp_serde::encode::write_named(&mut datagram, &h).unwrap();
    datagram
}

fn counter(node: &Node, name: &str) -> u64 {
    node.stats()
        .service("discovery")
        .map_or(0, |s| s.counter(name))
}

#[test]
fn nodes_with_no_seed_find_each_other_by_their_beacons() {
    let (socket, port) = listener();
    let network = format!("find-{}", std::process::id());
    let names = ["ba", "bb", "bc"];
    let nodes: Vec<Node> = names
        .iter()
        .map(|n| beaconing(n, port, &network, Discovery::default()))
        .collect();
    let events = nodes[0].events();
    for node in &nodes {
        wait_until(PATIENCE, || {
            node.active_connections().len() == names.len() - 1
        });
    }
    // The first node dialled at least one of the others it heard of.
    let mut discovered = 0;
    while let Some(e) = events.recv_timeout(Duration::from_millis(10)) {
        discovered += usize::from(matches!(e, PeerEvent::Discovered { .. }));
    }
    let dialled: u64 = nodes.iter().map(|n| counter(n, "dialled")).sum();
    assert!(dialled >= 3, "three sessions come from dials: {dialled}");
    assert!(discovered as u64 <= counter(&nodes[0], "dialled"));
    // What went out is a beacon as the protocol says, with the node's endpoint.
    let mut buf = [0u8; 2048];
    let (n, _) = socket.recv_from(&mut buf).expect("beacons arrive");
    let body = buf[..n]
        .strip_prefix(b"BLB\x01")
        .expect("the beacon's magic");
    let heard: Heard = rmp_serde::from_slice(body).expect("a MessagePack map");
    assert_eq!(
        (heard.network.as_str(), heard.curve),
        (network.as_str(), false)
    );
    let sender = nodes
        .iter()
        .find(|n| n.name() == heard.name)
        .expect("one of ours");
    assert_eq!(heard.endpoints, [sender.endpoint().unwrap()]);
    for node in &nodes {
        wait_until(PATIENCE, || counter(node, "beacons_heard") > 0);
        assert_eq!(counter(node, "beacons_malformed"), 0);
    }
    // A node that stops is no longer heard after `silence`; a new one is.
    let mut nodes = nodes;
    nodes.remove(0).close();
    wait_until(PATIENCE, || counter(&nodes[0], "beacon_nodes") == 1);
    let newcomer = beaconing("bd", port, &network, Discovery::default());
    wait_until(PATIENCE, || newcomer.active_connections().len() == 2);
    wait_until(PATIENCE, || counter(&nodes[0], "beacon_nodes") == 2);
    wait_until(PATIENCE, || counter(&newcomer, "beacon_nodes") == 2);
}

#[test]
fn garbage_other_networks_and_strangers_are_counted_and_bounded() {
    let (socket, port) = listener();
    let network = format!("hostile-{}", std::process::id());
    let node = beaconing(
        "victim",
        port,
        &network,
        Discovery::default().max_nodes(8).max_dials(4),
    );
    let to = loopback(port);
    let garbage: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"BLB".to_vec(),
        b"BLB\x01\xc1".to_vec(),
        vec![0xff; 1500],
        {
            let mut long = b"BLB\x01".to_vec();
            long.resize(4000, 0x90);
            long
        },
    ];
    for g in &garbage {
        socket.send_to(g, to).unwrap();
    }
    socket
        .send_to(
            &hello("elsewhere", "x", vec!["tcp://127.0.0.1:9".into()]),
            to,
        )
        .unwrap();
    wait_until(PATIENCE, || {
        counter(&node, "beacons_malformed") >= garbage.len() as u64
            && counter(&node, "beacons_ignored") >= 1
    });
    // Fifty strangers claim to be on the network: at most max_nodes are
    // heard, and at most max_dials dialled at once (their endpoint is a
    // loopback port nothing listens on).
    for i in 0..50 {
        let name = format!("ghost{i}");
        socket
            .send_to(
                &hello(&network, &name, vec!["tcp://127.0.0.1:9".into()]),
                to,
            )
            .unwrap();
    }
    wait_until(PATIENCE, || counter(&node, "beacons_refused") > 0);
    assert!(counter(&node, "beacon_nodes") <= 8);
    assert!(counter(&node, "dialling") <= 4);
    // A real node is still found and served.
    let friend = beaconing("friend", port, &network, Discovery::default());
    wait_until(PATIENCE, || {
        friend.active_connections().iter().any(|p| p == "victim")
    });
    friend.register("hi", |_c, (): ()| Ok("hello")).unwrap();
    let reply: String = node.call_one("friend", "hi", &(), PATIENCE).unwrap();
    assert_eq!(reply, "hello");
}
