//! What nodes cost as a deployment grows: an idle node's memory, threads
//! and CPU; many nodes in one process; one node in each of many processes,
//! all called at once by a hub. Every figure stands beside raw libzmq
//! measured in the same run through the project's binding (an idle context
//! with a bound ROUTER; a ROUTER that sends to every peer's DEALER and waits
//! for every echo).
//!
//! ```text
//! cargo bench --bench scale                  # 200 nodes (about a minute)
//! cargo bench --bench scale -- --quick       # 20 nodes, a smoke run for CI
//! BILATERAL_SPIN_US=0 cargo bench --bench scale   # reactor spin off (default 50)
//! BILATERAL_SCALE_NODES=100 cargo bench --bench scale
//! BILATERAL_INLINE=1 cargo bench --bench scale    # the processes' echo on their reactors
//! ```
//!
//! Resident memory and threads are read from `/proc/self/status`, CPU time
//! from `/proc/<pid>/stat` (Linux only).

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use bilateral::testkit::zmq::{Context, Message, PollItem, SendFlags, Socket, SocketType, poll};
use bilateral::{Node, To};
use common::*;

const CHILD_ENV: &str = "BILATERAL_SCALE_CHILD";
const INDEX_ENV: &str = "BILATERAL_SCALE_INDEX";
const PAYLOAD: &[u8] = &[7u8; 64];

