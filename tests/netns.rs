//! Three hosts in three network namespaces on one bridge (198.18.0.0/24):
//! taking one host's link down partitions it, its peers report it lost, and
//! bringing the link back heals the mesh without restarting anything; and
//! every host's registry entry follows: gone where its owner is cut off,
//! back everywhere after the partition heals, through a relay as well.
//! With the LAN beacon on and no seed, the hosts find each other, and no
//! beacon leaves their LAN.
//!
//! Needs root and iproute2 (`ip netns add`); skipped with a message where
//! namespaces cannot be made. Everything it creates is removed afterwards.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bilateral::{Beacon, Discovery, PeerEvent, RegistryEvent};
use common::*;

const LISTEN_ENV: &str = "BILATERAL_NETNS_LISTEN";
const NAME_ENV: &str = "BILATERAL_NETNS_NAME";
const PEERS_ENV: &str = "BILATERAL_NETNS_PEERS";
const BEACON_ENV: &str = "BILATERAL_NETNS_BEACON";

/// The body of a node process inside a namespace (started by the test below).
#[test]
fn netns_node() {
    let (Ok(listen), Ok(name)) = (std::env::var(LISTEN_ENV), std::env::var(NAME_ENV)) else {
        return;
    };
    let mut builder = builder_on(&name, &listen);
    if let Ok(beacon) = std::env::var(BEACON_ENV) {
        let to = beacon.parse().expect("a beacon address");
        let beacon = Beacon::new(to).interval(Duration::from_millis(100));
        builder = builder.discovery(Discovery::default().beacon(beacon));
    }
    let node = builder.start().expect("node starts in its namespace");
    let events = node.events();
    let registry = node.registry().expect("the registry runs");
    let _entry = registry.register("svc", &name, &name).expect("registered");
    let watch = registry.watch::<String>("svc");
    for peer in std::env::var(PEERS_ENV)
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
    {
        let (peer, endpoint) = peer.split_once('=').expect("name=endpoint");
        node.connect(peer, endpoint).unwrap();
    }
    println!("\nREADY");
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        while let Some(change) = watch.try_recv() {
            match change {
                RegistryEvent::Added(e) if e.owner != name => println!("\nSEES {}", e.owner),
                RegistryEvent::Removed { owner, .. } if owner != name => println!("\nGONE {owner}"),
                _ => {}
            }
        }
        match events.recv_timeout(Duration::from_millis(100)) {
            Some(PeerEvent::Joined { peer, .. }) => println!("\nJOINED {peer}"),
            Some(PeerEvent::Lost { peer, .. }) => println!("\nLOST {peer}"),
            _ => {}
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The namespaces, bridge and node processes; all removed on drop.
struct Lab {
    tag: String,
    hosts: usize,
    children: Vec<Child>,
}

impl Lab {
    fn ns(&self, i: usize) -> String {
        format!("{}n{i}", self.tag)
    }

    fn veth(&self, i: usize) -> String {
        format!("{}v{i}", self.tag)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn address(i: usize) -> String {
        format!("198.18.0.{}", i + 1)
    }

    fn build(hosts: usize) -> Result<Lab, String> {
        let lab = Lab {
            // Tests run in parallel: each lab gets its own names.
            tag: {
                static LABS: std::sync::atomic::AtomicUsize =
                    std::sync::atomic::AtomicUsize::new(0);
                let n = LABS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                format!("bl{}{n}", std::process::id() % 100_000)
            },
            hosts: 0,
            children: Vec::new(),
        };
        let mut lab = lab;
        ip(&["link", "add", &lab.bridge(), "type", "bridge"])?;
        ip(&["link", "set", &lab.bridge(), "up"])?;
        for i in 0..hosts {
            ip(&["netns", "add", &lab.ns(i)])?;
            lab.hosts = i + 1;
            ip(&[
                "link",
                "add",
                &lab.veth(i),
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &lab.ns(i),
            ])?;
            ip(&["link", "set", &lab.veth(i), "master", &lab.bridge()])?;
            ip(&["link", "set", &lab.veth(i), "up"])?;
            ip(&[
                "-n",
                &lab.ns(i),
                "addr",
                "add",
                &format!("{}/24", Lab::address(i)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &lab.ns(i), "link", "set", "eth0", "up"])?;
            ip(&["-n", &lab.ns(i), "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    /// The lab of a test: `None` inside a node's process (the test binary
    /// runs again there), or where namespaces cannot be made (said so).
    fn for_test(hosts: usize) -> Option<Lab> {
        if std::env::var(NAME_ENV).is_ok() {
            return None;
        }
        Lab::build(hosts)
            .map_err(|e| {
                eprintln!(
                    "SKIPPED: cannot create network namespaces here ({e}); this test needs root and iproute2"
                )
            })
            .ok()
    }

    /// Starts node `name` in namespace `i`, dialling `peers`; returns a
    /// receiver of the lines it prints.
    fn start(&mut self, i: usize, name: &str, peers: &str) -> crossbeam_channel::Receiver<String> {
        self.start_with(i, name, peers, None)
    }

    /// [`Lab::start`], with the LAN beacon sent to `beacon` if given.
    fn start_with(
        &mut self,
        i: usize,
        name: &str,
        peers: &str,
        beacon: Option<String>,
    ) -> crossbeam_channel::Receiver<String> {
        let exe = std::env::current_exe().unwrap();
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.ns(i)])
            .arg(exe)
            .args(["netns_node", "--exact", "--nocapture", "--test-threads=1"])
            .env(LISTEN_ENV, format!("tcp://{}:7000", Lab::address(i)))
            .env(NAME_ENV, name)
            .env(PEERS_ENV, peers);
        if let Some(beacon) = beacon {
            command.env(BEACON_ENV, beacon);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("ip netns exec runs");
        let stdout = child.stdout.take().unwrap();
        self.children.push(child);
        let (tx, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line.trim().to_string());
            }
        });
        rx
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for i in 0..self.hosts {
            let _ = ip(&["netns", "del", &self.ns(i)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

/// Waits until `node` has printed every line of `expected`.
fn expect_lines(
    node: &crossbeam_channel::Receiver<String>,
    expected: &[String],
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    let mut missing: HashSet<&String> = expected.iter().collect();
    while !missing.is_empty() {
        match node.recv_deadline(deadline) {
            Ok(line) => {
                missing.remove(&line);
            }
            Err(_) => panic!("still waiting for {missing:?}"),
        }
    }
}

#[test]
fn a_link_down_partitions_a_host_and_bringing_it_up_heals_the_mesh() {
    let Some(mut lab) = Lab::for_test(3) else {
        return;
    };
    let ep = |i: usize| format!("tcp://{}:7000", Lab::address(i));
    let a = lab.start(0, "a", &format!("b={},c={}", ep(1), ep(2)));
    let b = lab.start(1, "b", &format!("c={}", ep(2)));
    let c = lab.start(2, "c", "");
    let line = |s: &str| s.to_string();
    expect_lines(
        &a,
        &[
            line("JOINED b"),
            line("JOINED c"),
            line("SEES b"),
            line("SEES c"),
        ],
        PATIENCE,
    );
    expect_lines(
        &b,
        &[
            line("JOINED a"),
            line("JOINED c"),
            line("SEES a"),
            line("SEES c"),
        ],
        PATIENCE,
    );
    expect_lines(
        &c,
        &[
            line("JOINED a"),
            line("JOINED b"),
            line("SEES a"),
            line("SEES b"),
        ],
        PATIENCE,
    );

    // c's cable is pulled: no FIN, no RST, just silence. Its entry goes on
    // a and b, theirs on c.
    ip(&["link", "set", &lab.veth(2), "down"]).unwrap();
    expect_lines(&a, &[line("LOST c"), line("GONE c")], PATIENCE);
    expect_lines(&b, &[line("LOST c"), line("GONE c")], PATIENCE);
    expect_lines(
        &c,
        &[
            line("LOST a"),
            line("LOST b"),
            line("GONE a"),
            line("GONE b"),
        ],
        PATIENCE,
    );

    // Plugged back in: the same processes find each other again.
    ip(&["link", "set", &lab.veth(2), "up"]).unwrap();
    // The live owners' entries come back everywhere.
    let healed = Duration::from_secs(20);
    expect_lines(&a, &[line("JOINED c"), line("SEES c")], healed);
    expect_lines(&b, &[line("JOINED c"), line("SEES c")], healed);
    expect_lines(
        &c,
        &[
            line("JOINED a"),
            line("JOINED b"),
            line("SEES a"),
            line("SEES b"),
        ],
        healed,
    );
    drop(lab);
}

#[test]
fn a_partition_of_the_relay_cuts_off_relayed_entries_until_it_heals() {
    let Some(mut lab) = Lab::for_test(3) else {
        return;
    };
    let ep = |i: usize| format!("tcp://{}:7000", Lab::address(i));
    // A line: a - b - c; a and c never talk, their entries travel through b.
    let a = lab.start(0, "a", &format!("b={}", ep(1)));
    let b = lab.start(1, "b", &format!("c={}", ep(2)));
    let c = lab.start(2, "c", "");
    let line = |s: &str| s.to_string();
    expect_lines(
        &a,
        &[line("JOINED b"), line("SEES b"), line("SEES c")],
        PATIENCE,
    );
    expect_lines(
        &c,
        &[line("JOINED b"), line("SEES b"), line("SEES a")],
        PATIENCE,
    );

    // The relay is cut off: a and c lose each other's entries too.
    ip(&["link", "set", &lab.veth(1), "down"]).unwrap();
    expect_lines(
        &a,
        &[line("LOST b"), line("GONE b"), line("GONE c")],
        PATIENCE,
    );
    expect_lines(
        &c,
        &[line("LOST b"), line("GONE b"), line("GONE a")],
        PATIENCE,
    );

    // It heals: everything is seen again, through the relay.
    ip(&["link", "set", &lab.veth(1), "up"]).unwrap();
    let healed = Duration::from_secs(20);
    expect_lines(
        &a,
        &[line("JOINED b"), line("SEES b"), line("SEES c")],
        healed,
    );
    expect_lines(
        &c,
        &[line("JOINED b"), line("SEES b"), line("SEES a")],
        healed,
    );
    drop(b);
    drop(lab);
}

#[test]
fn with_the_beacon_hosts_find_each_other_without_a_seed_and_nothing_leaves_the_lan() {
    // A port of the system's choice in this (the host's) namespace, held
    // open: the hosts' beacons use the same port, so a beacon that left
    // their LAN for this namespace would arrive here.
    let outside = {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_reuse_address(true).unwrap();
        s.set_reuse_port(true).unwrap();
        s.bind(&std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, 0).into())
            .unwrap();
        std::net::UdpSocket::from(s)
    };
    let port = outside.local_addr().unwrap().port();
    let Some(mut lab) = Lab::for_test(3) else {
        return;
    };
    let beacon = || Some(format!("198.18.0.255:{port}"));
    let names = ["a", "b", "c"];
    let hosts: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(i, name)| lab.start_with(i, name, "", beacon()))
        .collect();
    for (i, host) in hosts.iter().enumerate() {
        let others: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, n)| [format!("JOINED {n}"), format!("SEES {n}")])
            .collect();
        expect_lines(host, &others, PATIENCE);
    }
    // The hosts found each other by beacons alone (no seed); none of
    // those beacons arrived out here.
    outside.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        outside.recv_from(&mut buf).is_err(),
        "a beacon left the namespaces"
    );
    drop(lab);
}
