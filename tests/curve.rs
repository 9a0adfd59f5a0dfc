//! CURVE meshes over TCP loopback: encryption, the allow-list, identity
//! binding, refusing downgrades and wrong keys.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bilateral::testkit::zmq::{Context, SendFlags, SocketType};
use bilateral::{CallError, Error, Keypair, LostReason, Node, NodeBuilder, PeerEvent, RejectCode};
use common::*;

/// A CURVE node on a fresh loopback port with short timers.
fn secure(keys: &Keypair) -> NodeBuilder {
    init_logging();
    Node::secure_builder(keys)
        .network("test")
        .listen("tcp://127.0.0.1:*")
        .heartbeat_interval(Duration::from_millis(100))
        .lost_timeout(Duration::from_millis(600))
        .join_timeout(Duration::from_millis(500), Duration::from_millis(100))
        .backoff(Duration::from_millis(50), Duration::from_millis(300))
}

fn keys() -> Keypair {
    Keypair::generate().unwrap()
}

fn rejected_with(e: &PeerEvent, code: RejectCode) -> bool {
    matches!(e, PeerEvent::Rejected { rejection, .. } if rejection.code == code)
}

fn refused_with(e: &PeerEvent, code: RejectCode) -> bool {
    matches!(e, PeerEvent::Refused { rejection, .. } if rejection.code == code)
}

#[test]
fn encrypted_calls_go_both_ways() {
    let (ka, kb) = (keys(), keys());
    let a = secure(&ka).allow_keys([*kb.public()]).start().unwrap();
    let b = secure(&kb).allow_keys([*ka.public()]).start().unwrap();
    assert_eq!(a.name(), ka.public().to_z85());
    assert_eq!(a.public_key(), Some(*ka.public()));
    a.register("whoami", |ctx, (): ()| Ok(ctx.peer().to_string()))
        .unwrap();
    b.register("whoami", |ctx, (): ()| Ok(ctx.peer().to_string()))
        .unwrap();
    join(&a, &b);
    assert_eq!(
        a.call_one::<_, String>(b.name(), "whoami", &(), PATIENCE)
            .unwrap(),
        a.name()
    );
    assert_eq!(
        b.call_one::<_, String>(a.name(), "whoami", &(), PATIENCE)
            .unwrap(),
        b.name()
    );
}