fn main() {
    if let Ok(raw_endpoint) = std::env::var(CHILD_ENV) {
        return child(&raw_endpoint);
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let nodes: usize = std::env::var("BILATERAL_SCALE_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 20 } else { 200 });
    let rounds = if quick { 20 } else { 100 };
    println!(
        "bilateral scale benchmark: {nodes} nodes, {} cores, reactor spin {:?}",
        cores(),
        spin()
    );
    println!();
    idle();
    println!();
    in_one_process(nodes, rounds, false);
    println!();
    in_one_process(nodes, rounds, true);
    println!();
    in_processes(nodes, rounds);
}

// ---- one idle node ----------------------------------------------------

fn idle() {
    let settle = || std::thread::sleep(Duration::from_millis(500));
    let (rss0, threads0) = (rss_kib(), threads());
    let ctx = Context::new().unwrap();
    let router = ctx.socket(SocketType::Router).unwrap();
    router.bind("tcp://127.0.0.1:*").unwrap();
    settle();
    let raw = (rss_kib() - rss0, threads() - threads0);
    let (rss1, threads1) = (rss_kib(), threads());
    let count = 10;
    let nodes: Vec<Node> = (0..count)
        .map(|i| {
            Node::builder(format!("idle{i}"))
                .listen("tcp://127.0.0.1:*")
                .reactor_spin(spin())
                .start()
                .unwrap()
        })
        .collect();
    settle();
    let per_node = (
        (rss_kib() - rss1) / count as i64,
        (threads() - threads1) / count as i64,
    );
    let window = Duration::from_secs(3);
    let cpu0 = cpu_time(std::process::id());
    std::thread::sleep(window);
    let cpu = (cpu_time(std::process::id()) - cpu0) / count as u32;
    println!("{:<52} {:>12} {:>8}", "an idle node", "RSS", "threads");
    println!(
        "{:<52} {:>8} KiB {:>8}",
        "raw libzmq: a context and a bound ROUTER", raw.0, raw.1
    );
    println!(
        "{:<52} {:>8} KiB {:>8}",
        format!("bilateral: one node (mean of {count})"),
        per_node.0,
        per_node.1
    );
    println!(
        "{:<52} {:>11.2}% of a core",
        "bilateral: CPU of one idle node",
        cpu.as_secs_f64() / window.as_secs_f64() * 100.0
    );
    drop((nodes, router, ctx));
}

// ---- many nodes in this process ---------------------------------------

/// `n` nodes and a hub in this process; with `shared`, the nodes share one
/// ZeroMQ context and a pool of four handler threads.
fn in_one_process(n: usize, rounds: usize, shared: bool) {
    let (rss0, threads0) = (rss_kib(), threads());
    let started = Instant::now();
    let hub = Node::builder("hub").reactor_spin(spin()).start().unwrap();
    let pool = bilateral::HandlerPool::new(4);
    let mut peers = Vec::new();
    for i in 0..n {
        let mut builder = Node::builder(format!("p{i:03}"))
            .listen("tcp://127.0.0.1:*")
            .reactor_spin(spin());
        if shared {
            builder = builder
                .context(bilateral::Context::shared().unwrap())
                .handler_pool(&pool);
        }
        let built = builder.start();
        match built {
            Ok(p) => {
                p.register("echo", |_c, b: serde_bytes::ByteBuf| Ok(b))
                    .unwrap();
                hub.connect(p.name(), p.endpoint().unwrap()).unwrap();
                peers.push(p);
            }
            Err(e) => {
                println!("{n} nodes in one process: node {i} did not start with the defaults: {e}");
                return;
            }
        }
    }
    for p in &peers {
        if let Err(e) = hub.wait_for_peer(p.name(), Duration::from_secs(60)) {
            println!("{n} nodes in one process: {} did not join: {e}", p.name());
            return;
        }
    }
    let setup = started.elapsed();
    let (rss, threads_now) = (rss_kib() - rss0, threads() - threads0);
    let bilateral = call_all(&hub, n, rounds);
    drop(peers);
    drop(hub);
    let raw = RawFanout::in_process(n).round_trips(rounds);
    let how = if shared {
        ", sharing a context and 4 handler threads"
    } else {
        ""
    };
    println!("{n} nodes in one process{how}, a hub calling all of them at once (64 bytes)");
    println!(
        "  {:<50} {:>10} KiB ({} KiB a node), {} threads ({:.1} a node), set up in {:.1} s",
        "bilateral",
        rss,
        rss / (n as i64 + 1),
        threads_now,
        threads_now as f64 / (n + 1) as f64,
        setup.as_secs_f64()
    );
    report("call to all", &raw, &bilateral);
}

// ---- one node per process ---------------------------------------------

fn in_processes(n: usize, rounds: usize) {
    let raw = RawFanout::hub();
    let endpoint = raw.router.last_endpoint().unwrap();
    let mut children: Vec<Child> = Vec::new();
    let mut endpoints = Vec::new();
    let started = Instant::now();
    for i in 0..n {
        let (child, words) =
            spawn_self(&[(CHILD_ENV, endpoint.clone()), (INDEX_ENV, i.to_string())]);
        children.push(child);
        endpoints.push(words.first().cloned().unwrap_or_default());
    }
    if endpoints.len() < n {
        stop(children);
        return;
    }
    let hub = Node::builder("hub").reactor_spin(spin()).start().unwrap();
    for (i, e) in endpoints.iter().enumerate() {
        hub.connect(&format!("c{i:03}"), e).unwrap();
    }
    for i in 0..n {
        hub.wait_for_peer(&format!("c{i:03}"), Duration::from_secs(60))
            .unwrap();
    }
    let setup = started.elapsed();
    let raw = raw.wait_for(n).round_trips(rounds);
    let cpu0: Duration = children.iter().map(|c| cpu_time(c.id())).sum();
    let bilateral = call_all(&hub, n, rounds);
    let idle_window = Duration::from_secs(2);
    let cpu1: Duration = children.iter().map(|c| cpu_time(c.id())).sum();
    std::thread::sleep(idle_window);
    let cpu2: Duration = children.iter().map(|c| cpu_time(c.id())).sum();
    let rss: i64 = children.iter().map(|c| rss_kib_of(c.id())).sum();
    println!("{n} nodes in {n} processes, a hub calling all of them at once (64 bytes)");
    println!(
        "  {:<50} {} KiB a process, set up in {:.1} s",
        "bilateral",
        rss / n as i64,
        setup.as_secs_f64()
    );
    println!(
        "  {:<50} {:.1} ms of CPU a call, over all {n} processes",
        "bilateral",
        (cpu1 - cpu0).as_secs_f64() * 1e3 / rounds as f64
    );
    println!(
        "  {:<50} {:.2}% of a core a process",
        "bilateral, idle",
        (cpu2 - cpu1).as_secs_f64() / idle_window.as_secs_f64() / n as f64 * 100.0
    );
    report("call to all", &raw, &bilateral);
    drop(hub);
    stop(children);
}

/// Closes the children's stdin (they close their node and exit) and waits.
fn stop(children: Vec<Child>) {
    for mut c in children {
        stop_child(&mut c);
    }
}

/// A child process: one node with an `echo` method, and a raw DEALER that
/// echoes what the parent's ROUTER sends; runs until its stdin closes.
fn child(raw_endpoint: &str) {
    let index: usize = std::env::var(INDEX_ENV).unwrap().parse().unwrap();
    let node = Node::builder(format!("c{index:03}"))
        .listen("tcp://127.0.0.1:*")
        .reactor_spin(spin())
        .start()
        .unwrap();
    if std::env::var("BILATERAL_INLINE").is_ok_and(|v| v == "1") {
        node.register_inline("echo", |_c, b: serde_bytes::ByteBuf| Ok(b))
            .unwrap();
    } else {
        node.register("echo", |_c, b: serde_bytes::ByteBuf| Ok(b))
            .unwrap();
    }
    let ctx = Context::new().unwrap();
    let dealer = ctx.socket(SocketType::Dealer).unwrap();
    dealer
        .set_routing_id(format!("d{index:03}").as_bytes())
        .unwrap();
    dealer.connect(raw_endpoint).unwrap();
    dealer.send(b"hello", SendFlags::NONE).unwrap();
    std::thread::spawn(move || {
        let mut msg = Message::new();
        while dealer.recv(&mut msg, false).is_ok() {
            if dealer.send(msg.as_bytes(), SendFlags::NONE).is_err() {
                return;
            }
        }
    });
    ready_and_wait(node.endpoint().unwrap());
    node.close();
}

// ---- measuring ----------------------------------------------------------

fn call_all(hub: &Node, n: usize, rounds: usize) -> Latency {
    let arg = serde_bytes::ByteBuf::from(PAYLOAD.to_vec());
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let r = hub
            .call::<_, serde_bytes::ByteBuf>(To::All, "echo", &arg, Duration::from_secs(30))
            .unwrap();
        assert!(r.all_ok() && r.len() == n, "{} of {n} answered", r.len());
        samples.push(t.elapsed());
    }
    summarize(samples)
}

fn report(what: &str, raw: &Latency, bilateral: &Latency) {
    println!(
        "  {:<50} {:>10} {:>10} {:>10}",
        what, "p50", "p99", "ratio p50"
    );
    println!(
        "  {:<50} {:>10} {:>10} {:>9.2}x",
        "raw libzmq",
        ms(raw.p50),
        ms(raw.p99),
        1.0
    );
    println!(
        "  {:<50} {:>10} {:>10} {:>9.2}x",
        "bilateral",
        ms(bilateral.p50),
        ms(bilateral.p99),
        bilateral.p50.as_secs_f64() / raw.p50.as_secs_f64()
    );
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Raw libzmq's fan-out: a ROUTER sends one message to each peer's DEALER
/// and waits until every echo is back.
struct RawFanout {
    router: Socket,
    ids: Vec<Vec<u8>>,
    /// In one process: the peers' DEALERs and the thread that echoes for them.
    echo: Option<std::thread::JoinHandle<()>>,
    _ctx: Context,
}

impl RawFanout {
    fn hub() -> RawFanout {
        let ctx = Context::new().unwrap();
        let router = ctx.socket(SocketType::Router).unwrap();
        router.set_sndhwm(0).unwrap();
        router.set_rcvhwm(0).unwrap();
        router.bind("tcp://127.0.0.1:*").unwrap();
        RawFanout {
            router,
            ids: Vec::new(),
            echo: None,
            _ctx: ctx,
        }
    }

    /// `n` DEALERs in this process, echoed by one thread that polls them all.
    fn in_process(n: usize) -> RawFanout {
        let hub = RawFanout::hub();
        let endpoint = hub.router.last_endpoint().unwrap();
        let ctx = Context::new().unwrap();
        ctx.set_max_sockets(n as i32 + 16).unwrap();
        let dealers: Vec<Socket> = (0..n)
            .map(|i| {
                let d = ctx.socket(SocketType::Dealer).unwrap();
                d.set_routing_id(format!("d{i:03}").as_bytes()).unwrap();
                d.connect(&endpoint).unwrap();
                d.send(b"hello", SendFlags::NONE).unwrap();
                d
            })
            .collect();
        let echo = std::thread::spawn(move || {
            let _ctx = ctx;
            let mut msg = Message::new();
            loop {
                let mut items: Vec<PollItem<'_>> = dealers.iter().map(PollItem::readable).collect();
                if poll(&mut items, Some(Duration::from_secs(1))).is_err() {
                    return;
                }
                let ready: Vec<usize> = (0..items.len())
                    .filter(|&i| items[i].is_readable())
                    .collect();
                drop(items);
                for i in ready {
                    while dealers[i].recv(&mut msg, true).is_ok() {
                        if msg.as_bytes().is_empty() {
                            return;
                        }
                        let _ = dealers[i].send(msg.as_bytes(), SendFlags::NONE);
                    }
                }
            }
        });
        let mut hub = hub.wait_for(n);
        hub.echo = Some(echo);
        hub
    }

    /// Waits for the hello of `n` DEALERs.
    fn wait_for(mut self, n: usize) -> RawFanout {
        while self.ids.len() < n {
            let (frames, _) = self.router.recv_multipart(false, 4).unwrap();
            if let [id, _] = &frames[..] {
                self.ids.push(id.as_bytes().to_vec());
            }
        }
        self
    }

    fn round_trips(mut self, rounds: usize) -> Latency {
        let mut samples = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            let t = Instant::now();
            for id in &self.ids {
                self.router.send(id, SendFlags::MORE).unwrap();
                self.router.send(PAYLOAD, SendFlags::NONE).unwrap();
            }
            for _ in 0..self.ids.len() {
                self.router.recv_multipart(false, 4).unwrap();
            }
            samples.push(t.elapsed());
        }
        if let Some(echo) = self.echo.take() {
            // An empty message stops the echo thread.
            self.router.send(&self.ids[0], SendFlags::MORE).unwrap();
            self.router.send(b"", SendFlags::NONE).unwrap();
            let _ = echo.join();
        }
        summarize(samples)
    }
}

// ---- /proc --------------------------------------------------------------

fn status_field(pid: u32, field: &str) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn rss_kib() -> i64 {
    rss_kib_of(std::process::id())
}

fn rss_kib_of(pid: u32) -> i64 {
    status_field(pid, "VmRSS:")
}

fn threads() -> i64 {
    status_field(std::process::id(), "Threads:")
}

/// User and system CPU time of a process (clock ticks of 1/100 s).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces), closed by ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}
