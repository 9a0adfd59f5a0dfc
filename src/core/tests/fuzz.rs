//! Fuzzing the wire decoding and the join handshake (property-based, with
//! arbitrary bytes and structure-aware mutations).
//!
//! ```sh
//! cargo test --lib fuzz                                          # CI: 2 000 cases per target
//! BILATERAL_FUZZ_CASES=1000000 cargo test --release --lib fuzz   # a long run
//! ```
//!
//! Each case feeds a listener's sans-IO core a random sequence of inputs —
//! garbage, truncated and mutated frames, JOINs with random versions,
//! networks, names, targets and incarnations, from valid, invalid and its own
//! routing ids, on the ROUTER and on a dialled link — interleaved with time
//! passing. Properties: nothing panics, the listener's state stays bounded,
//! and a legitimate peer can still join it afterwards.
//!
//! A second target does the same for what a joined peer can send inside its
//! session: stream frames (OPEN, DATA, STATUS, RESET) with random ids,
//! offsets, credit and flags, pieces of large messages with random lengths
//! and positions, MARK and ACK — mixed with this node's own stream
//! operations. Properties: nothing panics, streams and reassembly stay within
//! their limits, and the session still serves a call.

use std::time::{Duration, Instant};

use crate::core::{Access, Action, Limits, Mesh, MeshConfig, Origin, StreamId, Timers};
use crate::protocol::{self, Join, Message, NodeName, ReplyStatus, ResetCode, Security};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("BILATERAL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
}

fn listener(now: Instant) -> Mesh<u32> {
    Mesh::new(
        MeshConfig {
            name: NodeName::new("listener").unwrap(),
            network: "net".into(),
            incarnation: 1,
            security: Security::Null,
            access: Access::AllowList,
            allowed_keys: Vec::new(),
            timers: Timers::default(),
            limits: Limits {
                max_message_size: 4096,
                ..Limits::default()
            },
            seed: 7,
        },
        now,
    )
}

fn drain(mesh: &mut Mesh<u32>) -> Vec<Action<u32>> {
    std::iter::from_fn(|| mesh.poll_action()).collect()
}

#[derive(Clone, Debug)]
enum Input {
    Garbage {
        from: Vec<u8>,
        bytes: Vec<u8>,
        frames: usize,
    },
    Join {
        from: u8,
        name: u8,
        target: u8,
        network: bool,
        min: u8,
        max: u8,
        security: u8,
        incarnation: u8,
    },
    Mutated {
        from: u8,
        kind: u8,
        incarnation: u8,
        flips: Vec<(usize, u8)>,
    },
    OnDialledLink {
        bytes: Vec<u8>,
        frames: usize,
    },
    Wait {
        ms: u16,
    },
}

const NAMES: [&str; 5] = ["alpha", "beta", "listener", "gamma", "delta"];

fn name(i: u8) -> &'static str {
    NAMES[usize::from(i) % NAMES.len()]
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        (
            proptest::collection::vec(any::<u8>(), 0..8),
            proptest::collection::vec(any::<u8>(), 0..80),
            0usize..5
        )
            .prop_map(|(from, bytes, frames)| Input::Garbage {
                from,
                bytes,
                frames
            }),
        (
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<bool>(),
            0u8..4,
            0u8..4,
            0u8..3,
            0u8..4
        )
            .prop_map(
                |(from, name, target, network, min, max, security, incarnation)| Input::Join {
                    from,
                    name,
                    target,
                    network,
                    min,
                    max,
                    security,
                    incarnation
                }
            ),
        (
            any::<u8>(),
            1u8..10,
            0u8..4,
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4)
        )
            .prop_map(|(from, kind, incarnation, flips)| Input::Mutated {
                from,
                kind,
                incarnation,
                flips
            }),
        (proptest::collection::vec(any::<u8>(), 0..60), 0usize..3)
            .prop_map(|(bytes, frames)| Input::OnDialledLink { bytes, frames }),
        (0u16..3000).prop_map(|ms| Input::Wait { ms }),
    ]
}

