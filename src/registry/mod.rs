//! The registry: named entries in collections, each owned by the node
//! session that registered it and gone, on every node, when that session
//! ends.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let node = bilateral::Node::builder("a").start()?;
//! let registry = node.registry()?;
//! let room = registry.register("rooms", "lobby", &"tcp://10.0.0.7:5555")?;
//! for entry in registry.lookup::<String>("rooms", "lobby")? {
//!     println!("{} serves the lobby at {}", entry.owner, entry.value);
//! }
//! let watch = registry.watch::<String>("rooms"); // Added / Updated / Removed
//! # let _ = watch;
//! drop(room); // the entry is removed everywhere
//! # Ok(()) }
//! ```
//!
//! Every node runs the registry service, so entries also travel through
//! nodes that never use it (a line A–B–C: A's entries reach C through B).
//! An entry is visible on a node as long as its owner is **reachable**
//! from it through sessions both ends confirm; when the owner closes,
//! crashes or is cut off, its peers drop it within `lost_timeout`, the news
//! spreads at once, and its entries vanish everywhere. A node cut off from
//! the owner but reaching it through another node keeps seeing them. A
//! restarted owner is a new session: its old entries never return. Only
//! the owner changes or removes its entries; a peer in session is believed
//! only about itself, and in CURVE mode its name is its key. Records spread
//! as casts (`PROTOCOL.md` §14) and are repaired by anti-entropy, so loss
//! and reordering only delay them.

pub(crate) mod book;
mod handle;
mod reach;
mod service;
pub(crate) mod wire;

pub use book::{RegistryConfig, RegistryError};
pub use handle::{Entry, Registration, Registry, RegistryEvent, RegistryWatch};
pub(crate) use service::Service;

#[cfg(test)]
mod tests;
