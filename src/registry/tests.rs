//! The registry's [`Book`] in a simulated mesh: time moves only when a test
//! says so, sessions follow the topology, messages are delivered, delayed,
//! reordered or lost as the test decides.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::book::{Book, RegistryConfig, RegistryError};
use super::wire::{Held, Message, Owner, Summary};

type Entries = BTreeMap<(String, String, String, u64), Vec<u8>>;

struct SimNode {
    book: Book,
    incarnation: u64,
    /// Peers in session, with their incarnation.
    sessions: BTreeMap<usize, u64>,
    /// What it registered (the truth the others must converge to).
    own: BTreeMap<(String, String), Vec<u8>>,
}

/// A message on its way.
struct InFlight {
    at: Instant,
    from: usize,
    to: usize,
    /// The sender's and receiver's incarnations when it was sent: a message
    /// of a session that ended is not delivered (as the mesh drops it).
    incarnations: (u64, u64),
    message: Message,
}

struct Sim {
    now: Instant,
    cfg: RegistryConfig,
    nodes: Vec<Option<SimNode>>,
    edges: BTreeSet<(usize, usize)>,
    cut: BTreeSet<(usize, usize)>,
    queue: VecDeque<InFlight>,
    next_incarnation: u64,
    rng: u64,
    /// Per-mille of messages lost.
    loss: u64,
    /// Most a message is delayed (uniformly), so messages reorder.
    jitter: Duration,
    sent: u64,
}

fn name(i: usize) -> String {
    format!("n{i}")
}

fn config() -> RegistryConfig {
    RegistryConfig::default()
        .sync_interval(Duration::from_millis(200))
        .push_delay(Duration::from_millis(5))
        .forget_after(Duration::from_secs(5))
        .want_timeout(Duration::from_millis(500))
}

impl Sim {
    fn new(n: usize, edges: impl IntoIterator<Item = (usize, usize)>) -> Self {
        let mut sim = Sim {
            now: Instant::now(),
            cfg: config(),
            nodes: (0..n).map(|_| None).collect(),
            edges: edges
                .into_iter()
                .map(|(a, b)| (a.min(b), a.max(b)))
                .collect(),
            cut: BTreeSet::new(),
            queue: VecDeque::new(),
            next_incarnation: 100,
            rng: 0x9e37_79b9_7f4a_7c15,
            loss: 0,
            jitter: Duration::from_millis(2),
            sent: 0,
        };
        for i in 0..n {
            sim.start(i);
        }
        sim.sessions();
        sim
    }

    fn full(n: usize) -> Self {
        Sim::new(n, (0..n).flat_map(|a| (a + 1..n).map(move |b| (a, b))))
    }

    fn line(n: usize) -> Self {
        Sim::new(n, (1..n).map(|b| (b - 1, b)))
    }

