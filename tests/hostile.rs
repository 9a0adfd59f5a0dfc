//! Raw, malformed traffic from bare ZeroMQ sockets: the node drops and
//! counts it, and keeps answering calls.

mod common;

use std::time::Duration;

use bilateral::testkit::zmq::{Context, PollItem, SendFlags, SocketType};
use common::raw::{dealer as raw_dealer, frame, join_frame, next_kind, send_parts};
use common::*;

#[test]
fn malformed_traffic_is_dropped_counted_and_the_node_keeps_serving() {
    let victim = builder("victim")
        .max_message_size(64 * 1024)
        .start()
        .unwrap();
    victim.register("ping", |_c, (): ()| Ok("pong")).unwrap();
    let endpoint = victim.endpoint().unwrap().to_string();
    let ctx = Context::new().unwrap();

    let rogue = raw_dealer(&ctx, Some(b"rogue"), &endpoint);
    // Garbage, empty frames, unknown version and kind.
    send_parts(&rogue, &[b"\xff\xfe garbage"]);
    send_parts(&rogue, &[b""]);
    send_parts(&rogue, &[&frame(1, 1, b"")[..2]]);
    send_parts(&rogue, &[&[9, 4, 0, 0, 0, 0, 0, 0, 0, 0]]);
    send_parts(&rogue, &[&frame(0xEE, 1, b"??")]);
    // Wrong frame counts, including one message of 10 000 frames.
    send_parts(&rogue, &[&frame(4, 1, &[0; 8]), b"extra"]);
    let many: Vec<&[u8]> = std::iter::repeat_n(&b"x"[..], 10_000).collect();
    send_parts(&rogue, &many);
    // Over the configured maximum (but under libzmq's hard cap).
    send_parts(&rogue, &[&frame(9, 1, &vec![0u8; 100 * 1024])]);
    // Calls and casts without ever joining; a JOIN that is a lie.
    let request = frame(7, 1, b"\0\0\0\0\0\0\0\x01\0\0\x03\xe8\x04ping\xc0");
    send_parts(&rogue, &[&request]);
    send_parts(&rogue, &[&frame(9, 1, b"\x04ping\xc0")]);
    send_parts(
        &rogue,
        &[&frame(
            1,
            1,
            b"\x01\x01\x00\0\0\x03\xe8\x04test\x05other\x06victim",
        )],
    );
    // Someone using the victim's own name, and a socket with no routing id.
    let impostor = raw_dealer(&ctx, Some(b"victim"), &endpoint);
    send_parts(&impostor, &[&request]);
    let anonymous = raw_dealer(&ctx, None, &endpoint);
    send_parts(&anonymous, &[&request]);
    // A frame far beyond the hard cap: libzmq drops that connection.
    let huge = raw_dealer(&ctx, Some(b"huge"), &endpoint);
    huge.send(&vec![0u8; 1024 * 1024], SendFlags::NONE).unwrap();

    // The rogue, told to join, gets REJECT(NotJoined) answers and no data.
    let mut items = [PollItem::readable(&rogue)];
    bilateral::testkit::zmq::poll(&mut items, Some(PATIENCE)).unwrap();
    let (answer, _) = rogue.recv_multipart(true, 4).unwrap();
    assert_eq!(answer[0].as_bytes()[1], 3, "a REJECT");

    // Every kind of garbage was counted.
    wait_until(PATIENCE, || {
        let s = victim.stats();
        s.malformed >= 3
            && s.wrong_frame_count >= 2
            && s.oversized >= 1
            && s.unknown_sender >= 2
            && s.bad_routing_id >= 2
    });
    let s = victim.stats();
    assert!(s.joins_refused >= 1, "{s:?}");

    // And a real peer is served as if nothing happened.
    let friend = node("friend");
    join(&friend, &victim);
    let reply: String = friend.call_one("victim", "ping", &(), PATIENCE).unwrap();
    assert_eq!(reply, "pong");
    assert_eq!(victim.active_connections(), ["friend"]);
}

#[test]
fn a_flood_of_garbage_does_not_starve_a_live_session() {
    let victim = node("victim");
    victim.register("ping", |_c, (): ()| Ok(1u8)).unwrap();
    let friend = node("friend");
    join(&friend, &victim);
    let ctx = Context::new().unwrap();
    let rogue = raw_dealer(&ctx, Some(b"rogue"), victim.endpoint().unwrap());
    let events = friend.events();
    let flood = std::thread::spawn(move || {
        for i in 0..50_000u32 {
            let _ = rogue.send(&i.to_be_bytes(), SendFlags::DONTWAIT);
        }
        rogue
    });
    for _ in 0..50 {
        assert_eq!(
            friend
                .call_one::<_, u8>("victim", "ping", &(), PATIENCE)
                .unwrap(),
            1
        );
    }
    let _rogue = flood.join().unwrap();
    assert!(
        events
            .wait_for(Duration::from_millis(700), |e| is_lost(e, "victim"))
            .is_none()
    );
    assert!(victim.stats().malformed > 0);
}

/// ROUTER_HANDOVER in libzmq 4.3.5 kept the displaced connection open for
/// the life of the socket once it had sent anything after the handover
/// (libzmq #3238, #4407): one descriptor per handover, for anyone who can
/// connect. `build.rs` patches libzmq; this is the attack.
#[test]
fn routing_id_handovers_leave_no_descriptor_behind() {
    let victim = node("victim");
    let endpoint = victim.endpoint().unwrap().to_string();
    let ctx = Context::new().unwrap();
    // The context starts its threads (and their descriptors) with its first socket.
    drop(ctx.socket(SocketType::Dealer).unwrap());
    let fds_before = fd_count();
    let connect = |incarnation: u64| {
        let s = raw_dealer(&ctx, Some(b"taker"), &endpoint);
        s.set_linger(Duration::ZERO).unwrap();
        send_parts(&s, &[&join_frame(incarnation, "taker", "victim")]);
        // The WELCOME reaches the newest connection: the handover happened.
        assert_eq!(
            next_kind(&s),
            Some(2),
            "WELCOME to incarnation {incarnation}"
        );
        s
    };
    let mut old = connect(1);
    for incarnation in 2..=1_000u64 {
        let new = connect(incarnation);
        // The displaced connection keeps sending, then goes away.
        for nonce in 0..4u64 {
            let _ = old.send(
                &frame(4, incarnation - 1, &nonce.to_be_bytes()),
                SendFlags::DONTWAIT,
            );
        }
        drop(std::mem::replace(&mut old, new));
    }
    drop(old);
    let deadline = std::time::Instant::now() + PATIENCE;
    while fd_count() > fds_before {
        assert!(
            std::time::Instant::now() < deadline,
            "{} descriptors open after 1 000 handovers, {fds_before} before",
            fd_count()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // And the node still serves.
    victim.register("ping", |_c, (): ()| Ok(1u8)).unwrap();
    let friend = node("friend");
    join(&friend, &victim);
    let one: u8 = friend.call_one("victim", "ping", &(), PATIENCE).unwrap();
    assert_eq!(one, 1);
}