fn join_frame(
    name: &str,
    target: &str,
    network: &str,
    min: u8,
    max: u8,
    security: u8,
    incarnation: u64,
) -> Vec<u8> {
    Message::Join(Join {
        min_version: min,
        max_version: max,
        security,
        heartbeat_ms: 1000,
        network,
        name,
        target,
    })
    .encode(incarnation)
}

fn sample(kind: u8, incarnation: u64) -> Vec<u8> {
    let message = match kind {
        1 => Message::Ping { nonce: 1 },
        2 => Message::Pong { nonce: 1 },
        3 => Message::Part(protocol::PartReason::Closing),
        4 => Message::Request(protocol::Request {
            request_id: 5,
            timeout_ms: 100,
            method: "m",
            args: &[0x90],
        }),
        5 => Message::Reply(protocol::Reply {
            request_id: 5,
            status: protocol::ReplyStatus::Ok,
            payload: &[0xc0],
        }),
        6 => Message::Cast(protocol::Cast {
            method: "m",
            args: &[],
        }),
        7 => Message::Welcome(protocol::Welcome {
            version: 1,
            heartbeat_ms: 1,
            joiner_incarnation: 1,
            name: "x",
        }),
        _ => Message::Reject(protocol::Reject {
            code: protocol::RejectCode::NotJoined,
            your_incarnation: 1,
            min_version: 1,
            max_version: 1,
            detail: "d",
        }),
    };
    message.encode(incarnation)
}

fn feed(mesh: &mut Mesh<u32>, input: &Input, now: &mut Instant, dialled: &NodeName) {
    match input {
        Input::Garbage {
            from,
            bytes,
            frames,
        } => {
            let parts: Vec<&[u8]> = [from.as_slice(), bytes.as_slice()]
                .into_iter()
                .take((*frames).max(1))
                .collect();
            mesh.handle_inbound(Origin::Router { user_id: None }, &parts, *frames, *now);
        }
        Input::Join {
            from,
            name: n,
            target,
            network,
            min,
            max,
            security,
            incarnation,
        } => {
            let (from, n) = (name(*from), name(*n));
            let target = if *target % 3 == 0 {
                "other"
            } else {
                "listener"
            };
            let network = if *network { "net" } else { "elsewhere" };
            let frame = join_frame(
                n,
                target,
                network,
                *min,
                *max,
                *security,
                u64::from(*incarnation) + 10,
            );
            mesh.handle_inbound(
                Origin::Router { user_id: None },
                &[from.as_bytes(), &frame],
                2,
                *now,
            );
        }
        Input::Mutated {
            from,
            kind,
            incarnation,
            flips,
        } => {
            let mut frame = sample(*kind, u64::from(*incarnation) + 10);
            for (at, byte) in flips {
                let i = at % frame.len();
                frame[i] = *byte;
            }
            mesh.handle_inbound(
                Origin::Router { user_id: None },
                &[name(*from).as_bytes(), &frame],
                2,
                *now,
            );
        }
        Input::OnDialledLink { bytes, frames } => {
            mesh.handle_inbound(Origin::Outbound(dialled), &[bytes], *frames, *now);
        }
        Input::Wait { ms } => {
            *now += Duration::from_millis(u64::from(*ms));
            mesh.handle_timeout(*now);
        }
    }
    finish_jobs(mesh, *now);
}