    fn random(&mut self, below: u64) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % below.max(1)
    }

    /// Starts (or restarts) node `i` with a new incarnation and nothing registered.
    fn start(&mut self, i: usize) {
        self.next_incarnation += 1;
        let incarnation = self.next_incarnation;
        self.nodes[i] = Some(SimNode {
            book: Book::new(&name(i), incarnation, self.cfg.clone(), self.now),
            incarnation,
            sessions: BTreeMap::new(),
            own: BTreeMap::new(),
        });
    }

    fn crash(&mut self, i: usize) {
        self.nodes[i] = None;
    }

    fn node(&mut self, i: usize) -> &mut SimNode {
        self.nodes[i].as_mut().expect("node is up")
    }

    fn up(&self, i: usize) -> bool {
        self.nodes[i].is_some()
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        let e = (a.min(b), a.max(b));
        self.edges.contains(&e) && !self.cut.contains(&e) && self.up(a) && self.up(b)
    }

    /// Brings every node's sessions in line with the topology, as the
    /// mesh's membership feed would (a restart is a lost and a new session).
    fn sessions(&mut self) {
        let n = self.nodes.len();
        for a in 0..n {
            if !self.up(a) {
                continue;
            }
            for b in 0..n {
                if a == b {
                    continue;
                }
                let want = self
                    .linked(a, b)
                    .then(|| self.nodes[b].as_ref().map(|x| x.incarnation))
                    .flatten();
                let now = self.now;
                let node = self.node(a);
                let have = node.sessions.get(&b).copied();
                if have == want {
                    continue;
                }
                if have.is_some() {
                    node.sessions.remove(&b);
                    node.book.handle_left(&name(b), now);
                }
                if let Some(inc) = want {
                    node.sessions.insert(b, inc);
                    node.book.handle_joined(&name(b), inc, now);
                }
            }
        }
        self.collect();
    }

    /// Takes what every book wants to send into the queue.
    fn collect(&mut self) {
        for from in 0..self.nodes.len() {
            let Some(node) = self.nodes[from].as_mut() else {
                continue;
            };
            let mut out = Vec::new();
            while let Some((to, message)) = node.book.poll_out() {
                out.push((to, message));
            }
            let inc = node.incarnation;
            for (to, message) in out {
                let to: usize = to[1..].parse().expect("a sim name");
                let Some(to_inc) = self.nodes[to].as_ref().map(|n| n.incarnation) else {
                    continue;
                };
                self.sent += 1;
                if self.random(1000) < self.loss {
                    continue;
                }
                let delay = self.random(self.jitter.as_micros() as u64 + 1);
                self.queue.push_back(InFlight {
                    at: self.now + Duration::from_micros(delay),
                    from,
                    to,
                    incarnations: (inc, to_inc),
                    message,
                });
            }
        }
    }

    /// Runs time forward by `d` in steps of a millisecond: delivers what is
    /// due, runs due timers.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(1).min(end - self.now);
            self.deliver_due();
            let now = self.now;
            for node in self.nodes.iter_mut().flatten() {
                if node.book.poll_timeout().is_some_and(|t| t <= now) {
                    node.book.handle_timeout(now);
                }
            }
            self.collect();
        }
    }

    fn deliver_due(&mut self) {
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) = self.queue.drain(..).partition(|m| m.at <= now);
        self.queue = later.into();
        for m in due {
            let current = (
                self.nodes[m.from].as_ref().map(|n| n.incarnation),
                self.nodes[m.to].as_ref().map(|n| n.incarnation),
            );
            let in_session = self.nodes[m.to]
                .as_ref()
                .is_some_and(|n| n.sessions.get(&m.from) == Some(&m.incarnations.0));
            if current != (Some(m.incarnations.0), Some(m.incarnations.1)) || !in_session {
                continue;
            }
            self.node(m.to)
                .book
                .handle_message(&name(m.from), m.message, now);
        }
        self.collect();
    }

    fn register(
        &mut self,
        i: usize,
        collection: &str,
        key: &str,
        value: &[u8],
    ) -> Result<(), RegistryError> {
        let now = self.now;
        let node = self.node(i);
        node.book.register(collection, key, value.to_vec(), now)?;
        node.own
            .insert((collection.into(), key.into()), value.to_vec());
        self.collect();
        Ok(())
    }

    fn update(&mut self, i: usize, collection: &str, key: &str, value: &[u8]) {
        let now = self.now;
        let node = self.node(i);
        if node
            .book
            .update(collection, key, value.to_vec(), now)
            .unwrap()
        {
            node.own
                .insert((collection.into(), key.into()), value.to_vec());
        }
        self.collect();
    }

    fn remove(&mut self, i: usize, collection: &str, key: &str) {
        let now = self.now;
        let node = self.node(i);
        node.book.remove(collection, key, now);
        node.own.remove(&(collection.into(), key.into()));
        self.collect();
    }

    /// What node `i` sees.
    fn seen(&mut self, i: usize) -> Entries {
        self.node(i)
            .book
            .visible()
            .iter()
            .map(|((c, k, o), v)| {
                (
                    (c.clone(), k.clone(), o.name.clone(), o.incarnation),
                    v.clone(),
                )
            })
            .collect()
    }

    /// What node `i` must see: the registrations of every live node it is
    /// connected to through the topology (itself included).
    fn expected(&self, i: usize) -> Entries {
        let mut reached = BTreeSet::from([i]);
        let mut queue = VecDeque::from([i]);
        while let Some(a) = queue.pop_front() {
            for b in 0..self.nodes.len() {
                if self.linked(a, b) && reached.insert(b) {
                    queue.push_back(b);
                }
            }
        }
        let mut out = Entries::new();
        for j in reached {
            let node = self.nodes[j].as_ref().expect("reached nodes are up");
            for ((c, k), v) in &node.own {
                out.insert((c.clone(), k.clone(), name(j), node.incarnation), v.clone());
            }
        }
        out
    }

    fn assert_converged(&mut self) {
        for i in 0..self.nodes.len() {
            if self.up(i) {
                let (seen, want) = (self.seen(i), self.expected(i));
                assert_eq!(seen, want, "node {i} differs");
                let book = &mut self.node(i).book;
                assert_eq!(
                    book.digest(),
                    book.digest_from_scratch(),
                    "node {i}'s digest"
                );
            }
        }
    }

    fn owner(&self, i: usize) -> Owner {
        Owner {
            name: name(i),
            incarnation: self.nodes[i].as_ref().unwrap().incarnation,
        }
    }
}

