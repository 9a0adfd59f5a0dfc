//! What other threads hand to the reactor: commands, and where call results go.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;

use crate::core::{NodeStats, Outcome, PeerInfo};
use crate::error::Error;
use crate::faults::{FaultPlan, FaultStats};
use crate::protocol::NodeName;
use crate::security::PublicKey;

/// Where a call's per-target results go: the caller's channel, and the
/// caller's slot for each target the mesh was given (when the caller settled
/// some targets itself, such as invalid names, the numbering differs).
#[derive(Clone, Debug)]
pub(crate) struct CallSink {
    pub tx: Sender<(usize, Outcome)>,
    pub slots: Option<Arc<[usize]>>,
}

impl CallSink {
    pub(crate) fn deliver(&self, index: usize, outcome: Outcome) {
        let slot = self
            .slots
            .as_ref()
            .and_then(|s| s.get(index).copied())
            .unwrap_or(index);
        // Capacity equals the number of targets and each is resolved once, so
        // this never blocks; a caller that gave up has dropped its receiver
        // and the entry is discarded.
        let _ = self.tx.try_send((slot, outcome));
    }
}

/// Work handed to the reactor by other threads.
pub(crate) enum Command {
    Connect {
        peer: NodeName,
        endpoint: String,
        reply: Sender<Result<(), Error>>,
    },
    Disconnect {
        peer: NodeName,
        reply: Sender<bool>,
    },
    Call {
        targets: Vec<NodeName>,
        method: String,
        args: Vec<u8>,
        deadline: Instant,
        sink: CallSink,
    },
    Cast {
        targets: Vec<NodeName>,
        method: String,
        args: Vec<u8>,
    },
    Query {
        reply: Sender<Snapshot>,
    },
    /// CURVE: change the allow-list; the reply says whether the key was listed.
    Access {
        key: PublicKey,
        allow: bool,
        reply: Sender<bool>,
    },
    /// CURVE: read the allow-list.
    AllowedKeys {
        reply: Sender<Vec<PublicKey>>,
    },
    /// Change or read the fault plan; the reply is the injector's counters.
    Faults {
        change: FaultChange,
        reply: Sender<Option<FaultStats>>,
    },
}

/// A change to a node's fault plan.
pub(crate) enum FaultChange {
    Set(Option<Box<FaultPlan>>),
    Partition(Vec<String>),
    Heal,
    Query,
}

impl Command {
    /// Answers a command that will never run because the node is closed.
    pub(crate) fn refuse(self) {
        match self {
            Command::Connect { reply, .. } => {
                let _ = reply.send(Err(Error::Closed));
            }
            Command::Call { targets, sink, .. } => {
                for index in 0..targets.len() {
                    sink.deliver(index, Err(crate::error::CallError::Closed));
                }
            }
            // Dropping the reply channel tells the waiter the node is gone.
            Command::Disconnect { .. }
            | Command::Cast { .. }
            | Command::Query { .. }
            | Command::Access { .. }
            | Command::AllowedKeys { .. }
            | Command::Faults { .. } => {}
        }
    }
}

/// The reactor's view of the node, for introspection.
#[derive(Clone, Debug, Default)]
pub(crate) struct Snapshot {
    pub peers: Vec<PeerInfo>,
    pub stats: NodeStats,
    pub pending_calls: usize,
    pub queued_handlers: usize,
}
