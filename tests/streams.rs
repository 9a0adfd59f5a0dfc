//! Data connections over TCP loopback: byte streams between two nodes and
//! messages larger than a frame.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use bilateral::{Incoming, StreamError};
use common::*;

#[test]
fn bytes_go_both_ways_and_finish_gives_eof() {
    let a = node("a");
    let b = node("b");
    join(&a, &b);
    b.on_stream("echo", |incoming: Incoming<String>| {
        let (greeting, mut stream) = incoming.accept()?;
        stream.write_all(greeting.as_bytes())?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf)?;
        stream.write_all(&buf)?;
        stream.finish()?;
        Ok(())
    })
    .unwrap();
    let mut s = a.open_stream("b", "echo", "hi ", PATIENCE).unwrap();
    s.write_all(b"there").unwrap();
    s.finish().unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hi there");
}

#[test]
fn unknown_service_and_refusal_are_typed() {
    let a = node("a");
    let b = node("b");
    join(&a, &b);
    b.on_stream("picky", |incoming: Incoming<u32>| {
        if *incoming.init() > 10 {
            incoming.refuse("too many");
            return Ok(());
        }
        Err("no thanks".into())
    })
    .unwrap();
    match a.open_stream("b", "nothing", &(), PATIENCE) {
        Err(StreamError::UnknownService(s)) => assert_eq!(s, "nothing"),
        other => panic!("{other:?}"),
    }
    match a.open_stream("b", "picky", &11u32, PATIENCE) {
        Err(StreamError::Refused(r)) => assert_eq!(r, "too many"),
        other => panic!("{other:?}"),
    }
    match a.open_stream("b", "picky", &1u32, PATIENCE) {
        Err(StreamError::Refused(r)) => assert_eq!(r, "no thanks"),
        other => panic!("{other:?}"),
    }
    match a.open_stream("b", "picky", &"text", PATIENCE) {
        Err(StreamError::BadInit(_)) => {}
        other => panic!("{other:?}"),
    }
    let _ = Duration::ZERO;
}
