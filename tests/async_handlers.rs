//! Async handlers: awaiting inside a handler holds no worker thread, the
//! admission bound still counts them, and a handler can call other nodes
//! (and back over the same connection) without deadlock.

mod common;

use std::time::Duration;

use bilateral::{CallContext, CallError, HandlerError, PendingCall};
use common::*;

#[test]
fn a_hundred_handlers_awaiting_a_second_share_one_worker() {
    let rt = runtime();
    let server = builder("server").workers(1).start().unwrap();
    rt.block_on(async {
        server
            .register_async("nap", |_ctx: CallContext, x: u32| async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<_, HandlerError>(x * 2)
            })
            .unwrap();
    });
    let client = node("client");
    join(&client, &server);
    let calls: Vec<PendingCall<u32>> = (0..100)
        .map(|i| {
            client
                .start_call("server", "nap", &i, Duration::from_secs(5))
                .unwrap()
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        // With the one worker held by each nap in turn, this would take 100 s.
        assert_eq!(call.wait().get("server"), Some(&Ok(2 * i as u32)));
    }
}

#[test]
fn async_handlers_count_against_the_handler_queue() {
    let rt = runtime();
    let server = builder("server").max_queued_handlers(3).start().unwrap();
    let (gate, gate_rx) = tokio::sync::watch::channel(false);
    let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = started.clone();
    rt.block_on(async {
        server
            .register_async("held", move |_ctx: CallContext, (): ()| {
                let mut open = gate_rx.clone();
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                async move {
                    let _ = open.wait_for(|&o| o).await;
                    Ok::<_, HandlerError>(())
                }
            })
            .unwrap();
    });
    let client = node("client");
    join(&client, &server);
    let held: Vec<PendingCall<()>> = (0..3)
        .map(|_| client.start_call("server", "held", &(), PATIENCE).unwrap())
        .collect();
    // The three held handlers fill the queue (the node's own services'
    // messages have a queue of their own and do not count).
    wait_until(PATIENCE, || {
        started.load(std::sync::atomic::Ordering::SeqCst) == 3 && server.load().1 == 3
    });
    let refused = client.call_one::<_, ()>("server", "held", &(), PATIENCE);
    assert_eq!(refused, Err(CallError::Overloaded(bilateral::Side::Remote)));
    gate.send(true).unwrap();
    for call in held {
        assert_eq!(call.wait().get("server"), Some(&Ok(())));
    }
}

#[test]
fn a_panicking_async_handler_is_a_remote_error_and_bad_arguments_are_typed() {
    let rt = runtime();
    let server = node("server");
    rt.block_on(async {
        server
            .register_async("boom", |_ctx: CallContext, (): ()| async move {
                tokio::task::yield_now().await;
                if true {
                    panic!("async boom");
                }
                Ok::<_, HandlerError>(())
            })
            .unwrap();
    });
    let client = node("client");
    join(&client, &server);
    let Err(CallError::Remote(e)) = client.call_one::<_, ()>("server", "boom", &(), PATIENCE)
    else {
        panic!("a remote error");
    };
    assert!(e.message().contains("async boom"), "{e}");
    let bad = client.call_one::<_, ()>("server", "boom", &"not unit", PATIENCE);
    assert!(matches!(bad, Err(CallError::BadArguments(_))), "{bad:?}");
    // Outside a runtime, registering says why it cannot.
    assert!(
        server
            .register_async("late", |_c: CallContext, (): ()| async {
                Ok::<_, HandlerError>(())
            })
            .is_err()
    );
}

/// a calls b; b's async handler calls c and then a back (over the
/// connection a's call came on) before it answers: nested calls both ways,
/// many at once, on one worker per node.
#[test]
fn nested_calls_both_ways_under_load_do_not_deadlock() {
    let rt = runtime();
    let a = builder("a").workers(1).start().unwrap();
    let b = builder("b").workers(1).start().unwrap();
    let c = builder("c").workers(1).start().unwrap();
    c.register("square", |_ctx, x: u64| Ok(x * x)).unwrap();
    a.register("plus_one", |_ctx, x: u64| Ok(x + 1)).unwrap();
    let b_node = b.clone();
    rt.block_on(async {
        b.register_async("compose", move |ctx: CallContext, x: u64| {
            let b = b_node.clone();
            async move {
                let squared: u64 = b.call_one_async("c", "square", &x, PATIENCE).await?;
                let caller = ctx.peer().to_string();
                let back: u64 = b
                    .call_one_async(&caller, "plus_one", &squared, PATIENCE)
                    .await?;
                Ok::<_, HandlerError>(back)
            }
        })
        .unwrap();
    });
    join(&a, &b);
    join(&b, &c);
    let calls: Vec<PendingCall<u64>> = (0..500u64)
        .map(|x| a.start_call("b", "compose", &x, PATIENCE).unwrap())
        .collect();
    for (x, call) in calls.into_iter().enumerate() {
        let x = x as u64;
        assert_eq!(call.wait().get("b"), Some(&Ok(x * x + 1)));
    }
}
