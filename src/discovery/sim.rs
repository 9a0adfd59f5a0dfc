//! Many nodes' registries and discovery planners in one simulated mesh,
//! with injected time: how a partial mesh forms from seeds, how far an
//! entry and an owner's loss travel, and what that costs in messages.
//!
//! CI runs 100 nodes; larger runs are on demand:
//! `BILATERAL_SIM_NODES=300 cargo test --release --lib thousand -- --ignored --nocapture`.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::planner::{Plan, Planner, Source};
use super::{COLLECTION, Discovery, NodeEntry};
use crate::registry::book::{Book, Key, RegistryConfig};
use crate::registry::wire::Message;

const LATENCY_US: u64 = 500;

/// A message in flight: delivery time (since the start), sequence (its
/// payload's key), sender, receiver, and their incarnations when it left.
type InFlight = (Duration, u64, usize, usize, u64, u64);

struct SimNode {
    book: Book,
    planner: Planner,
    incarnation: u64,
    sessions: BTreeSet<usize>,
    /// What the node's watchers were told is visible, and how many
    /// entries that makes per collection and per collection and name.
    shown: HashSet<Key>,
    counts: HashMap<(String, Option<String>), usize>,
}

struct Sim {
    start: Instant,
    now: Instant,
    nodes: Vec<Option<SimNode>>,
    /// Messages in flight, earliest first.
    queue: BinaryHeap<Reverse<InFlight>>,
    payloads: HashMap<u64, Message>,
    seq: u64,
    rng: u64,
    sent: Vec<u64>,
}

fn name(i: usize) -> String {
    format!("n{i}")
}

fn index(name: &str) -> usize {
    name[1..].parse().unwrap_or(usize::MAX)
}

impl Sim {
    fn new(n: usize) -> Self {
        let now = Instant::now();
        Sim {
            start: now,
            now,
            nodes: (0..n).map(|_| None).collect(),
            queue: BinaryHeap::new(),
            payloads: HashMap::new(),
            seq: 0,
            rng: 0x2545_f491_4f6c_dd1d,
            sent: vec![0; n],
        }
    }

    fn random(&mut self, below: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % below.max(1)
    }

    /// Starts node `i` with discovery (`max_peers`), published, dialling `seed`.
    fn start_node(&mut self, i: usize, max_peers: usize, seed: Option<usize>) {
        let incarnation = 1000 + i as u64;
        let cfg = RegistryConfig::default();
        let mut book = Book::new(&name(i), incarnation, cfg, self.now);
        let entry = NodeEntry {
            endpoints: vec![format!("tcp://198.18.{}.{}:9", i / 250, i % 250 + 1)],
        };
        let value = rmp_serde::to_vec_named(&entry).unwrap_or_default();
        let _ = book.register(COLLECTION, &name(i), value, self.now);
        let mut planner = Planner::new(&name(i), Discovery::default().max_peers(max_peers));
        if let Some(seed) = seed {
            planner.add_seed(&name(seed));
        }
        self.nodes[i] = Some(SimNode {
            book,
            planner,
            incarnation,
            sessions: BTreeSet::new(),
            shown: HashSet::new(),
            counts: HashMap::new(),
        });
        if let Some(seed) = seed {
            self.connect(i, seed);
        }
    }

    fn up(&self, i: usize) -> bool {
        self.nodes.get(i).is_some_and(Option::is_some)
    }

    /// A session between `a` and `b` (both up), as the mesh forms one.
    fn connect(&mut self, a: usize, b: usize) {
        if a == b || !self.up(a) || !self.up(b) {
            return;
        }
        let now = self.now;
        let incs = (self.node(a).incarnation, self.node(b).incarnation);
        for (x, y, inc) in [(a, b, incs.1), (b, a, incs.0)] {
            let node = self.node(x);
            if node.sessions.insert(y) {
                node.book.handle_joined(&name(y), inc, now);
                node.planner.handle_joined(&name(y));
            }
        }
    }

    fn crash(&mut self, i: usize) {
        let Some(node) = self.nodes[i].take() else {
            return;
        };
        let now = self.now;
        for peer in node.sessions {
            if let Some(p) = self.nodes[peer].as_mut() {
                p.sessions.remove(&i);
                p.book.handle_left(&name(i), now);
                p.planner.handle_left(&name(i), now);
            }
        }
    }

