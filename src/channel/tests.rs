//! Replicas on a simulated network with injected time: convergence under
//! concurrency, loss, duplication, reordering and partitions; relays;
//! deltas; permissions; removals.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

const WALL0: u64 = 1_700_000_000_000;

fn cfg() -> ChannelConfig {
    ChannelConfig {
        sync_interval: Duration::from_millis(500),
        ..ChannelConfig::default()
    }
}

/// Replicas named `r0`, `r1`, ... and the messages between them.
struct Net {
    replicas: Vec<Replica>,
    queue: VecDeque<(usize, usize, Out)>,
    t0: Instant,
    now: Instant,
    /// Per-replica clock skew, in ms.
    skew: Vec<i64>,
    /// Directed pairs whose messages are lost.
    cut: BTreeSet<(usize, usize)>,
}

fn name(i: usize) -> String {
    format!("r{i}")
}

fn index(name: &str) -> usize {
    name[1..].parse().unwrap()
}

impl Net {
    fn new(n: usize, edges: &[(usize, usize)]) -> Net {
        let t0 = Instant::now();
        let mut replicas: Vec<Replica> = (0..n)
            .map(|i| Replica::new("data", &name(i), 100 + i as u64, cfg()))
            .collect();
        for &(a, b) in edges {
            replicas[a].peer(&name(b), Permission::ReadWrite, true, t0);
            replicas[b].peer(&name(a), Permission::ReadWrite, true, t0);
        }
        Net {
            replicas,
            queue: VecDeque::new(),
            t0,
            now: t0,
            skew: vec![0; n],
            cut: BTreeSet::new(),
        }
    }

    fn wall(&self, i: usize) -> u64 {
        let ms = (self.now - self.t0).as_millis() as i64 + self.skew[i];
        WALL0.saturating_add_signed(ms)
    }

    /// Moves every replica's outgoing messages onto the network.
    fn collect(&mut self) {
        for i in 0..self.replicas.len() {
            while let Some(out) = self.replicas[i].poll_out() {
                let to = match &out {
                    Out::Push(to, _)
                    | Out::Pull(to, _)
                    | Out::Entries(to, _)
                    | Out::Hello(to, _)
                    | Out::Unpeer(to, _) => index(to),
                };
                self.queue.push_back((i, to, out));
            }
            while self.replicas[i].poll_event().is_some() {}
        }
    }

    fn deliver(&mut self, from: usize, to: usize, out: Out) {
        if self.cut.contains(&(from, to)) {
            return;
        }
        let (now, wall) = (self.now, self.wall(to));
        let r = &mut self.replicas[to];
        let from = name(from);
        match out {
            Out::Push(_, m) => r.handle_push(&from, m, wall, now),
            Out::Pull(_, m) => r.handle_pull(&from, m),
            Out::Entries(_, m) => r.handle_entries(&from, m, wall, now),
            Out::Hello(_, m) => r.handle_hello(&from, m, true, now),
            Out::Unpeer(_, _) => r.handle_unpeer(&from),
        }
    }

    /// Delivers everything in order until nothing is in flight.
    fn settle(&mut self) {
        for _ in 0..100_000 {
            self.collect();
            let Some((from, to, out)) = self.queue.pop_front() else {
                return;
            };
            self.deliver(from, to, out);
        }
        panic!("never settled");
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        for i in 0..self.replicas.len() {
            let wall = self.wall(i);
            self.replicas[i].handle_timeout(self.now, wall);
        }
    }

    fn write(&mut self, i: usize, ops: Vec<(&str, Option<&[u8]>)>) {
        let wall = self.wall(i);
        let ops = ops
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec)))
            .collect();
        self.replicas[i].write(ops, wall).unwrap();
    }

    fn converged(&self) -> bool {
        let first = self.replicas[0].entries();
        self.replicas.iter().all(|r| r.entries() == first)
    }
}

#[test]
fn a_write_reaches_every_peer_and_a_line_relays_it() {
    // r0 – r1 – r2: r2 is not peered with r0.
    let mut net = Net::new(3, &[(0, 1), (1, 2)]);
    net.settle();
    net.write(0, vec![("path/a", Some(b"1")), ("path/b", Some(b"2"))]);
    net.settle();
    for r in &net.replicas {
        assert_eq!(r.get("path/a"), Some(&b"1"[..]), "{}", r.me);
        assert_eq!(r.len(), 2);
    }
    // r1 did not push r0's write back to r0.
    assert_eq!(net.replicas[0].stats().entries_received, 0);
}

