//! Data connections: byte streams between two nodes.
//!
//! A node registers a stream service with
//! [`Node::on_stream`](crate::Node::on_stream); a peer opens a stream to it
//! with [`Node::open_stream`](crate::Node::open_stream), passing init data
//! the service's handler sees before it accepts or refuses. Both ends then
//! hold a [`Stream`]: blocking [`std::io::Read`] and [`std::io::Write`], with
//! optional timeouts, a [`split`](Stream::split) into halves for two
//! threads, half-close with [`finish`](Stream::finish), and errors that name
//! the cause ([`StreamError`](crate::StreamError)) when the peer is lost,
//! resets the stream, or bytes go missing.
//!
//! Streams travel over the connections the mesh already has — the same
//! port, the same CURVE encryption and authentication, no extra sockets —
//! in chunks interleaved with calls, so a bulk transfer does not hold up
//! RPC traffic. Each stream has its own credit: a reader that falls behind
//! stops its writer once the stream window is in flight, and memory stays
//! bounded by that window on each side. The wire protocol is in
//! `PROTOCOL.md` §13.
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use std::time::Duration;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (server, client) = (bilateral::Node::builder("s").start()?, bilateral::Node::builder("c").start()?);
//! // On the receiving node: a service that reads everything and answers
//! // with the byte count.
//! server.on_stream("upload", |incoming: bilateral::stream::Incoming<String>| {
//!     let (name, mut stream) = incoming.accept()?;
//!     let mut data = Vec::new();
//!     stream.read_to_end(&mut data)?;
//!     stream.write_all(&(data.len() as u64).to_be_bytes())?;
//!     stream.finish()?;
//!     Ok(())
//! })?;
//!
//! // On the sending node.
//! let mut stream = client.open_stream("s", "upload", &"notes.txt", Duration::from_secs(5))?;
//! stream.write_all(b"hello")?;
//! stream.finish()?; // the server's read_to_end ends here
//! let mut count = [0u8; 8];
//! stream.read_exact(&mut count)?;
//! assert_eq!(u64::from_be_bytes(count), 5);
//! # Ok(()) }
//! ```

mod halves;
mod incoming;

pub use halves::{Stream, StreamReader, StreamWriter};
pub use incoming::Incoming;

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::node::{HandlerError, Node};
use crate::protocol::{MethodName, NodeName};

/// The stream service's entry points on the node.
impl Node {
    /// Registers the stream service `service`, replacing any previous one.
    ///
    /// When a peer opens a stream for it, `handler` runs on a thread of its
    /// own with an [`Incoming`](crate::Incoming): the opener's name and its
    /// init data decoded from MessagePack into `T`. The handler accepts the
    /// stream (and gets its end of it) or refuses it; returning without
    /// accepting refuses it, with the returned error's message if any. Init
    /// data that does not decode into `T` is refused as
    /// [`StreamError::BadInit`](crate::StreamError::BadInit) without running
    /// the handler, and a panic in the handler only ends its stream.
    ///
    /// At most [`NodeBuilder::max_streams`](crate::NodeBuilder::max_streams) streams (and so handler threads)
    /// are live at once, and at most [`NodeBuilder::max_streams_per_peer`](crate::NodeBuilder::max_streams_per_peer)
    /// opened by any one peer; further opens are refused as overloaded. Closing the
    /// node does not wait for handler threads: their streams fail with
    /// [`StreamError::Closed`](crate::StreamError::Closed), so a handler
    /// blocked on its stream returns then.
    pub fn on_stream<T, F>(&self, service: &str, handler: F) -> Result<(), Error>
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(crate::Incoming<T>) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        crate::node::user_method(service)?;
        self.stream_table()
            .insert(service, incoming::erase(handler));
        Ok(())
    }

    /// Removes the stream service `service`; returns whether there was one.
    /// Streams already accepted go on.
    pub fn remove_stream_service(&self, service: &str) -> bool {
        crate::protocol::reserved_service(service).is_none() && self.stream_table().remove(service)
    }

    /// The registered stream services, sorted.
    pub fn stream_services(&self) -> Vec<String> {
        self.stream_table().names()
    }

    /// Opens a byte stream to `peer`'s stream service `service`, passing
    /// `init` (encoded as MessagePack) to its handler. Returns once the
    /// handler accepted, with this end of the stream.
    ///
    /// Fails with [`StreamError::UnknownService`](crate::StreamError::UnknownService)
    /// if the peer has no such service, [`StreamError::Refused`](crate::StreamError::Refused)
    /// with the handler's reason, [`StreamError::BadInit`](crate::StreamError::BadInit)
    /// if the init data does not fit the service, `UnknownPeer` or
    /// `Unreachable` without a session, `PeerLost` if the session ends
    /// meanwhile, and [`StreamError::Timeout`](crate::StreamError::Timeout)
    /// without an answer within `timeout`.
    pub fn open_stream<T: Serialize + ?Sized>(
        &self,
        peer: &str,
        service: &str,
        init: &T,
        timeout: Duration,
    ) -> Result<crate::Stream, crate::StreamError> {
        use crate::StreamError;
        let deadline = Instant::now() + timeout;
        let peer = NodeName::new(peer).map_err(|_| StreamError::UnknownPeer)?;
        MethodName::new(service)
            .map_err(|reason| StreamError::Local(format!("service name {service:?}: {reason}")))?;
        let init = crate::node::encode(init).map_err(StreamError::Local)?;
        let answer = self.request_stream(peer, service, init, deadline)?;
        let shared = match answer.recv_deadline(Instant::now() + crate::node::REACTOR_ANSWER) {
            Ok(opened) => opened?,
            Err(_) => return Err(StreamError::Closed),
        };
        // The core fails the stream at the deadline; the margin only guards
        // against a reactor that stopped answering.
        shared.wait_accepted(deadline + crate::node::REACTOR_ANSWER)?;
        Ok(crate::Stream::new(shared, self.stream_tx().clone()))
    }

    /// [`Node::open_stream`] as a future: the init data is encoded at once,
    /// and nothing blocks a thread while the peer decides.
    pub fn open_stream_async<T: Serialize + ?Sized>(
        &self,
        peer: &str,
        service: &str,
        init: &T,
        timeout: Duration,
    ) -> impl Future<Output = Result<crate::Stream, crate::StreamError>> + Send + 'static + use<T>
    {
        use crate::StreamError;
        let deadline = Instant::now() + timeout;
        let requested = NodeName::new(peer)
            .map_err(|_| StreamError::UnknownPeer)
            .and_then(|peer| {
                MethodName::new(service).map_err(|reason| {
                    StreamError::Local(format!("service name {service:?}: {reason}"))
                })?;
                let init = crate::node::encode(init).map_err(StreamError::Local)?;
                self.request_stream(peer, service, init, deadline)
            });
        let tx = self.stream_tx().clone();
        async move {
            let answer = requested?;
            let guard = deadline + crate::node::REACTOR_ANSWER;
            let opened = std::future::poll_fn(|cx| answer.poll_recv(cx, Some(guard))).await;
            let shared = opened.map_err(|_| StreamError::Closed)??;
            std::future::poll_fn(|cx| shared.poll_accepted(cx, guard)).await?;
            Ok(crate::Stream::new(shared, tx))
        }
    }
}
