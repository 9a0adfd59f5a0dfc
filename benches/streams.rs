//! Stream throughput against raw libzmq, and call latency while a bulk
//! stream shares the connection, measured in one run.
//!
//! The baseline is libzmq itself through the project's binding: one-way
//! 64 KiB messages from a DEALER to a ROUTER in another context, as fast as
//! the sender can push them, until the receiver has them all. A Bilateral
//! stream moves the same bytes with its headers, credit, lanes and threads.
//! Raw and stream runs alternate, so both see the same background load.
//! Plaintext and CURVE are compared separately, with both nodes in this
//! process and with the receiver (Bilateral's and raw libzmq's alike) in a
//! child process.
//!
//! ```text
//! cargo bench --bench streams              # full run (about a minute)
//! cargo bench --bench streams -- --quick   # a smoke run
//! ```

mod common;

use std::io::{Read, Write};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bilateral::testkit::zmq::{Context, Message, SendFlags, SocketType};
use bilateral::{Incoming, Keypair, Node, PublicKey};
use common::*;

const MESSAGE: usize = 64 * 1024;
const ROUNDS: usize = 5;

struct Settings {
    /// Bytes per throughput run.
    bytes: usize,
    /// Calls per latency measurement.
    calls: usize,
}

/// Set in the child process that receives: the server's secret key in
/// CURVE mode ("plain" otherwise); the client's public key in CLIENT_ENV.
const SERVER_ENV: &str = "BILATERAL_STREAMS_SERVER";
const CLIENT_ENV: &str = "BILATERAL_STREAMS_CLIENT";

fn main() {
    if let Ok(mode) = std::env::var(SERVER_ENV) {
        return receive_in_child(&mode);
    }
    let quick = std::env::args().any(|a| a == "--quick");
    let s = if quick {
        Settings {
            bytes: 64 << 20,
            calls: 500,
        }
    } else {
        Settings {
            bytes: 512 << 20,
            calls: 5_000,
        }
    };
    if let Some(mode) = std::env::args().skip_while(|a| a != "--profile").nth(1) {
        // For `perf record`: nothing but one kind of transfer.
        let curve = mode == "curve";
        if mode == "raw" || mode == "raw-curve" {
            raw_one_way(mode == "raw-curve", 4 * s.bytes);
        } else {
            let (client, server) = pair(curve);
            stream_one_way(&client, server.name(), 4 * s.bytes);
        }
        return;
    }
    println!(
        "bilateral stream benchmark: TCP loopback, {} cores, {} MiB per run, {ROUNDS} alternating runs each",
        cores(),
        s.bytes >> 20
    );
    println!();
    println!("{:<48} {:>12} {:>8}", "one-way throughput", "MB/s", "ratio");
    for curve in [false, true] {
        let mode = if curve { "CURVE" } else { "plaintext" };
        let (client, server) = pair(curve);
        let (mut raw_time, mut stream_time) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..ROUNDS {
            raw_time += raw_one_way(curve, s.bytes);
            stream_time += stream_one_way(&client, server.name(), s.bytes);
        }
        throughput(
            &format!("64 KiB messages, {mode}"),
            s.bytes,
            raw_time,
            stream_time,
        );
    }
    for curve in [false, true] {
        let mode = if curve {
            "CURVE, 2 processes"
        } else {
            "plaintext, 2 processes"
        };
        let remote = Remote::start(curve);
        let (mut raw_time, mut stream_time) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..ROUNDS {
            raw_time += remote.raw_one_way(s.bytes);
            stream_time += stream_one_way(&remote.client, &remote.server, s.bytes);
        }
        throughput(mode, s.bytes, raw_time, stream_time);
    }
    println!();

    let (client, server) = pair(false);
    server.register("ping", |_c, (): ()| Ok(())).unwrap();
    let idle = call_latency(&client, server.name(), s.calls);
    let running = Arc::new(AtomicBool::new(true));
    let bulk = {
        let (client, to, running) = (client.clone(), server.name().to_string(), running.clone());
        std::thread::spawn(move || {
            let mut stream = client
                .open_stream(&to, "sink", &(), Duration::from_secs(5))
                .unwrap();
            let block = vec![3u8; 256 * 1024];
            let mut sent = 0usize;
            while running.load(Ordering::Relaxed) {
                stream.write_all(&block).unwrap();
                sent += block.len();
            }
            stream.finish().unwrap();
            let mut end = Vec::new();
            stream.read_to_end(&mut end).unwrap();
            sent
        })
    };
    // Let the transfer reach full speed before measuring.
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let busy = call_latency(&client, server.name(), s.calls);
    let elapsed = started.elapsed();
    running.store(false, Ordering::Relaxed);
    let sent = bulk.join().unwrap();
    println!(
        "{:<48} {:>12} {:>8}",
        "call round trip on the same connection", "p50", "ratio"
    );
    println!("{:<48} {:>12} {:>7.2}x", "idle", fmt(idle.0), 1.0);
    println!(
        "{:<48} {:>12} {:>7.2}x",
        "while a bulk stream runs",
        fmt(busy.0),
        busy.0.as_secs_f64() / idle.0.as_secs_f64()
    );
    println!(
        "{:<48} {:>12}",
        "  p99 idle / during bulk",
        format!("{} / {}", fmt(idle.1), fmt(busy.1))
    );
    println!(
        "{:<48} {:>12.0}",
        "  bulk MB/s meanwhile (whole run)",
        sent as f64 / (elapsed.as_secs_f64() + 0.2) / 1e6
    );
    println!();
    println!("target: stream throughput >= 0.85x raw libzmq, plaintext and CURVE");
}

