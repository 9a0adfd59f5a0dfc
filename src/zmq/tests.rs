//! Tests of the binding against the real libzmq.

use std::time::Duration;

use super::*;

#[test]
fn version_is_4_3_5_with_curve() {
    assert_eq!(version(), (4, 3, 5));
    assert!(has("curve"), "libzmq must be built with CURVE (libsodium)");
}

#[test]
fn dealer_router_round_trip_with_wildcard_port() {
    let ctx = Context::new().unwrap();
    let router = ctx.socket(SocketType::Router).unwrap();
    router.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = router.last_endpoint().unwrap();
    assert!(endpoint.starts_with("tcp://127.0.0.1:"), "{endpoint}");
    assert!(!endpoint.ends_with(":*"));

    let dealer = ctx.socket(SocketType::Dealer).unwrap();
    dealer.set_routing_id(b"alpha").unwrap();
    dealer.connect(&endpoint).unwrap();
    dealer.send(b"hello", SendFlags::NONE).unwrap();

    let mut items = [PollItem::readable(&router)];
    assert_eq!(poll(&mut items, Some(Duration::from_secs(10))).unwrap(), 1);
    assert!(items[0].is_readable());
    let (frames, total) = router.recv_multipart(true, 4).unwrap();
    assert_eq!(total, 2);
    assert_eq!(frames[0].as_bytes(), b"alpha");
    assert_eq!(frames[1].as_bytes(), b"hello");
    assert_eq!(frames[1].property("Socket-Type").as_deref(), Some("DEALER"));

    router.send(b"alpha", SendFlags::MORE).unwrap();
    let big = vec![7u8; 100_000];
    router
        .send_msg(Message::from_vec(big.clone()), SendFlags::NONE)
        .map_err(|(e, _)| e)
        .unwrap();
    let (frames, _) = dealer.recv_multipart(false, 4).unwrap();
    assert_eq!(frames[0].as_bytes(), &big[..]);
}

#[test]
fn recv_multipart_discards_frames_beyond_the_limit() {
    let ctx = Context::new().unwrap();
    let a = ctx.socket(SocketType::Pair).unwrap();
    let b = ctx.socket(SocketType::Pair).unwrap();
    a.bind("inproc://zmq-test-many-frames").unwrap();
    b.connect("inproc://zmq-test-many-frames").unwrap();
    for _ in 0..999 {
        b.send(b"x", SendFlags::MORE).unwrap();
    }
    b.send(b"last", SendFlags::NONE).unwrap();
    b.send(b"next", SendFlags::NONE).unwrap();
    let (frames, total) = a.recv_multipart(false, 3).unwrap();
    assert_eq!((frames.len(), total), (3, 1000));
    let (frames, total) = a.recv_multipart(false, 3).unwrap();
    assert_eq!((frames[0].as_bytes(), total), (&b"next"[..], 1));
}

#[test]
fn router_mandatory_reports_unknown_routing_id() {
    let ctx = Context::new().unwrap();
    let router = ctx.socket(SocketType::Router).unwrap();
    router.set_router_mandatory(true).unwrap();
    router.bind("inproc://zmq-test-mandatory").unwrap();
    let err = router
        .send(b"nobody", SendFlags::MORE | SendFlags::DONTWAIT)
        .unwrap_err();
    assert!(err.is_host_unreachable(), "{err}");
}

#[test]
fn curve_keys_and_z85() {
    let pair = curve_keypair().unwrap();
    assert_eq!(pair.public.len(), 40);
    assert_eq!(curve_public(&pair.secret).unwrap(), pair.public);
    let raw = z85_decode(&pair.public).unwrap();
    assert_eq!(raw.len(), 32);
    assert_eq!(z85_encode(&raw).unwrap(), pair.public);
    assert!(z85_decode("abc").is_err());
    assert!(z85_encode(&[1, 2, 3]).is_err());
    assert!(curve_public("short").is_err());
}

#[test]
fn curve_handshake_carries_user_id_without_zap() {
    let server_keys = curve_keypair().unwrap();
    let client_keys = curve_keypair().unwrap();
    let key = |z: &str| -> [u8; 32] { z85_decode(z).unwrap().try_into().unwrap() };

    let ctx = Context::new().unwrap();
    let router = ctx.socket(SocketType::Router).unwrap();
    router.set_curve_server(true).unwrap();
    router
        .set_curve_secretkey(&key(&server_keys.secret))
        .unwrap();
    router.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = router.last_endpoint().unwrap();

    let dealer = ctx.socket(SocketType::Dealer).unwrap();
    dealer
        .set_curve_serverkey(&key(&server_keys.public))
        .unwrap();
    dealer
        .set_curve_publickey(&key(&client_keys.public))
        .unwrap();
    dealer
        .set_curve_secretkey(&key(&client_keys.secret))
        .unwrap();
    dealer.connect(&endpoint).unwrap();
    dealer.send(b"secret", SendFlags::NONE).unwrap();

    let mut items = [PollItem::readable(&router)];
    assert_eq!(poll(&mut items, Some(Duration::from_secs(10))).unwrap(), 1);
    let (frames, _) = router.recv_multipart(true, 4).unwrap();
    assert_eq!(frames[1].as_bytes(), b"secret");
    assert_eq!(router.mechanism().unwrap(), 2);
}

fn key(z: &str) -> [u8; 32] {
    z85_decode(z).unwrap().try_into().unwrap()
}

