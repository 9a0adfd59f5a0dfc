//! Bounded by bytes, nothing lost: what greedy or hostile peers can make a
//! node hold, and replies that must reach their callers however full the
//! queues on the way are.

mod common;

use std::time::Duration;

use bilateral::PendingCall;
use bilateral::testkit::zmq::Context;
use common::raw;
use common::*;

/// Four blocked workers hold 10 000 admitted requests; released at once,
/// their replies are more than a socket queue holds (1 000 messages here). Every caller still
/// gets its reply: a computed reply waits for room, it is never dropped.
#[test]
fn a_burst_of_ten_thousand_replies_reaches_every_caller() {
    const CALLS: u32 = 10_000;
    let server = builder("server")
        .workers(4)
        .max_queued_handlers(CALLS as usize)
        .high_water_mark(1_000)
        .start()
        .unwrap();
    let (gate, gate_rx) = crossbeam_channel::bounded::<()>(0);
    server
        .register("wait", move |_c, x: u32| {
            // Blocks until the test drops the gate.
            let _ = gate_rx.recv();
            Ok(x)
        })
        .unwrap();
    let client = node("client");
    join(&client, &server);
    let calls: Vec<PendingCall<u32>> = (0..CALLS)
        .map(|i| {
            client
                .start_call("server", "wait", &i, Duration::from_secs(20))
                .unwrap()
        })
        .collect();
    wait_until(PATIENCE, || server.load().1 == CALLS as usize);
    drop(gate);
    let mut timeouts = 0;
    for (i, call) in calls.into_iter().enumerate() {
        match call.wait().get("server") {
            Some(Ok(x)) => assert_eq!(*x, i as u32),
            Some(Err(bilateral::CallError::Timeout)) => timeouts += 1,
            other => panic!("call {i}: {other:?}"),
        }
    }
    assert_eq!(timeouts, 0, "replies lost: {:?}", server.stats());
}

/// Two fragmented messages declaring 128 MiB each, fed a few KiB at a
/// time, used to reserve the whole reassembly budget at their first piece:
/// every other peer's large call was then refused. Reassembly is counted in
/// bytes that arrived.
#[test]
fn declared_sizes_of_large_messages_reserve_nothing() {
    let victim = node("victim");
    victim
        .register("size", |_c, data: serde_bytes::ByteBuf| Ok(data.len()))
        .unwrap();
    let endpoint = victim.endpoint().unwrap().to_string();
    let ctx = Context::new().unwrap();
    let greedy = raw::joined(&ctx, "greedy", 7, "victim", &endpoint);
    let piece = vec![0u8; 4096];
    let declared = 128 << 20;
    for id in [1, 2] {
        raw::send_parts(&greedy, &[&raw::fragment_frame(7, id, declared, 0, &piece)]);
    }
    let friend = node("friend");
    join(&friend, &victim);
    for i in 1..=10u64 {
        // The greedy messages keep arriving, slowly, and their session lives.
        for id in [1, 2] {
            let at = i * piece.len() as u64;
            raw::send_parts(
                &greedy,
                &[&raw::fragment_frame(7, id, declared, at, &piece)],
            );
        }
        raw::send_parts(&greedy, &[&raw::frame(raw::PING, 7, &i.to_be_bytes())]);
        let data = serde_bytes::ByteBuf::from(vec![i as u8; 300 * 1024]);
        let n: usize = friend.call_one("victim", "size", &data, PATIENCE).unwrap();
        assert_eq!(n, 300 * 1024);
    }
    let s = victim.stats();
    assert_eq!(s.reassembly_refused, 0, "{s:?}");
    assert_eq!(victim.active_connections(), ["friend", "greedy"]);
}

const VICTIM_ENV: &str = "BILATERAL_BOUNDED_VICTIM";

/// The body of the victim process of the memory test, not a test of its
/// own: it does nothing unless started by that test with `VICTIM_ENV` set.
#[test]
fn victim_process() {
    if std::env::var(VICTIM_ENV).is_err() {
        return;
    }
    let node = builder("victim")
        .max_memory(MAX_MEMORY)
        .max_peer_memory(MAX_PEER_MEMORY)
        .max_message_size(MAX_PEER_MEMORY)
        .start()
        .expect("victim starts");
    node.register("echo", |_c, data: serde_bytes::ByteBuf| Ok(data))
        .unwrap();
    serve_as_child(&node);
}

