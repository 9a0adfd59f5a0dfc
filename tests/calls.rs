//! Calls and casts between real nodes over TCP loopback.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bilateral::{CallError, HandlerError, HandlerPool, LostReason, Side, To};
use common::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Args {
    a: i64,
    b: i64,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct SumDiff {
    s: i64,
    d: i64,
}

fn sum_diff(node: &bilateral::Node) {
    node.register("Arith.SumDiff", |_ctx, args: Args| {
        Ok(SumDiff {
            s: args.a + args.b,
            d: args.a - args.b,
        })
    })
    .unwrap();
}

#[test]
fn a_call_goes_each_way_over_the_one_connection() {
    let a = node("a");
    let b = node("b");
    sum_diff(&a);
    sum_diff(&b);
    b.register("who", |ctx, (): ()| Ok(ctx.peer().to_string()))
        .unwrap();
    a.register("who", |ctx, (): ()| Ok(ctx.peer().to_string()))
        .unwrap();
    // Only a dials: b reaches a through a's own DEALER.
    join(&a, &b);
    let r: SumDiff = a
        .call_one("b", "Arith.SumDiff", &Args { a: 7, b: 3 }, PATIENCE)
        .unwrap();
    assert_eq!(r, SumDiff { s: 10, d: 4 });
    let r: SumDiff = b
        .call_one("a", "Arith.SumDiff", &Args { a: 1, b: 2 }, PATIENCE)
        .unwrap();
    assert_eq!(r, SumDiff { s: 3, d: -1 });
    assert_eq!(
        a.call_one::<_, String>("b", "who", &(), PATIENCE).unwrap(),
        "a"
    );
    assert_eq!(
        b.call_one::<_, String>("a", "who", &(), PATIENCE).unwrap(),
        "b"
    );
    let info = b.peer_info("a").unwrap();
    assert!(
        info.inbound_up && !info.outbound_up,
        "b has no DEALER of its own to a"
    );
    assert!(info.stats.messages_in > 0 && info.stats.bytes_out > 0);
}

#[test]
fn multicast_reports_slow_dead_and_unknown_peers_each_in_its_own_entry() {
    let caller = node("caller");
    let fast = node("fast");
    let slow = node("slow");
    let dead = node("dead");
    fast.register("echo", |_c, x: u32| Ok(x)).unwrap();
    slow.register("echo", |_c, x: u32| {
        std::thread::sleep(Duration::from_secs(3));
        Ok(x)
    })
    .unwrap();
    for peer in [&fast, &slow, &dead] {
        join(&caller, peer);
    }
    let events = caller.events();
    dead.close();
    assert!(events.wait_for(PATIENCE, |e| is_lost(e, "dead")).is_some());

    let timeout = Duration::from_millis(800);
    let started = Instant::now();
    let results = caller
        .call::<_, u32>(["fast", "slow", "dead", "nobody"], "echo", &5u32, timeout)
        .unwrap();
    let took = started.elapsed();
    assert_eq!(results.len(), 4);
    assert_eq!(results.get("fast"), Some(&Ok(5)));
    assert_eq!(results.get("slow"), Some(&Err(CallError::Timeout)));
    assert!(
        matches!(results.get("dead"), Some(Err(CallError::Unreachable(_)))),
        "{results:?}"
    );
    assert_eq!(results.get("nobody"), Some(&Err(CallError::UnknownPeer)));
    assert!(took >= timeout, "returned before its deadline: {took:?}");
    // The caller's own clock ends the call; only scheduling can delay it.
    assert!(
        took < timeout + Duration::from_secs(2),
        "returned long after its deadline: {took:?}"
    );
}

#[test]
fn a_multicast_to_all_returns_when_every_peer_has_answered() {
    let hub = node("hub");
    let peers: Vec<_> = (0..5).map(|i| node(&format!("p{i}"))).collect();
    for p in &peers {
        p.register("id", |_c, (): ()| Ok(1u8)).unwrap();
        join(&hub, p);
    }
    let started = Instant::now();
    let results = hub
        .call::<_, u8>(To::All, "id", &(), Duration::from_secs(30))
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "did not wait for the deadline"
    );
    assert_eq!(results.len(), 5);
    assert!(results.all_ok());
    let names: Vec<&str> = results.iter().map(|r| r.peer.as_str()).collect();
    assert_eq!(names, ["p0", "p1", "p2", "p3", "p4"]);
}