#[test]
fn an_unknown_key_is_refused_until_allowed_and_again_once_revoked() {
    let (ks, kc) = (keys(), keys());
    let served = Arc::new(AtomicUsize::new(0));
    let server = secure(&ks).start().unwrap();
    let counter = served.clone();
    server
        .register("work", move |_ctx, (): ()| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
    let client = secure(&kc).start().unwrap();
    let server_events = server.events();
    let client_events = client.events();

    // Refused at the handshake: the client is told, the server reports it.
    client
        .connect(server.name(), server.endpoint().unwrap())
        .unwrap();
    match client.wait_for_peer(server.name(), PATIENCE) {
        Err(Error::Rejected { rejection, .. }) => {
            assert_eq!(rejection.code, RejectCode::Unauthorized)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let refused = server_events
        .wait_for(PATIENCE, |e| matches!(e, PeerEvent::Unauthorized { .. }))
        .unwrap();
    assert!(matches!(refused, PeerEvent::Unauthorized { key, .. } if key == client.name()));
    assert!(server.stats().unauthorized >= 1);
    assert!(matches!(
        client.call_one::<_, ()>(server.name(), "work", &(), PATIENCE),
        Err(CallError::Unreachable(_))
    ));
    assert_eq!(
        served.load(Ordering::SeqCst),
        0,
        "nothing reached a handler"
    );

    // Allowed at run time: the client's next attempt gets in.
    assert!(
        !server
            .allow_key(client.public_key().as_ref().unwrap())
            .unwrap()
    );
    assert!(
        client_events
            .wait_for(PATIENCE, |e| is_joined(e, server.name()))
            .is_some()
    );
    client
        .call_one::<_, ()>(server.name(), "work", &(), PATIENCE)
        .unwrap();
    assert_eq!(served.load(Ordering::SeqCst), 1);
    assert_eq!(server.allowed_keys().unwrap(), vec![*kc.public()]);

    // Revoked: the session ends and new connections are refused again.
    assert!(server.revoke_key(kc.public()).unwrap());
    let lost = server_events
        .wait_for(PATIENCE, |e| is_lost(e, client.name()))
        .unwrap();
    assert!(matches!(
        lost,
        PeerEvent::Lost {
            reason: LostReason::Revoked,
            ..
        }
    ));
    assert!(
        client_events
            .wait_for(PATIENCE, |e| rejected_with(e, RejectCode::Unauthorized))
            .is_some()
    );
    assert!(server.allowed_keys().unwrap().is_empty());
}

#[test]
fn an_allowed_key_cannot_act_as_another_node() {
    let (ks, kh, kx) = (keys(), keys(), keys());
    let server = secure(&ks)
        .allow_keys([*kh.public(), *kx.public()])
        .start()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    server
        .register("act", move |ctx, what: String| {
            log.lock().unwrap().push((ctx.peer().to_string(), what));
            Ok(())
        })
        .unwrap();
    let honest = secure(&kh).start().unwrap();
    join(&honest, &server);
    let events = server.events();

    // A raw CURVE client with an allowed key of its own claims the honest
    // node's name as routing id, and tries JOIN, a call and a cast.
    let ctx = Context::new().unwrap();
    let rogue = ctx.socket(SocketType::Dealer).unwrap();
    rogue.set_routing_id(honest.name().as_bytes()).unwrap();
    rogue.set_curve_serverkey(ks.public().as_bytes()).unwrap();
    rogue.set_curve_publickey(kx.public().as_bytes()).unwrap();
    let secret: [u8; 32] = bilateral::testkit::zmq::z85_decode(&kx.secret_z85())
        .unwrap()
        .try_into()
        .unwrap();
    rogue.set_curve_secretkey(&secret).unwrap();
    rogue.set_linger(Duration::ZERO).unwrap();
    rogue.connect(server.endpoint().unwrap()).unwrap();
    let incarnation = 0x0123_4567_89ab_cdef_u64;
    let header = |kind: u8| {
        let mut f = vec![1, kind];
        f.extend_from_slice(&incarnation.to_be_bytes());
        f
    };
    let mut join_frame = header(1);
    join_frame.extend_from_slice(&[1, 1, 1, 0, 0, 3, 0xe8]);
    for field in ["test", honest.name(), server.name()] {
        join_frame.push(field.len() as u8);
        join_frame.extend_from_slice(field.as_bytes());
    }
    let mut request = header(7);
    request.extend_from_slice(&[
        0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0x13, 0x88, 3, b'a', b'c', b't',
    ]);
    request.extend_from_slice(&[0xa5, b'e', b'v', b'i', b'l', b'!']); // "evil!"
    let mut cast = header(9);
    cast.extend_from_slice(&[3, b'a', b'c', b't', 0xa5, b'e', b'v', b'i', b'l', b'!']);
    for frame in [&join_frame, &request, &cast] {
        rogue.send(frame, SendFlags::NONE).unwrap();
    }

    let mismatch = events
        .wait_for(PATIENCE, |e| {
            matches!(e, PeerEvent::IdentityMismatch { .. })
        })
        .unwrap();
    assert!(matches!(
        mismatch,
        PeerEvent::IdentityMismatch { claimed, key } if claimed == honest.name() && key == kx.public().to_z85()
    ));
    wait_until(PATIENCE, || server.stats().identity_mismatch >= 3);
    // The honest node's own calls still arrive as itself; nothing as it from the rogue.
    drop(rogue);
    wait_until(PATIENCE, || {
        honest
            .call_one::<_, ()>(server.name(), "act", "honest", PATIENCE)
            .is_ok()
    });
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().all(|(_, what)| what == "honest"), "{seen:?}");
    assert!(seen.iter().all(|(peer, _)| peer == honest.name()));
}

#[test]
fn a_plaintext_node_and_a_curve_node_cannot_talk_and_both_say_why() {
    let kc = keys();
    let curve = secure(&kc).allow_any_key().start().unwrap();
    let plain = node("plain");
    let (curve_events, plain_events) = (curve.events(), plain.events());

    plain
        .connect(curve.name(), curve.endpoint().unwrap())
        .unwrap();
    match plain.wait_for_peer(curve.name(), PATIENCE) {
        Err(Error::Rejected { rejection, .. }) => {
            assert_eq!(rejection.code, RejectCode::SecurityMismatch)
        }
        other => panic!("{other:?}"),
    }
    assert!(
        curve_events
            .wait_for(PATIENCE, |e| refused_with(e, RejectCode::SecurityMismatch))
            .is_some()
    );

    // And the other way round.
    curve
        .connect("plain", plain.endpoint().unwrap())
        .unwrap_err(); // not a key: refused at once
    let kp = keys();
    curve
        .connect(&kp.public().to_z85(), plain.endpoint().unwrap())
        .unwrap();
    assert!(
        curve
            .events()
            .wait_for(PATIENCE, |e| rejected_with(e, RejectCode::SecurityMismatch))
            .is_some()
    );
    assert!(
        plain_events
            .wait_for(PATIENCE, |e| refused_with(e, RejectCode::SecurityMismatch))
            .is_some()
    );
    assert!(curve.active_connections().is_empty() && plain.active_connections().is_empty());
}

#[test]
fn dialling_with_the_wrong_server_key_fails_cleanly() {
    let (ka, kb, kwrong) = (keys(), keys(), keys());
    let a = secure(&ka).start().unwrap();
    let b = secure(&kb).allow_any_key().start().unwrap();
    let b_events = b.events();
    // a believes the node at b's endpoint has kwrong's key.
    a.connect(&kwrong.public().to_z85(), b.endpoint().unwrap())
        .unwrap();
    match a.wait_for_peer(&kwrong.public().to_z85(), PATIENCE) {
        Err(Error::Rejected { rejection, .. }) => {
            assert_eq!(rejection.code, RejectCode::HandshakeFailed)
        }
        other => panic!("{other:?}"),
    }
    assert!(
        b_events
            .wait_for(PATIENCE, |e| refused_with(e, RejectCode::HandshakeFailed))
            .is_some()
    );
    assert!(b.active_connections().is_empty());
    assert!(a.stats().handshakes_failed >= 1);
}

/// Forwards one TCP connection to `target` and records every byte both ways.
fn recording_proxy(target: &str) -> (String, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let target = target.trim_start_matches("tcp://").to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        let Ok((client, _)) = listener.accept() else {
            return;
        };
        let Ok(server) = TcpStream::connect(&target) else {
            return;
        };
        let pump = |mut from: TcpStream, mut to: TcpStream, record: Arc<Mutex<Vec<u8>>>| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 || to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let _ = to.shutdown(std::net::Shutdown::Both);
            })
        };
        pump(
            client.try_clone().unwrap(),
            server.try_clone().unwrap(),
            record.clone(),
        );
        pump(server, client, record);
    });
    (format!("tcp://{address}"), seen)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Sends a marker both ways through a recording proxy; returns what the wire saw.
