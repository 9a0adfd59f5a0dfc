//! Three CURVE nodes with an allow-list, and a fourth node whose key is not on
//! it: refused at the handshake, then allowed at run time.
//!
//! Run with `cargo run --example secure_mesh`.

use std::error::Error;
use std::time::Duration;

use bilateral::{Keypair, Node, PeerEvent, To};

fn short(key: &str) -> &str {
    &key[..8]
}

fn main() -> Result<(), Box<dyn Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let timeout = Duration::from_secs(5);
    let keys: Vec<Keypair> = (0..4)
        .map(|_| Keypair::generate())
        .collect::<Result<_, _>>()?;
    let members: Vec<_> = keys[..3].iter().map(|k| *k.public()).collect();

    // Three members; each allows the other members' keys.
    let mut nodes = Vec::new();
    for (i, k) in keys[..3].iter().enumerate() {
        let node = Node::secure_builder(k)
            .network("secure-demo")
            .listen("tcp://127.0.0.1:*")
            .allow_keys(members.iter().copied())
            .backoff(Duration::from_millis(100), Duration::from_secs(1))
            .start()?;
        let who = format!("member {i}");
        node.register("hello", move |ctx, (): ()| {
            Ok(format!("{who} greets {}", short(ctx.peer())))
        })?;
        println!(
            "member {i}: key {} on {}",
            node.name(),
            node.endpoint().unwrap_or("-")
        );
        nodes.push(node);
    }
    for i in 0..3 {
        for j in i + 1..3 {
            nodes[i].connect(nodes[j].name(), nodes[j].endpoint().unwrap())?;
            nodes[i].wait_for_peer(nodes[j].name(), timeout)?;
        }
    }
    println!("the three members are joined, every byte between them encrypted");

    // An outsider with a key of its own, not on anyone's list.
    let outsider = Node::secure_builder(&keys[3])
        .network("secure-demo")
        .allow_any_key()
        .start()?;
    let first = &nodes[0];
    let events = first.events();
    outsider.connect(first.name(), first.endpoint().unwrap())?;
    match outsider.wait_for_peer(first.name(), timeout) {
        Err(e) => println!("outsider {}: {e}", short(outsider.name())),
        Ok(()) => unreachable!("an unlisted key got in"),
    }
    if let Some(PeerEvent::Unauthorized { key, address }) =
        events.wait_for(timeout, |e| matches!(e, PeerEvent::Unauthorized { .. }))
    {
        println!(
            "member 0 refused key {} from {address} at the handshake",
            short(&key)
        );
    }

    // The operator allows it at run time: its next attempt gets in.
    first.allow_key(outsider.public_key().as_ref().unwrap())?;
    println!("member 0 now allows {}", short(outsider.name()));
    outsider.wait_for_peer(first.name(), Duration::from_secs(10))?;
    let greeting: String = outsider.call_one(first.name(), "hello", &(), timeout)?;
    println!("outsider -> member 0: {greeting:?}");

    // Members 1 and 2 still refuse it: a multicast from it reaches only member 0.
    let results = outsider.call::<_, String>(To::All, "hello", &(), timeout)?;
    println!("outsider's multicast reached {} peer(s)", results.len());
    Ok(())
}
