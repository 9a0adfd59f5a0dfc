//! Every wait of the API, awaited: events and channel changes as streams,
//! waiting for a peer, opening a stream, and a stream's bytes through
//! `futures::io` and tokio's I/O traits.

mod common;

use std::time::{Duration, Instant};

use bilateral::{ChannelEvent, Incoming, PeerEvent, StreamError};
use common::*;
use futures::StreamExt;

#[test]
fn events_arrive_on_a_stream_and_wait_for_peer_awaits_a_join() {
    let a = node("a");
    let b = node("b");
    let mut events = a.events();
    runtime().block_on(async {
        a.connect("b", b.endpoint().unwrap()).unwrap();
        a.wait_for_peer_async("b", PATIENCE).await.unwrap();
        let first = tokio::time::timeout(PATIENCE, events.next()).await.unwrap();
        assert!(matches!(first, Some(PeerEvent::Joined { ref peer, .. }) if peer.as_str() == "b"));
        // A peer that never comes: the deadline ends the wait.
        let started = Instant::now();
        let missing = a
            .wait_for_peer_async("nobody", Duration::from_millis(100))
            .await;
        assert!(
            matches!(missing, Err(bilateral::Error::Timeout)),
            "{missing:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_millis(100) + Duration::from_millis(50));
        b.kill();
        let lost = tokio::time::timeout(PATIENCE, async {
            loop {
                match events.next_event().await {
                    Some(PeerEvent::Lost { peer, .. }) if peer.as_str() == "b" => return,
                    Some(_) => continue,
                    None => panic!("the event stream ended"),
                }
            }
        })
        .await;
        assert!(lost.is_ok(), "b's loss was reported");
        a.close();
        assert_eq!(events.next().await, None, "the stream ends with the node");
    });
}

#[test]
fn channel_changes_arrive_on_a_stream() {
    let a = node("a");
    let b = node("b");
    join(&a, &b);
    let on_a = a.channel::<u32>("numbers").unwrap();
    let on_b = b.channel::<u32>("numbers").unwrap();
    on_a.peer(["b"]);
    on_b.peer(["a"]);
    let mut changes = on_b.watch();
    on_a.set("x", 7).unwrap();
    runtime().block_on(async {
        let change = tokio::time::timeout(PATIENCE, changes.next())
            .await
            .unwrap();
        match change {
            Some(ChannelEvent::Changed(c)) => {
                assert_eq!(
                    (c.key.as_str(), c.value, c.by.as_str()),
                    ("x", Some(7), "a")
                );
            }
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn a_stream_opened_and_used_from_async_code() {
    let store = node("store");
    store
        .on_stream("upper", |incoming: Incoming<()>| {
            let (_, mut stream) = incoming.accept()?;
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut stream, &mut data)?;
            std::io::Write::write_all(&mut stream, &data.to_ascii_uppercase())?;
            stream.finish()?;
            Ok(())
        })
        .unwrap();
    store
        .on_stream("refuse", |incoming: Incoming<()>| {
            incoming.refuse("not today");
            Ok(())
        })
        .unwrap();
    let client = node("client");
    join(&client, &store);
    runtime().block_on(async {
        // futures::io
        use futures::{AsyncReadExt, AsyncWriteExt};
        let mut stream = client
            .open_stream_async("store", "upper", &(), PATIENCE)
            .await
            .unwrap();
        let text = b"hello from a task ".repeat(100_000); // 1.8 MB: several windows
        AsyncWriteExt::write_all(&mut stream, &text).await.unwrap();
        AsyncWriteExt::close(&mut stream).await.unwrap();
        let mut answer = Vec::new();
        AsyncReadExt::read_to_end(&mut stream, &mut answer)
            .await
            .unwrap();
        assert_eq!(answer, text.to_ascii_uppercase());

        // tokio::io, on the split halves
        let stream = client
            .open_stream_async("store", "upper", &(), PATIENCE)
            .await
            .unwrap();
        let (mut reader, mut writer) = stream.split();
        let writing = tokio::spawn(async move {
            tokio::io::AsyncWriteExt::write_all(&mut writer, b"tokio")
                .await
                .unwrap();
            tokio::io::AsyncWriteExt::shutdown(&mut writer)
                .await
                .unwrap();
        });
        let mut answer = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut reader, &mut answer)
            .await
            .unwrap();
        writing.await.unwrap();
        assert_eq!(answer, "TOKIO");

        // Refusals and deadlines are the blocking API's.
        let refused = client
            .open_stream_async("store", "refuse", &(), PATIENCE)
            .await;
        assert!(matches!(refused, Err(StreamError::Refused(ref r)) if r == "not today"));
        let unknown = client
            .open_stream_async("store", "nothing", &(), PATIENCE)
            .await;
        assert!(
            matches!(unknown, Err(StreamError::UnknownService(_))),
            "{unknown:?}"
        );
    });
}
