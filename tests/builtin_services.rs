//! The built-in services' layer, seen from outside: the reserved
//! `bilateral.` namespace, the typed answer for a service a node does not
//! run, per-service counters, and a membership feed that nothing can make
//! a service miss.

mod common;

use std::time::Duration;

use bilateral::{CallError, ChannelConfig, Error, NameError, Node};
use common::*;

const T: Duration = Duration::from_secs(5);

#[test]
fn the_application_cannot_register_or_remove_a_reserved_method() {
    let a = node("a");
    let channel = a.channel::<u32>("data").unwrap();
    for method in [
        "bilateral.channel.push",
        "bilateral.registry.lookup",
        "bilateral.",
    ] {
        let err = a.register(method, |_, x: u32| Ok(x)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidName {
                    reason: NameError::Reserved,
                    ..
                }
            ),
            "{method}: {err:?}"
        );
        let err = a
            .on_stream(method, |_: bilateral::Incoming<()>| Ok(()))
            .unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidName {
                reason: NameError::Reserved,
                ..
            }
        ));
    }
    assert!(!a.unregister("bilateral.channel.push"));
    // Not reserved: only the exact prefix is.
    a.register("bilateralism", |_, x: u32| Ok(x)).unwrap();
    assert_eq!(a.methods(), vec!["bilateralism".to_string()]);

    // The service still works: its methods are still there.
    let b = node("b");
    join(&b, &a);
    let theirs = b.channel::<u32>("data").unwrap();
    theirs.peer(["a"]);
    channel.peer(["b"]);
    channel.set("k", 7).unwrap();
    wait_until(PATIENCE, || theirs.get("k").unwrap() == Some(7));
}

#[test]
fn a_call_into_a_service_the_peer_does_not_run_gets_a_typed_answer() {
    let a = node("a");
    let b = node("b");
    join(&a, &b);
    // b runs the registry (every node does), not channels (until used).
    let err = a
        .call_one::<_, ()>("b", "bilateral.channel.hello", &(), T)
        .unwrap_err();
    assert_eq!(err, CallError::NoService("channel".into()));
    let err = a
        .call_one::<_, ()>("b", "bilateral.nosuch.lookup", &("x", "y"), T)
        .unwrap_err();
    assert_eq!(err, CallError::NoService("nosuch".into()));
    let err = a
        .call_one::<_, ()>("b", "bilateral.registry.lookup", &("x", "y"), T)
        .unwrap_err();
    assert_eq!(err, CallError::UnknownMethod);
    // Once it runs channels, an unknown method of that service is just unknown.
    let _channel = b.channel::<u32>("data").unwrap();
    let err = a
        .call_one::<_, ()>("b", "bilateral.channel.no_such_method", &(), T)
        .unwrap_err();
    assert_eq!(err, CallError::UnknownMethod);
    // An application method that does not exist is unknown as before.
    let err = a.call_one::<_, ()>("b", "nothing", &(), T).unwrap_err();
    assert_eq!(err, CallError::UnknownMethod);
}

#[test]
fn each_service_counts_what_it_received_and_what_was_malformed() {
    let a = node("a");
    let b = node("b");
    join(&a, &b);
    assert!(
        b.stats().service("channel").is_none(),
        "channels start on first use"
    );
    let channel = b.channel::<u32>("data").unwrap();
    channel.peer(["a"]);
    let stats = b.stats();
    let s = stats.service("channel").expect("the channel service runs");
    assert_eq!((s.received, s.malformed), (0, 0));
    assert_eq!(s.counter("channels"), 1);

    // Garbage to the service's methods: counted, answered, and it keeps serving.
    for _ in 0..10 {
        let err = a
            .call_one::<_, ()>("b", "bilateral.channel.push", &"not a push", T)
            .unwrap_err();
        assert!(matches!(err, CallError::BadArguments(_)), "{err:?}");
        a.cast("b", "bilateral.channel.entries", &12345u64).unwrap();
    }
    wait_until(PATIENCE, || {
        b.stats().service("channel").map(|s| s.malformed) == Some(20)
    });
    let ours = a.channel::<u32>("data").unwrap();
    ours.peer(["b"]);
    ours.set("k", 1).unwrap();
    wait_until(PATIENCE, || channel.get("k").unwrap() == Some(1));
    let stats = b.stats();
    let s = stats.service("channel").unwrap();
    assert!(s.received > 20, "{s:?}");
    assert_eq!(s.malformed, 20);
}

#[test]
fn a_burst_of_sessions_reaches_the_channel_service_even_when_events_overflow() {
    // The application's event queues hold one event, and nobody reads this
    // subscription: the peer events it should carry are dropped. The
    // channel service must still learn of every session (before the
    // membership feed, it read a queue of the same capacity).
    let config = ChannelConfig::default()
        .sync_interval(Duration::from_millis(200))
        .pull_timeout(Duration::from_millis(500));
    let hub = builder("hub")
        .event_capacity(1)
        .listen("tcp://127.0.0.1:*")
        .start()
        .unwrap();
    let _unread = hub.events();
    let data = hub
        .channel_with::<String>("data", Some(config.clone()))
        .unwrap();
    data.peer_all();
    let peers: Vec<Node> = (0..12).map(|i| node(&format!("p{i:02}"))).collect();
    let channels: Vec<_> = peers
        .iter()
        .map(|p| {
            let c = p
                .channel_with::<String>("data", Some(config.clone()))
                .unwrap();
            c.peer(["hub"]);
            c
        })
        .collect();
    for p in &peers {
        p.connect("hub", hub.endpoint().unwrap()).unwrap();
    }
    for p in &peers {
        p.wait_for_peer("hub", PATIENCE).unwrap();
    }
    assert!(
        hub.events_dropped() > 0,
        "the application's events overflowed"
    );
    for (p, c) in peers.iter().zip(&channels) {
        c.set(p.name(), p.name().to_string()).unwrap();
    }
    wait_until(PATIENCE, || data.get_all().unwrap().len() == peers.len());
    // And the hub's writes reach every peer.
    data.set("from-hub", "hello".to_string()).unwrap();
    for c in &channels {
        wait_until(PATIENCE, || c.get("from-hub").unwrap().is_some());
    }
}

#[test]
fn services_keep_working_while_every_worker_is_busy_and_the_queue_is_full() {
    let a = node("a");
    let b = builder("b")
        .workers(1)
        .max_queued_handlers(1)
        .start()
        .unwrap();
    let (open, gate) = crossbeam_channel::bounded::<()>(0);
    let (started_tx, started) = crossbeam_channel::bounded::<()>(1);
    b.register("hold", move |_, (): ()| {
        let _ = started_tx.try_send(());
        let _ = gate.recv_timeout(PATIENCE);
        Ok(())
    })
    .unwrap();
    join(&a, &b);
    let held = a.start_call::<_, ()>("b", "hold", &(), PATIENCE).unwrap();
    started.recv_timeout(PATIENCE).expect("the handler runs");
    assert_eq!(
        a.call_one::<_, ()>("b", "hold", &(), T),
        Err(CallError::Overloaded(bilateral::Side::Remote)),
        "the application's queue is full"
    );
    // The registry's messages have their own queue and thread.
    let _entry = a.registry().unwrap().register("c", "k", &1u32).unwrap();
    wait_until(PATIENCE, || {
        b.registry().unwrap().lookup::<u32>("c", "k").unwrap().len() == 1
    });
    assert_eq!(b.load().1, 1, "only the application's job counts");
    open.send(()).unwrap();
    assert_eq!(held.wait().get("b"), Some(&Ok(())));
}
