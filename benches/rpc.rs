//! Call latency and throughput against raw libzmq, measured in one run.
//!
//! Every figure Bilateral is judged by is a ratio to raw libzmq measured in
//! the same process, on the same machine, through the project's own binding.
//! Raw and Bilateral are measured alternately in chunks, so both see the same
//! background load (on a small shared virtual machine it changes by tens of
//! percent within seconds). Plaintext and CURVE are compared separately:
//! Bilateral CURVE against raw libzmq CURVE.
//!
//! Each comparison runs twice: client and server in this process, and the
//! server (Bilateral's and raw libzmq's alike) in a child process.
//!
//! ```text
//! cargo bench --bench rpc                       # full run (a few minutes)
//! cargo bench --bench rpc -- --quick            # a smoke run
//! BILATERAL_SPIN_US=0 cargo bench --bench rpc   # reactor spin off (default 50)
//! BILATERAL_INLINE=1 cargo bench --bench rpc    # the server's echo on its reactor
//! cargo bench --bench rpc -- --fanout           # only the multicast (16 peers / 1)
//! ```

mod common;

use std::collections::VecDeque;
use std::process::Child;
use std::time::{Duration, Instant};

use bilateral::testkit::zmq::{Context, Message, SendFlags, Socket, SocketType};
use bilateral::{Keypair, Node, To};
use common::*;

const PAYLOAD: usize = 64;
const PIPELINE: usize = 128;
const CHUNKS: usize = 10;

struct Settings {
    latency_round_trips: usize,
    throughput_messages: usize,
    fanout_rounds: usize,
}

/// Set in the child process that serves: the server's secret key in CURVE
/// mode ("plain" otherwise); the client's public key follows in CLIENT_ENV.
const SERVER_ENV: &str = "BILATERAL_RPC_SERVER";
const CLIENT_ENV: &str = "BILATERAL_RPC_CLIENT";

fn main() {
    if let Ok(mode) = std::env::var(SERVER_ENV) {
        return serve_in_child(&mode);
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let s = if quick {
        Settings {
            latency_round_trips: 4_000,
            throughput_messages: 40_000,
            fanout_rounds: 400,
        }
    } else {
        Settings {
            latency_round_trips: 40_000,
            throughput_messages: 400_000,
            fanout_rounds: 4_000,
        }
    };
    println!(
        "bilateral rpc benchmark: {PAYLOAD}-byte payload, TCP loopback, {} cores, reactor spin {:?}",
        cores(),
        spin()
    );
    println!("raw and bilateral measured alternately in {CHUNKS} chunks each");
    println!();

    if std::env::args().any(|a| a == "--profile-pipelined") {
        // For `perf record`: nothing but pipelined calls.
        let (client, _server) = pair(None);
        call_pipelined(&client, s.throughput_messages);
        return;
    }

    if !std::env::args().any(|a| a == "--fanout") {
        calls(&s);
    }
    fanout_table(&s);
    println!(
        "targets: call p50 <= 1.0x raw; pipelined >= 0.50x raw (CURVE 0.70x); 16-peer multicast <= 3x one peer"
    );
}

/// Round trips and pipelined calls: one process, then two.
fn calls(s: &Settings) {
    let raw = RawEcho::start(None);
    let (client, server) = pair(None);
    compare("plaintext", s, &raw, &client);
    drop((raw, client, server));

    let raw = RawEcho::start(Some((keys(), keys())));
    let (client, server) = pair(Some((keys(), keys())));
    compare("CURVE", s, &raw, &client);
    drop((raw, client, server));

    println!("client and server in separate processes");
    println!();
    for curve in [None, Some((keys(), keys()))] {
        let mode = if curve.is_some() {
            "CURVE, 2 processes"
        } else {
            "plaintext, 2 processes"
        };
        let remote = Remote::start(curve);
        compare(mode, s, &remote.raw, &remote.client);
    }
}

/// The multicast call to 16 peers against one, beside raw libzmq's.
fn fanout_table(s: &Settings) {
    let (one, sixteen) = fanout(s.fanout_rounds);
    let (raw_one, raw_sixteen) = raw_fanout(s.fanout_rounds);
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "multicast call (plaintext)", "p50", "ratio", "vs raw"
    );
    println!(
        "{:<44} {:>10} {:>9.2}x {:>9.2}x",
        "raw libzmq: to 1 echo",
        fmt(raw_one.p50),
        1.0,
        1.0
    );
    println!(
        "{:<44} {:>10} {:>9.2}x {:>9.2}x",
        "raw libzmq: to each of 16 echoes",
        fmt(raw_sixteen.p50),
        ratio(raw_sixteen.p50, raw_one.p50),
        1.0
    );
    println!(
        "{:<44} {:>10} {:>9.2}x {:>9.2}x",
        "bilateral: to 1 peer",
        fmt(one.p50),
        1.0,
        ratio(one.p50, raw_one.p50)
    );
    println!(
        "{:<44} {:>10} {:>9.2}x {:>9.2}x",
        "bilateral: to all of 16 peers",
        fmt(sixteen.p50),
        ratio(sixteen.p50, one.p50),
        ratio(sixteen.p50, raw_sixteen.p50)
    );
    println!();
}