#[test]
fn concurrent_writes_to_one_key_converge_to_the_highest_version() {
    let mut net = Net::new(3, &[(0, 1), (1, 2), (0, 2)]);
    net.skew = vec![0, 5, -5];
    net.settle();
    net.write(0, vec![("k", Some(b"from r0"))]);
    net.write(1, vec![("k", Some(b"from r1"))]);
    net.write(2, vec![("k", Some(b"from r2"))]);
    net.settle();
    assert!(net.converged());
    // r1's clock is ahead: its write has the highest version.
    assert_eq!(net.replicas[0].get("k"), Some(&b"from r1"[..]));
    // Same time, same counter: the node name breaks the tie.
    let mut net = Net::new(2, &[(0, 1)]);
    net.write(0, vec![("k", Some(b"r0"))]);
    net.write(1, vec![("k", Some(b"r1"))]);
    net.settle();
    assert_eq!(net.replicas[0].get("k"), Some(&b"r1"[..]));
    assert!(net.converged());
}

#[test]
fn duplicates_change_nothing_twice() {
    let mut net = Net::new(2, &[(0, 1)]);
    net.settle();
    net.write(0, vec![("k", Some(b"v"))]);
    net.collect();
    let (from, to, push) = net.queue.pop_front().unwrap();
    for _ in 0..3 {
        net.deliver(from, to, push.clone());
    }
    let mut changes = 0;
    while let Some(e) = net.replicas[1].poll_event() {
        changes += usize::from(matches!(e, ReplicaEvent::Changed(_)));
    }
    assert_eq!(changes, 1);
}

#[test]
fn a_lost_push_is_repaired_by_the_timer_not_by_the_next_write() {
    let mut net = Net::new(2, &[(0, 1)]);
    net.settle();
    net.write(0, vec![("k", Some(b"v"))]);
    net.collect();
    net.queue.clear(); // the push is lost
    assert_eq!(net.replicas[1].get("k"), None);
    net.advance(Duration::from_millis(500)); // r1's periodic pull
    net.settle();
    assert_eq!(net.replicas[1].get("k"), Some(&b"v"[..]));
}

#[test]
fn a_gap_in_pushes_triggers_a_pull_at_once() {
    let mut net = Net::new(2, &[(0, 1)]);
    net.settle();
    net.write(0, vec![("a", Some(b"1"))]);
    net.collect();
    net.queue.clear(); // lost
    net.write(0, vec![("b", Some(b"2"))]);
    net.collect();
    let (from, to, push) = net.queue.pop_front().unwrap();
    net.deliver(from, to, push);
    // r1 sees change 2 without change 1: it pulls without waiting for the timer.
    net.advance(Duration::ZERO);
    net.settle();
    assert_eq!(net.replicas[1].get("a"), Some(&b"1"[..]));
}

#[test]
fn a_peer_back_from_a_partition_gets_only_what_changed() {
    let mut net = Net::new(2, &[(0, 1)]);
    let ops: Vec<(String, Option<Vec<u8>>)> = (0..10_000)
        .map(|i| (format!("key/{i:05}"), Some(vec![7u8; 100])))
        .collect();
    net.replicas[0].write(ops, WALL0).unwrap();
    net.settle();
    assert_eq!(
        net.replicas[1].len(),
        10_000,
        "a new peer receives the whole channel (in pages)"
    );
    assert!(net.replicas[1].stats().entries_received >= 10_000);
    // r1 is away while r0 makes 100 changes.
    net.replicas[1].set_connected("r0", false, net.now);
    net.replicas[0].set_connected("r1", false, net.now);
    for i in 0..100 {
        net.write(0, vec![(&format!("key/{:05}", i * 97), Some(b"changed"))]);
    }
    net.settle();
    let before = net.replicas[0].stats().entries_sent;
    net.replicas[1].set_connected("r0", true, net.now);
    net.replicas[0].set_connected("r1", true, net.now);
    net.advance(Duration::ZERO);
    net.settle();
    let moved = net.replicas[0].stats().entries_sent - before;
    assert!(net.converged());
    assert!(
        (100..=110).contains(&moved),
        "{moved} entries moved to catch up on 100 changes"
    );
}

