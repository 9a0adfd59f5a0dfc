//! The `Arith.SumDiff` example of the Go library bilateralrpc, in Bilateral,
//! as a typed service: a call in each direction over one connection, a
//! multicast, and a typed error.
//!
//! Run with `cargo run --example arith`.

use std::error::Error;
use std::time::Duration;

use bilateral::{Node, To};
use serde::{Deserialize, Serialize};

/// The reply of one server.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub struct SumDiff {
    pub s: i64,
    pub d: i64,
}

/// Why a division has no result.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
pub enum DivError {
    ByZero,
}

impl std::fmt::Display for DivError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("division by zero")
    }
}

/// The service: served as `Arith.sum_diff` and `Arith.divide`.
#[bilateral::service]
pub trait Arith {
    /// The sum and the difference of `a` and `b`.
    fn sum_diff(&self, a: i64, b: i64) -> SumDiff;
    /// `a / b`, or why not.
    fn divide(&self, a: i64, b: i64) -> Result<i64, DivError>;
}

struct Calculator;

impl Arith for Calculator {
    fn sum_diff(&self, a: i64, b: i64) -> SumDiff {
        SumDiff { s: a + b, d: a - b }
    }

    fn divide(&self, a: i64, b: i64) -> Result<i64, DivError> {
        a.checked_div(b).ok_or(DivError::ByZero)
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();

    // Two servers and a client; every one of them serves Arith.
    let mut nodes = Vec::new();
    for name in ["myserver", "yourserver", "client"] {
        let node = Node::builder(name)
            .network("arith")
            .listen("tcp://127.0.0.1:*")
            .call_timeout(Duration::from_secs(5))
            .start()?;
        node.serve(ArithServer::new(Calculator))?;
        nodes.push(node);
    }
    let (myserver, yourserver, client) = (&nodes[0], &nodes[1], &nodes[2]);

    // Only the client dials.
    for server in [myserver, yourserver] {
        client.connect(server.name(), server.endpoint().unwrap())?;
        client.wait_for_peer(server.name(), Duration::from_secs(5))?;
    }

    // Client → server over the client's DEALER ...
    let reply = ArithClient::new(client).sum_diff("myserver", 100, 250)?;
    println!("client -> myserver   Arith.sum_diff(100, 250) = {reply:?}");
    assert_eq!(reply, SumDiff { s: 350, d: -150 });
    // ... and server → client back over the same connection.
    let reply = ArithClient::new(myserver).sum_diff("client", 7, 3)?;
    println!("myserver -> client   Arith.sum_diff(7, 3)     = {reply:?}");

    // A multicast: one entry per targeted peer.
    let arith = ArithClient::new(client);
    let results = arith.sum_diff_to(To::All, 1, 2)?;
    for r in &results {
        println!(
            "client -> {:<10} Arith.sum_diff(1, 2)     = {:?}",
            r.peer, r.result
        );
    }
    assert!(results.all_ok() && results.len() == 2);

    // The server's own error, as its type.
    let quotient = arith.divide("yourserver", 7, 0)?;
    println!("client -> yourserver Arith.divide(7, 0)       = {quotient:?}");
    assert_eq!(quotient, Err(DivError::ByZero));

    // Any caller (another language too) calls the same methods by name.
    let reply: SumDiff = client.call_one(
        "myserver",
        "Arith.sum_diff",
        &(2, 2),
        Duration::from_secs(5),
    )?;
    assert_eq!(reply, SumDiff { s: 4, d: 0 });
    Ok(())
}
