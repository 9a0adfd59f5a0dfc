//! Stream services: what a node runs when a peer opens a stream to it.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::halves::Stream;
use crate::error::StreamError;
use crate::node::{HandlerError, Service, Shared, StreamCommand, StreamTx};
use crate::protocol::ResetCode;

/// A stream a peer wants to open, handed to the service's handler, which
/// accepts it (getting its end of the stream) or refuses it.
///
/// A handler that returns without deciding refuses the stream, with its
/// error's message if it returned one. If the `Incoming` is moved elsewhere
/// (another thread), whoever holds it decides; dropping it undecided refuses.
pub struct Incoming<T> {
    init: T,
    decision: Decision,
}

/// The part of an [`Incoming`] that refuses the stream if dropped undecided.
struct Decision {
    shared: Arc<Shared>,
    tx: StreamTx,
}

impl<T> std::fmt::Debug for Incoming<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("peer", &self.decision.shared.peer)
            .field("service", &self.decision.shared.service)
            .finish()
    }
}

impl<T> Incoming<T> {
    /// Who opens the stream (in CURVE mode, its public key).
    pub fn peer(&self) -> &str {
        &self.decision.shared.peer
    }

    /// The service it was opened for.
    pub fn service(&self) -> &str {
        &self.decision.shared.service
    }

    /// The opener's init data.
    pub fn init(&self) -> &T {
        &self.init
    }

    /// Whether the stream already ended before it was decided (the opener
    /// gave up waiting, or was lost): [`accept`](Self::accept) would fail.
    /// A service that queues incoming streams can drop such ones unanswered.
    pub fn is_abandoned(&self) -> bool {
        self.decision.shared.lock().failed.is_some()
    }

    /// Accepts the stream; returns the init data and this end of the stream.
    /// Fails if the stream ended meanwhile (the opener gave up, or was lost).
    pub fn accept(self) -> Result<(T, Stream), StreamError> {
        let Incoming { init, decision } = self;
        let mut s = decision.shared.lock();
        s.decided = true;
        if let Some(e) = &s.failed {
            return Err(e.clone());
        }
        drop(s);
        let id = decision.shared.id;
        if !decision.tx.send(StreamCommand::Accept { id }) {
            return Err(StreamError::Closed);
        }
        Ok((
            init,
            Stream::new(decision.shared.clone(), decision.tx.clone()),
        ))
    }

    /// Refuses the stream: the opener's `open_stream` fails with
    /// [`StreamError::Refused`] carrying `reason`.
    pub fn refuse(self, reason: impl std::fmt::Display) {
        let d = &self.decision;
        refuse(&d.shared, &d.tx, ResetCode::Refused, reason.to_string());
    }
}

impl Drop for Decision {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        if s.decided {
            return;
        }
        if !s.handler_returned {
            // The handler still runs: it refuses with its own words when it returns.
            s.incoming_dropped = true;
            return;
        }
        drop(s);
        let detail = "the stream was not accepted".to_string();
        refuse(&self.shared, &self.tx, ResetCode::Refused, detail);
    }
}

/// `handler` as the node runs it: decodes the init data and runs the
/// user's closure on the stream's own thread.
pub(crate) fn erase<T, F>(handler: F) -> Service
where
    T: DeserializeOwned + Send + 'static,
    F: Fn(Incoming<T>) -> Result<(), HandlerError> + Send + Sync + 'static,
{
    Arc::new(move |shared: Arc<Shared>, tx: StreamTx, init: &[u8]| {
        run(&handler, shared, tx, init);
    })
}

/// Runs a handler: decode, call, and refuse if it did not decide.
fn run<T, F>(handler: &F, shared: Arc<Shared>, tx: StreamTx, init: &[u8])
where
    T: DeserializeOwned,
    F: Fn(Incoming<T>) -> Result<(), HandlerError>,
{
    let init: T = match rmp_serde::from_slice(init) {
        Ok(init) => init,
        Err(e) => return refuse(&shared, &tx, ResetCode::BadInit, e.to_string()),
    };
    let incoming = Incoming {
        init,
        decision: Decision {
            shared: shared.clone(),
            tx: tx.clone(),
        },
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(incoming)));
    let reason = match &outcome {
        Ok(Ok(())) => "the stream was not accepted".to_string(),
        Ok(Err(e)) => e.message().to_string(),
        Err(_) => "the stream handler panicked".to_string(),
    };
    if let Err(_) | Ok(Err(_)) = &outcome {
        log::warn!("stream handler for {} failed: {reason}", shared.service);
    }
    let mut s = shared.lock();
    s.handler_returned = true;
    let dropped_undecided = !s.decided && s.incoming_dropped;
    drop(s);
    if dropped_undecided {
        refuse(&shared, &tx, ResetCode::Refused, reason);
    }
}

/// Refuses the stream unless accept or refuse was already called.
fn refuse(shared: &Shared, tx: &StreamTx, code: ResetCode, detail: String) {
    let mut s = shared.lock();
    if s.decided {
        return;
    }
    s.decided = true;
    drop(s);
    let _ = tx.send(StreamCommand::Refuse {
        id: shared.id,
        code,
        detail,
    });
}
