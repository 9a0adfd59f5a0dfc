//! The VNF framework's discovery scenario on Bilateral's registry: a chat
//! server registers its rooms in the collection `rooms`; a node two hops
//! away watches them appear; the server is killed (SIGKILL, in its own
//! process) and its rooms vanish on every node; it restarts and registers
//! them again.
//!
//! The mesh is a line, `chat` — `hub` — `edge` — `watcher`: the watcher
//! never talks to the chat server, it learns of the rooms through the relays.
//!
//! Run with `cargo run --example registry`.

use std::error::Error;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bilateral::{Node, RegistryEvent, RegistryWatch};
use serde::{Deserialize, Serialize};

/// What a room's entry says.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Room {
    endpoint: String,
    topic: String,
}

const ROOMS: [(&str, &str); 3] = [
    ("lobby", "say hello"),
    ("rust", "borrow checking"),
    ("zeromq", "sockets with a brain"),
];

/// Set in the child process: the hub's endpoint to dial.
const ROLE: &str = "BILATERAL_EXAMPLE_CHAT_HUB";

fn builder(name: &str) -> bilateral::NodeBuilder {
    Node::builder(name)
        .network("vnf-demo")
        .listen("tcp://127.0.0.1:*")
        .heartbeat_interval(Duration::from_millis(200))
        .lost_timeout(Duration::from_secs(1))
        .backoff(Duration::from_millis(100), Duration::from_secs(1))
}

fn main() -> Result<(), Box<dyn Error>> {
    if let Ok(hub) = std::env::var(ROLE) {
        return chat_server(&hub);
    }
    let hub = builder("hub").start()?;
    let edge = builder("edge").start()?;
    let watcher = builder("watcher").start()?;
    edge.connect("hub", hub.endpoint().unwrap_or_default())?;
    watcher.connect("edge", edge.endpoint().unwrap_or_default())?;
    watcher.wait_for_peer("edge", Duration::from_secs(10))?;
    edge.wait_for_peer("hub", Duration::from_secs(10))?;
    let rooms = watcher.registry()?.watch::<Room>("rooms");

    for life in 1..=2 {
        let mut chat = spawn_chat(hub.endpoint().unwrap_or_default())?;
        let incarnation = expect_rooms(&rooms, life)?;
        for node in [&hub, &edge, &watcher] {
            let seen = node.registry()?.list::<Room>("rooms")?;
            println!("  {} sees {} rooms", node.name(), seen.len());
            assert_eq!(seen.len(), ROOMS.len());
        }
        let killed = Instant::now();
        chat.kill()?; // SIGKILL: no goodbye
        chat.wait()?;
        println!("chat server killed");
        expect_gone(&rooms, incarnation)?;
        println!(
            "  its rooms vanished on the watcher {:.1} s after the kill (lost_timeout 1 s)",
            killed.elapsed().as_secs_f64()
        );
        for node in [&hub, &edge, &watcher] {
            assert!(node.registry()?.list::<Room>("rooms")?.is_empty());
        }
        println!("  and on every node");
    }
    println!("done");
    Ok(())
}

/// The chat server's process: registers the rooms, then serves until killed.
fn chat_server(hub: &str) -> Result<(), Box<dyn Error>> {
    let chat = builder("chat").start()?;
    chat.connect("hub", hub)?;
    chat.wait_for_peer("hub", Duration::from_secs(10))?;
    let registry = chat.registry()?;
    let endpoint = chat.endpoint().unwrap_or_default().to_string();
    let _rooms: Vec<_> = ROOMS
        .iter()
        .map(|(name, topic)| {
            let room = Room {
                endpoint: endpoint.clone(),
                topic: topic.to_string(),
            };
            registry.register("rooms", name, &room)
        })
        .collect::<Result<_, _>>()?;
    // Killed by the parent; never longer than a minute in any case.
    std::thread::sleep(Duration::from_secs(60));
    Ok(())
}

fn spawn_chat(hub: &str) -> Result<Child, Box<dyn Error>> {
    Ok(Command::new(std::env::current_exe()?)
        .env(ROLE, hub)
        .stdin(Stdio::null())
        .spawn()?)
}

/// Waits for the three rooms of one chat server's life; returns its incarnation.
fn expect_rooms(rooms: &RegistryWatch<Room>, life: u32) -> Result<u64, Box<dyn Error>> {
    let mut incarnation = None;
    let mut seen = 0;
    while seen < ROOMS.len() {
        match rooms.recv_timeout(Duration::from_secs(20)) {
            Some(RegistryEvent::Added(e)) => {
                println!(
                    "watcher: room {:?} ({}) at {} by {} (incarnation {:016x}, life {life})",
                    e.name, e.value.topic, e.value.endpoint, e.owner, e.incarnation
                );
                incarnation = Some(e.incarnation);
                seen += 1;
            }
            Some(other) => println!("watcher: {other:?}"),
            None => return Err("the rooms did not appear".into()),
        }
    }
    incarnation.ok_or_else(|| "no incarnation".into())
}

/// Waits until the rooms of `incarnation` are all removed.
fn expect_gone(rooms: &RegistryWatch<Room>, incarnation: u64) -> Result<(), Box<dyn Error>> {
    let mut gone = 0;
    while gone < ROOMS.len() {
        match rooms.recv_timeout(Duration::from_secs(20)) {
            Some(RegistryEvent::Removed {
                name,
                owner,
                incarnation: i,
                ..
            }) if i == incarnation => {
                println!("watcher: room {name:?} of {owner} is gone");
                gone += 1;
            }
            Some(other) => println!("watcher: {other:?}"),
            None => return Err("the rooms did not vanish".into()),
        }
    }
    Ok(())
}
