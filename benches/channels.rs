//! Replicated channels: local write rate, initial transfer of a 10 000-entry
//! channel, how soon a write is visible on 4 other peers (against the call
//! round trip of the same run), and how much a rejoin after 100 changes moves.
//!
//! ```text
//! cargo bench --bench channels               # full run
//! cargo bench --bench channels -- --quick    # smoke run
//! ```

use std::time::{Duration, Instant};

use bilateral::testkit::{TestMesh, Topology, Transport};
use bilateral::{Channel, ChannelConfig, ChannelEvent};

fn config() -> Option<ChannelConfig> {
    Some(ChannelConfig::default().sync_interval(Duration::from_millis(200)))
}

fn p50(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

fn us(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

fn wait(mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(60), "timed out");
        std::thread::yield_now();
    }
    started.elapsed()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (sets, rounds, size) = if quick {
        (20_000, 200, 10_000)
    } else {
        (200_000, 2_000, 10_000)
    };
    println!("bilateral channel benchmark: 64-byte values, TCP loopback");
    println!();

    // Local write rate (one node, no peers).
    let mesh = TestMesh::builder(1)
        .transport(Transport::Tcp)
        .start()
        .unwrap();
    let local: Channel<String> = mesh.node(0).channel_with("local", config()).unwrap();
    let value = "x".repeat(64);
    let started = Instant::now();
    for i in 0..sets {
        local.set(format!("key/{}", i % 10_000), &value).unwrap();
    }
    let rate = sets as f64 / started.elapsed().as_secs_f64();
    println!("{:<52} {:>14.0} /s", "local set (one node)", rate);
    drop(mesh);

    // Five nodes; write visibility and call round trip in the same run.
    let mesh = TestMesh::builder(5)
        .topology(Topology::Full)
        .transport(Transport::Tcp)
        .start()
        .unwrap();
    mesh.wait_all_joined(Duration::from_secs(10)).unwrap();
    let chans: Vec<Channel<String>> = mesh
        .nodes()
        .iter()
        .map(|n| n.channel_with("data", config()).unwrap())
        .collect();
    for (i, c) in chans.iter().enumerate() {
        c.peer((0..5).filter(|&j| j != i).map(|j| mesh.name(j).to_string()));
    }
    wait(|| chans.iter().all(|c| c.peers().len() == 4));
    mesh.node(1)
        .register("echo", |_c, s: String| Ok(s))
        .unwrap();
    let watches: Vec<_> = chans[1..].iter().map(|c| c.watch()).collect();
    let (mut visible, mut calls) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for round in 0..rounds {
        let key = format!("round/{round}");
        let started = Instant::now();
        chans[0].set(&key, &value).unwrap();
        for w in &watches {
            w.wait_for(
                Duration::from_secs(10),
                |e| matches!(e, ChannelEvent::Changed(c) if c.key == key),
            )
            .expect("the write arrives");
        }
        visible.push(started.elapsed());
        let started = Instant::now();
        let _: String = mesh
            .node(0)
            .call_one(mesh.name(1), "echo", &value, Duration::from_secs(5))
            .unwrap();
        calls.push(started.elapsed());
    }
    let (visible, call) = (p50(visible), p50(calls));
    println!("{:<52} {:>14}", "call round trip p50 (same run)", us(call));
    println!(
        "{:<52} {:>14} ({:.2}x a call)",
        "write visible on all 4 other peers, p50",
        us(visible),
        visible.as_secs_f64() / call.as_secs_f64()
    );
    drop(watches);
    drop(chans);
    drop(mesh);

    // A new peer receives a 10 000-entry channel; then a rejoin after 100 changes.
    let mesh = TestMesh::builder(2)
        .topology(Topology::Full)
        .transport(Transport::Tcp)
        .start()
        .unwrap();
    mesh.wait_all_joined(Duration::from_secs(10)).unwrap();
    let a: Channel<String> = mesh.node(0).channel_with("big", config()).unwrap();
    a.set_all((0..size).map(|i| (format!("key/{i:05}"), value.clone())))
        .unwrap();
    let b: Channel<String> = mesh.node(1).channel_with("big", config()).unwrap();
    a.peer([mesh.name(1)]);
    let took = {
        let started = Instant::now();
        b.peer([mesh.name(0)]);
        wait(|| b.size() == size);
        started.elapsed()
    };
    println!(
        "{:<52} {:>14}",
        format!("new peer receives a {size}-entry channel"),
        format!("{:.1} ms", took.as_secs_f64() * 1e3)
    );

    mesh.node(0).partition([mesh.name(1)]).unwrap();
    mesh.wait_lost(0, 1, Duration::from_secs(10)).unwrap();
    for i in 0..100 {
        a.set(format!("key/{:05}", i * 97), format!("changed {i}"))
            .unwrap();
    }
    let before = a.stats();
    mesh.node(0).heal().unwrap();
    let rejoined = Instant::now();
    wait(|| b.get("key/09603").unwrap().as_deref() == Some("changed 99"));
    let after = a.stats();
    let (entries, bytes) = (
        after.entries_sent - before.entries_sent,
        after.bytes_sent - before.bytes_sent,
    );
    let whole = size as u64 * (9 + 66);
    println!(
        "{:<52} {:>14}",
        "rejoin after 100 changes: entries sent",
        format!("{entries} of {size}")
    );
    println!(
        "{:<52} {:>14}",
        "rejoin after 100 changes: bytes sent",
        format!(
            "{bytes} ({:.1}% of the channel)",
            100.0 * bytes as f64 / whole as f64
        )
    );
    println!(
        "{:<52} {:>14}",
        "rejoin after 100 changes: caught up in",
        format!("{:.1} ms", rejoined.elapsed().as_secs_f64() * 1e3)
    );
}