/// Latency and pipelined throughput of `client`'s calls against `raw`.
fn compare(mode: &str, s: &Settings, raw: &RawEcho, client: &Node) {
    let per_chunk = s.latency_round_trips / CHUNKS;
    let (mut raw_samples, mut call_samples, mut async_samples) =
        (Vec::new(), Vec::new(), Vec::new());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    raw.latency(per_chunk / 10, &mut Vec::new());
    call_latency(client, per_chunk / 10, &mut Vec::new());
    async_latency(&rt, client, per_chunk / 10, &mut Vec::new());
    for _ in 0..CHUNKS {
        raw.latency(per_chunk, &mut raw_samples);
        call_latency(client, per_chunk, &mut call_samples);
        async_latency(&rt, client, per_chunk, &mut async_samples);
    }
    let (raw_l, call_l) = (summarize(raw_samples), summarize(call_samples));
    let async_l = summarize(async_samples);
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        format!("round trip ({mode})"),
        "p50",
        "p99",
        "p50 ratio"
    );
    print_latency("raw libzmq DEALER->ROUTER echo", &raw_l, &raw_l);
    print_latency("bilateral call_one", &call_l, &raw_l);
    print_latency(
        "bilateral call_one_async (tokio, 1 thread)",
        &async_l,
        &raw_l,
    );
    println!(
        "{:<44} {:>10.2}x",
        "  async / blocking p50",
        ratio(async_l.p50, call_l.p50)
    );
    println!();

    let per_chunk = s.throughput_messages / CHUNKS;
    let (mut raw_time, mut call_time, mut async_time) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for _ in 0..CHUNKS {
        raw_time += raw.pipelined(per_chunk);
        call_time += call_pipelined(client, per_chunk);
        async_time += rt.block_on(async_pipelined(client, per_chunk));
    }
    let total = (per_chunk * CHUNKS) as f64;
    let (raw_tp, call_tp, async_tp) = (
        total / raw_time.as_secs_f64(),
        total / call_time.as_secs_f64(),
        total / async_time.as_secs_f64(),
    );
    println!(
        "{:<44} {:>12} {:>10}",
        format!("pipelined, {PIPELINE} outstanding ({mode})"),
        "per second",
        "ratio"
    );
    println!("{:<44} {:>12.0} {:>9.2}x", "raw libzmq echo", raw_tp, 1.0);
    println!(
        "{:<44} {:>12.0} {:>9.2}x",
        "bilateral calls (one caller thread)",
        call_tp,
        call_tp / raw_tp
    );
    println!(
        "{:<44} {:>12.0} {:>9.2}x",
        "bilateral futures (one task, tokio, 1 thread)",
        async_tp,
        async_tp / raw_tp
    );
    println!("{:<44} {:>12.2}x", "  async / blocking", async_tp / call_tp);
    println!();
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn print_latency(what: &str, l: &Latency, base: &Latency) {
    println!(
        "{:<44} {:>10} {:>10} {:>9.2}x",
        what,
        fmt(l.p50),
        fmt(l.p99),
        ratio(l.p50, base.p50)
    );
}

