//! A local mesh of five nodes on TCP loopback, showing what Bilateral does:
//! joins, a multicast call with one entry per peer, a cast, a peer that
//! crashes and is detected as lost, and its return.
//!
//! Run with `cargo run --release --example mesh`.

use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bilateral::{Node, PeerEvent, Responses, To};
use serde::{Deserialize, Serialize};

const NAMES: [&str; 5] = ["alpha", "bravo", "charlie", "delta", "echo"];

#[derive(Serialize, Deserialize, Debug)]
struct Status {
    name: String,
    incarnation: String,
    calls_served: u64,
}

type Notes = std::sync::mpsc::Sender<String>;

fn start(name: &str, endpoint: &str, notes: Notes) -> Result<Node, bilateral::Error> {
    let node = Node::builder(name)
        .network("demo")
        .listen(endpoint)
        // Short timers so the demo is quick; the defaults are 1 s and 5 s.
        .heartbeat_interval(Duration::from_millis(200))
        .lost_timeout(Duration::from_secs(1))
        .backoff(Duration::from_millis(100), Duration::from_secs(2))
        .start()?;
    let served = Arc::new(AtomicU64::new(0));
    let (me, incarnation) = (
        name.to_string(),
        format!("{:08x}", node.incarnation() >> 32),
    );
    node.register("Status.Report", move |_ctx, (): ()| {
        Ok(Status {
            name: me.clone(),
            incarnation: incarnation.clone(),
            calls_served: served.fetch_add(1, Ordering::Relaxed) + 1,
        })
    })?;
    let me = name.to_string();
    let notes = std::sync::Mutex::new(notes);
    node.register("Log.Note", move |ctx, text: String| {
        let note = format!("      {me:<8} got a note from {}: {text:?}", ctx.peer());
        let _ = notes.lock().map(|n| n.send(note));
        Ok(())
    })?;
    Ok(node)
}

fn print_results(results: &Responses<Status>) {
    for r in results {
        match &r.result {
            Ok(s) => println!(
                "      {:<8} ok      incarnation {} served {} call(s)",
                r.peer, s.incarnation, s.calls_served
            ),
            Err(e) => println!("      {:<8} error   {e}", r.peer),
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let t0 = Instant::now();
    let at = || format!("{:>6.3}s", t0.elapsed().as_secs_f64());

    println!("{} starting {} nodes on 127.0.0.1", at(), NAMES.len());
    let (notes, noted) = std::sync::mpsc::channel();
    let mut nodes = Vec::new();
    for name in NAMES {
        let node = start(name, "tcp://127.0.0.1:*", notes.clone())?;
        println!(
            "        {name:<8} listens on {}",
            node.endpoint().unwrap_or("-")
        );
        nodes.push(node);
    }
    let alpha = nodes[0].clone();
    let events = alpha.events();

    // Every node dials the nodes after it: a full mesh, one dial per pair.
    for (i, node) in nodes.iter().enumerate() {
        for other in &nodes[i + 1..] {
            node.connect(other.name(), other.endpoint().unwrap())?;
        }
    }
    for other in &NAMES[1..] {
        alpha.wait_for_peer(other, Duration::from_secs(10))?;
        println!("{} alpha joined {other}", at());
    }
    for node in &nodes {
        for other in NAMES.iter().filter(|n| **n != node.name()) {
            node.wait_for_peer(other, Duration::from_secs(10))?;
        }
    }
    println!(
        "{} full mesh: every node has {} peers",
        at(),
        NAMES.len() - 1
    );

    println!(
        "{} alpha calls Status.Report on every peer and on 'zulu', which does not exist",
        at()
    );
    let mut targets = alpha.active_connections();
    targets.push("zulu".into());
    let results: Responses<Status> =
        alpha.call(targets, "Status.Report", &(), Duration::from_secs(2))?;
    print_results(&results);

    let sent = alpha.cast(To::All, "Log.Note", "hello from alpha")?;
    println!(
        "{} alpha casts Log.Note to all: queued for {sent} peers",
        at()
    );
    let mut received: Vec<String> = (0..sent)
        .filter_map(|_| noted.recv_timeout(Duration::from_secs(5)).ok())
        .collect();
    received.sort();
    received.iter().for_each(|n| println!("{n}"));

    println!("{} delta crashes (killed: no goodbye)", at());
    let delta_endpoint = nodes[3].endpoint().unwrap().to_string();
    let crashed = Instant::now();
    nodes[3].kill();
    let lost = events.wait_for(
        Duration::from_secs(10),
        |e| matches!(e, PeerEvent::Lost { peer, .. } if peer.as_str() == "delta"),
    );
    if let Some(PeerEvent::Lost { reason, .. }) = lost {
        println!(
            "{} alpha lost delta after {:?}: {reason}",
            at(),
            crashed.elapsed()
        );
    }
    let results: Responses<Status> = alpha.call(
        ["bravo", "delta"],
        "Status.Report",
        &(),
        Duration::from_secs(2),
    )?;
    print_results(&results);

    println!("{} delta starts again on {delta_endpoint}", at());
    let restarted = Instant::now();
    nodes[3] = start("delta", &delta_endpoint, notes)?;
    nodes[3].connect("echo", nodes[4].endpoint().unwrap())?;
    alpha.wait_for_peer("delta", Duration::from_secs(10))?;
    println!(
        "{} alpha rejoined delta after {:?} (its own retry with backoff)",
        at(),
        restarted.elapsed()
    );
    let results: Responses<Status> =
        alpha.call(To::All, "Status.Report", &(), Duration::from_secs(2))?;
    print_results(&results);

    let stats = alpha.stats();
    println!(
        "{} alpha: {} frames in, {} out, {} late replies, {} malformed",
        at(),
        stats.frames_in,
        stats.frames_out,
        stats.late_replies,
        stats.malformed
    );
    for node in &nodes {
        node.close();
    }
    println!("{} closed all nodes", at());
    Ok(())
}