#[test]
fn an_entry_reaches_every_node_of_a_full_mesh_and_leaves_with_its_owner() {
    let mut sim = Sim::full(5);
    sim.register(0, "rooms", "lobby", b"a").unwrap();
    sim.register(3, "rooms", "lobby", b"b").unwrap();
    sim.advance(Duration::from_millis(50));
    sim.assert_converged();
    assert_eq!(sim.seen(4).len(), 2);
    sim.crash(0);
    sim.sessions();
    sim.advance(Duration::from_millis(50));
    sim.assert_converged();
    assert_eq!(sim.seen(4).len(), 1);
}

#[test]
fn a_newcomer_is_caught_up_with_a_peer_once_it_holds_its_record() {
    // n0 - n1 (n2 starts alone, then joins n1).
    let mut sim = Sim::new(3, [(0, 1)]);
    sim.register(0, "svc", "x", b"1").unwrap();
    sim.advance(Duration::from_millis(50));
    assert!(!sim.node(2).book.caught_up(&name(1)), "no session yet");
    sim.edges.insert((1, 2));
    sim.sessions();
    assert!(!sim.node(2).book.caught_up(&name(1)), "nothing arrived yet");
    sim.advance(Duration::from_millis(50));
    assert!(sim.node(2).book.caught_up(&name(1)));
    assert_eq!(sim.seen(2).len(), 1, "and n0's entry came with it");
    assert!(!sim.node(2).book.caught_up(&name(0)), "n0 is not its peer");
}

#[test]
fn entries_travel_through_a_relay_and_vanish_when_the_owner_dies() {
    // a - b - c: a and c never talk.
    let mut sim = Sim::line(3);
    sim.register(0, "svc", "x", b"1").unwrap();
    sim.advance(Duration::from_millis(50));
    assert_eq!(sim.seen(2).len(), 1, "c sees a's entry through b");
    sim.crash(0);
    sim.sessions();
    sim.advance(Duration::from_millis(50));
    assert!(sim.seen(2).is_empty(), "gone on c, which never talked to a");
}

#[test]
fn the_relays_loss_cuts_off_what_lies_beyond_it() {
    let mut sim = Sim::line(3);
    sim.register(0, "svc", "x", b"1").unwrap();
    sim.advance(Duration::from_millis(50));
    sim.crash(1);
    sim.sessions();
    sim.advance(Duration::from_millis(50));
    assert!(sim.seen(2).is_empty(), "a is unreachable from c");
    assert_eq!(sim.seen(0).len(), 1, "a still sees its own");
}

#[test]
fn a_node_cut_from_the_owner_but_not_from_a_relay_keeps_the_entry() {
    // Full mesh of three; only a - c is cut: c still reaches a through b.
    let mut sim = Sim::full(3);
    sim.register(0, "svc", "x", b"1").unwrap();
    sim.advance(Duration::from_millis(50));
    sim.cut.insert((0, 2));
    sim.sessions();
    sim.advance(Duration::from_secs(2));
    assert_eq!(sim.seen(2).len(), 1, "kept through b");
    // Then b goes too: now c is cut off.
    sim.cut.insert((1, 2));
    sim.sessions();
    sim.advance(Duration::from_millis(50));
    assert!(sim.seen(2).is_empty());
    // The partition heals: a's live entry comes back.
    sim.cut.clear();
    sim.sessions();
    sim.advance(Duration::from_millis(500));
    sim.assert_converged();
    assert_eq!(sim.seen(2).len(), 1);
}

#[test]
fn a_restarted_owner_never_brings_back_its_old_entries() {
    let mut sim = Sim::line(4);
    sim.register(0, "svc", "old", b"1").unwrap();
    sim.advance(Duration::from_millis(50));
    let old = sim.owner(0);
    sim.start(0);
    sim.register(0, "svc", "new", b"2").unwrap();
    sim.sessions();
    // Two hops are relayed at once; the third comes with anti-entropy.
    sim.advance(Duration::from_secs(1));
    sim.assert_converged();
    let seen = sim.seen(3);
    assert_eq!(seen.len(), 1);
    assert!(seen.keys().all(|k| k.1 == "new" && k.3 != old.incarnation));
    // Long after, the old session is forgotten everywhere.
    sim.advance(Duration::from_secs(7));
    for i in 1..4 {
        let (kept, _) = sim.node(i).book.sizes();
        assert_eq!(kept, 3, "node {i} keeps only the live sessions' records");
    }
}

