//! Data connections over TCP loopback: byte streams between two nodes and
//! messages larger than a frame.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bilateral::{Incoming, LostReason, StreamError};
use common::*;

/// Deterministic pseudo-random bytes (xorshift64*), filled 8 at a time.
struct Noise(u64);

impl Noise {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// A service that reads the whole stream, then answers with its length and
/// checksum and finishes.
fn checksum_service(node: &bilateral::Node) {
    node.on_stream("checksum", |incoming: Incoming<()>| {
        let ((), mut stream) = incoming.accept()?;
        let mut sum = Fnv::new();
        let mut len = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sum.update(&buf[..n]);
            len += n as u64;
        }
        stream.write_all(&len.to_be_bytes())?;
        stream.write_all(&sum.0.to_be_bytes())?;
        stream.finish()?;
        Ok(())
    })
    .unwrap();
}

/// Sends `len` noisy bytes from `from` to `to`'s checksum service and checks
/// what the service saw.
fn send_and_check(from: &bilateral::Node, to: &str, len: usize, seed: u64) {
    let mut stream = from
        .open_stream(to, "checksum", &(), PATIENCE)
        .expect("stream opens");
    let mut noise = Noise(seed);
    let mut sum = Fnv::new();
    let mut buf = vec![0u8; 128 * 1024];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        noise.fill(&mut buf[..n]);
        sum.update(&buf[..n]);
        stream.write_all(&buf[..n]).unwrap();
        left -= n;
    }
    stream.finish().unwrap();
    let mut answer = [0u8; 16];
    stream.read_exact(&mut answer).unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert_eq!(
        u64::from_be_bytes(answer[..8].try_into().unwrap()),
        len as u64
    );
    assert_eq!(
        u64::from_be_bytes(answer[8..].try_into().unwrap()),
        sum.0,
        "checksum of stream {seed}"
    );
}

fn pair() -> (bilateral::Node, bilateral::Node) {
    let a = node("a");
    let b = node("b");
    join(&a, &b);
    (a, b)
}

#[test]
fn bytes_go_both_ways_and_finish_gives_eof() {
    let (a, b) = pair();
    b.on_stream("echo", |incoming: Incoming<String>| {
        let (greeting, mut stream) = incoming.accept()?;
        assert_eq!(stream.peer(), "a");
        stream.write_all(greeting.as_bytes())?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf)?;
        stream.write_all(&buf)?;
        stream.finish()?;
        Ok(())
    })
    .unwrap();
    let mut s = a.open_stream("b", "echo", "hi ", PATIENCE).unwrap();
    assert_eq!((s.peer(), s.service()), ("b", "echo"));
    s.write_all(b"there").unwrap();
    s.finish().unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hi there");
}

#[test]
fn a_quarter_gigabyte_through_one_stream_arrives_intact() {
    let (a, b) = pair();
    checksum_service(&b);
    send_and_check(&a, "b", 256 * 1024 * 1024, 1);
}

#[test]
fn thirty_two_concurrent_streams_between_two_nodes_all_arrive_intact() {
    let (a, b) = pair();
    checksum_service(&b);
    // And the other way at the same time.
    checksum_service(&a);
    let threads: Vec<_> = (0..32u64)
        .map(|i| {
            let (from, to) = if i % 4 == 3 {
                (b.clone(), "a")
            } else {
                (a.clone(), "b")
            };
            std::thread::spawn(move || {
                send_and_check(&from, to, 2 * 1024 * 1024 + i as usize * 4099, i + 10)
            })
        })
        .collect();
    for t in threads {
        t.join().expect("stream thread");
    }
}

