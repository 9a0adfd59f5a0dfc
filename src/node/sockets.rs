//! Making and configuring the node's sockets: the ROUTER, one DEALER per
//! dialled peer, the ZAP handler of CURVE mode, and the monitors that report
//! failed handshakes. Everything here runs on the reactor thread (except the
//! first ROUTER and ZAP set-up in `start`, before the reactor exists).

use std::time::Duration;

use crate::core::HandshakeFailure;
use crate::error::Error;
use crate::protocol::NodeName;
use crate::security::{Keypair, PublicKey, zap};
use crate::zmq::{Context, EventKind, MonitorEvent, Socket, SocketType, protocol_error};

/// Socket settings derived from the node's configuration.
#[derive(Clone, Debug)]
pub(crate) struct SocketOptions {
    pub name: NodeName,
    pub high_water_mark: i32,
    /// libzmq drops a connection that sends a frame above this (a hard memory
    /// bound); frames between the configured maximum and this are dropped and
    /// counted by the core instead.
    pub hard_max_frame: i64,
    pub linger: Duration,
    /// How long the reactor keeps polling without blocking after work.
    pub spin: Duration,
    /// CURVE mode: this node's keys.
    pub curve: Option<Keypair>,
    /// Unique per node, to name the monitors' inproc endpoints.
    pub incarnation: u64,
}

/// Monitor events that matter here: failed handshakes.
const MONITORED: u16 = 0x0800 | 0x2000 | 0x4000;

/// A socket and the PAIR socket that receives its monitor events.
pub(crate) struct Monitored {
    pub socket: Socket,
    pub monitor: Socket,
}

/// Attaches a monitor to `socket` and connects a PAIR to it.
fn monitored(
    ctx: &Context,
    socket: Socket,
    options: &SocketOptions,
    seq: u64,
) -> Result<Monitored, Error> {
    let endpoint = format!(
        "inproc://bilateral-monitor-{:016x}-{seq}",
        options.incarnation
    );
    socket.monitor(&endpoint, MONITORED)?;
    let monitor = ctx.socket(SocketType::Pair)?;
    monitor.set_linger(Duration::ZERO)?;
    monitor.connect(&endpoint)?;
    Ok(Monitored { socket, monitor })
}

/// The node's ROUTER (not yet bound), with its monitor.
pub(crate) fn router(ctx: &Context, options: &SocketOptions) -> Result<Monitored, Error> {
    // No ZMTP-level heartbeats (ZMQ_HEARTBEAT_IVL): the protocol's own
    // PING/PONG does liveness, and libzmq 4.3.5's heartbeat timer can call
    // `out_event` on an engine whose input failed, which aborts the whole
    // process on `zmq_assert(!_io_error)` (see vendor-notes.md).
    let router = ctx.socket(SocketType::Router)?;
    router.set_router_mandatory(true)?;
    router.set_router_handover(true)?;
    router.set_linger(options.linger)?;
    router.set_sndhwm(options.high_water_mark)?;
    router.set_rcvhwm(options.high_water_mark)?;
    router.set_maxmsgsize(options.hard_max_frame)?;
    if let Some(keys) = &options.curve {
        router.set_curve_server(true)?;
        router.set_curve_secretkey(keys.secret_bytes())?;
        router.set_zap_domain(zap::DOMAIN)?;
    }
    monitored(ctx, router, options, 0)
}

/// The ZAP handler's socket, bound on the node's context. It must exist
/// before the ROUTER accepts its first connection.
pub(crate) fn zap_handler(ctx: &Context) -> Result<Socket, Error> {
    let rep = ctx.socket(SocketType::Rep)?;
    rep.set_linger(Duration::ZERO)?;
    rep.bind(zap::ENDPOINT).map_err(|e| {
        Error::InvalidConfig(format!(
            "cannot bind the ZAP handler ({e}): a CURVE node needs a ZeroMQ context of its own"
        ))
    })?;
    Ok(rep)
}

/// A DEALER to `peer` at `endpoint`, with this node's name as routing id, and
/// in CURVE mode the peer's name as the server key it must prove it holds.
pub(crate) fn dealer(
    ctx: &Context,
    options: &SocketOptions,
    peer: &NodeName,
    endpoint: &str,
    seq: u64,
) -> Result<Monitored, Error> {
    let socket = ctx.socket(SocketType::Dealer)?;
    socket.set_routing_id(options.name.as_str().as_bytes())?;
    socket.set_linger(options.linger)?;
    socket.set_sndhwm(options.high_water_mark)?;
    socket.set_rcvhwm(options.high_water_mark)?;
    socket.set_maxmsgsize(options.hard_max_frame)?;
    socket.set_reconnect_ivl(Duration::from_millis(100))?;
    if let Some(keys) = &options.curve {
        let server = PublicKey::from_z85(peer.as_str())
            .map_err(|_| Error::InvalidConfig(format!("{peer} is not a CURVE public key")))?;
        socket.set_curve_serverkey(server.as_bytes())?;
        socket.set_curve_publickey(keys.public().as_bytes())?;
        socket.set_curve_secretkey(keys.secret_bytes())?;
    }
    if endpoint.starts_with("tcp://[") {
        socket.set_ipv6(true)?;
    }
    let monitored = monitored(ctx, socket, options, seq)?;
    monitored.socket.connect(endpoint)?;
    Ok(monitored)
}

/// What a monitor event on a DEALER says about the handshake, if anything.
pub(crate) fn dealer_failure(event: &MonitorEvent, curve: bool) -> Option<HandshakeFailure> {
    match event.kind {
        EventKind::HandshakeFailedProtocol
            if event.value == protocol_error::ZMTP_MECHANISM_MISMATCH =>
        {
            Some(HandshakeFailure::SecurityMismatch)
        }
        EventKind::HandshakeFailedProtocol => Some(HandshakeFailure::Failed),
        EventKind::HandshakeFailedAuth => Some(HandshakeFailure::Unauthorized(event.value)),
        // The server drops a CURVE client whose box it cannot open (a wrong
        // server key); in NULL mode the same event is just a connection that
        // broke during the handshake, and the join timer deals with it.
        EventKind::HandshakeFailedNoDetail if curve => Some(HandshakeFailure::Failed),
        _ => None,
    }
}

/// What a monitor event on the ROUTER says, if anything worth reporting.
/// Refusals by the access policy are reported by the ZAP handler itself.
pub(crate) fn router_failure(event: &MonitorEvent) -> Option<HandshakeFailure> {
    match event.kind {
        EventKind::HandshakeFailedProtocol
            if event.value == protocol_error::ZMTP_MECHANISM_MISMATCH =>
        {
            Some(HandshakeFailure::SecurityMismatch)
        }
        EventKind::HandshakeFailedProtocol if event.value == protocol_error::ZMTP_CRYPTOGRAPHIC => {
            Some(HandshakeFailure::Failed)
        }
        _ => None,
    }
}