#[test]
fn a_replica_is_synced_with_a_peer_only_once_its_last_page_is_in() {
    let mut net = Net::new(2, &[]);
    net.replicas[0].cfg.page_entries = 10;
    for i in 0..25 {
        net.write(0, vec![(&format!("k{i}"), Some(b"v"))]);
    }
    net.replicas[0].peer("r1", Permission::ReadWrite, true, net.now);
    assert!(!net.replicas[1].synced_with("r0"), "not peered yet");
    net.replicas[1].peer("r0", Permission::ReadWrite, true, net.now);
    net.advance(Duration::from_millis(1)); // the first pull is due
    assert!(!net.replicas[1].synced_with("r0"), "nothing answered yet");
    // Deliver one message at a time: until the third page is in, not synced.
    loop {
        net.collect();
        let Some((from, to, out)) = net.queue.pop_front() else {
            break;
        };
        net.deliver(from, to, out);
        if net.replicas[1].synced_with("r0") {
            assert_eq!(net.replicas[1].len(), 25, "synced before the last page");
        }
    }
    assert!(net.replicas[1].synced_with("r0"));
    assert!(!net.replicas[1].synced_with("r9"), "a stranger");
}

#[test]
fn a_write_is_delivered_to_a_peer_once_its_next_pull_says_so() {
    let mut net = Net::new(2, &[(0, 1)]);
    net.advance(Duration::from_millis(1));
    net.settle();
    net.write(0, vec![("k", Some(b"v"))]);
    assert!(!net.replicas[0].delivered_to("r1"), "not confirmed yet");
    net.settle();
    assert_eq!(net.replicas[1].get("k"), Some(&b"v"[..]), "pushed at once");
    assert!(
        !net.replicas[0].delivered_to("r1"),
        "confirmed by a pull only"
    );
    net.advance(cfg().sync_interval);
    net.settle();
    assert!(net.replicas[0].delivered_to("r1"));
    net.write(0, vec![("k", None)]);
    assert!(!net.replicas[0].delivered_to("r1"), "a newer change");
    assert!(!net.replicas[0].delivered_to("r9"), "a stranger");
}

#[test]
fn pulls_come_in_pages_that_never_split_a_change() {
    let mut net = Net::new(2, &[(0, 1)]);
    net.replicas[0].cfg.page_entries = 10;
    // One change of 25 entries, then 30 changes of one entry.
    let batch: Vec<(String, Option<Vec<u8>>)> =
        (0..25).map(|i| (format!("b{i}"), Some(vec![1]))).collect();
    net.replicas[0].write(batch, WALL0).unwrap();
    for i in 0..30 {
        net.write(0, vec![(&format!("s{i}"), Some(b"x"))]);
    }
    let r1 = &mut net.replicas[1];
    r1.peers.clear();
    r1.peer("r0", Permission::ReadWrite, true, net.now);
    net.settle();
    assert_eq!(net.replicas[1].len(), 55);
    assert!(net.converged());
}

#[test]
fn writes_of_a_read_only_peer_are_refused_and_do_not_spread() {
    // r1 may only read r0's channel; r2 is peered with r0 only.
    let mut net = Net::new(3, &[(0, 2)]);
    net.replicas[0].peer("r1", Permission::ReadOnly, true, net.now);
    net.replicas[1].peer("r0", Permission::ReadWrite, true, net.now);
    net.settle();
    net.write(1, vec![("k", Some(b"from the reader"))]);
    net.settle();
    assert_eq!(net.replicas[0].get("k"), None);
    assert_eq!(net.replicas[2].get("k"), None);
    let refused = std::iter::from_fn(|| net.replicas[0].poll_event()).any(|e| {
        matches!(
            e,
            ReplicaEvent::Refused {
                reason: Refusal::ReadOnly,
                ..
            }
        )
    });
    // (the events were drained by `collect`; the counter remains)
    assert!(refused || net.replicas[0].stats().refused > 0);
    // The reader still receives the others' writes.
    net.write(2, vec![("k2", Some(b"from r2"))]);
    net.settle();
    assert_eq!(net.replicas[1].get("k2"), Some(&b"from r2"[..]));
}

