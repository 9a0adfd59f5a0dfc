//! Round trips, every truncation, and arbitrary bytes through the decoder.

use proptest::prelude::*;

use super::*;

fn samples() -> Vec<Message<'static>> {
    vec![
        Message::Join(Join {
            min_version: 1,
            max_version: 3,
            security: Security::Curve.code(),
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
        Message::Open(Open {
            stream_id: 3,
            timeout_ms: 2000,
            window: 1 << 20,
            service: "files",
            init: &[0x91, 0x01],
        }),
        Message::Data(Data {
            stream_id: 3,
            from_opener: true,
            offset: 65536,
            payload: b"bytes",
        }),
        Message::Data(Data {
            stream_id: u64::MAX,
            from_opener: false,
            offset: 0,
            payload: b"",
        }),
        Message::Status(Status {
            stream_id: 3,
            from_opener: false,
            sent: 10,
            limit: 1 << 40,
            fin: true,
            stop: false,
            probe: true,
        }),
        Message::Status(Status {
            stream_id: 4,
            from_opener: true,
            sent: 0,
            limit: 0,
            fin: false,
            stop: true,
            probe: false,
        }),
        Message::Reset(Reset {
            stream_id: 3,
            from_opener: true,
            code: ResetCode::Refused,
            detail: "disk full",
        }),
        Message::Reset(Reset {
            stream_id: 3,
            from_opener: false,
            code: ResetCode::Other(99),
            detail: "",
        }),
        Message::Fragment(Fragment {
            transfer_id: 8,
            total: 100_000,
            offset: 65536,
            payload: &[1, 2, 3],
        }),
        Message::Mark { offset: 1 << 33 },
        Message::Ack { offset: 7 },
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
            Message::Open(o) => frame.len() - o.init.len(),
            Message::Data(d) => frame.len() - d.payload.len(),
            Message::Fragment(f) => frame.len() - f.payload.len(),
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
fn join_keeps_odd_versions_and_unknown_security_for_the_listener_to_refuse() {
    let frame = Message::Join(Join {
        min_version: 3,
        max_version: 2,
        security: 9,
        heartbeat_ms: 1,
        network: "",
        name: "a",
        target: "b",
    })
    .encode(1);
    let Message::Join(j) = decode(&frame).unwrap().message else {
        panic!()
    };
    assert_eq!((j.min_version, j.max_version, j.security), (3, 2, 9));
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
        which in 0usize..samples().len(),
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

/// The worked example of PROTOCOL.md §11, byte for byte.
#[test]
fn the_worked_example_in_protocol_md_is_exact() {
    let hex = |s: &str| -> Vec<u8> {
        s.split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    };
    let join = Message::Join(Join {
        min_version: 1,
        max_version: 1,
        security: 0,
        heartbeat_ms: 1000,
        network: "test",
        name: "a",
        target: "b",
    });
    assert_eq!(
        join.encode(1),
        hex("01 01 00 00 00 00 00 00 00 01 01 01 00 00 00 03 e8 04 74 65 73 74 01 61 01 62")
    );
    let welcome = Message::Welcome(Welcome {
        version: 1,
        heartbeat_ms: 1000,
        joiner_incarnation: 1,
        name: "b",
    });
    assert_eq!(
        welcome.encode(2),
        hex("01 02 00 00 00 00 00 00 00 02 01 00 00 03 e8 00 00 00 00 00 00 00 01 01 62")
    );
    let reject = Message::Reject(Reject {
        code: RejectCode::WrongNetwork,
        your_incarnation: 1,
        min_version: 1,
        max_version: 1,
        detail: "network names differ",
    })
    .encode(2);
    assert_eq!(reject.len(), 43);
    assert_eq!(
        &reject[..24],
        &hex("01 03 00 00 00 00 00 00 00 02 01 00 00 00 00 00 00 00 01 01 01 00 14 6e")[..]
    );

    #[derive(serde::Serialize)]
    struct Args {
        a: i64,
        b: i64,
    }
    #[derive(serde::Serialize)]
    struct Out {
        s: i64,
        d: i64,
    }
    let args = rmp_serde::to_vec_named(&Args { a: 100, b: 250 }).unwrap();
    assert_eq!(args, hex("82 a1 61 64 a1 62 cc fa"));
    let request = Message::Request(Request {
        request_id: 7,
        timeout_ms: 5000,
        method: "Arith.SumDiff",
        args: &args,
    });
    let expected = "01 07 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 07 00 00 13 88 \
                    0d 41 72 69 74 68 2e 53 75 6d 44 69 66 66 82 a1 61 64 a1 62 cc fa";
    assert_eq!(request.encode(1), hex(expected));
    let payload = rmp_serde::to_vec_named(&Out { s: 350, d: -150 }).unwrap();
    let reply = Message::Reply(Reply {
        request_id: 7,
        status: ReplyStatus::Ok,
        payload: &payload,
    });
    let expected = "01 08 00 00 00 00 00 00 00 02 00 00 00 00 00 00 00 07 00 \
                    82 a1 73 cd 01 5e a1 64 d1 ff 6a";
    assert_eq!(reply.encode(2), hex(expected));
}

#[test]
fn a_data_header_written_in_place_equals_the_encoded_frame() {
    let payload = b"stream bytes";
    let expected = Message::Data(Data {
        stream_id: 0x0102_0304_0506_0708,
        from_opener: true,
        offset: 1 << 35,
        payload,
    })
    .encode(42);
    let mut frame = vec![0u8; DATA_HEADER_LEN];
    frame.extend_from_slice(payload);
    assert!(write_data_header(
        &mut frame,
        42,
        0x0102_0304_0506_0708,
        true,
        1 << 35
    ));
    assert_eq!(frame, expected);
    assert!(!write_data_header(
        &mut [0u8; DATA_HEADER_LEN - 1],
        1,
        1,
        true,
        0
    ));
}

#[test]
fn payload_headers_have_their_documented_lengths() {
    let data = Message::Data(Data {
        stream_id: 1,
        from_opener: false,
        offset: 0,
        payload: &[],
    });
    assert_eq!(data.encode(1).len(), DATA_HEADER_LEN);
    let fragment = Message::Fragment(Fragment {
        transfer_id: 1,
        total: 1,
        offset: 0,
        payload: &[],
    });
    assert_eq!(fragment.encode(1).len(), FRAGMENT_HEADER_LEN);
}

#[test]
fn frame_len_is_exact_for_the_kinds_with_a_payload() {
    for m in samples() {
        let exact = matches!(
            m,
            Message::Request(_)
                | Message::Reply(_)
                | Message::Cast(_)
                | Message::Open(_)
                | Message::Data(_)
                | Message::Fragment(_)
        );
        if exact {
            assert_eq!(m.frame_len(), m.encode(5).len(), "{m:?}");
        }
    }
}

#[test]
fn the_call_of_a_request_or_reply_is_read_from_its_first_bytes() {
    for m in samples() {
        let frame = m.encode(9);
        let expected = match &m {
            Message::Request(r) => Some((CallFrame::Request, r.request_id)),
            Message::Reply(r) => Some((CallFrame::Reply, r.request_id)),
            _ => None,
        };
        assert_eq!(call_id_of(&frame), expected, "{m:?}");
        // The header and the id are enough; less is not.
        assert_eq!(
            call_id_of(&frame[..frame.len().min(HEADER_LEN + 8)]),
            expected
        );
        assert_eq!(call_id_of(&frame[..frame.len().min(HEADER_LEN + 7)]), None);
    }
}
