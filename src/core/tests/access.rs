//! CURVE mode: the access policy at JOIN time, identity binding, revocation,
//! and handshake failures reported by the shell.

use super::sim::*;
use crate::core::*;
use crate::protocol::{Message, RejectCode, Request};
use crate::security::Keypair;

fn key(name: &str) -> crate::security::PublicKey {
    name.parse().unwrap()
}

#[test]
fn a_key_not_allowed_is_refused_at_join_and_let_in_once_allowed() {
    let mut sim = Sim::new();
    let server = sim.add_curve(&[]);
    let client = sim.add_curve(&[]);
    sim.connect(&client, &server);
    sim.settle();
    assert!(!sim.active(&client, &server));
    assert!(sim.node(&server).events.iter().any(|e| matches!(
        e, PeerEvent::Refused { rejection, .. } if rejection.code == RejectCode::Unauthorized
    )));
    assert!(sim.node(&client).events.iter().any(|e| matches!(
        e, PeerEvent::Rejected { rejection, .. } if rejection.code == RejectCode::Unauthorized
    )));
    sim.mesh(&server).handle_allow(key(&client));
    sim.advance(ms(100)); // the next attempt, after backoff
    assert!(sim.active(&client, &server) && sim.active(&server, &client));
    assert_eq!(sim.mesh(&server).allowed_keys(), vec![key(&client)]);
}

#[test]
fn a_message_under_another_nodes_name_is_dropped_counted_and_reported_once_a_second() {
    let mut sim = Sim::new();
    let victim = sim.add_curve(&[]);
    let honest = sim.add_curve(&[]);
    sim.mesh(&victim).handle_allow(key(&honest));
    sim.connect(&honest, &victim);
    sim.settle();
    assert!(sim.active(&victim, &honest));
    let impostor = Keypair::generate().unwrap().public().to_z85();
    let honest_inc = sim.nodes[&honest].mesh.incarnation();
    let request = Message::Request(Request {
        request_id: 1,
        timeout_ms: 1000,
        method: "m",
        args: b"",
    })
    .encode(honest_inc);
    let now = sim.now;
    for _ in 0..5 {
        let origin = Origin::Router {
            user_id: Some(&impostor),
        };
        sim.mesh(&victim)
            .handle_inbound(origin, &[honest.as_bytes(), &request], 2, now);
    }
    sim.settle();
    assert!(
        sim.node(&victim).jobs.is_empty(),
        "nothing reached a handler"
    );
    assert_eq!(sim.mesh(&victim).stats().identity_mismatch, 5);
    let reports = sim
        .node(&victim)
        .events
        .iter()
        .filter(|e| matches!(e, PeerEvent::IdentityMismatch { .. }))
        .count();
    assert_eq!(reports, 1, "reported once a second at most");
    // Without any authenticated key at all, the same.
    let origin = Origin::Router { user_id: None };
    sim.mesh(&victim)
        .handle_inbound(origin, &[honest.as_bytes(), &request], 2, now);
    assert_eq!(sim.mesh(&victim).stats().identity_mismatch, 6);
    assert!(
        sim.active(&victim, &honest),
        "the real session is untouched"
    );
}

#[test]
fn revoking_a_key_ends_its_session_and_refuses_its_next_join() {
    let mut sim = Sim::new();
    let server = sim.add_curve(&[]);
    let client = sim.add_curve(&[]);
    sim.mesh(&server).handle_allow(key(&client));
    sim.connect(&client, &server);
    sim.settle();
    let now = sim.now;
    assert!(sim.mesh(&server).handle_revoke(&key(&client), now));
    sim.settle();
    assert_eq!(sim.lost(&server), [(client.clone(), LostReason::Revoked)]);
    // The client's next heartbeat is answered NotJoined; its JOIN is refused.
    sim.advance(ms(1000));
    assert!(!sim.active(&client, &server));
    assert!(sim.node(&client).events.iter().any(|e| matches!(
        e, PeerEvent::Rejected { rejection, .. } if rejection.code == RejectCode::Unauthorized
    )));
}

#[test]
fn zap_requests_follow_the_policy_and_refusals_are_counted() {
    let mut sim = Sim::new();
    let server = sim.add_curve(&[]);
    let (good, bad) = (Keypair::generate().unwrap(), Keypair::generate().unwrap());
    sim.mesh(&server).handle_allow(*good.public());
    assert!(
        sim.mesh(&server)
            .handle_zap_request(good.public(), "127.0.0.1")
    );
    assert!(
        !sim.mesh(&server)
            .handle_zap_request(bad.public(), "127.0.0.1")
    );
    sim.settle();
    assert_eq!(sim.mesh(&server).stats().unauthorized, 1);
    assert!(matches!(
        &sim.node(&server).events[..],
        [PeerEvent::Unauthorized { key, .. }] if *key == bad.public().to_z85()
    ));
}

#[test]
fn a_failed_handshake_on_a_dialled_link_is_a_rejection_and_backs_off() {
    let mut sim = Sim::new();
    let server = sim.add_curve(&[]);
    let client = sim.add_curve(&[]);
    sim.node(&server).up = false;
    sim.connect(&client, &server);
    sim.settle();
    let now = sim.now;
    let peer = name(&server);
    sim.mesh(&client)
        .handle_handshake_failed(&peer, HandshakeFailure::SecurityMismatch, now);
    sim.settle();
    assert!(sim.node(&client).events.iter().any(|e| matches!(
        e, PeerEvent::Rejected { rejection, .. } if rejection.code == RejectCode::SecurityMismatch
    )));
    assert_eq!(
        sim.mesh(&client).peer_info(&server).unwrap().state,
        PeerState::Backoff
    );
    assert!(
        !sim.node(&client).links.contains_key(&peer),
        "the DEALER is closed while backing off"
    );
    // Another report for the closed link changes nothing.
    sim.mesh(&client)
        .handle_handshake_failed(&peer, HandshakeFailure::Failed, now);
    assert_eq!(sim.mesh(&client).stats().handshakes_failed, 1);
}

#[test]
fn a_failed_handshake_ends_a_session_that_only_that_link_carried() {
    let mut sim = Sim::new();
    let server = sim.add_curve(&[]);
    let client = sim.add_curve(&[]);
    sim.mesh(&server).handle_allow(key(&client));
    sim.connect(&client, &server);
    sim.settle();
    assert!(sim.active(&client, &server));
    // The DEALER's connection comes back and fails its handshake (the
    // server's key changed, say): the client has no other link to it.
    let now = sim.now;
    sim.mesh(&client)
        .handle_handshake_failed(&name(&server), HandshakeFailure::Failed, now);
    sim.settle();
    assert_eq!(sim.lost(&client), vec![(server.clone(), LostReason::Reset)]);
    assert_eq!(
        sim.mesh(&client).peer_info(&server).unwrap().state,
        PeerState::Backoff
    );
}
