//! [`Stream`] and its two halves, [`StreamReader`] and [`StreamWriter`].

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::shared::Shared;
use crate::node::{StreamCommand, StreamTx};
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
        if let Some(bytes) = report {
            // A closed node fails the stream through its shared state too,
            // which the next read reports.
            let _ = self.tx.send(StreamCommand::Consumed {
                id: self.shared.id,
                bytes,
            });
        }
        Ok(n)
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
        let frames: Vec<Vec<u8>> = buf[..n]
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

    /// Waits until everything written has gone to the network (not until
    /// the peer has read it: for that, have it answer).
    fn flush(&mut self) -> io::Result<()> {
        Ok(self.shared.drain(deadline(self.timeout))?)
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
