//! What other threads hand to the reactor: commands, and where call results go.

use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Sender;

pub(crate) use super::completion::CallSink;
use super::streams::Shared;
use super::waker::Waker;
use crate::core::{NodeStats, PeerInfo, StreamId};
use crate::error::{Error, StreamError};
use crate::faults::{FaultPlan, FaultStats};
use crate::protocol::NodeName;
use crate::protocol::ResetCode;
use crate::security::PublicKey;

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
    /// The caller of call `id` stopped waiting.
    Cancel {
        id: u64,
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
    #[cfg_attr(not(feature = "testkit"), allow(dead_code))]
    Faults {
        change: FaultChange,
        reply: Sender<Option<FaultStats>>,
    },
    /// Open a stream; the reply is its shared state, to wait on for the answer.
    OpenStream {
        peer: NodeName,
        service: String,
        init: Vec<u8>,
        deadline: Instant,
        reply: crate::mailbox::Sender<Result<Arc<Shared>, StreamError>>,
    },
}

/// Stream work from the threads holding streams to the reactor.
///
/// These travel on a queue of their own, unbounded but bounded in practice
/// by the streams themselves: a writer has at most its send buffer in
/// `Write`s, a reader reports consumption once per quarter window, and the
/// rest come once per stream. They must never be refused, or a stream
/// would be left half-closed.
#[derive(Debug)]
pub(crate) enum StreamCommand {
    Write {
        id: StreamId,
        frames: Vec<Vec<u8>>,
    },
    Finish {
        id: StreamId,
    },
    Consumed {
        id: StreamId,
        bytes: u64,
    },
    Stop {
        id: StreamId,
    },
    Reset {
        id: StreamId,
        code: ResetCode,
    },
    Accept {
        id: StreamId,
    },
    Refuse {
        id: StreamId,
        code: ResetCode,
        detail: String,
    },
}

/// Where a stream's halves send their [`StreamCommand`]s.
#[derive(Clone, Debug)]
pub(crate) struct StreamTx {
    pub tx: Sender<StreamCommand>,
    pub waker: Arc<Waker>,
}

impl StreamTx {
    /// Queues a command and wakes the reactor; `false` once the node is gone.
    pub(crate) fn send(&self, command: StreamCommand) -> bool {
        if self.tx.send(command).is_err() {
            return false;
        }
        self.waker.wake();
        true
    }
}

/// A change to a node's fault plan.
#[cfg_attr(not(feature = "testkit"), allow(dead_code))]
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
            Command::OpenStream { reply, .. } => {
                let _ = reply.try_send(Err(StreamError::Closed));
            }
            // Dropping the reply channel tells the waiter the node is gone.
            Command::Disconnect { .. }
            | Command::Cast { .. }
            | Command::Cancel { .. }
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
    /// Bytes held for peers (see `core/memory.rs`).
    pub memory_held: usize,
}
