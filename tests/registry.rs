//! The registry between real nodes over TCP loopback: entries appear
//! everywhere, follow their owner's session (close, crash, restart), travel
//! through relays, and are watched blocking and async.

mod common;

use std::time::{Duration, Instant};

use bilateral::{Node, NodeBuilder, RegistryConfig, RegistryError, RegistryEvent};
use common::*;
use futures::StreamExt;

fn fast(name: &str) -> NodeBuilder {
    builder(name).registry(
        RegistryConfig::default()
            .sync_interval(Duration::from_millis(200))
            .forget_after(Duration::from_secs(5)),
    )
}

fn start(name: &str) -> Node {
    fast(name).start().unwrap()
}

/// The owners of `collection`/`name` that `node` sees, sorted.
fn owners(node: &Node, collection: &str, name: &str) -> Vec<String> {
    node.registry()
        .unwrap()
        .lookup::<String>(collection, name)
        .unwrap()
        .into_iter()
        .map(|e| e.owner)
        .collect()
}

#[test]
fn entries_appear_everywhere_and_go_with_their_guard() {
    let (a, b, c) = (start("a"), start("b"), start("c"));
    join(&a, &b);
    join(&a, &c);
    join(&b, &c);
    let watch = c.registry().unwrap().watch::<String>("rooms");
    let lobby_a = a
        .registry()
        .unwrap()
        .register("rooms", "lobby", "at a")
        .unwrap();
    let _lobby_b = b
        .registry()
        .unwrap()
        .register("rooms", "lobby", "at b")
        .unwrap();
    for n in [&a, &b, &c] {
        wait_until(PATIENCE, || owners(n, "rooms", "lobby") == ["a", "b"]);
    }
    let entries = c
        .registry()
        .unwrap()
        .lookup::<String>("rooms", "lobby")
        .unwrap();
    assert_eq!(entries[0].value, "at a");
    assert_eq!(entries[0].incarnation, a.incarnation());

    let mut added = Vec::new();
    while added.len() < 2 {
        match watch.recv_timeout(PATIENCE).expect("an event") {
            RegistryEvent::Added(e) => added.push(e.owner),
            other => panic!("unexpected {other:?}"),
        }
    }
    added.sort();
    assert_eq!(added, ["a", "b"]);

    lobby_a.update("moved").unwrap();
    match watch.recv_timeout(PATIENCE).expect("an event") {
        RegistryEvent::Updated(e) => {
            assert_eq!((e.owner.as_str(), e.value.as_str()), ("a", "moved"))
        }
        other => panic!("unexpected {other:?}"),
    }
    drop(lobby_a);
    match watch.recv_timeout(PATIENCE).expect("an event") {
        RegistryEvent::Removed { owner, name, .. } => {
            assert_eq!((owner.as_str(), name.as_str()), ("a", "lobby"))
        }
        other => panic!("unexpected {other:?}"),
    }
    for n in [&a, &b, &c] {
        wait_until(PATIENCE, || owners(n, "rooms", "lobby") == ["b"]);
    }
    assert_eq!(c.registry().unwrap().collections(), ["rooms"]);
}

#[test]
fn a_killed_owner_vanishes_even_where_it_was_only_relayed() {
    // a - b - c: a and c never talk; c learns of a's entry through b.
    let (a, b, c) = (start("a"), start("b"), start("c"));
    join(&a, &b);
    join(&b, &c);
    let _entry = a.registry().unwrap().register("svc", "x", "1").unwrap();
    wait_until(PATIENCE, || owners(&c, "svc", "x") == ["a"]);
    assert!(c.peer_state("a").is_none(), "c never knew a");
    let watch = c.registry().unwrap().watch::<String>("svc");
    assert!(matches!(
        watch.recv_timeout(PATIENCE),
        Some(RegistryEvent::Added(_))
    ));
    let killed = Instant::now();
    a.kill();
    match watch.recv_timeout(PATIENCE) {
        Some(RegistryEvent::Removed { owner, .. }) => assert_eq!(owner, "a"),
        other => panic!("unexpected {other:?}"),
    }
    // lost_timeout is 600 ms; heartbeats every 100 ms; pushes are immediate.
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );
    assert!(owners(&b, "svc", "x").is_empty());
}

#[test]
fn a_restarted_owner_shows_only_its_new_entries() {
    let hub = start("hub");
    let first = fast("owner").start().unwrap();
    let endpoint = first.endpoint().unwrap().to_string();
    join(&first, &hub);
    let _old = first
        .registry()
        .unwrap()
        .register("svc", "old", "1")
        .unwrap();
    wait_until(PATIENCE, || owners(&hub, "svc", "old") == ["owner"]);
    let old_incarnation = first.incarnation();
    first.kill();
    drop(_old);
    let second = fast("owner").listen_again(&endpoint);
    join(&second, &hub);
    let _new = second
        .registry()
        .unwrap()
        .register("svc", "new", "2")
        .unwrap();
    wait_until(PATIENCE, || owners(&hub, "svc", "new") == ["owner"]);
    wait_until(PATIENCE, || owners(&hub, "svc", "old").is_empty());
    let all = hub.registry().unwrap().list::<String>("svc").unwrap();
    assert_eq!(all.len(), 1);
    assert_ne!(all[0].incarnation, old_incarnation);
}