fn wire_bytes(a: &Node, b: &Node, marker: &str) -> Vec<u8> {
    b.register("echo", |_c, s: String| Ok(s)).unwrap();
    let (proxy, seen) = recording_proxy(b.endpoint().unwrap());
    a.connect(b.name(), &proxy).unwrap();
    a.wait_for_peer(b.name(), PATIENCE).unwrap();
    let back: String = a.call_one(b.name(), "echo", marker, PATIENCE).unwrap();
    assert_eq!(back, marker);
    seen.lock().unwrap().clone()
}

#[test]
fn the_wire_carries_no_plaintext_in_curve_mode_and_does_in_plaintext_mode() {
    let marker = "MARKER-7f3e-secret-payload";
    let (ka, kb) = (keys(), keys());
    let a = secure(&ka).start().unwrap();
    let b = secure(&kb).allow_keys([*ka.public()]).start().unwrap();
    let wire = wire_bytes(&a, &b, marker);
    assert!(
        wire.len() > 200,
        "the proxy saw the traffic ({} bytes)",
        wire.len()
    );
    assert!(
        !contains(&wire, marker.as_bytes()),
        "the marker crossed the wire in clear"
    );
    assert!(
        !contains(&wire, b"echo"),
        "the method name crossed the wire in clear"
    );

    let (c, d) = (node("c"), node("d"));
    let wire = wire_bytes(&c, &d, marker);
    assert!(
        contains(&wire, marker.as_bytes()),
        "plaintext mode sends the marker as is"
    );
}

