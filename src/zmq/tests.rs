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