trait ListenAgain {
    fn listen_again(self, endpoint: &str) -> Node;
}

impl ListenAgain for NodeBuilder {
    /// Starts on `endpoint`, retrying while the old socket lets go of it.
    fn listen_again(self, endpoint: &str) -> Node {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.clone().listen(endpoint).start() {
                Ok(node) => return node,
                Err(e) if Instant::now() < deadline => log::debug!("retrying: {e}"),
                Err(e) => panic!("cannot restart: {e}"),
            }
        }
    }
}

#[test]
fn a_closed_owner_is_gone_at_once_and_bounds_are_errors() {
    let (a, b) = (start("a"), start("b"));
    join(&a, &b);
    let registry = a.registry().unwrap();
    let _e = registry.register("c", "k", &42u32).unwrap();
    assert!(matches!(
        registry.register("c", "k", &43u32),
        Err(RegistryError::Exists { .. })
    ));
    assert!(matches!(
        registry.register("c", &"x".repeat(256), &1u32),
        Err(RegistryError::InvalidName(_))
    ));
    let big = vec![0u8; 70_000];
    assert!(matches!(
        registry.register("c", "big", &serde_bytes::ByteBuf::from(big)),
        Err(RegistryError::TooLarge { .. })
    ));
    wait_until(PATIENCE, || {
        b.registry().unwrap().lookup::<u32>("c", "k").unwrap().len() == 1
    });
    // A value of another type is an error, not a silent miss.
    assert!(matches!(
        b.registry().unwrap().lookup::<String>("c", "k"),
        Err(RegistryError::Encoding(_))
    ));
    a.close();
    wait_until(PATIENCE, || {
        b.registry()
            .unwrap()
            .lookup::<u32>("c", "k")
            .unwrap()
            .is_empty()
    });
    assert!(matches!(
        registry.register("c", "later", &1u32),
        Err(RegistryError::Closed)
    ));
    let stats = b.stats();
    let s = stats.service("registry").expect("the registry runs");
    assert!(s.received > 0 && s.malformed == 0, "{s:?}");
}

#[test]
fn a_watch_is_a_stream_for_async_code() {
    let rt = runtime();
    let (a, b) = (start("a"), start("b"));
    join(&a, &b);
    let mut watch = b.registry().unwrap().watch::<u32>("jobs");
    let guard = a.registry().unwrap().register("jobs", "j1", &7u32).unwrap();
    rt.block_on(async {
        let event = tokio::time::timeout(PATIENCE, watch.next()).await.unwrap();
        assert!(matches!(event, Some(RegistryEvent::Added(e)) if e.value == 7));
        drop(guard);
        let event = tokio::time::timeout(PATIENCE, watch.next_event())
            .await
            .unwrap();
        assert!(matches!(event, Some(RegistryEvent::Removed { .. })));
    });
    b.close();
    assert!(
        watch.recv_timeout(PATIENCE).is_none(),
        "the watch ends with its node"
    );
}

#[test]
fn a_slow_watcher_loses_nothing_it_needs() {
    let (a, b) = (start("a"), start("b"));
    join(&a, &b);
    let watch = b.registry().unwrap().watch::<u32>("many");
    let registry = a.registry().unwrap();
    let mut guards: Vec<_> = (0..200)
        .map(|i| registry.register("many", &format!("k{i}"), &i).unwrap())
        .collect();
    for (i, g) in guards.iter().enumerate().take(50) {
        g.update(&(i as u32 + 1000)).unwrap();
    }
    guards.truncate(150); // the last 50 are removed
    // Read only now: the watch reports the difference, and what it
    // reported adds up to what is there (a list hands what it saw to the
    // watches first, so nothing is left to wait for).
    wait_until(PATIENCE, || {
        let all = b.registry().unwrap().list::<u32>("many").unwrap();
        all.len() == 150 && all.iter().filter(|e| e.value >= 1000).count() == 50
    });
    let mut seen = std::collections::BTreeMap::new();
    while let Some(event) = watch.try_recv() {
        match event {
            RegistryEvent::Added(e) | RegistryEvent::Updated(e) => {
                seen.insert(e.name, e.value);
            }
            RegistryEvent::Removed { name, .. } => {
                seen.remove(&name);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let now: std::collections::BTreeMap<_, _> = b
        .registry()
        .unwrap()
        .list::<u32>("many")
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect();
    assert_eq!(seen, now);
}