#[test]
fn unpeer_tells_the_other_side_and_peering_again_resumes_without_a_full_copy() {
    let mut net = Net::new(2, &[(0, 1)]);
    let ops: Vec<(String, Option<Vec<u8>>)> =
        (0..500).map(|i| (format!("k{i}"), Some(vec![1]))).collect();
    net.replicas[0].write(ops, WALL0).unwrap();
    net.settle();
    assert!(net.replicas[1].unpeer("r0"));
    net.settle();
    assert!(
        net.replicas[0].peers().is_empty(),
        "the other side was told"
    );
    net.write(0, vec![("after", Some(b"1"))]);
    net.settle();
    assert_eq!(net.replicas[1].get("after"), None, "no longer replicated");
    let before = net.replicas[0].stats().entries_sent;
    let now = net.now;
    net.replicas[1].peer("r0", Permission::ReadWrite, true, now);
    net.replicas[0].peer("r1", Permission::ReadWrite, true, now);
    net.advance(Duration::ZERO);
    net.settle();
    assert_eq!(net.replicas[1].get("after"), Some(&b"1"[..]));
    assert!(
        net.replicas[0].stats().entries_sent - before < 10,
        "resumed from the old markers"
    );
}

#[test]
fn removals_are_tombstones_until_every_peer_has_them() {
    let mut net = Net::new(3, &[(0, 1), (0, 2)]);
    net.write(0, vec![("gone", Some(b"v"))]);
    net.settle();
    net.write(0, vec![("gone", None)]);
    net.settle();
    assert!(net.replicas.iter().all(|r| r.get("gone").is_none()));
    assert_eq!(
        net.replicas[0].tombstones.len(),
        1,
        "kept until the peers say they have it"
    );
    // r2 is away: r0 must keep the tombstone.
    net.cut.insert((2, 0));
    net.cut.insert((0, 2));
    net.advance(Duration::from_millis(500));
    net.settle();
    net.advance(Duration::from_millis(500));
    net.settle();
    assert_eq!(net.replicas[0].tombstones.len(), 1);
    net.cut.clear();
    // Past the pull timeout (3 s) that the cut caused, and a few rounds more.
    for _ in 0..12 {
        net.advance(Duration::from_millis(500));
        net.settle();
    }
    assert_eq!(
        net.replicas[0].tombstones.len(),
        0,
        "collected once both peers acknowledged it"
    );
    assert!(net.replicas[0].stats().tombstones_collected >= 1);
}

#[test]
fn limits_are_a_clear_error_on_the_writer() {
    let mut r = Replica::new(
        "c",
        "me",
        1,
        ChannelConfig {
            max_entries: 2,
            max_bytes: 100,
            ..cfg()
        },
    );
    r.write(vec![("a".into(), Some(vec![0; 10]))], WALL0)
        .unwrap();
    r.write(vec![("b".into(), Some(vec![0; 10]))], WALL0)
        .unwrap();
    assert_eq!(
        r.write(vec![("c".into(), Some(vec![]))], WALL0),
        Err(ChannelError::TooManyEntries { limit: 2 })
    );
    assert_eq!(
        r.write(vec![("a".into(), Some(vec![0; 200]))], WALL0),
        Err(ChannelError::TooManyBytes { limit: 100 })
    );
    assert_eq!(
        r.write(vec![(String::new(), Some(vec![]))], WALL0),
        Err(ChannelError::InvalidKey)
    );
    assert_eq!(r.len(), 2, "a refused write changes nothing");
    r.write(vec![("a".into(), None)], WALL0).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r.keys(), vec!["b".to_string()]);
}

