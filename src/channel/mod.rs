//! Replicated channels: a key-value map kept the same on every peer that
//! replicates it.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let node = bilateral::Node::builder("a").start()?;
//! let data = node.channel::<String>("data")?;
//! data.peer(["b", "c"]);                     // or data.peer_all()
//! data.set("config/mode", &"fast".to_string())?;
//! let watch = data.watch();                   // changes, local and remote
//! # let _ = watch;
//! # Ok(()) }
//! ```
//!
//! Every write carries a [`Version`] from a hybrid logical clock with the
//! writer's name as tie-break; on every replica the highest version wins, and
//! removals are tombstones until no peer can still need them. Writes are
//! pushed to the peers as they happen and relayed (once, de-duplicated) to
//! peers further away; every peer is also pulled on a timer for what it
//! changed since the last exchange, so losses, partitions and absences heal by
//! themselves and a returning peer receives only the differences. The
//! replication messages are casts on the mesh (`PROTOCOL.md`, section 12).

mod handle;
mod hlc;
mod replica;
mod service;
mod sync;
pub mod wire;

pub use handle::{Change, Channel, ChannelEvent, Watch};
pub use hlc::Version;
pub use replica::{
    ChannelConfig, ChannelError, ChannelStats, Out, Permission, RawChange, Refusal, Replica,
    ReplicaEvent,
};

#[cfg(test)]
mod tests;