/// Prints raw libzmq's and the stream's throughput over `ROUNDS` runs of
/// `bytes` each.
fn throughput(mode: &str, bytes: usize, raw_time: Duration, stream_time: Duration) {
    let total = (bytes * ROUNDS) as f64;
    let raw = total / raw_time.as_secs_f64() / 1e6;
    let stream = total / stream_time.as_secs_f64() / 1e6;
    println!(
        "{:<48} {:>12.0} {:>7.2}x",
        format!("raw libzmq ({mode})"),
        raw,
        1.0
    );
    println!(
        "{:<48} {:>12.0} {:>7.2}x",
        format!("bilateral stream ({mode})"),
        stream,
        stream / raw
    );
}

/// A receiver in a child process (a node with the sink, and a raw ROUTER
/// that counts until "end"), and this process's senders to both.
struct Remote {
    client: Node,
    server: String,
    dealer: bilateral::testkit::zmq::Socket,
    child: Child,
    _ctx: Context,
}

impl Remote {
    fn start(curve: bool) -> Remote {
        let keys = curve.then(|| (keys(), keys()));
        let envs = match &keys {
            None => vec![(SERVER_ENV, "plain".to_string())],
            Some((server, client)) => vec![
                (SERVER_ENV, server.secret_z85()),
                (CLIENT_ENV, client.public().to_z85()),
            ],
        };
        let (child, words) = spawn_self(&envs);
        let [raw_endpoint, server, node_endpoint] = &words[..] else {
            panic!("the receiver said {words:?}");
        };
        let ctx = Context::new().unwrap();
        let dealer = ctx.socket(SocketType::Dealer).unwrap();
        if let Some((s, c)) = &keys {
            curve_client(&dealer, s, c);
        }
        dealer.set_routing_id(b"sender").unwrap();
        dealer.connect(raw_endpoint).unwrap();
        let client = match &keys {
            None => Node::builder("client"),
            Some((_, c)) => Node::secure_builder(c),
        }
        .start()
        .unwrap();
        client.connect(server, node_endpoint).unwrap();
        client
            .wait_for_peer(server, Duration::from_secs(10))
            .unwrap();
        Remote {
            client,
            server: server.to_string(),
            dealer,
            child,
            _ctx: ctx,
        }
    }

