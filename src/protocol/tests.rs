//! Round trips, every truncation, and arbitrary bytes through the decoder.

use proptest::prelude::*;

use super::*;

fn samples() -> Vec<Message<'static>> {
    vec![
        Message::Join(Join {
            min_version: 1,
            max_version: 3,
            security: Security::Curve,
            heartbeat_ms: 1000,
            network: "prod",
            name: "alpha",
            target: "beta",
        }),
        Message::Welcome(Welcome {
            version: 1,
            heartbeat_ms: 250,
            joiner_incarnation: 0xDEAD_BEEF_0000_0001,
            name: "beta",
        }),
        Message::Reject(Reject {
            code: RejectCode::WrongNetwork,
            your_incarnation: 7,
            min_version: 1,
            max_version: 1,
            detail: "network \"prod\" is not \"test\"",
        }),
        Message::Reject(Reject {
            code: RejectCode::Other(200),
            your_incarnation: 0,
            min_version: 1,
            max_version: 1,
            detail: "",
        }),
        Message::Ping { nonce: 42 },
        Message::Pong { nonce: u64::MAX },
        Message::Part(PartReason::Closing),
        Message::Part(PartReason::Other(77)),
        Message::Request(Request {
            request_id: 99,
            timeout_ms: 5000,
            method: "Arith.SumDiff",
            args: &[0x92, 0x01, 0x02],
        }),
        Message::Reply(Reply {
            request_id: 99,
            status: ReplyStatus::Ok,
            payload: &[0xc0],
        }),
        Message::Reply(Reply {
            request_id: 1,
            status: ReplyStatus::BadArguments,
            payload: b"expected array",
        }),
        Message::Cast(Cast {
            method: "log",
            args: &[],
        }),
    ]
}

#[test]
fn every_message_round_trips() {
    for (i, m) in samples().into_iter().enumerate() {
        let frame = m.encode(1000 + i as u64);
        assert_eq!(frame[0], WIRE_VERSION);
        let env = decode(&frame).unwrap_or_else(|e| panic!("{m:?}: {e}"));
        assert_eq!(env.incarnation, 1000 + i as u64);
        assert_eq!(env.message, m);
    }
}

#[test]
fn every_truncation_of_a_fixed_message_is_an_error() {
    for m in samples() {
        let frame = m.encode(5);
        let fixed = match &m {
            // The tail of these is an opaque payload: any prefix past the
            // fixed fields is a valid (shorter) payload.
            Message::Request(r) => frame.len() - r.args.len(),
            Message::Reply(r) => frame.len() - r.payload.len(),
            Message::Cast(c) => frame.len() - c.args.len(),
            _ => frame.len(),
        };
        for len in 0..fixed {
            assert!(
                decode(&frame[..len]).is_err(),
                "{m:?} truncated to {len} decoded"
            );
        }
    }
}

#[test]
fn header_errors_are_typed() {
    assert_eq!(decode(&[]), Err(DecodeError::Truncated));
    assert_eq!(
        decode(&[2, 4, 0, 0, 0, 0, 0, 0, 0, 0]),
        Err(DecodeError::UnknownVersion(2))
    );
    assert_eq!(
        decode(&[1, 0xEE, 0, 0, 0, 0, 0, 0, 0, 0]),
        Err(DecodeError::UnknownKind(0xEE))
    );
    // A method name that is not UTF-8.
    let mut frame = vec![1, 9, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0xff, 0xfe];
    assert_eq!(decode(&frame), Err(DecodeError::NotUtf8));
    // An empty method name.
    frame.truncate(10);
    frame.push(0);
    assert_eq!(decode(&frame), Err(DecodeError::InvalidField));
}

#[test]
fn join_with_inverted_versions_or_unknown_security_is_invalid() {
    let join = |min, max| {
        Message::Join(Join {
            min_version: min,
            max_version: max,
            security: Security::Null,
            heartbeat_ms: 1,
            network: "",
            name: "a",
            target: "b",
        })
        .encode(1)
    };
    assert_eq!(decode(&join(3, 2)), Err(DecodeError::InvalidField));
    let mut frame = join(1, 1);
    frame[12] = 9; // security byte
    assert_eq!(decode(&frame), Err(DecodeError::InvalidField));
}

#[test]
fn trailing_bytes_after_fixed_fields_are_ignored() {
    let mut frame = Message::Ping { nonce: 3 }.encode(1);
    frame.extend_from_slice(b"future fields");
    assert_eq!(decode(&frame).unwrap().message, Message::Ping { nonce: 3 });
}

#[test]
fn names_follow_routing_id_rules() {
    assert!(NodeName::new("alpha").is_ok());
    assert!(NodeName::new("Ωmega-1.example:5555").is_ok());
    assert_eq!(NodeName::new(""), Err(NameError::Empty));
    assert_eq!(
        NodeName::new(&"x".repeat(256)),
        Err(NameError::TooLong(256))
    );
    assert!(NodeName::new(&"x".repeat(255)).is_ok());
    assert_eq!(
        NodeName::new("\0lead"),
        Err(NameError::ControlCharacter('\0'))
    );
    assert_eq!(
        NodeName::new("tab\there"),
        Err(NameError::ControlCharacter('\t'))
    );
    assert_eq!(NodeName::from_bytes(&[0xff, 0x00]), Err(NameError::NotUtf8));
    assert!(MethodName::new("Arith.SumDiff").is_ok());
    assert!(MethodName::new("").is_err());
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decoding_mutated_valid_frames_never_panics(
        which in 0usize..12,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut frame = samples()[which].encode(9);
        for (at, byte) in flips {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        if let Ok(env) = decode(&frame) {
            // Whatever decodes re-encodes to a frame that decodes the same way.
            let again = env.message.encode(env.incarnation);
            prop_assert_eq!(decode(&again).unwrap(), env);
        }
    }
}
