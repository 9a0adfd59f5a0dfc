//! [`Stream`] and its two halves, [`StreamReader`] and [`StreamWriter`].

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::node::{Shared, StreamCommand, StreamTx};
use crate::protocol::{DATA_HEADER_LEN, ResetCode};

/// A byte stream to one peer: [`Read`] what it writes, [`Write`] what it
/// reads, both blocking.
///
/// Bytes arrive complete and in order, or the stream fails: a lost peer, a
/// reset, or bytes lost in transit end it with an error in both halves,
/// never with a shortened sequence that looks complete. The peer's reader
/// reaches the end of the stream only after [`Stream::finish`].
///
/// Dropping a stream (or its writer) that was not finished **resets** it:
/// the peer's reader gets [`StreamError::Cancelled`](crate::StreamError::Cancelled)
/// instead of an end of stream, so a writer that fails halfway never passes
/// for a complete one.
pub struct Stream {
    reader: StreamReader,
    writer: StreamWriter,
}

/// The reading half of a [`Stream`] (see [`Stream::split`]).
///
/// Dropping it before the end tells the peer to stop writing: its writes
/// then fail with [`StreamError::Stopped`](crate::StreamError::Stopped).
pub struct StreamReader {
    shared: Arc<Shared>,
    tx: StreamTx,
    timeout: Option<Duration>,
}

/// The writing half of a [`Stream`] (see [`Stream::split`]).
///
/// `write` blocks while the stream's send buffer (the stream window) is
/// full, which is how a slow reader holds back its writer. Dropping an
/// unfinished writer resets the stream.
pub struct StreamWriter {
    shared: Arc<Shared>,
    tx: StreamTx,
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("peer", &self.reader.shared.peer)
            .field("service", &self.reader.shared.service)
            .finish()
    }
}

impl std::fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StreamReader({} {})",
            self.shared.peer, self.shared.service
        )
    }
}

impl std::fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StreamWriter({} {})",
            self.shared.peer, self.shared.service
        )
    }
}

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

impl Stream {
    pub(crate) fn new(shared: Arc<Shared>, tx: StreamTx) -> Self {
        Stream {
            reader: StreamReader {
                shared: shared.clone(),
                tx: tx.clone(),
                timeout: None,
            },
            writer: StreamWriter {
                shared,
                tx,
                timeout: None,
            },
        }
    }

    /// The peer at the other end.
    pub fn peer(&self) -> &str {
        &self.reader.shared.peer
    }

    /// The service the stream was opened for.
    pub fn service(&self) -> &str {
        &self.reader.shared.service
    }

    /// Separates the halves, to read and write from two threads.
    pub fn split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }

    /// Puts the halves back together.
    ///
    /// # Panics
    ///
    /// If they belong to different streams.
    pub fn unsplit(reader: StreamReader, writer: StreamWriter) -> Stream {
        assert!(
            Arc::ptr_eq(&reader.shared, &writer.shared),
            "the halves belong to different streams"
        );
        Stream { reader, writer }
    }

    /// How long a read may block (`None`, the default: for ever). A read
    /// that times out fails with [`io::ErrorKind::TimedOut`] and the stream
    /// stays usable.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.reader.set_timeout(timeout);
    }

    /// How long a write or flush may block (`None`, the default: for ever).
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) {
        self.writer.set_timeout(timeout);
    }

    /// Half-close: no more writing; the peer's reader reaches the end of
    /// the stream after the bytes written so far. Reading goes on.
    pub fn finish(&mut self) -> io::Result<()> {
        self.writer.finish()
    }

    /// Finishes writing and stops reading: the orderly end of a stream.
    pub fn close(self) -> io::Result<()> {
        let Stream { reader, mut writer } = self;
        let result = writer.finish();
        drop(reader);
        result
    }

    /// Ends the stream at once in both directions: the peer's halves fail
    /// with [`StreamError::Cancelled`](crate::StreamError::Cancelled).
    pub fn reset(self) {
        self.writer.reset();
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

impl futures_io::AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.reader.poll_read_bytes(cx, buf)
    }
}

impl futures_io::AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.writer.poll_write_bytes(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writer.poll_flush_bytes(cx)
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.get_mut().writer.finish())
    }
}

/// tokio's I/O traits, over the same state (the `tokio` feature).
#[cfg(feature = "tokio")]
mod tokio_io {
    use super::*;
    use tokio::io::ReadBuf;

    fn read_into(
        reader: &StreamReader,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let unfilled = buf.initialize_unfilled();
        match reader.poll_read_bytes(cx, unfilled) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    impl tokio::io::AsyncRead for StreamReader {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            read_into(&self, cx, buf)
        }
    }

