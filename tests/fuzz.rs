//! Fuzzing the wire decoding and the join handshake (property-based, with
//! arbitrary bytes and structure-aware mutations).
//!
//! ```sh
//! cargo test --test fuzz                                      # CI: 2 000 cases per target
//! BILATERAL_FUZZ_CASES=1000000 cargo test --release --test fuzz  # a long run
//! ```
//!
//! Each case feeds a listener's sans-IO core a random sequence of inputs —
//! garbage, truncated and mutated frames, JOINs with random versions,
//! networks, names, targets and incarnations, from valid, invalid and its own
//! routing ids, on the ROUTER and on a dialled link — interleaved with time
//! passing. Properties: nothing panics, the listener's state stays bounded,
//! and a legitimate peer can still join it afterwards.

use std::time::{Duration, Instant};

use bilateral::core::{Access, Action, Limits, Mesh, MeshConfig, Origin, Timers};
use bilateral::protocol::{self, Join, Message, NodeName, Security};
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