#[test]
fn updates_and_removals_reach_everyone_and_lost_messages_are_repaired() {
    let mut sim = Sim::line(5);
    sim.loss = 300;
    sim.jitter = Duration::from_millis(20);
    for i in 0..5 {
        sim.register(i, "c", &format!("k{i}"), &[i as u8]).unwrap();
    }
    sim.update(2, "c", "k2", b"changed");
    sim.remove(4, "c", "k4");
    sim.advance(Duration::from_secs(10));
    sim.loss = 0;
    sim.advance(Duration::from_secs(2));
    sim.assert_converged();
    assert_eq!(sim.seen(0).len(), 4);
}

#[test]
fn a_peer_in_session_cannot_speak_for_another_peer_in_session() {
    use super::wire::{Record, Records, WireEntry};
    let mut sim = Sim::full(3);
    sim.advance(Duration::from_millis(50));
    // n1 forges a record of n0 (with a higher seq) and sends it to n2.
    let forged = Record {
        owner: sim.owner(0),
        seq: 1_000,
        neighbours: vec![sim.owner(1), sim.owner(2)],
        entries: vec![WireEntry {
            collection: "c".into(),
            name: "k".into(),
            value: b"forged".to_vec(),
        }],
    };
    let now = sim.now;
    let msg = Message::Records(Records {
        records: vec![forged],
    });
    sim.node(2).book.handle_message(&name(1), msg, now);
    sim.advance(Duration::from_millis(50));
    assert!(sim.seen(2).is_empty());
    sim.assert_converged();
}

/// Found by `tests/restarts.rs`: a hub that a peer restarts into a
/// thousand times kept asking for each old life's record until its want
/// timed out (a map entry per restart, for seconds).
#[test]
fn a_peer_restarting_leaves_nothing_asked_for_of_its_old_lives() {
    let now = Instant::now();
    let mut hub = Book::new("hub", 1, RegistryConfig::default(), now);
    for incarnation in 1..=100 {
        hub.handle_joined("roamer", incarnation, now);
        let owner = Owner {
            name: "roamer".into(),
            incarnation,
        };
        let held = vec![Held { owner, seq: 1 }];
        hub.handle_message("roamer", Message::Summary(Summary { held }), now);
        assert_eq!(hub.wanted(), 1, "it asks for the current life's record");
        hub.handle_left("roamer", now);
    }
    hub.handle_joined("roamer", 101, now);
    assert_eq!(hub.wanted(), 0);
}

#[test]
fn records_over_the_bounds_are_refused_and_counted() {
    use super::wire::{Record, Records, WireEntry};
    let mut sim = Sim::line(2);
    sim.advance(Duration::from_millis(50));
    let limit = sim.cfg.max_entries_per_collection;
    let big = Record {
        owner: sim.owner(0),
        seq: 1_000,
        neighbours: vec![sim.owner(1)],
        entries: (0..=limit)
            .map(|i| WireEntry {
                collection: "c".into(),
                name: format!("k{i}"),
                value: vec![0],
            })
            .collect(),
    };
    let now = sim.now;
    sim.node(1).book.handle_message(
        &name(0),
        Message::Records(Records { records: vec![big] }),
        now,
    );
    assert_eq!(sim.node(1).book.stats().refused, 1);
    assert!(sim.seen(1).is_empty());
    // Locally the same bounds are errors.
    for i in 0..limit {
        sim.register(0, "c", &format!("k{i}"), b"v").unwrap();
    }
    assert!(matches!(
        sim.register(0, "c", "one-more", b"v"),
        Err(RegistryError::TooMany { .. })
    ));
    let huge = vec![0u8; sim.cfg.max_value_bytes + 1];
    assert!(matches!(
        sim.register(0, "d", "k", &huge),
        Err(RegistryError::TooLarge { .. })
    ));
    assert!(matches!(
        sim.register(0, "c", "k0", b"v"),
        Err(RegistryError::Exists { .. })
    ));
}

