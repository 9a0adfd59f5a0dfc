//! A peer that restarts thousands of times: each restart is a new session
//! (a new incarnation) over a new connection that takes over the old one's
//! name. What the node keeps per restart must not grow.
//!
//! The node under test runs in a child process so that its memory is
//! measured alone; the restarting peer is a bare ZeroMQ socket in this one.
//! `BILATERAL_RESTARTS` sets how many restarts (default 5 000).

mod common;

use std::time::Duration;

use bilateral::testkit::zmq::Context;
use common::raw;
use common::*;

const HUB_ENV: &str = "BILATERAL_RESTARTS_HUB";

/// The body of the hub process, not a test of its own.
#[test]
fn hub_process() {
    if std::env::var(HUB_ENV).is_err() {
        return;
    }
    let node = builder("hub").start().expect("hub starts");
    node.register("echo", |_c, x: u64| Ok(x)).unwrap();
    // Given an endpoint, the hub dials the roamer there (and keeps doing so).
    if let Some(roamer) = std::env::var(HUB_ENV).ok().filter(|v| v != "1") {
        node.connect("roamer", &roamer).unwrap();
    }
    serve_as_child(&node);
}

/// One life of the restarting peer: it joins with a new incarnation and
/// calls the hub once. It dies without a word (no PART) when the caller
/// drops the socket, after the next life has taken over its name.
fn live_once(ctx: &Context, endpoint: &str, incarnation: u64) -> bilateral::testkit::zmq::Socket {
    let s = raw::joined(ctx, "roamer", incarnation, "hub", endpoint);
    s.set_linger(Duration::ZERO).unwrap();
    let request = raw::request_frame(incarnation, 1, 5_000, "echo", &[0x2a]);
    raw::send_parts(&s, &[&request]);
    // The hub pings too; wait for the reply among whatever comes.
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let frame = raw::next_frame(&s, PATIENCE).expect("the hub answers");
        if frame.get(1) == Some(&raw::REPLY) {
            assert_eq!(frame.last(), Some(&0x2a), "the echo");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no reply");
    }
    s
}

fn restarts(default: u64) -> u64 {
    std::env::var("BILATERAL_RESTARTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Whether `rss_end` is within 1 % of `rss_warm`; a message for the run.
fn flat(rss_warm: u64, rss_end: u64, lives: u64) -> Result<(), String> {
    let growth = rss_end.saturating_sub(rss_warm);
    if growth * 100 <= rss_warm {
        return Ok(());
    }
    Err(format!(
        "the hub grew by {} KiB over {lives} restarts ({:.2} KiB each)",
        growth >> 10,
        growth as f64 / 1024.0 / lives as f64
    ))
}

#[test]
fn five_thousand_restarts_leave_the_node_as_it_was() {
    let restarts = restarts(5_000);
    let hub = Child::spawn("hub_process", HUB_ENV, "1");
    let ctx = Context::new().unwrap();
    let warm = 100;
    let mut rss_warm = 0;
    let mut samples = Vec::new();
    let mut previous = None;
    for life in 1..=restarts {
        // The new life connects while the old connection is still open: the
        // hub sees its name handed over, then the old connection close.
        let current = live_once(&ctx, &hub.endpoint, life);
        drop(previous.replace(current));
        if life == warm {
            rss_warm = hub.rss();
        }
        if life % 500 == 0 {
            samples.push((life, hub.rss()));
        }
    }
    let rss_end = hub.rss();
    eprintln!(
        "hub RSS after {warm} restarts: {} KiB; then {:?}",
        rss_warm >> 10,
        samples
            .iter()
            .map(|(n, r)| (n, r >> 10))
            .collect::<Vec<_>>()
    );
    flat(rss_warm, rss_end, restarts - warm).unwrap();
}

/// The same with a real node that dials the hub, calls it and is killed,
/// a thousand times (each life starts a node: its threads and sockets).
#[test]
fn a_node_restarting_a_thousand_times_leaves_the_hub_as_it_was() {
    let restarts = restarts(5_000) / 5;
    let hub = Child::spawn("hub_process", HUB_ENV, "1");
    let warm = 100;
    let mut rss_warm = 0;
    for life in 1..=restarts {
        let roamer = node("roamer");
        roamer.connect("hub", &hub.endpoint).unwrap();
        roamer.wait_for_peer("hub", PATIENCE).unwrap();
        let x: u64 = roamer.call_one("hub", "echo", &life, PATIENCE).unwrap();
        assert_eq!(x, life);
        roamer.kill();
        if life == warm {
            rss_warm = hub.rss();
        }
    }
    let rss_end = hub.rss();
    eprintln!(
        "hub RSS after {warm} node restarts: {} KiB, after {restarts}: {} KiB",
        rss_warm >> 10,
        rss_end >> 10
    );
    flat(rss_warm, rss_end, restarts - warm).unwrap();
}

/// The hub dials the restarting node: every restart costs the hub a new
/// DEALER (and its monitor), since the old one is joined to a session that
/// ended. 125 lives by default (each waits for libzmq's 100 ms reconnect).
#[test]
fn a_dialled_node_restarting_leaves_the_hub_as_it_was() {
    let restarts = restarts(5_000) / 40;
    let first = node("roamer");
    let endpoint = first.endpoint().unwrap().to_string();
    let hub = Child::spawn("hub_process", HUB_ENV, &endpoint);
    let mut roamer = first;
    let warm = restarts / 4;
    let mut rss_warm = 0;
    for life in 1..=restarts {
        wait_until(PATIENCE, || roamer.active_connections() == ["hub"]);
        let x: u64 = roamer.call_one("hub", "echo", &life, PATIENCE).unwrap();
        assert_eq!(x, life);
        roamer.kill();
        if life == warm {
            rss_warm = hub.rss();
        }
        roamer = builder_on("roamer", &endpoint).start().unwrap();
    }
    let rss_end = hub.rss();
    eprintln!(
        "hub RSS after dialling {warm} restarted nodes: {} KiB, after {restarts}: {} KiB",
        rss_warm >> 10,
        rss_end >> 10
    );
    flat(rss_warm, rss_end, restarts - warm).unwrap();
}