#[test]
fn remote_failures_are_typed_and_distinguishable() {
    let a = node("a");
    let b = node("b");
    b.register("fail", |_c, (): ()| -> Result<(), HandlerError> {
        Err(HandlerError::new("no can do"))
    })
    .unwrap();
    b.register("panics", |_c, (): ()| -> Result<(), HandlerError> {
        panic!("boom")
    })
    .unwrap();
    b.register("wants_string", |_c, s: String| Ok(s.len()))
        .unwrap();
    join(&a, &b);
    let t = PATIENCE;
    assert_eq!(
        a.call_one::<_, ()>("b", "fail", &(), t),
        Err(CallError::Remote("no can do".into()))
    );
    assert_eq!(
        a.call_one::<_, ()>("b", "missing", &(), t),
        Err(CallError::UnknownMethod)
    );
    assert!(matches!(
        a.call_one::<_, usize>("b", "wants_string", &42u32, t),
        Err(CallError::BadArguments(_))
    ));
    let panicked = a.call_one::<_, ()>("b", "panics", &(), t);
    assert!(
        matches!(&panicked, Err(CallError::Remote(m)) if m.message().contains("boom")),
        "{panicked:?}"
    );
    // The reply does not decode into the type the caller asked for.
    assert!(matches!(
        a.call_one::<_, String>("b", "wants_string", &"abc", t),
        Err(CallError::BadReply(_))
    ));
    // And b is still fine.
    assert_eq!(
        a.call_one::<_, usize>("b", "wants_string", &"abcd", t),
        Ok(4)
    );
}

