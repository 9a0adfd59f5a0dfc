//! The Arith service in async code, on tokio: an async handler that calls
//! another node before it answers, typed futures, a multicast and an event
//! stream, without blocking a runtime thread.
//!
//! Run with `cargo run --example async_arith --features tokio`.

use std::time::Duration;

use bilateral::{CallContext, Node, PeerEvent, To};
use futures_core::Stream;

/// Multiplication, done by asking an adder repeatedly: a handler awaiting
/// other calls.
#[bilateral::service]
pub trait Arith {
    /// `a + b`.
    fn add(&self, a: i64, b: i64) -> i64;
    /// `a * b`, by `b` additions on the caller's own node (`b` small).
    async fn times(&self, ctx: &CallContext, a: i64, b: u8) -> i64;
}

struct Calculator {
    /// The node that serves, to call back through.
    node: Node,
}

impl Arith for Calculator {
    fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn times(&self, ctx: &CallContext, a: i64, b: u8) -> i64 {
        // Each addition is a call back to the caller, over the connection
        // its own call came on; awaiting it holds no worker.
        let back = ArithClient::new(&self.node);
        let mut total = 0;
        for _ in 0..b {
            total = back.add_async(ctx.peer(), total, a).await.unwrap_or(total);
        }
        total
    }
}

/// The next event of a stream, awaited (what `StreamExt::next` does).
async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Node::builder("server")
        .listen("tcp://127.0.0.1:*")
        .workers(1)
        .start()?;
    server.serve(ArithServer::new(Calculator {
        node: server.clone(),
    }))?;
    let client = Node::builder("client").start()?;
    client.serve(ArithServer::new(Calculator {
        node: client.clone(),
    }))?;
    let mut events = client.events();
    client.connect("server", server.endpoint().unwrap())?;
    client
        .wait_for_peer_async("server", Duration::from_secs(5))
        .await?;
    if let Some(PeerEvent::Joined { peer, .. }) = next(&mut events).await {
        println!("joined {peer}");
    }

    let arith = ArithClient::new(&client);
    println!("add(2, 3)   = {}", arith.add_async("server", 2, 3).await?);
    // Ten nested calls at once, each making up to 9 calls back to us.
    let products: Vec<_> = (0..10).map(|b| arith.times_async("server", 7, b)).collect();
    for (b, product) in products.into_iter().enumerate() {
        let product = product.await?;
        println!("times(7, {b}) = {product}");
        assert_eq!(product, 7 * b as i64);
    }
    let everyone = arith.add_to_async(To::All, 40, 2).await?;
    assert_eq!(everyone.get("server"), Some(&Ok(42)));
    Ok(())
}