#[test]
fn a_slow_reader_holds_its_writer_back_within_the_window() {
    let window = 256 * 1024;
    let a = builder("a").stream_window(window).start().unwrap();
    let b = builder("b").stream_window(window).start().unwrap();
    join(&a, &b);
    let (reader_tx, reader_rx) = crossbeam_channel::bounded(1);
    b.on_stream("sink", move |incoming: Incoming<()>| {
        let ((), stream) = incoming.accept()?;
        let _ = reader_tx.send(stream);
        Ok(())
    })
    .unwrap();
    let stream = a.open_stream("b", "sink", &(), PATIENCE).unwrap();
    let (_, mut writer) = stream.split();
    let server_side = reader_rx.recv_timeout(PATIENCE).unwrap();
    let (mut reader, _server_writer) = server_side.split();

    // Nobody reads: the writer gets stuck once the window is in flight and
    // another window is queued, whatever the amount it tries to write.
    writer.set_timeout(Some(Duration::from_millis(300)));
    let block = vec![7u8; 64 * 1024];
    let mut written = 0usize;
    let stuck = loop {
        match writer.write(&block) {
            Ok(n) => written += n,
            Err(e) => break e,
        }
        assert!(written <= 100 * window, "the writer was never held back");
    };
    assert_eq!(stuck.kind(), ErrorKind::TimedOut);
    wait_until(PATIENCE, || reader.buffered() == window);
    assert!(writer.queued() <= window as u64, "{}", writer.queued());
    assert_eq!(written as u64, window as u64 + writer.queued());
    assert!(written <= 2 * window);

    // Reading slowly lets everything through, in order.
    writer.set_timeout(None);
    let total = 8 * window;
    let writing = std::thread::spawn(move || {
        let rest = vec![7u8; total - written];
        writer.write_all(&rest).unwrap();
        writer.finish().unwrap();
        writer
    });
    let mut got = 0usize;
    let mut buf = vec![0u8; 10_000];
    loop {
        assert!(reader.buffered() <= window);
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|&x| x == 7));
        got += n;
    }
    assert_eq!(got, total);
    writing.join().unwrap();
}

#[test]
fn a_peer_killed_mid_transfer_fails_both_halves_on_both_sides() {
    let (a, b) = pair();
    let (server_tx, server_rx) = crossbeam_channel::bounded(1);
    b.on_stream("hold", move |incoming: Incoming<()>| {
        let ((), stream) = incoming.accept()?;
        let (mut reader, mut writer) = stream.split();
        // Read and write until the stream fails; report both errors.
        let r = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => return None,
                    Ok(_) => {}
                    Err(e) => return Some(e),
                }
            }
        });
        let block = vec![1u8; 65536];
        let w = loop {
            if let Err(e) = writer.write_all(&block) {
                break e;
            }
        };
        let r = r.join().unwrap();
        let _ = server_tx.send((r, w));
        Ok(())
    })
    .unwrap();
    let stream = a.open_stream("b", "hold", &(), PATIENCE).unwrap();
    let (mut reader, mut writer) = stream.split();
    let reading = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut total = 0;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return (total, None),
                Ok(n) => total += n,
                Err(e) => return (total, Some(e)),
            }
        }
    });
    let writing = std::thread::spawn(move || {
        let block = vec![2u8; 65536];
        loop {
            if let Err(e) = writer.write_all(&block) {
                return e;
            }
        }
    });
    // Let bytes flow both ways, then b dies without a word.
    wait_until(PATIENCE, || {
        a.peer_info("b").is_some_and(|i| i.stats.bytes_in > 4 << 20)
    });
    b.kill();

    let (received, read_error) = reading.join().unwrap();
    assert!(received > 0);
    let read_error = read_error.expect("an error, not an end of stream");
    let write_error = writing.join().unwrap();
    for e in [&read_error, &write_error] {
        let cause = e.get_ref().and_then(|c| c.downcast_ref::<StreamError>());
        assert!(
            matches!(cause, Some(StreamError::PeerLost(LostReason::Timeout))),
            "{e:?}"
        );
        assert_eq!(e.kind(), ErrorKind::ConnectionAborted);
    }
    // The killed side's halves were told too.
    let (r, w) = server_rx.recv_timeout(PATIENCE).unwrap();
    let r = r.expect("the killed side's reader failed");
    for e in [&r, &w] {
        let cause = e.get_ref().and_then(|c| c.downcast_ref::<StreamError>());
        assert_eq!(cause, Some(&StreamError::Closed), "{e:?}");
    }
}