/// A ROUTER echo server on its own thread, and a DEALER client.
/// Raw libzmq's echo: a ROUTER on its own thread that sends every message
/// back; an empty message stops it.
struct RawServer {
    endpoint: String,
    thread: Option<std::thread::JoinHandle<()>>,
    _ctx: Context,
}

impl RawServer {
    /// With `curve`, the server's keys.
    fn start(curve: Option<&Keypair>) -> RawServer {
        let ctx = Context::new().unwrap();
        let router = ctx.socket(SocketType::Router).unwrap();
        router.set_sndhwm(0).unwrap();
        router.set_rcvhwm(0).unwrap();
        if let Some(server) = curve {
            curve_server(&router, server);
        }
        router.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = router.last_endpoint().unwrap();
        let thread = std::thread::spawn(move || {
            loop {
                let (frames, _) = router.recv_multipart(false, 4).unwrap();
                let [id, body] = &frames[..] else { continue };
                if body.is_empty() {
                    return;
                }
                router.send(id.as_bytes(), SendFlags::MORE).unwrap();
                router.send(body.as_bytes(), SendFlags::NONE).unwrap();
            }
        });
        RawServer {
            endpoint,
            thread: Some(thread),
            _ctx: ctx,
        }
    }
}

/// A DEALER client of a [`RawServer`] (here, or in another process).
struct RawEcho {
    dealer: Socket,
    server: Option<RawServer>,
    _ctx: Context,
}

impl RawEcho {
    /// With `curve`, the server's and the client's keys.
    fn start(curve: Option<(Keypair, Keypair)>) -> Self {
        let server = RawServer::start(curve.as_ref().map(|(s, _)| s));
        let mut client = RawEcho::connect(&server.endpoint, curve.as_ref());
        client.server = Some(server);
        client
    }

    /// A client of the server at `endpoint`.
    fn connect(endpoint: &str, curve: Option<&(Keypair, Keypair)>) -> Self {
        let ctx = Context::new().unwrap();
        let dealer = ctx.socket(SocketType::Dealer).unwrap();
        dealer.set_sndhwm(0).unwrap();
        dealer.set_rcvhwm(0).unwrap();
        if let Some((server, client)) = curve {
            curve_client(&dealer, server, client);
        }
        dealer.connect(endpoint).unwrap();
        RawEcho {
            dealer,
            server: None,
            _ctx: ctx,
        }
    }

    fn latency(&self, n: usize, samples: &mut Vec<Duration>) {
        let payload = [7u8; PAYLOAD];
        let mut reply = Message::new();
        for _ in 0..n {
            let t = Instant::now();
            self.dealer.send(&payload, SendFlags::NONE).unwrap();
            self.dealer.recv(&mut reply, false).unwrap();
            samples.push(t.elapsed());
        }
    }

    fn pipelined(&self, n: usize) -> Duration {
        let payload = [7u8; PAYLOAD];
        let mut reply = Message::new();
        let started = Instant::now();
        for _ in 0..PIPELINE.min(n) {
            self.dealer.send(&payload, SendFlags::NONE).unwrap();
        }
        for i in 0..n {
            self.dealer.recv(&mut reply, false).unwrap();
            if i + PIPELINE < n {
                self.dealer.send(&payload, SendFlags::NONE).unwrap();
            }
        }
        started.elapsed()
    }
}

