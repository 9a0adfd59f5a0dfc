//! Replicated channels: a key-value map kept the same on every peer that
//! replicates it.

mod hlc;
mod replica;
mod sync;
pub mod wire;

pub use hlc::Version;
pub use replica::{
    ChannelConfig, ChannelError, ChannelStats, Out, Permission, RawChange, Refusal, Replica,
    ReplicaEvent,
};

#[cfg(test)]
mod tests;