/// Handlers run and finish, as a worker pool would make them.
fn finish_jobs(mesh: &mut Mesh<u32>, now: Instant) {
    for action in drain(mesh) {
        if let Action::Dispatch(job) = action {
            let outcome = job.answer(ReplyStatus::Ok, vec![0xc0]);
            mesh.handle_job_done(job.done(outcome), now);
        }
    }
    drain(mesh);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn decoding_any_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(env) = protocol::decode(&bytes) {
            // Whatever decodes, re-encodes to something that decodes the same.
                        let again = env.message.encode(env.incarnation);
            prop_assert_eq!(protocol::decode(&again).unwrap(), env);
        }
    }

    #[test]
    fn the_join_handshake_survives_any_input_and_keeps_serving(inputs in proptest::collection::vec(input(), 1..60)) {
        let mut now = Instant::now();
        let mut mesh = listener(now);
        let dialled = NodeName::new("beta").unwrap();
        mesh.handle_connect(dialled.clone(), "tcp://127.0.0.1:1".into(), now);
        drain(&mut mesh);
        for input in &inputs {
            feed(&mut mesh, input, &mut now, &dialled);
        }
        // Bounded: at most one entry per name ever used, plus the dialled peer.
        prop_assert!(mesh.peer_infos().len() <= NAMES.len());
        // And still serving: a fresh, well-formed JOIN is welcomed.
        let frame = join_frame("newcomer", "listener", "net", 1, 1, 0, 999);
        mesh.handle_inbound(Origin::Router { user_id: None }, &[b"newcomer", &frame], 2, now);
        let welcomed = drain(&mut mesh).into_iter().any(|a| match a {
            Action::Transmit(t) => matches!(protocol::decode(&t.frame).map(|e| e.message), Ok(Message::Welcome(_))),
            _ => false,
        });
        prop_assert!(welcomed, "the listener no longer welcomes a legitimate peer");
    }
}

/// What a joined peer sends, or what this node's application does.
#[derive(Clone, Debug)]
enum SessionInput {
    Open {
        id: u8,
        window: u16,
        known_service: bool,
        init: u8,
        /// This node's application accepts it at once.
        accept: bool,
    },
    Data {
        id: u8,
        from_opener: bool,
        /// Continue where the last DATA of this stream ended (else `offset`).
        in_order: bool,
        offset: u16,
        len: u16,
    },
    Status {
        id: u8,
        from_opener: bool,
        sent: u16,
        limit: u32,
        flags: u8,
    },
    Reset {
        id: u8,
        from_opener: bool,
        code: u8,
    },
    Fragment {
        id: u8,
        total: u16,
        offset: u16,
        len: u16,
    },
    /// Every piece of a well-formed large message, in order.
    Transfer {
        id: u8,
        size: u16,
    },
    Mark(u32),
    Ack(u32),
    /// This node's application acts on one of its streams.
    Local {
        op: u8,
        stream: u8,
        n: u16,
    },
    /// This node opens a stream to the peer.
    OpenLocal,
    Wait {
        ms: u16,
    },
}

fn session_input() -> impl Strategy<Value = SessionInput> {
    prop_oneof![
        (
            0u8..6,
            any::<u16>(),
            any::<bool>(),
            any::<u8>(),
            any::<bool>()
        )
            .prop_map(
                |(id, window, known_service, init, accept)| SessionInput::Open {
                    id,
                    window,
                    known_service,
                    init,
                    accept
                }
            ),
        (
            0u8..6,
            any::<bool>(),
            any::<bool>(),
            any::<u16>(),
            0u16..3000
        )
            .prop_map(
                |(id, from_opener, in_order, offset, len)| SessionInput::Data {
                    id,
                    from_opener,
                    in_order,
                    offset,
                    len
                }
            ),
        (
            0u8..6,
            any::<bool>(),
            any::<u16>(),
            any::<u32>(),
            any::<u8>()
        )
            .prop_map(
                |(id, from_opener, sent, limit, flags)| SessionInput::Status {
                    id,
                    from_opener,
                    sent,
                    limit,
                    flags
                }
            ),
        (0u8..6, any::<bool>(), any::<u8>()).prop_map(|(id, from_opener, code)| {
            SessionInput::Reset {
                id,
                from_opener,
                code,
            }
        }),
        (0u8..4, any::<u16>(), any::<u16>(), 0u16..2000).prop_map(|(id, total, offset, len)| {
            SessionInput::Fragment {
                id,
                total,
                offset,
                len,
            }
        }),
        (0u8..4, 0u16..20_000).prop_map(|(id, size)| SessionInput::Transfer { id, size }),
        any::<u32>().prop_map(SessionInput::Mark),
        any::<u32>().prop_map(SessionInput::Ack),
        (0u8..7, 1u8..7, any::<u16>()).prop_map(|(op, stream, n)| SessionInput::Local {
            op,
            stream,
            n
        }),
        Just(SessionInput::OpenLocal),
        (0u16..3000).prop_map(|ms| SessionInput::Wait { ms }),
    ]
}