#[test]
fn curve_nodes_need_their_own_context_and_names_must_be_their_keys() {
    let k = keys();
    let ctx = bilateral::Context::new().unwrap();
    let first = secure(&k).context(ctx.clone()).start().unwrap();
    let second = secure(&keys()).context(ctx).start();
    assert!(matches!(second, Err(Error::InvalidConfig(_))), "{second:?}");
    drop(first);
    let wrong_name = Node::builder("not-the-key").curve(k).start();
    assert!(matches!(wrong_name, Err(Error::InvalidConfig(_))));
}

#[test]
fn a_callback_policy_decides_per_key() {
    let (ks, good, bad) = (keys(), keys(), keys());
    let good_key = *good.public();
    let server = secure(&ks)
        .authorize_with(move |key| *key == good_key)
        .start()
        .unwrap();
    let events = server.events();
    let ok = secure(&good).start().unwrap();
    let refused = secure(&bad).start().unwrap();
    join(&ok, &server);
    refused
        .connect(server.name(), server.endpoint().unwrap())
        .unwrap();
    assert!(matches!(
        refused.wait_for_peer(server.name(), PATIENCE),
        Err(Error::Rejected { .. })
    ));
    assert!(events
        .wait_for(PATIENCE, |e| matches!(e, PeerEvent::Unauthorized { key, .. } if *key == bad.public().to_z85()))
        .is_some());
    assert_eq!(server.active_connections(), [ok.name().to_string()]);
}

#[test]
fn streams_are_encrypted_and_authenticated_with_no_extra_configuration() {
    let marker = b"STREAM-MARKER-41c9-secret-bytes";
    let (ka, kb) = (keys(), keys());
    let a = secure(&ka).start().unwrap();
    let b = secure(&kb).allow_keys([*ka.public()]).start().unwrap();
    b.on_stream("echo", |incoming: bilateral::Incoming<()>| {
        let who = incoming.peer().to_string();
        let ((), mut stream) = incoming.accept()?;
        let mut all = Vec::new();
        stream.read_to_end(&mut all)?;
        stream.write_all(who.as_bytes())?;
        stream.write_all(&all)?;
        stream.finish()?;
        Ok(())
    })
    .unwrap();
    let (proxy, seen) = recording_proxy(b.endpoint().unwrap());
    a.connect(b.name(), &proxy).unwrap();
    a.wait_for_peer(b.name(), PATIENCE).unwrap();
    let mut stream = a.open_stream(b.name(), "echo", &(), PATIENCE).unwrap();
    // Enough bytes to travel in several pieces.
    let mut sent = Vec::new();
    for _ in 0..20_000 {
        sent.extend_from_slice(marker);
    }
    stream.write_all(&sent).unwrap();
    stream.finish().unwrap();
    let mut back = Vec::new();
    stream.read_to_end(&mut back).unwrap();
    // The service saw the opener's authenticated key as its name.
    let (who, echoed) = back.split_at(a.name().len());
    assert_eq!(who, a.name().as_bytes());
    assert!(echoed == sent.as_slice());
    let wire = seen.lock().unwrap().clone();
    assert!(
        wire.len() > sent.len() * 2,
        "both directions crossed the proxy"
    );
    assert!(
        !contains(&wire, marker),
        "stream bytes crossed the wire in clear"
    );
}
