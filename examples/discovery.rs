//! Ten nodes, each given only the first as its seed, find each other and
//! form a full mesh; then a partial mesh of ten in which each node dials at
//! most three peers, whose registry still reaches every node.
//!
//! Run with `cargo run --example discovery`.

use std::error::Error;
use std::time::{Duration, Instant};

use bilateral::{Discovery, Node, PeerEvent};

const NODES: usize = 10;

fn start(name: &str, discovery: Discovery, seed: Option<&Node>) -> Result<Node, Box<dyn Error>> {
    let mut builder = Node::builder(name)
        .network("discovery-demo")
        .listen("tcp://127.0.0.1:*")
        .discovery(discovery);
    if let Some(seed) = seed {
        builder = builder.seed(seed.name(), seed.endpoint().unwrap_or_default());
    }
    Ok(builder.start()?)
}

fn wait(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<Duration, Box<dyn Error>> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > limit {
            return Err(format!("{what}: not within {limit:?}").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(started.elapsed())
}

fn main() -> Result<(), Box<dyn Error>> {
    // A full mesh from one seed.
    let seed = start("node-0", Discovery::default(), None)?;
    let events = seed.events();
    let mut nodes = vec![seed];
    for i in 1..NODES {
        let node = start(&format!("node-{i}"), Discovery::default(), Some(&nodes[0]))?;
        nodes.push(node);
    }
    let took = wait("full mesh", Duration::from_secs(30), || {
        nodes.iter().all(|n| n.connection_count() == NODES - 1)
    })?;
    println!(
        "{NODES} nodes, each given one seed: a full mesh after {:.2} s",
        took.as_secs_f64()
    );
    for n in &nodes {
        println!(
            "  {} is in session with {} peers",
            n.name(),
            n.connection_count()
        );
    }
    let discovered = std::iter::from_fn(|| events.try_recv())
        .filter(|e| matches!(e, PeerEvent::Discovered { .. }))
        .count();
    println!("  the seed itself dialled {discovered} nodes it discovered");
    drop(nodes);

    // A partial mesh: each node dials at most three peers.
    let discovery = Discovery::default().max_peers(3);
    let seed = start("part-0", discovery.clone(), None)?;
    let mut nodes = vec![seed];
    for i in 1..NODES {
        nodes.push(start(
            &format!("part-{i}"),
            discovery.clone(),
            Some(&nodes[0]),
        )?);
    }
    let _entries: Vec<_> = nodes
        .iter()
        .map(|n| {
            n.registry()?
                .register("who", n.name(), n.name())
                .map_err(Into::into)
        })
        .collect::<Result<_, Box<dyn Error>>>()?;
    let took = wait("registry everywhere", Duration::from_secs(30), || {
        nodes.iter().all(|n| {
            n.registry()
                .ok()
                .and_then(|r| r.list::<String>("who").ok())
                .map_or(0, |l| l.len())
                == NODES
        })
    })?;
    let sessions: Vec<usize> = nodes.iter().map(|n| n.connection_count()).collect();
    println!(
        "partial mesh (max_peers 3): sessions per node {sessions:?}; every node sees all {NODES} entries after {:.2} s",
        took.as_secs_f64()
    );
    println!("done");
    Ok(())
}