    fn node(&mut self, i: usize) -> &mut SimNode {
        self.nodes[i].as_mut().expect("up")
    }

    /// Moves what every node wants to send into the queue, and feeds each
    /// planner what its registry shows of the nodes' collection.
    fn collect(&mut self) {
        let now = self.now;
        let mut dials = Vec::new();
        for from in 0..self.nodes.len() {
            let Some(node) = self.nodes[from].as_mut() else {
                continue;
            };
            while let Some(key) = node.book.poll_changed() {
                let value = node.book.value(&key).cloned();
                let step = match (value.is_some(), node.shown.contains(&key)) {
                    (true, false) => Some(1),
                    (false, true) => Some(-1),
                    _ => None,
                };
                if let Some(step) = step {
                    for count_key in [(key.0.clone(), None), (key.0.clone(), Some(key.1.clone()))] {
                        let count = node.counts.entry(count_key).or_default();
                        *count = count.saturating_add_signed(step);
                    }
                    if step > 0 {
                        node.shown.insert(key.clone());
                    } else {
                        node.shown.remove(&key);
                    }
                }
                if key.0 != COLLECTION {
                    continue;
                }
                match value {
                    Some(bytes) => {
                        if let Ok(entry) = rmp_serde::from_slice::<NodeEntry>(&bytes) {
                            node.planner.handle_node(
                                &key.1,
                                entry.endpoints,
                                true,
                                Source::Registry,
                                now,
                            );
                        }
                    }
                    None => node.planner.handle_node_gone(&key.1, Source::Registry, now),
                }
            }
            node.planner.handle_timeout(now);
            while let Some(plan) = node.planner.poll_action() {
                if let Plan::Connect { peer, .. } = plan {
                    dials.push((from, index(&peer)));
                }
            }
            let mut out = Vec::new();
            while let Some(m) = node.book.poll_out() {
                out.push(m);
            }
            let inc = node.incarnation;
            for (to, message) in out {
                let to = index(&to);
                let Some(to_inc) = self
                    .nodes
                    .get(to)
                    .and_then(|n| n.as_ref())
                    .map(|n| n.incarnation)
                else {
                    continue;
                };
                self.sent[from] += 1;
                self.seq += 1;
                let at = now - self.start + Duration::from_micros(LATENCY_US + self.random(300));
                self.payloads.insert(self.seq, message);
                self.queue
                    .push(Reverse((at, self.seq, from, to, inc, to_inc)));
            }
        }
        for (a, b) in dials {
            self.connect(a, b);
        }
    }

    /// Runs time forward by `d`, a millisecond at a time.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(1);
            let elapsed = self.now - self.start;
            while let Some(Reverse((at, seq, from, to, inc, to_inc))) = self.queue.peek().copied() {
                if at > elapsed {
                    break;
                }
                self.queue.pop();
                let Some(message) = self.payloads.remove(&seq) else {
                    continue;
                };
                let live = self.nodes[from]
                    .as_ref()
                    .is_some_and(|n| n.incarnation == inc)
                    && self.nodes[to]
                        .as_ref()
                        .is_some_and(|n| n.incarnation == to_inc && n.sessions.contains(&from));
                if live {
                    let now = self.now;
                    self.node(to).book.handle_message(&name(from), message, now);
                }
            }
            let now = self.now;
            for node in self.nodes.iter_mut().flatten() {
                if node.book.poll_timeout().is_some_and(|t| t <= now) {
                    node.book.handle_timeout(now);
                }
            }
            self.collect();
        }
    }

    /// How many live nodes' watchers were shown `count` entries in
    /// `collection` (named `name`, if given).
    fn seeing(&mut self, collection: &str, name: Option<&str>, count: usize) -> usize {
        let key = (collection.to_string(), name.map(str::to_string));
        self.nodes
            .iter()
            .flatten()
            .filter(|node| node.counts.get(&key).copied().unwrap_or(0) == count)
            .count()
    }

    /// Advances until `done`, at most `limit`; the time it took.
    fn until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&mut Sim) -> bool,
    ) -> Option<Duration> {
        let started = self.now;
        while self.now - started < limit {
            if done(self) {
                return Some(self.now - started);
            }
            self.advance(Duration::from_millis(50));
        }
        None
    }

    fn live(&self) -> usize {
        self.nodes.iter().flatten().count()
    }

    fn sent(&self) -> u64 {
        self.sent.iter().sum()
    }
}