#[test]
fn half_close_finishes_one_direction_and_the_other_goes_on() {
    let (a, b) = pair();
    b.on_stream("upper", |incoming: Incoming<()>| {
        let ((), stream) = incoming.accept()?;
        let (mut reader, mut writer) = stream.split();
        let mut text = String::new();
        reader.read_to_string(&mut text)?; // ends at a's finish
        // a has finished writing; b still writes, in pieces.
        for word in text.split(' ') {
            writer.write_all(word.to_uppercase().as_bytes())?;
            writer.write_all(b".")?;
        }
        writer.finish()?;
        Ok(())
    })
    .unwrap();
    let mut s = a.open_stream("b", "upper", &(), PATIENCE).unwrap();
    s.write_all(b"half closed stream").unwrap();
    s.finish().unwrap();
    // Writing after finishing is refused; reading goes on.
    let e = s.write(b"more").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BrokenPipe);
    let mut back = String::new();
    s.read_to_string(&mut back).unwrap();
    assert_eq!(back, "HALF.CLOSED.STREAM.");
}

#[test]
fn unknown_services_refusals_and_bad_init_are_typed_errors() {
    let (a, b) = pair();
    b.on_stream("picky", |incoming: Incoming<u32>| {
        if *incoming.init() > 10 {
            incoming.refuse("too many");
            return Ok(());
        }
        Err(bilateral::HandlerError::new("no thanks"))
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
    // Returning an error without accepting refuses with its message.
    match a.open_stream("b", "picky", &1u32, PATIENCE) {
        Err(StreamError::Refused(r)) => assert_eq!(r, "no thanks"),
        other => panic!("{other:?}"),
    }
    match a.open_stream("b", "picky", &"text", PATIENCE) {
        Err(StreamError::BadInit(_)) => {}
        other => panic!("{other:?}"),
    }
    match a.open_stream("nobody", "picky", &1u32, PATIENCE) {
        Err(StreamError::UnknownPeer) => {}
        other => panic!("{other:?}"),
    }
    match a.open_stream("b", "", &1u32, PATIENCE) {
        Err(StreamError::Local(_)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(b.stream_services(), ["picky"]);
    assert_eq!(a.stats().streams_refused, 0);
}

#[test]
fn an_undecided_open_times_out_and_a_panicking_handler_refuses() {
    let (a, b) = pair();
    let (hold_tx, hold_rx) = crossbeam_channel::bounded::<Incoming<()>>(1);
    b.on_stream("ponder", move |incoming: Incoming<()>| {
        // Handed elsewhere: whoever holds it decides.
        let _ = hold_tx.send(incoming);
        Ok(())
    })
    .unwrap();
    b.on_stream("crash", |_incoming: Incoming<()>| panic!("handler bug"))
        .unwrap();
    let started = Instant::now();
    match a.open_stream("b", "ponder", &(), Duration::from_millis(300)) {
        Err(StreamError::Timeout) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    // Accepting after the opener gave up fails.
    let late = hold_rx.recv_timeout(PATIENCE).unwrap();
    // The opener's reset reaches b: the held stream knows it was abandoned.
    wait_until(PATIENCE, || late.is_abandoned());
    let accepted = late.accept();
    assert!(
        matches!(accepted, Err(StreamError::Timeout)),
        "{accepted:?}"
    );
    match a.open_stream("b", "crash", &(), PATIENCE) {
        Err(StreamError::Refused(r)) => assert!(r.contains("panicked"), "{r}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_abandoned_writer_resets_the_stream_instead_of_ending_it() {
    let (a, b) = pair();
    let (result_tx, result_rx) = crossbeam_channel::bounded(1);
    b.on_stream("collect", move |incoming: Incoming<()>| {
        let ((), mut stream) = incoming.accept()?;
        let mut all = Vec::new();
        let _ = result_tx.send(stream.read_to_end(&mut all).map(|_| all.len()));
        Ok(())
    })
    .unwrap();
    let mut s = a.open_stream("b", "collect", &(), PATIENCE).unwrap();
    s.write_all(&[1u8; 100_000]).unwrap();
    drop(s); // a crash halfway: not finished
    let e = result_rx.recv_timeout(PATIENCE).unwrap().unwrap_err();
    let cause = e.get_ref().and_then(|c| c.downcast_ref::<StreamError>());
    assert_eq!(cause, Some(&StreamError::Cancelled));
}

#[test]
fn a_reader_that_goes_away_stops_the_writer() {
    let (a, b) = pair();
    b.on_stream("first-byte", |incoming: Incoming<()>| {
        let ((), stream) = incoming.accept()?;
        let (mut reader, writer) = stream.split();
        let mut one = [0u8; 1];
        reader.read_exact(&mut one)?;
        drop(reader); // not interested in the rest
        let mut writer = writer;
        writer.finish()?;
        Ok(())
    })
    .unwrap();
    let mut s = a.open_stream("b", "first-byte", &(), PATIENCE).unwrap();
    let block = vec![0u8; 64 * 1024];
    let e = loop {
        if let Err(e) = s.write_all(&block) {
            break e;
        }
    };
    assert_eq!(e.kind(), ErrorKind::BrokenPipe);
    let cause = e.get_ref().and_then(|c| c.downcast_ref::<StreamError>());
    assert_eq!(cause, Some(&StreamError::Stopped));
    // The other direction ended cleanly.
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn a_read_timeout_leaves_the_stream_usable() {
    let (a, b) = pair();
    let (go_tx, go_rx) = crossbeam_channel::bounded::<()>(1);
    b.on_stream("later", move |incoming: Incoming<()>| {
        let ((), mut stream) = incoming.accept()?;
        let _ = go_rx.recv_timeout(PATIENCE);
        stream.write_all(b"now")?;
        stream.finish()?;
        Ok(())
    })
    .unwrap();
    let mut s = a.open_stream("b", "later", &(), PATIENCE).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 3];
    assert_eq!(s.read(&mut buf).unwrap_err().kind(), ErrorKind::TimedOut);
    go_tx.send(()).unwrap();
    s.set_read_timeout(Some(PATIENCE));
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"now");
}

#[test]
fn closing_a_node_fails_its_streams_instead_of_hanging_them() {
    let (a, b) = pair();
    let (server_tx, server_rx) = crossbeam_channel::bounded(1);
    b.on_stream("wait", move |incoming: Incoming<()>| {
        let ((), mut stream) = incoming.accept()?;
        let mut buf = [0u8; 16];
        let _ = server_tx.send(stream.read(&mut buf));
        Ok(())
    })
    .unwrap();
    let mut s = a.open_stream("b", "wait", &(), PATIENCE).unwrap();
    a.close();
    let mut buf = [0u8; 16];
    let e = s.read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotConnected);
    assert!(s.write(b"x").is_err());
    // b learns of it from a's goodbye.
    let e = server_rx.recv_timeout(PATIENCE).unwrap().unwrap_err();
    let cause = e.get_ref().and_then(|c| c.downcast_ref::<StreamError>());
    assert_eq!(cause, Some(&StreamError::PeerLost(LostReason::Parted)));
}

#[test]
fn a_64_mib_call_argument_round_trips() {
    let (a, b) = pair();
    b.register("reverse", |_c, mut data: serde_bytes::ByteBuf| {
        data.reverse();
        Ok(data)
    })
    .unwrap();
    let mut data = vec![0u8; 64 * 1024 * 1024];
    Noise(99).fill(&mut data);
    let arg = serde_bytes::ByteBuf::from(data.clone());
    let back: serde_bytes::ByteBuf = a
        .call_one("b", "reverse", &arg, Duration::from_secs(60))
        .unwrap();
    data.reverse();
    assert!(back.as_slice() == data.as_slice(), "the reply differs");
    assert_eq!(b.stats().fragments_dropped, 0);
}

#[test]
fn a_large_cast_reaches_every_peer() {
    let a = node("a");
    let peers: Vec<_> = (0..3).map(|i| node(&format!("p{i}"))).collect();
    let (tx, rx) = crossbeam_channel::unbounded();
    for p in &peers {
        join(&a, p);
        let tx = tx.clone();
        p.register("store", move |ctx, data: serde_bytes::ByteBuf| {
            let _ = tx.send((ctx.peer().to_string(), data.len()));
            Ok(())
        })
        .unwrap();
    }
    let data = Arc::new(serde_bytes::ByteBuf::from(vec![5u8; 3 * 1024 * 1024]));
    let names: Vec<&str> = peers.iter().map(|p| p.name()).collect();
    assert_eq!(a.cast(&names[..], "store", &*data).unwrap(), 3);
    for _ in 0..3 {
        let (from, len) = rx.recv_timeout(PATIENCE).unwrap();
        assert_eq!((from.as_str(), len), ("a", 3 * 1024 * 1024));
    }
}

/// Erlang distribution before OTP 22 sent a large message whole, and every
/// message behind it on the connection waited for the whole transfer.
#[test]
fn calls_are_not_held_up_behind_a_large_message_or_a_bulk_stream() {
    // Liveness is not what this tests: a debug build on a loaded machine
    // can take longer than the tests' 600 ms to move 96 MiB.
    let patient = |name| {
        builder(name)
            .lost_timeout(Duration::from_secs(5))
            .start()
            .expect("node starts")
    };
    let (a, b) = (patient("a"), patient("b"));
    join(&a, &b);
    let (stored_tx, stored_rx) = crossbeam_channel::unbounded();
    b.register("store", move |_c, data: serde_bytes::ByteBuf| {
        let _ = stored_tx.send(data.len());
        Ok(())
    })
    .unwrap();
    b.register("ping", |_c, (): ()| Ok("pong")).unwrap();
    checksum_service(&b);

    // A 96 MiB cast is on its way; a call made after it comes back first.
    let big = serde_bytes::ByteBuf::from(vec![9u8; 96 * 1024 * 1024]);
    assert_eq!(a.cast("b", "store", &big).unwrap(), 1);
    let pong: String = a.call_one("b", "ping", &(), PATIENCE).unwrap();
    assert_eq!(pong, "pong");
    assert!(
        stored_rx.try_recv().is_err(),
        "the call waited for the whole large message"
    );
    assert_eq!(stored_rx.recv_timeout(PATIENCE).unwrap(), 96 * 1024 * 1024);

    // Calls keep being answered while a stream saturates the connection.
    let out = |n: &bilateral::Node| n.peer_info("b").map_or(0, |i| i.stats.bytes_out);
    let before = out(&a);
    let sender = {
        let a = a.clone();
        std::thread::spawn(move || send_and_check(&a, "b", 128 * 1024 * 1024, 5))
    };
    wait_until(PATIENCE, || out(&a) > before + (16 << 20));
    for _ in 0..20 {
        let pong: String = a.call_one("b", "ping", &(), PATIENCE).unwrap();
        assert_eq!(pong, "pong");
    }
    sender.join().unwrap();
}

#[test]
fn stream_settings_that_cannot_work_are_refused_at_start() {
    let invalid = [
        builder("bad").chunk_size(100),
        builder("bad").chunk_size(2 << 20),
        builder("bad")
            .chunk_size(64 * 1024)
            .stream_window(32 * 1024),
        builder("bad").chunk_size(64 * 1024).link_window(32 * 1024),
        builder("bad").max_streams(0),
        builder("bad").max_streams_per_peer(0),
    ];
    for b in invalid {
        let started = b.start();
        assert!(
            matches!(started, Err(bilateral::Error::InvalidConfig(_))),
            "{started:?}"
        );
    }
}
