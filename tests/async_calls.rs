//! Calls awaited as futures, on a tokio runtime: many in flight from one
//! task, deadlines that hold as they do for blocking waits, and futures
//! dropped mid-flight that leave nothing behind.

mod common;

use std::time::{Duration, Instant};

use bilateral::{CallError, PendingCall};
use common::*;

/// How late a future may resolve after its deadline (scheduling only).
const SLACK: Duration = Duration::from_millis(50);

#[test]
fn ten_thousand_calls_in_flight_from_one_task_and_a_thousand_dropped() {
    const CALLS: u64 = 10_000;
    let server = builder("server")
        .max_queued_handlers(CALLS as usize)
        .start()
        .unwrap();
    let (gate, gate_rx) = crossbeam_channel::bounded::<()>(0);
    server
        .register("held", move |_c, x: u64| {
            let _ = gate_rx.recv();
            Ok(x)
        })
        .unwrap();
    let client = node("client");
    join(&client, &server);
    runtime().block_on(async {
        let timeout = Duration::from_secs(30);
        let mut calls: Vec<PendingCall<u64>> = (0..CALLS)
            .map(|i| client.start_call("server", "held", &i, timeout).unwrap())
            .collect();
        assert_eq!(client.load().0, CALLS as usize);
        // Dropping a thousand unfinished calls takes them out of the table at once.
        let kept = calls.split_off(1_000);
        drop(calls);
        wait_until(PATIENCE, || client.load().0 == (CALLS - 1_000) as usize);
        assert_eq!(client.stats().calls_cancelled, 1_000);
        drop(gate);
        for (i, call) in kept.into_iter().enumerate() {
            let deadline = call.deadline();
            let responses = call.await;
            assert!(Instant::now() <= deadline + SLACK);
            assert_eq!(responses.get("server"), Some(&Ok(1_000 + i as u64)));
        }
    });
    assert_eq!(client.load().0, 0);
    // The cancelled calls still ran on the server; their replies came late.
    wait_until(PATIENCE, || client.stats().late_replies == 1_000);
}

#[test]
fn a_future_resolves_by_its_deadline_when_no_reply_comes() {
    let server = node("server");
    let (_gate, gate_rx) = crossbeam_channel::bounded::<()>(0);
    server
        .register("never", move |_c, (): ()| {
            let _ = gate_rx.recv_timeout(PATIENCE);
            Ok(())
        })
        .unwrap();
    let client = node("client");
    join(&client, &server);
    runtime().block_on(async {
        for timeout in [10, 100, 300] {
            let timeout = Duration::from_millis(timeout);
            let started = Instant::now();
            let result = client
                .call_one_async::<_, ()>("server", "never", &(), timeout)
                .await;
            assert_eq!(result, Err(CallError::Timeout));
            let took = started.elapsed();
            assert!(took >= timeout, "{took:?} < {timeout:?}");
            assert!(took <= timeout + SLACK, "{took:?} for {timeout:?}");
        }
    });
    // Given up: not pending any more.
    wait_until(PATIENCE, || client.load().0 == 0);
}

#[test]
fn async_and_blocking_calls_see_the_same_results() {
    let server = node("server");
    server
        .register("add", |_c, (a, b): (i64, i64)| Ok(a + b))
        .unwrap();
    let client = node("client");
    join(&client, &server);
    let blocking = client
        .call::<_, i64>(["server", "nobody"], "add", &(2, 3), PATIENCE)
        .unwrap();
    let awaited = runtime()
        .block_on(client.call_async::<_, i64>(["server", "nobody"], "add", &(2, 3), PATIENCE))
        .unwrap();
    assert_eq!(blocking, awaited);
    assert_eq!(awaited.get("server"), Some(&Ok(5)));
    assert_eq!(awaited.get("nobody"), Some(&Err(CallError::UnknownPeer)));
}

#[test]
fn a_future_of_a_closed_node_resolves_closed() {
    let server = node("server");
    server
        .register("slow", |_c, (): ()| {
            std::thread::park_timeout(PATIENCE);
            Ok(())
        })
        .unwrap();
    let client = node("client");
    join(&client, &server);
    let call: PendingCall<()> = client.start_call("server", "slow", &(), PATIENCE).unwrap();
    let closer = client.clone();
    let responses = runtime().block_on(async move {
        let closing = tokio::task::spawn_blocking(move || closer.close());
        let responses = call.await;
        closing.await.unwrap();
        responses
    });
    assert_eq!(responses.get("server"), Some(&Err(CallError::Closed)));
}