    impl tokio::io::AsyncRead for Stream {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            read_into(&self.reader, cx, buf)
        }
    }

    impl tokio::io::AsyncWrite for StreamWriter {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_bytes(cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.poll_flush_bytes(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(self.get_mut().finish())
        }
    }

    impl tokio::io::AsyncWrite for Stream {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writer.poll_write_bytes(cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.writer.poll_flush_bytes(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(self.get_mut().writer.finish())
        }
    }
}

impl StreamReader {
    /// The peer at the other end.
    pub fn peer(&self) -> &str {
        &self.shared.peer
    }

    /// How long a read may block (`None`: for ever).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Bytes that arrived and wait to be read (never more than the stream window).
    pub fn buffered(&self) -> usize {
        self.shared.buffered()
    }
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (n, report) = self.shared.read(buf, deadline(self.timeout))?;
        Ok(self.consumed(n, report))
    }
}

impl StreamReader {
    /// Tells the core what was read (once per quarter window); returns `n`.
    fn consumed(&self, n: usize, report: Option<u64>) -> usize {
        if let Some(bytes) = report {
            // A closed node fails the stream through its shared state too,
            // which the next read reports.
            let _ = self.tx.send(StreamCommand::Consumed {
                id: self.shared.id,
                bytes,
            });
        }
        n
    }

    fn poll_read_bytes(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        match self.shared.poll_read(cx, buf) {
            Poll::Ready(Ok((n, report))) => Poll::Ready(Ok(self.consumed(n, report))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The async face of [`Read`]: the same bytes, the same endings. The read
/// timeout applies to blocking reads only; in async code use the runtime's.
impl futures_io::AsyncRead for StreamReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_bytes(cx, buf)
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        s.reader_gone = true;
        let tell = !s.eof && s.failed.is_none() && !s.released;
        drop(s);
        if tell {
            let _ = self.tx.send(StreamCommand::Stop { id: self.shared.id });
        }
    }
}

impl StreamWriter {
    /// The peer at the other end.
    pub fn peer(&self) -> &str {
        &self.shared.peer
    }

    /// How long a write or flush may block (`None`: for ever).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Bytes written that have not yet gone to the network (at most the
    /// stream window): the writer's share of the stream's memory.
    pub fn queued(&self) -> u64 {
        self.shared.queued()
    }

    /// Half-close: the peer reads to the end of what was written, then EOF.
    /// Idempotent; fails if the stream already failed.
    pub fn finish(&mut self) -> io::Result<()> {
        let mut s = self.shared.lock();
        if let Some(e) = &s.failed {
            return Err(e.clone().into());
        }
        if s.writer_done {
            return Ok(());
        }
        s.writer_done = true;
        drop(s);
        if !self.tx.send(StreamCommand::Finish { id: self.shared.id }) {
            return Err(crate::StreamError::Closed.into());
        }
        Ok(())
    }

    /// Ends the stream at once in both directions.
    pub fn reset(self) {
        let mut s = self.shared.lock();
        let tell = s.failed.is_none() && !s.released;
        s.writer_done = true;
        s.failed.get_or_insert(crate::StreamError::CancelledHere);
        drop(s);
        if tell {
            let _ = self.tx.send(StreamCommand::Reset {
                id: self.shared.id,
                code: ResetCode::Cancelled,
            });
        }
        // Drop has nothing left to do.
    }
}

impl Write for StreamWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.shared.reserve(buf.len(), deadline(self.timeout))?;
        self.send_reserved(&buf[..n])
    }

    /// Waits until everything written has gone to the network (not until
    /// the peer has read it: for that, have it answer).
    fn flush(&mut self) -> io::Result<()> {
        Ok(self.shared.drain(deadline(self.timeout))?)
    }
}

/// The async face of [`Write`]. `poll_close` finishes the stream (the peer
/// reads to the end); the write timeout applies to blocking writes only.
impl futures_io::AsyncWrite for StreamWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_bytes(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush_bytes(cx)
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.get_mut().finish())
    }
}

impl StreamWriter {
    fn poll_flush_bytes(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.poll_drain(cx).map_err(io::Error::from)
    }

    fn poll_write_bytes(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match self.shared.poll_reserve(cx, buf.len()) {
            Poll::Ready(Ok(n)) => Poll::Ready(self.send_reserved(&buf[..n])),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Hands bytes the send buffer has room for (reserved) to the reactor.
    fn send_reserved(&self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len();
        let frames: Vec<Vec<u8>> = buf
            .chunks(self.shared.chunk)
            .map(|piece| {
                // Room for the header in front, so the payload is copied once.
                let mut frame = Vec::with_capacity(DATA_HEADER_LEN + piece.len());
                frame.resize(DATA_HEADER_LEN, 0);
                frame.extend_from_slice(piece);
                frame
            })
            .collect();
        let id = self.shared.id;
        if !self.tx.send(StreamCommand::Write { id, frames }) {
            self.shared.unreserve(n);
            return Err(crate::StreamError::Closed.into());
        }
        Ok(n)
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        let mut s = self.shared.lock();
        let abandon = !s.writer_done && s.failed.is_none() && !s.stopped && !s.released;
        s.writer_done = true;
        drop(s);
        if abandon {
            let _ = self.tx.send(StreamCommand::Reset {
                id: self.shared.id,
                code: ResetCode::Cancelled,
            });
        }
    }
}