const PEER_INCARNATION: u64 = 10;

/// What alpha may make the listener hold.
const MAX_PEER_MEMORY: usize = 128 * 1024;

/// A listener with small stream limits, and a peer "alpha" joined to it.
fn joined_listener(now: Instant) -> Mesh<u32> {
    let mut mesh = Mesh::new(
        MeshConfig {
            name: NodeName::new("listener").unwrap(),
            network: "net".into(),
            incarnation: 1,
            security: Security::Null,
            access: Access::AllowList,
            allowed_keys: Vec::new(),
            timers: Timers::default(),
            limits: Limits {
                max_message_size: 16_384,
                chunk_size: 4096,
                stream_window: 8192,
                link_window: 8192,
                max_streams: 6,
                max_peer_memory: MAX_PEER_MEMORY,
                max_memory: 2 * MAX_PEER_MEMORY,
                ..Limits::default()
            },
            seed: 7,
        },
        now,
    );
    let frame = join_frame("alpha", "listener", "net", 1, 1, 0, PEER_INCARNATION);
    mesh.handle_inbound(
        Origin::Router { user_id: None },
        &[b"alpha", &frame],
        2,
        now,
    );
    drain(&mut mesh);
    mesh
}

fn from_alpha(mesh: &mut Mesh<u32>, message: &Message<'_>, now: Instant) {
    let frame = message.encode(PEER_INCARNATION);
    mesh.handle_inbound(
        Origin::Router { user_id: None },
        &[b"alpha", &frame],
        2,
        now,
    );
}

/// Where the next in-order DATA of each (stream id, from_opener) starts.
type Offsets = std::collections::HashMap<(u8, bool), u64>;