/// What a run measured.
#[derive(Debug)]
struct Figures {
    /// From the last node's start until every node sees every node.
    discovered: Duration,
    /// Sessions per node: least, mean, most.
    sessions: (usize, f64, usize),
    /// Registry messages per node per second while the mesh forms (from
    /// the first start until discovery is complete).
    forming_rate: f64,
    /// Registry messages per node per second, in a quiet mesh.
    quiet_rate: f64,
    /// One entry registered: until every node sees it.
    registered: Duration,
    /// Messages per node sent meanwhile, beyond the quiet rate.
    registered_cost: f64,
    /// Its owner crashes (its peers see it at once): until no node does.
    removed: Duration,
    /// Messages per node sent meanwhile, beyond the quiet rate.
    removed_cost: f64,
}

fn run(n: usize, max_peers: usize) -> Figures {
    let mut sim = Sim::new(n);
    sim.start_node(0, max_peers, None);
    for i in 1..n {
        // Each node's seed: a node started before it.
        let seed = sim.random(i as u64) as usize;
        sim.start_node(i, max_peers, Some(seed));
        sim.advance(Duration::from_millis(2));
    }
    let limit = Duration::from_secs(300);
    let discovered = sim
        .until(limit, |s| s.seeing(COLLECTION, None, n) == n)
        .expect("discovery reaches every node");
    let forming_rate = sim.sent() as f64 / n as f64 / (sim.now - sim.start).as_secs_f64();
    let per_node: Vec<usize> = sim
        .nodes
        .iter()
        .flatten()
        .map(|x| x.sessions.len())
        .collect();
    let sessions = (
        per_node.iter().copied().min().unwrap_or(0),
        per_node.iter().sum::<usize>() as f64 / n as f64,
        per_node.iter().copied().max().unwrap_or(0),
    );
    sim.advance(Duration::from_secs(5));
    let before = sim.sent();
    let window = Duration::from_secs(10);
    sim.advance(window);
    let quiet_rate = (sim.sent() - before) as f64 / n as f64 / window.as_secs_f64();
    // What a change costs: messages per node beyond the quiet traffic.
    let cost = |sim: &Sim, before: u64, took: Duration| {
        (sim.sent() - before) as f64 / n as f64 - quiet_rate * took.as_secs_f64()
    };
    let owner = n / 2;
    let now = sim.now;
    let _ = sim.node(owner).book.register("svc", "x", vec![1], now);
    let before = sim.sent();
    let registered = sim
        .until(limit, |s| s.seeing("svc", Some("x"), 1) == n)
        .expect("the entry reaches every node");
    let registered_cost = cost(&sim, before, registered);
    sim.crash(owner);
    let live = sim.live();
    let before = sim.sent();
    let removed = sim
        .until(limit, |s| s.seeing("svc", Some("x"), 0) == live)
        .expect("the loss reaches every node");
    let removed_cost = cost(&sim, before, removed);
    Figures {
        discovered,
        sessions,
        forming_rate,
        quiet_rate,
        registered,
        registered_cost,
        removed,
        removed_cost,
    }
}

#[test]
fn a_hundred_nodes_with_max_peers_find_each_other_and_carry_entries_everywhere() {
    let f = run(100, 8);
    println!("100 nodes, max_peers 8: {f:?}");
    assert!(f.sessions.0 >= 1, "{f:?}");
    assert!(f.discovered < Duration::from_secs(60), "{f:?}");
    assert!(f.quiet_rate > 0.0, "anti-entropy goes on: {f:?}");
    assert!(f.registered < Duration::from_secs(30), "{f:?}");
    assert!(f.removed < Duration::from_secs(30), "{f:?}");
    // What a change costs each node stays within a few times its sessions.
    assert!(f.forming_rate < 1_000.0, "{f:?}");
    assert!(f.registered_cost < 50.0, "{f:?}");
    assert!(f.removed_cost < 500.0, "{f:?}");
}

#[test]
#[ignore = "minutes: run with --release --ignored (BILATERAL_SIM_NODES, default 1 000)"]
fn thousand() {
    let n = std::env::var("BILATERAL_SIM_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let f = run(n, 16);
    println!("{n} nodes, max_peers 16: {f:#?}");
}
