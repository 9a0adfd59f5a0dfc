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
pub(crate) mod shared;

pub use halves::{Stream, StreamReader, StreamWriter};
pub use incoming::Incoming;

pub(crate) use incoming::Services;