/// What the victim may hold for all peers, and for one.
const MAX_MEMORY: usize = 64 << 20;
const MAX_PEER_MEMORY: usize = 16 << 20;

/// Ten joined peers each send 3 000 echo calls of 120 KiB and never read a
/// reply. Without a bound in bytes the node held every reply (up to the
/// socket's 10 000-message queue per connection, ~1.2 GiB each). With one,
/// its memory stays under `MAX_MEMORY` plus what the node needs anyway,
/// and a well-behaved peer's calls keep working throughout.
#[test]
fn ten_peers_that_never_read_cannot_grow_a_node_past_its_bound() {
    // One malloc arena in the victim: glibc gives each thread that allocates
    // an arena of its own (up to eight per core) and keeps what is freed in
    // each, so with the reactor, the workers and libzmq's I/O thread all
    // handling 120 KiB frames the resident size also measures how freed
    // memory happened to spread over arenas: 14 to 245 MiB from run to run
    // for the same bytes held. With one arena it measures what the node holds.
    let child = Child::spawn_with(
        "victim_process",
        &[(VICTIM_ENV, "1"), ("MALLOC_ARENA_MAX", "1")],
    );
    let endpoint = child.endpoint.clone();
    let friend = node("friend");
    friend.connect("victim", &endpoint).unwrap();
    friend.wait_for_peer("victim", PATIENCE).unwrap();
    let small = serde_bytes::ByteBuf::from(vec![1u8; 64]);
    let _: serde_bytes::ByteBuf = friend.call_one("victim", "echo", &small, PATIENCE).unwrap();
    let rss_idle = child.rss();

    let args = raw::msgpack_bin(&vec![7u8; 120 * 1024]);
    let stop = std::time::Instant::now() + Duration::from_secs(60);
    let attackers: Vec<_> = (0..10u64)
        .map(|i| {
            let (endpoint, args) = (endpoint.clone(), args.clone());
            std::thread::spawn(move || {
                let ctx = Context::new().unwrap();
                let name = format!("greedy-{i}");
                let s = raw::dealer(&ctx, Some(name.as_bytes()), &endpoint);
                // This side holds almost nothing: it reads nothing and
                // queues little, so the memory measured is the victim's.
                s.set_rcvhwm(1).unwrap();
                s.set_sndhwm(4).unwrap();
                s.set_linger(Duration::ZERO).unwrap();
                raw::send_parts(&s, &[&raw::join_frame(100 + i, &name, "victim")]);
                assert_eq!(raw::next_kind(&s), Some(raw::WELCOME));
                let mut sent = 0;
                for id in 0..3_000u64 {
                    let request = raw::request_frame(100 + i, id, 30_000, "echo", &args);
                    if !raw::send_by(&s, &request, stop) {
                        break;
                    }
                    sent += 1;
                }
                (s, ctx, sent)
            })
        })
        .collect();
    // While they push, the friend keeps calling, and the victim's memory is watched.
    let mut peak = 0;
    let mut friend_calls = 0;
    while attackers.iter().any(|a| !a.is_finished()) {
        let reply: serde_bytes::ByteBuf =
            friend.call_one("victim", "echo", &small, PATIENCE).unwrap();
        assert_eq!(reply, small);
        friend_calls += 1;
        peak = peak.max(child.rss());
        assert!(std::time::Instant::now() < stop, "the attack did not end");
    }
    let held: Vec<_> = attackers.into_iter().map(|a| a.join().unwrap()).collect();
    for _ in 0..20 {
        let _: serde_bytes::ByteBuf = friend.call_one("victim", "echo", &small, PATIENCE).unwrap();
        peak = peak.max(child.rss());
    }
    let sent: u64 = held.iter().map(|h| h.2).sum();
    let growth = peak.saturating_sub(rss_idle);
    eprintln!(
        "victim: {} MiB idle, peak {} MiB (+{} MiB) while 10 peers sent {sent} calls of 120 KiB; \
         friend made {friend_calls} calls",
        rss_idle >> 20,
        peak >> 20,
        growth >> 20
    );
    assert!(
        growth < (MAX_MEMORY + SLACK) as u64,
        "the victim grew by {} MiB",
        growth >> 20
    );
    drop(held);
}

/// What a node may hold beyond its budget: the socket library's own
/// buffers and the requests on their way in (10 connections here).
const SLACK: usize = 48 << 20;