#[test]
fn a_newcomer_asks_each_record_of_one_peer_only() {
    let mut sim = Sim::full(12);
    for i in 0..11 {
        sim.register(i, "c", "k", &[i as u8]).unwrap();
    }
    sim.advance(Duration::from_millis(100));
    // Node 11 restarts: as a newcomer, it is sent each record about once.
    sim.start(11);
    sim.sessions();
    let before = sim.node(11).book.stats().records_in;
    sim.advance(Duration::from_millis(100));
    sim.assert_converged();
    let taken = sim.node(11).book.stats().records_in - before;
    let stale = sim.node(11).book.stats().stale;
    assert!(taken >= 11, "{taken}");
    assert!(
        taken + stale < 3 * 11,
        "{taken} records taken, {stale} duplicates"
    );
}

#[derive(Clone, Debug)]
enum Op {
    Register { at: usize, key: u8, value: u8 },
    Update { at: usize, key: u8, value: u8 },
    Remove { at: usize, key: u8 },
    Crash { at: usize },
    Restart { at: usize },
    Cut { a: usize, b: usize },
    Heal,
    Wait { ms: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..6, 0u8..4, any::<u8>()).prop_map(|(at, key, value)| Op::Register { at, key, value }),
        2 => (0usize..6, 0u8..4, any::<u8>()).prop_map(|(at, key, value)| Op::Update { at, key, value }),
        2 => (0usize..6, 0u8..4).prop_map(|(at, key)| Op::Remove { at, key }),
        1 => (0usize..6).prop_map(|at| Op::Crash { at }),
        1 => (0usize..6).prop_map(|at| Op::Restart { at }),
        2 => (0usize..6, 0usize..6).prop_map(|(a, b)| Op::Cut { a, b }),
        1 => Just(Op::Heal),
        3 => (0u16..1500).prop_map(|ms| Op::Wait { ms }),
    ]
}

/// The case count for the convergence property (CI default: 200).
fn cases() -> u32 {
    std::env::var("BILATERAL_REGISTRY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Random topologies (a random connected graph of 3–6 nodes),
    /// registrations, updates and removals, crashes, restarts, partitions,
    /// message loss and reordering; then the network heals, crashed nodes
    /// stay down, and every node's registry must equal exactly the live
    /// registrations of the live owners it can reach.
    #[test]
    fn every_registry_equals_the_live_registrations_it_can_reach(
        n in 3usize..=6,
        extra in proptest::collection::vec((0usize..6, 0usize..6), 0..8),
        loss in 0u64..400,
        jitter in 0u64..40,
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        // A random tree plus random extra edges: connected.
        let mut edges: Vec<(usize, usize)> = (1..n).map(|b| ((seed as usize >> b) % b, b)).collect();
        edges.extend(extra.iter().map(|&(a, b)| (a % n, b % n)).filter(|(a, b)| a != b));
        let mut sim = Sim::new(n, edges);
        sim.rng ^= seed | 1;
        sim.loss = loss;
        sim.jitter = Duration::from_millis(jitter);
        for op in ops {
            match op {
                Op::Register { at, key, value } if sim.up(at % n) => {
                    let _ = sim.register(at % n, "c", &format!("k{key}"), &[value]);
                }
                Op::Update { at, key, value } if sim.up(at % n) => {
                    sim.update(at % n, "c", &format!("k{key}"), &[value]);
                }
                Op::Remove { at, key } if sim.up(at % n) => sim.remove(at % n, "c", &format!("k{key}")),
                Op::Crash { at } => {
                    sim.crash(at % n);
                    sim.sessions();
                }
                Op::Restart { at } => {
                    sim.start(at % n);
                    sim.sessions();
                }
                Op::Cut { a, b } if a % n != b % n => {
                    sim.cut.insert(((a % n).min(b % n), (a % n).max(b % n)));
                    sim.sessions();
                }
                Op::Heal => {
                    sim.cut.clear();
                    sim.sessions();
                }
                Op::Wait { ms } => sim.advance(Duration::from_millis(u64::from(ms))),
                _ => {}
            }
        }
        // Heal: no cuts, no loss; the crashed stay down.
        sim.cut.clear();
        sim.loss = 0;
        sim.sessions();
        sim.advance(Duration::from_secs(3));
        for i in 0..n {
            if sim.up(i) {
                let (seen, want) = (sim.seen(i), sim.expected(i));
                prop_assert_eq!(seen, want, "node {} differs", i);
            }
        }
    }
}
