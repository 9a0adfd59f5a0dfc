//! Who may connect in CURVE mode: the access policy, asked at every CURVE
//! handshake (through ZAP) and at every JOIN, and the binding of each message
//! to the key that authenticated its connection.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::events::{LostReason, PeerEvent, Rejection};
use super::mesh::Mesh;
use crate::protocol::{NodeName, RejectCode};
use crate::security::PublicKey;

/// Which CURVE keys may connect to a node (its ROUTER). Keys this node dials
/// are not subject to it: the peer's own policy decides those.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Access {
    /// Only keys on the node's allow-list, which can change at run time
    /// ([`crate::Node::allow_key`], [`crate::Node::revoke_key`]). The default:
    /// with an empty list nobody may connect.
    #[default]
    AllowList,
    /// Any key that completes the handshake: encryption and authenticated
    /// names, but no access control.
    AllowAny,
    /// A function decides. It runs on the node's reactor thread, at every
    /// handshake and JOIN: it must be quick and must not block.
    Callback(Arc<dyn Fn(&PublicKey) -> bool + Send + Sync>),
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::AllowList => "AllowList",
            Access::AllowAny => "AllowAny",
            Access::Callback(_) => "Callback",
        })
    }
}

/// Why the link this node dials failed below the protocol, as the socket
/// reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// One end runs CURVE and the other does not.
    SecurityMismatch,
    /// The peer's access policy refused this node's key (ZAP status).
    Unauthorized(u32),
    /// The handshake broke off: typically the peer's key is not the one
    /// expected (its name), so it could not prove it holds the secret key.
    Failed,
}

impl HandshakeFailure {
    fn rejection(self) -> Rejection {
        match self {
            HandshakeFailure::SecurityMismatch => Rejection {
                code: RejectCode::SecurityMismatch,
                detail: "the ZeroMQ handshake failed: one side runs CURVE and the other does not".into(),
            },
            HandshakeFailure::Unauthorized(status) => Rejection {
                code: RejectCode::Unauthorized,
                detail: format!("the peer's access policy refused this node's key (ZAP status {status})"),
            },
            HandshakeFailure::Failed => Rejection {
                code: RejectCode::HandshakeFailed,
                detail: "the CURVE handshake failed: the node at that endpoint does not hold the expected key"
                    .into(),
            },
        }
    }
}

/// The live state of the access policy.
#[derive(Clone, Debug, Default)]
pub(crate) struct AccessState {
    pub access: Access,
    pub allowed: HashSet<PublicKey>,
    /// Start of the current one-second window of identity-mismatch events.
    pub mismatch_window: Option<Instant>,
}

impl AccessState {
    pub(crate) fn new(access: Access, allowed: impl IntoIterator<Item = PublicKey>) -> Self {
        AccessState {
            access,
            allowed: allowed.into_iter().collect(),
            mismatch_window: None,
        }
    }

    pub(crate) fn allows(&self, key: &PublicKey) -> bool {
        match &self.access {
            Access::AllowList => self.allowed.contains(key),
            Access::AllowAny => true,
            Access::Callback(f) => f(key),
        }
    }
}

impl<C: Clone> Mesh<C> {
    /// A CURVE handshake on this node's ROUTER asks whether `key` may connect
    /// (the ZAP request). Refusals are counted and reported.
    pub fn handle_zap_request(&mut self, key: &PublicKey, address: &str) -> bool {
        if self.access.allows(key) {
            return true;
        }
        self.stats.unauthorized += 1;
        log::info!("refused CURVE key {key} from {address}: not allowed");
        self.emit(PeerEvent::Unauthorized {
            key: key.to_z85(),
            address: address.to_string(),
        });
        false
    }

    /// Adds `key` to the allow-list.
    pub fn handle_allow(&mut self, key: PublicKey) {
        self.access.allowed.insert(key);
    }

    /// Removes `key` from the allow-list. A peer with that key that only
    /// dialled this node loses its session at once (reason `Revoked`); its
    /// next JOIN is refused. Returns whether the key was on the list.
    pub fn handle_revoke(&mut self, key: &PublicKey, now: Instant) -> bool {
        let was = self.access.allowed.remove(key);
        if self.access.allows(key) {
            return was;
        }
        let Ok(name) = NodeName::new(&key.to_z85()) else {
            return was;
        };
        let dialled = self.peers.get(&name).is_some_and(|p| p.outbound.is_some());
        if !dialled && self.peers.contains(&name) {
            self.end_session(&name, LostReason::Revoked, now);
            self.forget_peer(&name);
        }
        was
    }

    /// The allow-list, sorted.
    pub fn allowed_keys(&self) -> Vec<PublicKey> {
        let mut keys: Vec<PublicKey> = self.access.allowed.iter().copied().collect();
        keys.sort();
        keys
    }

    /// Whether the JOIN of `name` may be accepted in CURVE mode.
    pub(super) fn join_refusal(&self, name: &NodeName) -> Option<(RejectCode, String)> {
        match PublicKey::from_z85(name.as_str()) {
            Err(_) => Some((
                RejectCode::BadName,
                "in CURVE mode a name is a Z85 public key".into(),
            )),
            Ok(key) if !self.access.allows(&key) => Some((
                RejectCode::Unauthorized,
                "this key is not allowed here".into(),
            )),
            Ok(_) => None,
        }
    }

    /// Checks that a ROUTER message came from the key its routing id claims.
    /// Returns false (after counting, logging and reporting) when it did not.
    pub(super) fn identity_holds(
        &mut self,
        routing_id: &NodeName,
        user_id: Option<&str>,
        now: Instant,
    ) -> bool {
        if user_id == Some(routing_id.as_str()) {
            return true;
        }
        self.stats.identity_mismatch += 1;
        let key = user_id.unwrap_or("<none>").to_string();
        log::warn!(
            "dropped a message claiming to be {routing_id} from a connection authenticated as {key}"
        );
        // One event a second at most: an impostor must not flood subscribers.
        let window = &mut self.access.mismatch_window;
        if window.is_none_or(|start| now.saturating_duration_since(start) >= Duration::from_secs(1))
        {
            *window = Some(now);
            self.emit(PeerEvent::IdentityMismatch {
                claimed: routing_id.to_string(),
                key,
            });
        }
        false
    }

    /// The link this node dials to `peer` failed its ZeroMQ handshake.
    pub fn handle_handshake_failed(
        &mut self,
        peer: &NodeName,
        failure: HandshakeFailure,
        now: Instant,
    ) {
        let joining = self
            .peers
            .get(peer)
            .and_then(|p| p.outbound.as_ref())
            .is_some_and(|o| !matches!(o.state, super::peer::OutState::Waiting { .. }));
        if joining {
            self.stats.handshakes_failed += 1;
            // As for a REJECT (`on_reject`): a session this link alone
            // carried has no link left.
            let alone = self
                .peers
                .get(peer)
                .is_some_and(|p| p.session.is_some() && p.inbound.is_none());
            if alone {
                self.end_session(peer, super::events::LostReason::Reset, now);
            }
            self.rejected(peer, failure.rejection(), now);
        }
    }

    /// A connection to this node's ROUTER failed its ZeroMQ handshake.
    pub fn handle_inbound_handshake_failed(&mut self, address: &str, failure: HandshakeFailure) {
        self.stats.handshakes_failed += 1;
        let rejection = failure.rejection();
        log::info!("handshake from {address} failed: {rejection}");
        self.emit(PeerEvent::Refused {
            from: address.to_string(),
            rejection,
        });
    }
}
