//! The `Arith.SumDiff` example of the Go library bilateralrpc, in Bilateral:
//! a call in each direction over one connection, then a multicast.
//!
//! Run with `cargo run --example arith`.

use std::error::Error;
use std::time::Duration;

use bilateral::{HandlerError, Node, To};
use serde::{Deserialize, Serialize};

/// The arguments.
#[derive(Serialize, Deserialize, Debug)]
struct Args {
    a: i64,
    b: i64,
}

/// The reply of one server.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Reply {
    s: i64,
    d: i64,
}

fn sum_diff(_ctx: &bilateral::CallContext, args: Args) -> Result<Reply, HandlerError> {
    Ok(Reply {
        s: args.a + args.b,
        d: args.a - args.b,
    })
}

fn main() -> Result<(), Box<dyn Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let timeout = Duration::from_secs(5);

    // Two servers and a client; every one of them serves Arith.SumDiff.
    let mut nodes = Vec::new();
    for name in ["myserver", "yourserver", "client"] {
        let node = Node::builder(name)
            .network("arith")
            .listen("tcp://127.0.0.1:*")
            .start()?;
        node.register("Arith.SumDiff", sum_diff)?;
        nodes.push(node);
    }
    let (myserver, yourserver, client) = (&nodes[0], &nodes[1], &nodes[2]);

    // Only the client dials.
    for server in [myserver, yourserver] {
        client.connect(server.name(), server.endpoint().unwrap())?;
        client.wait_for_peer(server.name(), timeout)?;
    }

    // Client → server over the client's DEALER ...
    let reply: Reply = client.call_one(
        "myserver",
        "Arith.SumDiff",
        &Args { a: 100, b: 250 },
        timeout,
    )?;
    println!("client -> myserver   Arith.SumDiff(100, 250) = {reply:?}");
    // ... and server → client back over the same connection.
    let reply: Reply =
        myserver.call_one("client", "Arith.SumDiff", &Args { a: 7, b: 3 }, timeout)?;
    println!("myserver -> client   Arith.SumDiff(7, 3)     = {reply:?}");

    // A multicast: one entry per targeted peer.
    let results =
        client.call::<_, Reply>(To::All, "Arith.SumDiff", &Args { a: 1, b: 2 }, timeout)?;
    for r in &results {
        println!(
            "client -> {:<10} Arith.SumDiff(1, 2)     = {:?}",
            r.peer, r.result
        );
    }
    assert!(results.all_ok() && results.len() == 2);
    Ok(())
}
