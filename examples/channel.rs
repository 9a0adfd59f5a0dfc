//! The OpenAF channel-peering scenario on Bilateral: three nodes peer the
//! channel `data`; one sets 25 entries at once (files of a directory, keyed
//! by path); the others see all 25; the writer is killed and the others keep
//! serving everything; while it is away they keep writing; it comes back and
//! catches up.
//!
//! Run with `cargo run --example channel`.

use std::error::Error;
use std::time::{Duration, Instant};

use bilateral::{Channel, ChannelConfig, Node};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct FileInfo {
    size: u64,
    lines: usize,
}

const NAMES: [&str; 3] = ["h1-9080", "h1-9090", "h2-9080"];

fn start(name: &str, endpoint: &str) -> Result<(Node, Channel<FileInfo>), Box<dyn Error>> {
    let node = Node::builder(name)
        .network("openaf-demo")
        .listen(endpoint)
        .heartbeat_interval(Duration::from_millis(200))
        .lost_timeout(Duration::from_secs(1))
        .backoff(Duration::from_millis(100), Duration::from_secs(1))
        .start()?;
    let config = ChannelConfig::default().sync_interval(Duration::from_millis(500));
    let data = node.channel_with::<FileInfo>("data", Some(config))?;
    // Like $ch("data").peer(...) on every script: each names the others.
    data.peer(NAMES.iter().filter(|n| **n != name));
    Ok((node, data))
}

/// The files under `dir`, keyed by path: the 25 first in path order.
fn files(dir: &str) -> Vec<(String, FileInfo)> {
    let mut all = Vec::new();
    let mut dirs = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                all.push((
                    path.display().to_string(),
                    FileInfo {
                        size: text.len() as u64,
                        lines: text.lines().count(),
                    },
                ));
            }
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all.truncate(25);
    all
}

fn wait(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<Duration, Box<dyn Error>> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > timeout {
            return Err(format!("timed out waiting for {what}").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(started.elapsed())
}

fn main() -> Result<(), Box<dyn Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let patience = Duration::from_secs(10);
    let mut nodes = Vec::new();
    for name in NAMES {
        nodes.push(start(name, "tcp://127.0.0.1:*")?);
    }
    for (i, (node, _)) in nodes.iter().enumerate() {
        for (peer, _) in &nodes[i + 1..] {
            node.connect(peer.name(), peer.endpoint().unwrap())?;
        }
    }
    for (node, _) in &nodes {
        for other in NAMES.iter().filter(|n| **n != node.name()) {
            node.wait_for_peer(other, patience)?;
        }
    }
    for (node, data) in &nodes {
        println!("{:<8} data.size() = {}", node.name(), data.size());
    }

    let listing = files("src");
    println!(
        "\n{} sets {} entries in one operation (the files under src/, keyed by path)",
        NAMES[0],
        listing.len()
    );
    nodes[0].1.set_all(listing.clone())?;
    for (node, data) in &nodes[1..] {
        let took = wait("replication", patience, || data.size() == listing.len())?;
        println!(
            "{:<8} data.size() = {} after {took:?}",
            node.name(),
            data.size()
        );
    }

    println!("\n{} is killed", NAMES[0]);
    let writer_endpoint = nodes[0].0.endpoint().unwrap().to_string();
    nodes[0].0.kill();
    let (first, _) = &listing[0];
    for (node, data) in &nodes[1..] {
        let info = data.get(first)?;
        println!(
            "{:<8} still serves {} entries; {first} = {info:?}",
            node.name(),
            data.size()
        );
    }

    println!(
        "\nwhile it is away, {} removes 2 entries and adds 3",
        NAMES[1]
    );
    let away = &nodes[1].1;
    away.unset_all([listing[1].0.clone(), listing[2].0.clone()])?;
    away.set_all((0..3).map(|i| {
        (
            format!("new/while-away-{i}"),
            FileInfo { size: i, lines: 0 },
        )
    }))?;
    let expected = nodes[1].1.get_all()?;
    wait("the third node", patience, || {
        nodes[2]
            .1
            .get_all()
            .map(|all| all == expected)
            .unwrap_or(false)
    })?;

    println!(
        "\n{} comes back (a new process: empty, same name and endpoint)",
        NAMES[0]
    );
    nodes[0] = start(NAMES[0], &writer_endpoint)?;
    let (back, data) = &nodes[0];
    for other in &NAMES[1..] {
        let endpoint = nodes
            .iter()
            .find(|(n, _)| n.name() == *other)
            .unwrap()
            .0
            .endpoint()
            .unwrap()
            .to_string();
        back.connect(other, &endpoint)?;
    }
    let took = wait("catching up", patience, || {
        data.get_all().map(|all| all == expected).unwrap_or(false)
    })?;
    println!(
        "{:<8} caught up in {took:?}: data.size() = {}",
        back.name(),
        data.size()
    );
    assert!(data.get(&listing[1].0)?.is_none(), "the removal reached it");
    assert!(
        data.get("new/while-away-2")?.is_some(),
        "so did the additions"
    );
    for (node, data) in &nodes {
        println!(
            "{:<8} data.size() = {}  stats {:?}",
            node.name(),
            data.size(),
            data.stats()
        );
    }
    Ok(())
}