    /// `bytes` as one-way 64 KiB messages to the child's ROUTER, until it
    /// has them all.
    fn raw_one_way(&self, bytes: usize) -> Duration {
        let payload = vec![5u8; MESSAGE];
        let mut done = Message::new();
        // Connected and handshaken before the clock starts.
        self.dealer.send(b"end", SendFlags::NONE).unwrap();
        self.dealer.recv(&mut done, false).unwrap();
        let started = Instant::now();
        for _ in 0..bytes / MESSAGE {
            self.dealer.send(&payload, SendFlags::NONE).unwrap();
        }
        self.dealer.send(b"end", SendFlags::NONE).unwrap();
        self.dealer.recv(&mut done, false).unwrap();
        started.elapsed()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// The child process of [`Remote`]: receives until its stdin closes.
fn receive_in_child(mode: &str) {
    let keys = (mode != "plain").then(|| {
        let server = Keypair::from_secret_z85(mode).unwrap();
        let client = PublicKey::from_z85(&std::env::var(CLIENT_ENV).unwrap()).unwrap();
        (server, client)
    });
    let ctx = Context::new().unwrap();
    let router = ctx.socket(SocketType::Router).unwrap();
    if let Some((server, _)) = &keys {
        curve_server(&router, server);
    }
    router.bind("tcp://127.0.0.1:*").unwrap();
    let raw_endpoint = router.last_endpoint().unwrap();
    std::thread::spawn(move || {
        loop {
            let Ok((frames, _)) = router.recv_multipart(false, 4) else {
                return;
            };
            if let [id, body] = &frames[..] {
                if body.as_bytes() == b"end" {
                    let _ = router.send(id.as_bytes(), SendFlags::MORE);
                    let _ = router.send(b"done", SendFlags::NONE);
                }
            }
        }
    });
    let builder = match &keys {
        None => Node::builder("server"),
        Some((s, c)) => Node::secure_builder(s).allow_keys([*c]),
    };
    let server = builder.listen("tcp://127.0.0.1:*").start().unwrap();
    serve_sink(&server);
    ready_and_wait(&format!(
        "{raw_endpoint} {} {}",
        server.name(),
        server.endpoint().unwrap()
    ));
    server.close();
    // The raw receiver's thread waits in a receive: end the process here
    // rather than wait for its context.
    std::process::exit(0);
}

/// The sink: reads every stream to the end, then finishes its side.
fn serve_sink(server: &Node) {
    server
        .on_stream("sink", |incoming: Incoming<()>| {
            let ((), mut stream) = incoming.accept()?;
            let mut buf = vec![0u8; 256 * 1024];
            while stream.read(&mut buf)? > 0 {}
            stream.finish()?;
            Ok(())
        })
        .unwrap();
}

/// Two nodes joined over TCP loopback; the server reads streams to the end.
fn pair(curve: bool) -> (Node, Node) {
    let (server, client) = if curve {
        let (ks, kc) = (keys(), keys());
        (
            Node::secure_builder(&ks).allow_keys([*kc.public()]),
            Node::secure_builder(&kc),
        )
    } else {
        (Node::builder("server"), Node::builder("client"))
    };
    let window: usize = std::env::var("BILATERAL_LINK_WINDOW")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512 << 10);
    let chunk: usize = std::env::var("BILATERAL_CHUNK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128 << 10);
    let server = server
        .listen("tcp://127.0.0.1:*")
        .link_window(window)
        .chunk_size(chunk)
        .start()
        .unwrap();
    let client = client
        .link_window(window)
        .chunk_size(chunk)
        .start()
        .unwrap();
    serve_sink(&server);
    client
        .connect(server.name(), server.endpoint().unwrap())
        .unwrap();
    client
        .wait_for_peer(server.name(), Duration::from_secs(5))
        .unwrap();
    (client, server)
}

/// `bytes` through a stream to the sink, until the sink has read them all.
fn stream_one_way(client: &Node, server: &str, bytes: usize) -> Duration {
    let block = vec![5u8; 256 * 1024];
    let started = Instant::now();
    let mut stream = client
        .open_stream(server, "sink", &(), Duration::from_secs(5))
        .unwrap();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len());
        stream.write_all(&block[..n]).unwrap();
        left -= n;
    }
    stream.finish().unwrap();
    // The sink finishes after reading the last byte.
    let mut end = Vec::new();
    stream.read_to_end(&mut end).unwrap();
    started.elapsed()
}

/// `bytes` as one-way 64 KiB messages from a DEALER to a ROUTER in another
/// context, until the receiver has them all.
fn raw_one_way(curve: bool, bytes: usize) -> Duration {
    let (rctx, sctx) = (Context::new().unwrap(), Context::new().unwrap());
    let router = rctx.socket(SocketType::Router).unwrap();
    let dealer = sctx.socket(SocketType::Dealer).unwrap();
    if curve {
        let (server, client) = (keys(), keys());
        curve_server(&router, &server);
        curve_client(&dealer, &server, &client);
    }
    router.bind("tcp://127.0.0.1:*").unwrap();
    dealer.set_routing_id(b"sender").unwrap();
    dealer.connect(&router.last_endpoint().unwrap()).unwrap();
    // Connected and handshaken before the clock starts.
    dealer.send(b"hello", SendFlags::NONE).unwrap();
    router.recv_multipart(false, 4).unwrap();
    let count = bytes / MESSAGE;
    let receiver = std::thread::spawn(move || {
        for _ in 0..count {
            router.recv_multipart(false, 4).unwrap();
        }
        router.send(b"sender", SendFlags::MORE).unwrap();
        router.send(b"done", SendFlags::NONE).unwrap();
        router
    });
    let payload = vec![5u8; MESSAGE];
    let started = Instant::now();
    for _ in 0..count {
        dealer.send(&payload, SendFlags::NONE).unwrap();
    }
    let mut done = Message::new();
    dealer.recv(&mut done, false).unwrap();
    let elapsed = started.elapsed();
    drop(receiver.join().unwrap());
    elapsed
}

/// p50 and p99 of `n` empty calls.
fn call_latency(client: &Node, server: &str, n: usize) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client
            .call_one::<_, ()>(server, "ping", &(), Duration::from_secs(5))
            .unwrap();
        samples.push(t.elapsed());
    }
    samples.sort_unstable();
    (samples[n / 2], samples[n * 99 / 100])
}