/// Connects a DEALER (configured by `client`) to a ROUTER (configured by
/// `server`) and returns the handshake events seen on both sides.
fn handshake_events(
    server: impl Fn(&Socket),
    client: impl Fn(&Socket),
) -> (Vec<MonitorEvent>, Vec<MonitorEvent>) {
    let ctx = Context::new().unwrap();
    let router = ctx.socket(SocketType::Router).unwrap();
    server(&router);
    router.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = router.last_endpoint().unwrap();
    let dealer = ctx.socket(SocketType::Dealer).unwrap();
    client(&dealer);
    let id = format!("{:p}", &dealer);
    router
        .monitor(&format!("inproc://server-{id}"), 0xFFFF)
        .unwrap();
    dealer
        .monitor(&format!("inproc://client-{id}"), 0xFFFF)
        .unwrap();
    let (sm, cm) = (
        ctx.socket(SocketType::Pair).unwrap(),
        ctx.socket(SocketType::Pair).unwrap(),
    );
    sm.connect(&format!("inproc://server-{id}")).unwrap();
    cm.connect(&format!("inproc://client-{id}")).unwrap();
    dealer.connect(&endpoint).unwrap();
    dealer.send(b"hello", SendFlags::NONE).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let (mut s_events, mut c_events) = (Vec::new(), Vec::new());
    let done = |evs: &[MonitorEvent]| {
        evs.iter().any(|e| {
            matches!(
                e.kind,
                EventKind::HandshakeSucceeded
                    | EventKind::HandshakeFailedProtocol
                    | EventKind::HandshakeFailedAuth
                    | EventKind::HandshakeFailedNoDetail
            )
        })
    };
    while std::time::Instant::now() < deadline && !(done(&s_events) && done(&c_events)) {
        let mut items = [PollItem::readable(&sm), PollItem::readable(&cm)];
        poll(&mut items, Some(Duration::from_millis(50))).unwrap();
        let (sr, cr) = (items[0].is_readable(), items[1].is_readable());
        if sr {
            let (f, _) = sm.recv_multipart(true, 2).unwrap();
            s_events.extend(MonitorEvent::parse(&f));
        }
        if cr {
            let (f, _) = cm.recv_multipart(true, 2).unwrap();
            c_events.extend(MonitorEvent::parse(&f));
        }
    }
    (s_events, c_events)
}

fn kinds(evs: &[MonitorEvent]) -> Vec<(EventKind, u32)> {
    evs.iter()
        .filter(|e| {
            !matches!(
                e.kind,
                EventKind::ConnectDelayed | EventKind::ConnectRetried | EventKind::Listening
            )
        })
        .map(|e| (e.kind, e.value))
        .collect()
}

#[test]
fn monitor_reports_handshake_outcomes() {
    let server_keys = curve_keypair().unwrap();
    let client_keys = curve_keypair().unwrap();
    let other = curve_keypair().unwrap();
    let curve_server = |s: &Socket| {
        s.set_curve_server(true).unwrap();
        s.set_curve_secretkey(&key(&server_keys.secret)).unwrap();
    };
    let curve_client = |server_public: String| {
        let c = client_keys.clone();
        move |s: &Socket| {
            s.set_curve_serverkey(&key(&server_public)).unwrap();
            s.set_curve_publickey(&key(&c.public)).unwrap();
            s.set_curve_secretkey(&key(&c.secret)).unwrap();
        }
    };
    let failed =
        |evs: &[MonitorEvent], kind, value| evs.iter().any(|e| e.kind == kind && e.value == value);
    let succeeded =
        |evs: &[MonitorEvent]| evs.iter().any(|e| e.kind == EventKind::HandshakeSucceeded);

    let (s, c) = handshake_events(curve_server, curve_client(server_keys.public.clone()));
    assert!(
        succeeded(&s) && succeeded(&c),
        "{:?} {:?}",
        kinds(&s),
        kinds(&c)
    );

    // NULL against CURVE, either way round: both sides say so.
    let mismatch = protocol_error::ZMTP_MECHANISM_MISMATCH;
    let (s, c) = handshake_events(curve_server, |_s: &Socket| {});
    assert!(
        failed(&s, EventKind::HandshakeFailedProtocol, mismatch),
        "{:?}",
        kinds(&s)
    );
    assert!(
        failed(&c, EventKind::HandshakeFailedProtocol, mismatch),
        "{:?}",
        kinds(&c)
    );
    let (s, c) = handshake_events(|_s: &Socket| {}, curve_client(server_keys.public.clone()));
    assert!(
        failed(&s, EventKind::HandshakeFailedProtocol, mismatch),
        "{:?}",
        kinds(&s)
    );
    assert!(
        failed(&c, EventKind::HandshakeFailedProtocol, mismatch),
        "{:?}",
        kinds(&c)
    );

    // A client expecting another server key: the server cannot open its box,
    // the client sees the connection dropped during the handshake.
    let (s, c) = handshake_events(curve_server, curve_client(other.public.clone()));
    assert!(
        failed(
            &s,
            EventKind::HandshakeFailedProtocol,
            protocol_error::ZMTP_CRYPTOGRAPHIC
        ),
        "{:?}",
        kinds(&s)
    );
    assert!(
        c.iter()
            .any(|e| e.kind == EventKind::HandshakeFailedNoDetail),
        "{:?}",
        kinds(&c)
    );
    assert!(!succeeded(&c));
}