impl Drop for RawEcho {
    fn drop(&mut self) {
        let _ = self.dealer.send(&[], SendFlags::NONE);
        if let Some(thread) = self.server.as_mut().and_then(|s| s.thread.take()) {
            let _ = thread.join();
        }
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        // A remote server stops when its process ends; nothing to join here
        // unless a client sent the empty message.
        if let Some(thread) = self.thread.take() {
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// A server in a child process (a node with `echo`, and raw libzmq's echo),
/// and this process's clients of both.
struct Remote {
    raw: RawEcho,
    client: Node,
    child: Child,
}

impl Remote {
    fn start(curve: Option<(Keypair, Keypair)>) -> Remote {
        let envs = match &curve {
            None => vec![(SERVER_ENV, "plain".to_string())],
            Some((server, client)) => vec![
                (SERVER_ENV, server.secret_z85()),
                (CLIENT_ENV, client.public().to_z85()),
            ],
        };
        let (child, words) = spawn_self(&envs);
        let [raw_endpoint, node_name, node_endpoint] = &words[..] else {
            panic!("the server said {words:?}");
        };
        let raw = RawEcho::connect(raw_endpoint, curve.as_ref());
        let client = match &curve {
            None => Node::builder("client"),
            Some((_, c)) => Node::secure_builder(c),
        }
        .reactor_spin(spin())
        .start()
        .unwrap();
        client.connect(node_name, node_endpoint).unwrap();
        client
            .wait_for_peer(node_name, Duration::from_secs(10))
            .unwrap();
        Remote { raw, client, child }
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// The child process of [`Remote`]: serves until its stdin closes.
fn serve_in_child(mode: &str) {
    let curve = (mode != "plain").then(|| {
        let server = Keypair::from_secret_z85(mode).unwrap();
        let client = std::env::var(CLIENT_ENV).unwrap();
        (server, bilateral::PublicKey::from_z85(&client).unwrap())
    });
    let raw = RawServer::start(curve.as_ref().map(|(s, _)| s));
    let builder = match &curve {
        None => Node::builder("server"),
        Some((s, c)) => Node::secure_builder(s).allow_keys([*c]),
    };
    let server = builder
        .listen("tcp://127.0.0.1:*")
        .reactor_spin(spin())
        .start()
        .unwrap();
    register_echo(&server);
    ready_and_wait(&format!(
        "{} {} {}",
        raw.endpoint,
        server.name(),
        server.endpoint().unwrap()
    ));
    server.close();
    // The raw server's thread may still wait in a receive: ending the
    // process here does not wait for its context.
    std::process::exit(0);
}

/// A client and a server node; with `curve`, the server's and client's keys.
fn pair(curve: Option<(Keypair, Keypair)>) -> (Node, Node) {
    let workers = std::env::var("BILATERAL_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let (server, client) = match &curve {
        None => (Node::builder("server"), Node::builder("client")),
        Some((s, c)) => (
            Node::secure_builder(s).allow_keys([*c.public()]),
            Node::secure_builder(c),
        ),
    };
    let server = server
        .listen("tcp://127.0.0.1:*")
        .reactor_spin(spin())
        .workers(workers)
        .start()
        .unwrap();
    register_echo(&server);
    let client = client.reactor_spin(spin()).start().unwrap();
    client
        .connect(server.name(), server.endpoint().unwrap())
        .unwrap();
    client
        .wait_for_peer(server.name(), Duration::from_secs(10))
        .unwrap();
    (client, server)
}

/// The one peer of a benchmark client.
fn server_of(client: &Node) -> String {
    client
        .active_connections()
        .pop()
        .expect("the client has its server")
}

/// The server's `echo`: on a worker, or on the reactor with
/// `BILATERAL_INLINE=1` (`Node::register_inline`).
fn register_echo(server: &Node) {
    if std::env::var("BILATERAL_INLINE").is_ok_and(|v| v == "1") {
        server
            .register_inline("echo", |_c, s: String| Ok(s))
            .unwrap();
    } else {
        server.register("echo", |_c, s: String| Ok(s)).unwrap();
    }
}

fn payload() -> String {
    "x".repeat(PAYLOAD)
}

fn call_latency(client: &Node, n: usize, samples: &mut Vec<Duration>) {
    let (arg, server) = (payload(), server_of(client));
    for _ in 0..n {
        let t = Instant::now();
        let r: String = client
            .call_one(&server, "echo", &arg, Duration::from_secs(5))
            .unwrap();
        samples.push(t.elapsed());
        assert_eq!(r.len(), PAYLOAD);
    }
}

fn call_pipelined(client: &Node, n: usize) -> Duration {
    let (arg, server) = (payload(), server_of(client));
    let start = || {
        client
            .start_call::<_, String>(&server, "echo", &arg, Duration::from_secs(30))
            .unwrap()
    };
    let started = Instant::now();
    let mut in_flight: VecDeque<_> = (0..PIPELINE.min(n)).map(|_| start()).collect();
    for i in 0..n {
        let call = in_flight.pop_front().unwrap();
        assert!(call.wait().all_ok());
        if i + PIPELINE < n {
            in_flight.push_back(start());
        }
    }
    started.elapsed()
}

fn async_latency(
    rt: &tokio::runtime::Runtime,
    client: &Node,
    n: usize,
    samples: &mut Vec<Duration>,
) {
    let (arg, server) = (payload(), server_of(client));
    rt.block_on(async {
        for _ in 0..n {
            let t = Instant::now();
            let r: String = client
                .call_one_async(&server, "echo", &arg, Duration::from_secs(5))
                .await
                .unwrap();
            samples.push(t.elapsed());
            assert_eq!(r.len(), PAYLOAD);
        }
    });
}

async fn async_pipelined(client: &Node, n: usize) -> Duration {
    let (arg, server) = (payload(), server_of(client));
    let start = || {
        client
            .start_call::<_, String>(&server, "echo", &arg, Duration::from_secs(30))
            .unwrap()
    };
    let started = Instant::now();
    let mut in_flight: VecDeque<_> = (0..PIPELINE.min(n)).map(|_| start()).collect();
    for i in 0..n {
        let call = in_flight.pop_front().unwrap();
        assert!(call.await.all_ok());
        if i + PIPELINE < n {
            in_flight.push_back(start());
        }
    }
    started.elapsed()
}

/// Raw libzmq's multicast: one DEALER to each of 16 echo servers (each
/// with its context and thread, as each node has), a message sent on all
/// and every reply received; against one server alone.
fn raw_fanout(rounds: usize) -> (Latency, Latency) {
    let servers: Vec<_> = (0..16).map(|_| RawServer::start(None)).collect();
    let ctx = Context::new().unwrap();
    let dealers: Vec<_> = servers
        .iter()
        .map(|server| {
            let dealer = ctx.socket(SocketType::Dealer).unwrap();
            dealer.connect(&server.endpoint).unwrap();
            dealer
        })
        .collect();
    let payload = [7u8; PAYLOAD];
    let mut reply = Message::new();
    let mut measure = |to: &[Socket], n: usize, samples: &mut Vec<Duration>| {
        for _ in 0..n {
            let t = Instant::now();
            for dealer in to {
                dealer.send(&payload, SendFlags::NONE).unwrap();
            }
            for dealer in to {
                dealer.recv(&mut reply, false).unwrap();
            }
            samples.push(t.elapsed());
        }
    };
    let per_chunk = rounds / CHUNKS;
    let (mut one, mut all) = (Vec::new(), Vec::new());
    for _ in 0..CHUNKS {
        measure(&dealers[..1], per_chunk, &mut one);
        measure(&dealers, per_chunk, &mut all);
    }
    for dealer in &dealers {
        let _ = dealer.send(&[], SendFlags::NONE);
    }
    drop(servers);
    (summarize(one), summarize(all))
}

fn fanout(rounds: usize) -> (Latency, Latency) {
    let hub = Node::builder("hub").reactor_spin(spin()).start().unwrap();
    let peers: Vec<_> = (0..16)
        .map(|i| {
            let p = Node::builder(format!("p{i:02}"))
                .listen("tcp://127.0.0.1:*")
                .workers(1)
                .reactor_spin(spin())
                .start()
                .unwrap();
            register_echo(&p);
            hub.connect(p.name(), p.endpoint().unwrap()).unwrap();
            p
        })
        .collect();
    for p in &peers {
        hub.wait_for_peer(p.name(), Duration::from_secs(10))
            .unwrap();
    }
    let arg = payload();
    let measure = |to: To, n: usize, samples: &mut Vec<Duration>| {
        for _ in 0..n {
            let t = Instant::now();
            let r = hub
                .call::<_, String>(to.clone(), "echo", &arg, Duration::from_secs(5))
                .unwrap();
            assert!(r.all_ok());
            samples.push(t.elapsed());
        }
    };
    let per_chunk = rounds / CHUNKS;
    let (mut one, mut all) = (Vec::new(), Vec::new());
    for _ in 0..CHUNKS {
        measure(To::peer("p00"), per_chunk, &mut one);
        measure(To::All, per_chunk, &mut all);
    }
    (summarize(one), summarize(all))
}
