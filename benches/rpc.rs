//! Call latency and throughput against raw libzmq, measured in one run.
//!
//! Every figure Bilateral is judged by is a ratio to raw libzmq measured in
//! the same process, on the same machine, through the project's own binding,
//! so the drift between runs (5–25 % on small machines) cancels out.
//!
//! ```text
//! cargo bench --bench rpc                 # full run (about a minute)
//! cargo bench --bench rpc -- --quick      # a smoke run
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bilateral::To;
use bilateral::zmq::{Context, Message, SendFlags, SocketType};

const PAYLOAD: usize = 64;
const PIPELINE: usize = 128;

struct Settings {
    latency_round_trips: usize,
    throughput_messages: usize,
    fanout_rounds: usize,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let s = if quick {
        Settings {
            latency_round_trips: 2_000,
            throughput_messages: 20_000,
            fanout_rounds: 200,
        }
    } else {
        Settings {
            latency_round_trips: 20_000,
            throughput_messages: 200_000,
            fanout_rounds: 2_000,
        }
    };
    println!(
        "bilateral rpc benchmark: {PAYLOAD}-byte payload, TCP loopback, {} cores",
        cores()
    );
    println!();

    let raw = raw_echo_latency(s.latency_round_trips);
    let call = call_latency(s.latency_round_trips);
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "round trip", "p50", "p99", "p50 ratio"
    );
    print_latency("raw libzmq DEALER->ROUTER echo", &raw, &raw);
    print_latency("bilateral call_one", &call, &raw);
    println!();

    let raw_tp = raw_pipelined(s.throughput_messages);
    let call_tp = call_pipelined(s.throughput_messages);
    println!(
        "{:<44} {:>12} {:>10}",
        format!("pipelined, {PIPELINE} outstanding"),
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
    println!();

    let (one, sixteen) = fanout(s.fanout_rounds);
    println!("{:<44} {:>10} {:>10}", "multicast call", "p50", "ratio");
    println!("{:<44} {:>10} {:>9.2}x", "to 1 peer", fmt(one.p50), 1.0);
    println!(
        "{:<44} {:>10} {:>9.2}x",
        "to all of 16 peers",
        fmt(sixteen.p50),
        ratio(sixteen.p50, one.p50)
    );
    println!();
    println!(
        "targets: call p50 <= 1.25x raw; pipelined >= 0.50x raw; 16-peer multicast <= 4x one peer"
    );
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

struct Latency {
    p50: Duration,
    p99: Duration,
}

fn summarize(mut samples: Vec<Duration>) -> Latency {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Latency {
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn fmt(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
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

/// A ROUTER that echoes every message back until it gets an empty payload.
fn raw_echo_server(ctx: &Context) -> (String, std::thread::JoinHandle<()>) {
    let router = ctx.socket(SocketType::Router).unwrap();
    router.set_sndhwm(0).unwrap();
    router.set_rcvhwm(0).unwrap();
    router.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = router.last_endpoint().unwrap();
    let server = std::thread::spawn(move || {
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
    (endpoint, server)
}

fn raw_client(ctx: &Context, endpoint: &str) -> bilateral::zmq::Socket {
    let dealer = ctx.socket(SocketType::Dealer).unwrap();
    dealer.set_sndhwm(0).unwrap();
    dealer.set_rcvhwm(0).unwrap();
    dealer.connect(endpoint).unwrap();
    dealer
}

fn raw_echo_latency(n: usize) -> Latency {
    let ctx = Context::new().unwrap();
    let (endpoint, server) = raw_echo_server(&ctx);
    let dealer = raw_client(&ctx, &endpoint);
    let payload = [7u8; PAYLOAD];
    let mut reply = Message::new();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        dealer.send(&payload, SendFlags::NONE).unwrap();
        dealer.recv(&mut reply, false).unwrap();
        if i >= n / 10 {
            samples.push(t.elapsed());
        }
    }
    dealer.send(&[], SendFlags::NONE).unwrap();
    server.join().unwrap();
    summarize(samples)
}

fn raw_pipelined(n: usize) -> f64 {
    let ctx = Context::new().unwrap();
    let (endpoint, server) = raw_echo_server(&ctx);
    let dealer = raw_client(&ctx, &endpoint);
    let payload = [7u8; PAYLOAD];
    let mut reply = Message::new();
    for _ in 0..PIPELINE {
        dealer.send(&payload, SendFlags::NONE).unwrap();
    }
    let started = Instant::now();
    for i in 0..n {
        dealer.recv(&mut reply, false).unwrap();
        if i + PIPELINE < n {
            dealer.send(&payload, SendFlags::NONE).unwrap();
        }
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    dealer.send(&[], SendFlags::NONE).unwrap();
    server.join().unwrap();
    rate
}

fn pair() -> (bilateral::Node, bilateral::Node) {
    let server = bilateral::Node::builder("server")
        .listen("tcp://127.0.0.1:*")
        .start()
        .unwrap();
    server.register("echo", |_c, s: String| Ok(s)).unwrap();
    let client = bilateral::Node::builder("client").start().unwrap();
    client
        .connect("server", server.endpoint().unwrap())
        .unwrap();
    client
        .wait_for_peer("server", Duration::from_secs(10))
        .unwrap();
    (client, server)
}

fn payload() -> String {
    "x".repeat(PAYLOAD)
}

fn call_latency(n: usize) -> Latency {
    let (client, _server) = pair();
    let arg = payload();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        let r: String = client
            .call_one("server", "echo", &arg, Duration::from_secs(5))
            .unwrap();
        if i >= n / 10 {
            samples.push(t.elapsed());
        }
        debug_assert_eq!(r.len(), PAYLOAD);
    }
    summarize(samples)
}

fn call_pipelined(n: usize) -> f64 {
    let (client, _server) = pair();
    let arg = payload();
    let start = || {
        client
            .start_call::<_, String>("server", "echo", &arg, Duration::from_secs(30))
            .unwrap()
    };
    let mut in_flight: VecDeque<_> = (0..PIPELINE).map(|_| start()).collect();
    let started = Instant::now();
    for i in 0..n {
        let call = in_flight.pop_front().unwrap();
        assert!(call.wait().all_ok());
        if i + PIPELINE < n {
            in_flight.push_back(start());
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn fanout(rounds: usize) -> (Latency, Latency) {
    let hub = bilateral::Node::builder("hub").start().unwrap();
    let peers: Vec<_> = (0..16)
        .map(|i| {
            let p = bilateral::Node::builder(format!("p{i:02}"))
                .listen("tcp://127.0.0.1:*")
                .workers(1)
                .start()
                .unwrap();
            p.register("echo", |_c, s: String| Ok(s)).unwrap();
            hub.connect(p.name(), p.endpoint().unwrap()).unwrap();
            p
        })
        .collect();
    for p in &peers {
        hub.wait_for_peer(p.name(), Duration::from_secs(10))
            .unwrap();
    }
    let arg = payload();
    let measure = |to: To| {
        let mut samples = Vec::with_capacity(rounds);
        for i in 0..rounds + rounds / 10 {
            let t = Instant::now();
            let r = hub
                .call::<_, String>(to.clone(), "echo", &arg, Duration::from_secs(5))
                .unwrap();
            assert!(r.all_ok());
            if i >= rounds / 10 {
                samples.push(t.elapsed());
            }
        }
        summarize(samples)
    };
    let one = measure(To::peer("p00"));
    let all = measure(To::All);
    (one, all)
}