#[derive(Clone, Debug)]
enum Op {
    Write {
        at: usize,
        keys: Vec<(u8, Option<u8>)>,
    },
    Deliver {
        nth: usize,
    },
    Duplicate {
        nth: usize,
    },
    Lose {
        nth: usize,
    },
    Cut {
        a: usize,
        b: usize,
    },
    Heal,
    Session {
        a: usize,
        b: usize,
        up: bool,
    },
    Wait {
        ms: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..5, proptest::collection::vec((0u8..6, proptest::option::weighted(0.8, any::<u8>())), 1..4))
            .prop_map(|(at, keys)| Op::Write { at, keys }),
        6 => any::<usize>().prop_map(|nth| Op::Deliver { nth }),
        1 => any::<usize>().prop_map(|nth| Op::Duplicate { nth }),
        1 => any::<usize>().prop_map(|nth| Op::Lose { nth }),
        1 => (0usize..5, 0usize..5).prop_map(|(a, b)| Op::Cut { a, b }),
        1 => Just(Op::Heal),
        1 => (0usize..5, 0usize..5, any::<bool>()).prop_map(|(a, b, up)| Op::Session { a, b, up }),
        2 => (0u16..700).prop_map(|ms| Op::Wait { ms }),
    ]
}

/// The case count for the convergence property (CI default: 200).
fn cases() -> u32 {
    std::env::var("BILATERAL_CHANNEL_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// Random writes on 3–5 replicas (full mesh or line), random delivery
    /// order, duplication, loss, partitions and session changes; then the
    /// network heals and every replica must hold the same entries, each the
    /// highest version ever written for its key.
    #[test]
    fn replicas_converge_to_the_version_order_after_any_faults(
        n in 3usize..=5,
        line in any::<bool>(),
        skew in proptest::collection::vec(-30i64..30, 5),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        let edges: Vec<(usize, usize)> = if line {
            (1..n).map(|b| (b - 1, b)).collect()
        } else {
            (0..n).flat_map(|a| (a + 1..n).map(move |b| (a, b))).collect()
        };
        let mut net = Net::new(n, &edges);
        net.skew = skew[..n].to_vec();
        // The highest version written for each key, and its value.
        let mut expected: BTreeMap<String, (Version, Option<Vec<u8>>)> = BTreeMap::new();
        for op in ops {
            net.collect();
            let len = net.queue.len();
            match op {
                Op::Write { at, keys } => {
                    let at = at % n;
                    let ops: Vec<(String, Option<Vec<u8>>)> =
                        keys.iter().map(|(k, v)| (format!("k{k}"), v.map(|v| vec![v]))).collect();
                    let wall = net.wall(at);
                    net.replicas[at].write(ops.clone(), wall).unwrap();
                    for (key, _) in ops {
                        if let Some(version) = net.replicas[at].version(&key).cloned() {
                            let value = net.replicas[at].get(&key).map(<[u8]>::to_vec);
                            let newer = expected.get(&key).is_none_or(|(v, _)| *v < version);
                            if newer {
                                expected.insert(key, (version, value));
                            }
                        }
                    }
                }
                Op::Deliver { nth } if len > 0 => {
                    let (f, t, m) = net.queue.remove(nth % len).unwrap();
                    net.deliver(f, t, m);
                }
                Op::Duplicate { nth } if len > 0 => {
                    let (f, t, m) = net.queue[nth % len].clone();
                    net.deliver(f, t, m);
                }
                Op::Lose { nth } if len > 0 => {
                    net.queue.remove(nth % len);
                }
                Op::Cut { a, b } => {
                    net.cut.insert((a % n, b % n));
                }
                Op::Heal => net.cut.clear(),
                Op::Session { a, b, up } => {
                    let (a, b) = (a % n, b % n);
                    if a != b {
                        let now = net.now;
                        net.replicas[a].set_connected(&name(b), up, now);
                        net.replicas[b].set_connected(&name(a), up, now);
                    }
                }
                Op::Wait { ms } => net.advance(Duration::from_millis(u64::from(ms))),
                _ => {}
            }
        }
        // Heal: no more cuts, every session up, messages delivered, timers run.
        net.cut.clear();
        let now = net.now;
        for &(a, b) in &edges {
            net.replicas[a].set_connected(&name(b), true, now);
            net.replicas[b].set_connected(&name(a), true, now);
        }
        for _ in 0..(2 * n + 4) {
            net.settle();
            net.advance(Duration::from_millis(600));
        }
        net.settle();
        let want: Vec<(String, Vec<u8>)> = expected
            .into_iter()
            .filter_map(|(k, (_, v))| v.map(|v| (k, v)))
            .collect();
        for r in &net.replicas {
            prop_assert_eq!(r.entries(), want.clone(), "replica {} differs", r.me);
        }
    }
}