#[test]
fn calls_to_unknown_or_inactive_peers_fail_at_once() {
    let a = node("a");
    let started = Instant::now();
    assert_eq!(
        a.call_one::<_, ()>("ghost", "m", &(), Duration::from_secs(30)),
        Err(CallError::UnknownPeer)
    );
    // A peer being dialled but not joined.
    a.connect("later", "tcp://127.0.0.1:1").unwrap();
    assert!(matches!(
        a.call_one::<_, ()>("later", "m", &(), Duration::from_secs(30)),
        Err(CallError::Unreachable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        a.call_one::<_, ()>("not a\tname", "m", &(), Duration::from_secs(30)),
        Err(CallError::UnknownPeer)
    );
}

#[test]
fn thousand_concurrent_calls_from_eight_threads_are_all_answered() {
    let a = builder("a").workers(4).start().unwrap();
    let b = builder("b").workers(4).start().unwrap();
    b.register("double", |_c, x: u64| Ok(x * 2)).unwrap();
    join(&a, &b);
    let answered = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let a = a.clone();
            let answered = answered.clone();
            std::thread::spawn(move || {
                // Each thread keeps 125 calls in flight at once.
                let pending: Vec<_> = (0..125u64)
                    .map(|i| {
                        (
                            t * 1000 + i,
                            a.start_call::<_, u64>("b", "double", &(t * 1000 + i), PATIENCE)
                                .unwrap(),
                        )
                    })
                    .collect();
                for (x, call) in pending {
                    let r = call.wait();
                    assert_eq!(r.get("b"), Some(&Ok(x * 2)));
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(answered.load(Ordering::Relaxed), 1000);
    assert_eq!(a.load().0, 0, "no call left pending");
}

#[test]
fn blocking_handlers_run_on_at_most_the_workers_the_node_was_given() {
    let a = node("a");
    let b = builder("b").workers(3).start().unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (release_tx, release_rx) = crossbeam_channel::unbounded::<()>();
    {
        let (running, most) = (running.clone(), most.clone());
        b.register("hold", move |_c, (): ()| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let _ = release_rx.recv_timeout(PATIENCE);
            running.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
    }
    join(&a, &b);
    let calls: Vec<_> = (0..5)
        .map(|_| a.start_call::<_, ()>("b", "hold", &(), PATIENCE).unwrap())
        .collect();
    // Three workers start for the first three calls; the other two wait.
    wait_until(PATIENCE, || {
        running.load(Ordering::SeqCst) == 3 && b.load().1 == 5
    });
    for _ in 0..5 {
        release_tx.send(()).unwrap();
    }
    for call in calls {
        assert!(call.wait().all_ok());
    }
    assert_eq!(most.load(Ordering::SeqCst), 3);
}

#[test]
fn nodes_sharing_a_handler_pool_run_at_most_its_threads_and_close_alone() {
    let a = node("a");
    let pool = HandlerPool::new(2);
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (release_tx, release_rx) = crossbeam_channel::unbounded::<()>();
    let servers: Vec<_> = ["b1", "b2"]
        .iter()
        .map(|name| {
            let b = builder(name).handler_pool(&pool).start().unwrap();
            let (running, most, release) = (running.clone(), most.clone(), release_rx.clone());
            b.register("hold", move |_c, (): ()| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                let _ = release.recv_timeout(PATIENCE);
                running.fetch_sub(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
            b.register("ping", |_c, (): ()| Ok("pong")).unwrap();
            join(&a, &b);
            b
        })
        .collect();
    let calls: Vec<_> = ["b1", "b1", "b2", "b2"]
        .iter()
        .map(|to| a.start_call::<_, ()>(*to, "hold", &(), PATIENCE).unwrap())
        .collect();
    // Two threads for both nodes: two handlers run, two wait.
    let queued = || servers.iter().map(|b| b.load().1).sum::<usize>();
    wait_until(PATIENCE, || {
        running.load(Ordering::SeqCst) == 2 && queued() == 4
    });
    for _ in 0..4 {
        release_tx.send(()).unwrap();
    }
    for call in calls {
        assert!(call.wait().all_ok());
    }
    assert_eq!(most.load(Ordering::SeqCst), 2);
    // One node closing leaves the pool to the other.
    servers[0].close();
    let pong: String = a.call_one("b2", "ping", &(), PATIENCE).unwrap();
    assert_eq!(pong, "pong");
}

#[test]
fn inline_handlers_run_on_the_reactor_even_when_every_worker_is_busy() {
    let a = node("a");
    let b = builder("b").workers(1).start().unwrap();
    let (release_tx, release_rx) = crossbeam_channel::unbounded::<()>();
    b.register("hold", move |_c, (): ()| {
        let _ = release_rx.recv_timeout(PATIENCE);
        Ok(())
    })
    .unwrap();
    b.register_inline("where", |_c, (): ()| {
        Ok(std::thread::current().name().unwrap_or("").to_string())
    })
    .unwrap();
    b.register_inline("boom", |_c, (): ()| -> Result<(), HandlerError> {
        panic!("inline bug")
    })
    .unwrap();
    join(&a, &b);
    // The only worker is held.
    let held = a.start_call::<_, ()>("b", "hold", &(), PATIENCE).unwrap();
    wait_until(PATIENCE, || b.load().1 == 1);
    let thread: String = a.call_one("b", "where", &(), PATIENCE).unwrap();
    assert!(thread.starts_with("bilateral-reactor"), "{thread}");
    match a.call_one::<_, ()>("b", "boom", &(), PATIENCE) {
        Err(CallError::Remote(e)) => assert!(e.message().contains("panicked"), "{e}"),
        other => panic!("{other:?}"),
    }
    // The node goes on, and the held call finishes when released.
    let thread: String = a.call_one("b", "where", &(), PATIENCE).unwrap();
    assert!(thread.starts_with("bilateral-reactor"));
    release_tx.send(()).unwrap();
    assert!(held.wait().all_ok());
    assert_eq!(b.methods(), ["boom", "hold", "where"]);
}

#[test]
fn casts_say_how_many_peers_they_went_to_and_run_the_handler() {
    let a = node("a");
    let b = node("b");
    let c = node("c");
    let (tx, rx) = crossbeam_channel::unbounded();
    for n in [&b, &c] {
        let tx = tx.clone();
        n.register("note", move |ctx, text: String| {
            assert!(ctx.is_cast());
            tx.send((ctx.peer().to_string(), text)).unwrap();
            Ok(())
        })
        .unwrap();
        join(&a, n);
    }
    assert_eq!(a.cast(To::All, "note", "hello").unwrap(), 2);
    assert_eq!(a.cast(["b", "ghost"], "note", "just b").unwrap(), 1);
    let mut got: Vec<(String, String)> =
        (0..3).map(|_| rx.recv_timeout(PATIENCE).unwrap()).collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("a".into(), "hello".into()),
            ("a".into(), "hello".into()),
            ("a".into(), "just b".into())
        ]
    );
}

#[test]
fn a_full_handler_queue_is_reported_as_remote_overload() {
    let a = node("a");
    let b = builder("b")
        .workers(1)
        .max_queued_handlers(2)
        .start()
        .unwrap();
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
    b.register("block", move |_c, (): ()| {
        let _ = release_rx.recv_timeout(PATIENCE);
        Ok(())
    })
    .unwrap();
    join(&a, &b);
    // One DEALER keeps order: the first two are admitted, the third refused.
    let mut calls: Vec<_> = (0..3)
        .map(|_| a.start_call::<_, ()>("b", "block", &(), PATIENCE).unwrap())
        .collect();
    let third = calls.pop().unwrap().wait();
    assert_eq!(
        third.get("b"),
        Some(&Err(CallError::Overloaded(Side::Remote)))
    );
    for _ in 0..2 {
        release_tx.send_timeout((), PATIENCE).unwrap();
    }
    for call in calls {
        assert_eq!(call.wait().get("b"), Some(&Ok(())));
    }
    assert!(b.stats().requests_refused >= 1);
}

#[test]
fn a_pending_call_fails_at_once_when_the_peer_closes() {
    let a = node("a");
    let b = node("b");
    let (started_tx, started_rx) = crossbeam_channel::bounded(1);
    b.register("hang", move |_c, (): ()| {
        let _ = started_tx.send(());
        std::thread::sleep(Duration::from_secs(2));
        Ok(())
    })
    .unwrap();
    join(&a, &b);
    let call = a
        .start_call::<_, ()>("b", "hang", &(), Duration::from_secs(60))
        .unwrap();
    // The request is in b's handler: now b goes away.
    started_rx.recv_timeout(PATIENCE).unwrap();
    b.close();
    let started = Instant::now();
    let r = call.wait();
    assert_eq!(
        r.get("b"),
        Some(&Err(CallError::PeerLost(LostReason::Parted)))
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// What a handler's typed error is, for the caller to match on.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum LookupError {
    NotFound { key: String },
    Forbidden,
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LookupError::NotFound { key } => write!(f, "no entry {key:?}"),
            LookupError::Forbidden => f.write_str("forbidden"),
        }
    }
}

#[test]
fn a_typed_error_crosses_the_wire_and_decodes_into_the_callers_type() {
    let a = node("a");
    let b = node("b");
    b.register("lookup", |_c, key: String| -> Result<u32, HandlerError> {
        match key.as_str() {
            "one" => Ok(1),
            "secret" => Err(HandlerError::typed(&LookupError::Forbidden)),
            _ => Err(HandlerError::typed(&LookupError::NotFound { key })),
        }
    })
    .unwrap();
    // `?` on any std error in a handler.
    b.register("parse", |_c, text: String| Ok(text.parse::<u32>()?))
        .unwrap();
    join(&a, &b);
    assert_eq!(a.call_one::<_, u32>("b", "lookup", &"one", PATIENCE), Ok(1));
    let Err(CallError::Remote(e)) = a.call_one::<_, u32>("b", "lookup", &"two", PATIENCE) else {
        panic!("a remote error");
    };
    assert_eq!(e.message(), "no entry \"two\"");
    assert_eq!(
        e.data::<LookupError>(),
        Some(Ok(LookupError::NotFound { key: "two".into() }))
    );
    let Err(CallError::Remote(e)) = a.call_one::<_, u32>("b", "lookup", &"secret", PATIENCE) else {
        panic!("a remote error");
    };
    assert_eq!(e.data::<LookupError>(), Some(Ok(LookupError::Forbidden)));
    // A type that does not fit says so; an untyped error has no data.
    assert!(matches!(e.data::<u64>(), Some(Err(_))));
    let Err(CallError::Remote(e)) = a.call_one::<_, u32>("b", "parse", &"x1", PATIENCE) else {
        panic!("a remote error");
    };
    assert_eq!(e.message(), "invalid digit found in string");
    assert_eq!(e.data::<LookupError>(), None);
    assert_eq!(a.call_one::<_, u32>("b", "parse", &"41", PATIENCE), Ok(41));
}

/// A call whose request or reply is over a node's `max_message_size` fails
/// at once with `TooLarge`, naming the side whose limit it met, instead of
/// waiting out its deadline; casts over the sender's limit are refused; the
/// session goes on serving calls that fit.
#[test]
fn messages_over_max_message_size_fail_at_once_with_too_large() {
    use serde_bytes::ByteBuf;
    const LIMIT: usize = 64 * 1024;
    let small = builder("small").max_message_size(LIMIT).start().unwrap();
    let big = node("big");
    for n in [&small, &big] {
        n.register("echo", |_c, b: ByteBuf| Ok(b)).unwrap();
        n.register("grow", |_c, len: usize| Ok(ByteBuf::from(vec![3u8; len])))
            .unwrap();
    }
    join(&big, &small);
    // Long enough that a call left to time out would fail the test by its
    // variant (and its length), never by a timing assertion.
    let bytes = |n: usize| ByteBuf::from(vec![7u8; n]);
    /// Calls `method` on `to`; on success, the reply's length.
    fn call<A: serde::Serialize>(
        from: &bilateral::Node,
        to: &str,
        method: &str,
        args: &A,
    ) -> Result<usize, CallError> {
        let patience = Duration::from_secs(30);
        from.call_one::<_, serde_bytes::ByteBuf>(to, method, args, patience)
            .map(|b| b.len())
    }

    // Requests: one frame (100 KiB, under a chunk) and fragmented (300 KiB),
    // over the callee's limit; then over the caller's own.
    for n in [100 * 1024, 300 * 1024] {
        let r = call(&big, "small", "echo", &bytes(n));
        assert_eq!(r, Err(CallError::TooLarge(Side::Remote)), "request of {n}");
        let r = call(&small, "big", "echo", &bytes(n));
        assert_eq!(
            r,
            Err(CallError::TooLarge(Side::Local)),
            "own request of {n}"
        );
    }
    // Replies: over the callee's own limit, and over the caller's.
    let r = call(&big, "small", "grow", &(100 * 1024usize));
    assert_eq!(r, Err(CallError::TooLarge(Side::Remote)));
    for n in [100 * 1024usize, 300 * 1024] {
        let r = call(&small, "big", "grow", &n);
        assert_eq!(r, Err(CallError::TooLarge(Side::Local)), "reply of {n}");
    }
    // A cast over the sender's limit is refused before it leaves.
    match small.cast("big", "echo", &bytes(100 * 1024)) {
        Err(bilateral::Error::TooLarge { size, limit }) => {
            assert!(size > LIMIT);
            assert_eq!(limit, LIMIT);
        }
        other => panic!("an oversized cast gave {other:?}"),
    }
    // What fits still goes both ways.
    assert_eq!(call(&big, "small", "echo", &bytes(1024)), Ok(1024));
    assert_eq!(
        call(&small, "big", "grow", &(32 * 1024usize)),
        Ok(32 * 1024)
    );
    assert!(small.stats().oversized >= 2, "{:?}", small.stats());
}
