//! The registry on 16 nodes (full mesh, TCP loopback): how soon 1 000
//! entries registered on one node are visible on the 15 others, how soon a
//! new node sees them all, and how soon they are gone on every node after
//! their owner closes (PART) or dies (detected after `lost_timeout`). The
//! unit of the same run: a call round trip between two of the nodes, and
//! the raw libzmq round trip through the project's binding.
//!
//! ```text
//! cargo bench --bench registry               # full run
//! cargo bench --bench registry -- --quick    # smoke run
//! ```

use std::time::{Duration, Instant};

use bilateral::testkit::zmq::{Context, Message, SendFlags, SocketType};
use bilateral::testkit::{TestMesh, Topology, Transport};
use bilateral::{Node, RegistryConfig};

const NODES: usize = 16;
const LOST_TIMEOUT: Duration = Duration::from_millis(1000);

fn wait(mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(60), "timed out");
        std::thread::sleep(Duration::from_millis(1));
    }
    started.elapsed()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn p50(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// Collections the entries are spread over (at most 256 per owner in one).
const COLLECTIONS: usize = 4;

fn entries(node: &Node) -> usize {
    let registry = node.registry().unwrap();
    (0..COLLECTIONS)
        .map(|c| {
            registry
                .list::<serde::de::IgnoredAny>(&format!("svc-{c}"))
                .map_or(0, |l| l.len())
        })
        .sum()
}

fn mesh(n: usize) -> TestMesh {
    let mesh = TestMesh::builder(n)
        .topology(Topology::Full)
        .transport(Transport::Tcp)
        .name_prefix("r")
        .configure(|_, b| {
            b.heartbeat_interval(LOST_TIMEOUT / 5)
                .lost_timeout(LOST_TIMEOUT)
                .registry(RegistryConfig::default().sync_interval(Duration::from_millis(500)))
        })
        .start()
        .unwrap();
    mesh.wait_all_joined(Duration::from_secs(30)).unwrap();
    mesh
}

/// The raw libzmq round trip p50 (DEALER to a ROUTER echo thread).
fn raw_round_trip(rounds: usize) -> Duration {
    let ctx = Context::new().unwrap();
    let router = ctx.socket(SocketType::Router).unwrap();
    router.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = router.last_endpoint().unwrap();
    let echo = std::thread::spawn(move || {
        for _ in 0..rounds {
            let (frames, _) = router.recv_multipart(false, 4).unwrap();
            let [id, body] = &frames[..] else { continue };
            router.send(id.as_bytes(), SendFlags::MORE).unwrap();
            router.send(body.as_bytes(), SendFlags::NONE).unwrap();
        }
    });
    let dealer = ctx.socket(SocketType::Dealer).unwrap();
    dealer.connect(&endpoint).unwrap();
    let payload = [0u8; 64];
    let mut reply = Message::new();
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        dealer.send(&payload, SendFlags::NONE).unwrap();
        dealer.recv(&mut reply, false).unwrap();
        samples.push(t.elapsed());
    }
    echo.join().unwrap();
    p50(samples)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (count, rounds) = if quick { (100, 200) } else { (1_000, 2_000) };
    println!("bilateral registry benchmark: {NODES} nodes, full mesh, TCP loopback");
    println!(
        "{count} entries of ~40 bytes on one node, in {COLLECTIONS} collections; lost_timeout {LOST_TIMEOUT:?}"
    );
    println!();

    let raw = raw_round_trip(rounds);
    let mesh = mesh(NODES);
    mesh.node(1)
        .register("echo", |_c, s: String| Ok(s))
        .unwrap();
    let arg = "x".repeat(64);
    let call = p50((0..rounds)
        .map(|_| {
            let t = Instant::now();
            let _: String = mesh
                .node(0)
                .call_one(mesh.name(1), "echo", &arg, Duration::from_secs(5))
                .unwrap();
            t.elapsed()
        })
        .collect());
    println!(
        "{:<58} {:>12}",
        "raw libzmq round trip p50",
        format!("{:.1} us", raw.as_secs_f64() * 1e6)
    );
    println!(
        "{:<58} {:>12}",
        "bilateral call round trip p50",
        format!("{:.1} us", call.as_secs_f64() * 1e6)
    );

    let owner = mesh.node(0).registry().unwrap();
    let started = Instant::now();
    let guards: Vec<_> = (0..count)
        .map(|i| {
            owner
                .register(
                    &format!("svc-{}", i % COLLECTIONS),
                    &format!("instance-{i:04}"),
                    &format!("tcp://10.0.0.{}:5555", i % 250),
                )
                .unwrap()
        })
        .collect();
    let registered = started.elapsed();
    let everywhere = wait(|| mesh.nodes().iter().all(|n| entries(n) == count)) + registered;
    println!(
        "{:<58} {:>12}",
        format!("{count} registrations (local)"),
        ms(registered)
    );
    println!(
        "{:<58} {:>12} {:>8.0}x call",
        format!("until all {} others see them", NODES - 1),
        ms(everywhere),
        everywhere.as_secs_f64() / call.as_secs_f64()
    );

    // A new node joins the whole mesh.
    let newcomer = Node::builder("newcomer")
        .network("testkit")
        .listen("tcp://127.0.0.1:*")
        .heartbeat_interval(LOST_TIMEOUT / 5)
        .lost_timeout(LOST_TIMEOUT)
        .start()
        .unwrap();
    let joining = Instant::now();
    for node in mesh.nodes() {
        newcomer
            .connect(node.name(), node.endpoint().unwrap())
            .unwrap();
    }
    wait(|| entries(&newcomer) == count);
    let seen = joining.elapsed();
    println!(
        "{:<58} {:>12} {:>8.0}x call",
        "a new node dialling all 16 sees them all",
        ms(seen),
        seen.as_secs_f64() / call.as_secs_f64()
    );

    // The owner withdraws its entries.
    drop(guards);
    let removed = wait(|| mesh.nodes()[1..].iter().all(|n| entries(n) == 0));
    println!(
        "{:<58} {:>12} {:>8.0}x call",
        "guards dropped: gone on all 15 others",
        ms(removed),
        removed.as_secs_f64() / call.as_secs_f64()
    );
    let _guards: Vec<_> = (0..count)
        .map(|i| {
            owner
                .register(
                    &format!("svc-{}", i % COLLECTIONS),
                    &format!("instance-{i:04}"),
                    "again",
                )
                .unwrap()
        })
        .collect();
    wait(|| mesh.nodes().iter().all(|n| entries(n) == count) && entries(&newcomer) == count);

    // The owner dies: its peers detect it after lost_timeout.
    mesh.node(0).kill();
    let gone =
        wait(|| mesh.nodes()[1..].iter().all(|n| entries(n) == 0) && entries(&newcomer) == 0);
    println!(
        "{:<58} {:>12}",
        "owner killed: gone on all 16 others",
        ms(gone)
    );
    println!(
        "{:<58} {:>12}",
        "  beyond lost_timeout",
        ms(gone.saturating_sub(LOST_TIMEOUT))
    );
}
