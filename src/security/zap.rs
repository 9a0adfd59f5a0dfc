//! The ZeroMQ Authentication Protocol (ZAP, RFC 27) as the node's ZAP
//! handler speaks it: parse a request, build a reply. No sockets here.

use super::keys::PublicKey;

/// The inproc endpoint libzmq sends ZAP requests to, per context.
pub(crate) const ENDPOINT: &str = "inproc://zeromq.zap.01";

/// The ZAP domain the node's ROUTER announces.
pub(crate) const DOMAIN: &str = "bilateral";

/// A ZAP request for a CURVE handshake.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub request_id: Vec<u8>,
    pub address: String,
    pub key: PublicKey,
}

/// Why a request could not be understood; answered with status 500.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub &'static str);

/// Parses the frames a REP socket receives for one ZAP request:
/// version, request id, domain, address, identity, mechanism, credentials.
pub(crate) fn parse(frames: &[&[u8]]) -> Result<Request, (Vec<u8>, Malformed)> {
    let request_id = frames.get(1).map(|f| f.to_vec()).unwrap_or_default();
    let fail = |what| Err((request_id.clone(), Malformed(what)));
    if frames.first() != Some(&&b"1.0"[..]) {
        return fail("unsupported ZAP version");
    }
    if frames.len() != 7 {
        return fail("unexpected number of frames");
    }
    if frames[5] != b"CURVE" {
        return fail("only CURVE is handled");
    }
    let Ok(key) = <[u8; 32]>::try_from(frames[6]) else {
        return fail("CURVE credential is not a 32-byte key");
    };
    Ok(Request {
        request_id: request_id.clone(),
        address: String::from_utf8_lossy(frames[3]).into_owned(),
        key: PublicKey::from_bytes(key),
    })
}

/// The frames of a ZAP reply. On success the user id is the key in Z85, which
/// libzmq attaches to every message of the connection as `User-Id`.
pub(crate) fn reply(request_id: &[u8], status: u16, text: &str, user_id: &str) -> Vec<Vec<u8>> {
    vec![
        b"1.0".to_vec(),
        request_id.to_vec(),
        status.to_string().into_bytes(),
        text.as_bytes().to_vec(),
        user_id.as_bytes().to_vec(),
        Vec::new(),
    ]
}