fn feed_session(
    mesh: &mut Mesh<u32>,
    input: &SessionInput,
    now: &mut Instant,
    offsets: &mut Offsets,
) {
    let payload = [0x5au8; 3000];
    let alpha = NodeName::new("alpha").unwrap();
    match input {
        SessionInput::Open {
            id,
            window,
            known_service,
            init,
            accept,
        } => {
            let service = if *known_service { "files" } else { "x" };
            let init = vec![*init; usize::from(*init)];
            let open = Message::Open(protocol::Open {
                stream_id: u64::from(*id),
                timeout_ms: 1000,
                window: u32::from(*window),
                service,
                init: &init,
            });
            from_alpha(mesh, &open, *now);
            for action in drain(mesh) {
                if let (Action::IncomingStream(incoming), true) = (action, *accept) {
                    mesh.handle_accept_stream(incoming.id, *now);
                }
            }
        }
        SessionInput::Data {
            id,
            from_opener,
            in_order,
            offset,
            len,
        } => {
            let next = offsets.entry((*id, *from_opener)).or_default();
            let offset = if *in_order { *next } else { u64::from(*offset) };
            *next = offset + u64::from(*len);
            let data = Message::Data(protocol::Data {
                stream_id: u64::from(*id),
                from_opener: *from_opener,
                offset,
                payload: &payload[..usize::from(*len)],
            });
            from_alpha(mesh, &data, *now);
        }
        SessionInput::Status {
            id,
            from_opener,
            sent,
            limit,
            flags,
        } => {
            let status = Message::Status(protocol::Status {
                stream_id: u64::from(*id),
                from_opener: *from_opener,
                sent: u64::from(*sent),
                limit: u64::from(*limit),
                fin: flags & 1 != 0,
                stop: flags & 2 != 0,
                probe: flags & 4 != 0,
            });
            from_alpha(mesh, &status, *now);
        }
        SessionInput::Reset {
            id,
            from_opener,
            code,
        } => {
            let reset = Message::Reset(protocol::Reset {
                stream_id: u64::from(*id),
                from_opener: *from_opener,
                code: ResetCode::from_code(*code),
                detail: "fuzz",
            });
            from_alpha(mesh, &reset, *now);
        }
        SessionInput::Fragment {
            id,
            total,
            offset,
            len,
        } => {
            let fragment = Message::Fragment(protocol::Fragment {
                transfer_id: u64::from(*id),
                total: u64::from(*total),
                offset: u64::from(*offset),
                payload: &payload[..usize::from(*len)],
            });
            from_alpha(mesh, &fragment, *now);
        }
        SessionInput::Transfer { id, size } => {
            let args = vec![0x90u8; usize::from(*size)];
            let whole = Message::Cast(protocol::Cast {
                method: "m",
                args: &args,
            })
            .encode(PEER_INCARNATION);
            for (i, piece) in whole.chunks(4096).enumerate() {
                let fragment = Message::Fragment(protocol::Fragment {
                    transfer_id: 100 + u64::from(*id),
                    total: whole.len() as u64,
                    offset: (i * 4096) as u64,
                    payload: piece,
                });
                from_alpha(mesh, &fragment, *now);
            }
        }
        SessionInput::Mark(offset) => {
            from_alpha(
                mesh,
                &Message::Mark {
                    offset: u64::from(*offset),
                },
                *now,
            );
        }
        SessionInput::Ack(offset) => {
            from_alpha(
                mesh,
                &Message::Ack {
                    offset: u64::from(*offset),
                },
                *now,
            );
        }
        SessionInput::Local { op, stream, n } => {
            let id = StreamId(u64::from(*stream));
            match op {
                0 => mesh.handle_accept_stream(id, *now),
                1 => mesh.handle_refuse_stream(id, ResetCode::Refused, "no"),
                2 => {
                    let mut frame = vec![0u8; protocol::DATA_HEADER_LEN];
                    frame.extend_from_slice(&payload[..usize::from(*n) % 3000]);
                    mesh.handle_stream_write(id, frame, *now);
                }
                3 => mesh.handle_stream_consumed(id, u64::from(*n), *now),
                4 => mesh.handle_stream_finish(id, *now),
                5 => mesh.handle_stream_stop(id, *now),
                _ => mesh.handle_stream_reset(id, ResetCode::Cancelled),
            }
        }
        SessionInput::OpenLocal => {
            let _ =
                mesh.handle_open_stream(&alpha, "svc", b"", *now + Duration::from_secs(1), *now);
        }
        SessionInput::Wait { ms } => {
            // alpha keeps its session alive meanwhile.
            from_alpha(mesh, &Message::Ping { nonce: 1 }, *now);
            *now += Duration::from_millis(u64::from(*ms));
            mesh.handle_timeout(*now);
        }
    }
    finish_jobs(mesh, *now);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn streams_and_large_messages_survive_any_input_and_keep_serving(
        inputs in proptest::collection::vec(session_input(), 1..80)
    ) {
        let mut now = Instant::now();
                let mut mesh = joined_listener(now);
        let mut offsets = Offsets::new();
        for input in &inputs {
            feed_session(&mut mesh, input, &mut now, &mut offsets);
            prop_assert!(mesh.stream_count() <= 6);
            prop_assert!(mesh.reassembly_bytes() <= MAX_PEER_MEMORY);
            prop_assert!(mesh.memory_held() <= MAX_PEER_MEMORY);
        }
        // Keep alpha's session alive through the check, then call.
        let ping = Message::Ping { nonce: 1 };
        from_alpha(&mut mesh, &ping, now);
        drain(&mut mesh);
        if mesh.peer_info("alpha").and_then(|p| p.incarnation) == Some(PEER_INCARNATION) {
            let request = Message::Request(protocol::Request {
                request_id: 77,
                timeout_ms: 1000,
                method: "m",
                args: &[0x90],
            });
            from_alpha(&mut mesh, &request, now);
            let dispatched = drain(&mut mesh)
                .into_iter()
                .any(|a| matches!(a, Action::Dispatch(job) if job.request_id == Some(77)));
            prop_assert!(dispatched, "the session no longer serves calls");
        }
    }
}
