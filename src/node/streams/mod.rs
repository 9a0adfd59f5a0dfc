//! The reactor's side of streams: the shared state of every live stream,
//! the commands its halves send, and the threads that run stream services.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{Receiver, TryRecvError};

use super::command::{CallSink, StreamCommand, StreamTx};
use crate::core::{IncomingStream, Mesh, StreamId, StreamSignal};
use crate::error::StreamError;
use crate::protocol::{NodeName, ResetCode};
pub(crate) mod services;
pub(crate) mod shared;

pub(crate) use services::{Service, Services};
pub(crate) use shared::{Chunk, Shared};

/// Live streams and what serves them.
pub(crate) struct StreamHost {
    streams: HashMap<StreamId, Arc<Shared>>,
    services: Arc<Services>,
    /// Given to every new stream's halves.
    tx: StreamTx,
    rx: Receiver<StreamCommand>,
    window: usize,
    chunk: usize,
    node: String,
}

impl StreamHost {
    pub(crate) fn new(
        services: Arc<Services>,
        tx: StreamTx,
        rx: Receiver<StreamCommand>,
        window: usize,
        chunk: usize,
        node: &str,
    ) -> Self {
        StreamHost {
            streams: HashMap::new(),
            services,
            tx,
            rx,
            window,
            chunk,
            node: node.to_string(),
        }
    }

    /// Opens a stream in the core and returns its shared state.
    pub(crate) fn open(
        &mut self,
        mesh: &mut Mesh<CallSink>,
        peer: &NodeName,
        service: &str,
        init: &[u8],
        deadline: Instant,
        now: Instant,
    ) -> Result<Arc<Shared>, StreamError> {
        let id = mesh.handle_open_stream(peer, service, init, deadline, now)?;
        let shared = Arc::new(Shared::new(
            id,
            peer.as_str(),
            service,
            self.window,
            self.chunk,
            false,
        ));
        self.streams.insert(id, shared.clone());
        Ok(shared)
    }

    /// Applies a signal from the core.
    pub(crate) fn signal(&mut self, id: StreamId, signal: StreamSignal) {
        let released = signal == StreamSignal::Released;
        if let Some(shared) = self.streams.get(&id) {
            shared.signal(signal);
        }
        if released {
            self.streams.remove(&id);
        }
    }

    /// Bytes for stream `id`.
    pub(crate) fn deliver(&mut self, id: StreamId, chunk: Chunk) {
        if let Some(shared) = self.streams.get(&id) {
            shared.push(chunk);
        }
    }

    /// A peer opened a stream: run its service on a thread of its own, or
    /// refuse it.
    pub(crate) fn incoming(&mut self, mesh: &mut Mesh<CallSink>, incoming: IncomingStream) {
        let IncomingStream {
            id,
            peer,
            service,
            init,
        } = incoming;
        let Some(handler) = self.services.get(&service) else {
            log::debug!("{peer} opened a stream for unknown service {service:?}");
            mesh.handle_refuse_stream(id, ResetCode::UnknownService, "");
            return;
        };
        let shared = Arc::new(Shared::new(
            id,
            peer.as_str(),
            &service,
            self.window,
            self.chunk,
            true,
        ));
        self.streams.insert(id, shared.clone());
        let tx = self.tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("bilateral-stream-{}", self.node))
            .spawn(move || handler(shared, tx, &init));
        if let Err(e) = spawned {
            log::warn!("cannot start a thread for a stream from {peer}: {e}");
            mesh.handle_refuse_stream(id, ResetCode::Overloaded, "no thread for the stream");
        }
    }

    /// Hands queued stream commands to the core; returns whether there were any.
    pub(crate) fn drain(&mut self, mesh: &mut Mesh<CallSink>, now: Instant) -> bool {
        let mut any = false;
        loop {
            let command = match self.rx.try_recv() {
                Ok(c) => c,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return any,
            };
            any = true;
            match command {
                StreamCommand::Write { id, frames } => {
                    for frame in frames {
                        mesh.handle_stream_write(id, frame, now);
                    }
                }
                StreamCommand::Finish { id } => mesh.handle_stream_finish(id, now),
                StreamCommand::Consumed { id, bytes } => {
                    mesh.handle_stream_consumed(id, bytes, now)
                }
                StreamCommand::Stop { id } => mesh.handle_stream_stop(id, now),
                StreamCommand::Reset { id, code } => mesh.handle_stream_reset(id, code),
                StreamCommand::Accept { id } => mesh.handle_accept_stream(id, now),
                StreamCommand::Refuse { id, code, detail } => {
                    mesh.handle_refuse_stream(id, code, &detail)
                }
            }
        }
    }

    /// Whether stream commands wait.
    pub(crate) fn has_work(&self) -> bool {
        !self.rx.is_empty()
    }

    /// The node closed: whatever stream is left fails.
    pub(crate) fn close(&mut self) {
        for (_, shared) in self.streams.drain() {
            shared.signal(StreamSignal::Failed(StreamError::Closed));
            shared.signal(StreamSignal::Released);
        }
    }
}
