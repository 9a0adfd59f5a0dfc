//! The state one stream's halves share with the reactor: bytes that arrived,
//! bytes waiting to leave, and how the stream ended.
//!
//! The reactor fills it from the core's signals and deliveries; the reader
//! and the writer block on its condition variables. Nothing here talks to
//! the network: commands to the core go through [`StreamTx`](crate::node::StreamTx).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::core::{StreamId, StreamSignal};
use crate::error::StreamError;
use crate::node::deadlines;

/// Waits on `cv` until notified or until `deadline` (none: for ever);
/// returns whether the deadline passed. Callers check their conditions again
/// either way, so a wake-up that races the deadline is never lost.
fn wait(cv: &Condvar, s: &mut MutexGuard<'_, State>, deadline: Option<Instant>) -> bool {
    match deadline {
        Some(d) => cv.wait_until(s, d).timed_out(),
        None => {
            cv.wait(s);
            false
        }
    }
}

/// Bytes that arrived: a received frame (no copy) or an owned buffer.
pub(crate) enum Chunk {
    /// Part of a frame as libzmq received it.
    Frame(crate::zmq::Message, Range<usize>),
    /// Bytes copied out of a frame (after fault injection held it).
    Bytes(Vec<u8>, Range<usize>),
}

impl Chunk {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Frame(m, r) => m.as_bytes().get(r.clone()).unwrap_or_default(),
            Chunk::Bytes(v, r) => v.get(r.clone()).unwrap_or_default(),
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Chunk::Frame(_, r) | Chunk::Bytes(_, r) => r.start = (r.start + n).min(r.end),
        }
    }
}

/// Everything guarded by the stream's lock.
#[derive(Default)]
pub(crate) struct State {
    /// Opener: the peer accepted.
    pub accepted: bool,
    /// The stream failed: both halves report this (the reader after the
    /// bytes that arrived before it).
    pub failed: Option<StreamError>,
    /// The core forgot the stream: no signal or byte will come any more.
    pub released: bool,
    // Reading.
    chunks: VecDeque<Chunk>,
    /// Bytes in `chunks`.
    pub buffered: usize,
    /// The peer finished and every byte arrived: EOF after `chunks`.
    pub eof: bool,
    /// Bytes read and not yet reported to the core as consumed.
    pub unreported: u64,
    /// The reader was dropped or stopped.
    pub reader_gone: bool,
    // Writing.
    /// Bytes handed to the reactor and not yet sent.
    pub queued: u64,
    /// The peer reads no more.
    pub stopped: bool,
    /// The writer finished (or was dropped).
    pub writer_done: bool,
    // Acceptor.
    /// Whether accept or refuse was called (acceptor only).
    pub decided: bool,
    /// Whether the service handler returned (acceptor only).
    pub handler_returned: bool,
    /// Whether the `Incoming` was dropped undecided (acceptor only).
    pub incoming_dropped: bool,
    // Tasks waiting (the async faces of the condition variables).
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    /// An opener's acceptance deadline, registered with the deadline thread.
    timed: Option<deadlines::Key>,
}

/// Stores `cx`'s waker in `slot` unless the one there wakes the same task.
fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        slot => *slot = Some(cx.waker().clone()),
    }
}

/// A stream's shared state.
pub(crate) struct Shared {
    pub id: StreamId,
    pub peer: String,
    pub service: String,
    /// Bytes read before the reader reports them (a quarter of the window).
    pub report_every: u64,
    /// Bytes the writer may have queued at once.
    pub send_buffer: u64,
    /// Payload bytes per DATA frame.
    pub chunk: usize,
    state: Mutex<State>,
    /// Bytes, EOF, failure or acceptance.
    readable: Condvar,
    /// Room in the send buffer, stop, failure.
    writable: Condvar,
}

impl Shared {
    pub(crate) fn new(
        id: StreamId,
        peer: &str,
        service: &str,
        window: usize,
        chunk: usize,
        accepted: bool,
    ) -> Self {
        Shared {
            id,
            peer: peer.to_string(),
            service: service.to_string(),
            report_every: (window as u64 / 4).max(1),
            send_buffer: window as u64,
            chunk,
            state: Mutex::new(State {
                accepted,
                ..State::default()
            }),
            readable: Condvar::new(),
            writable: Condvar::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    // ---- from the reactor --------------------------------------------------

    /// Bytes arrived.
    pub(crate) fn push(&self, chunk: Chunk) {
        let len = chunk.bytes().len();
        if len == 0 {
            return;
        }
        let mut s = self.state.lock();
        if s.reader_gone {
            return;
        }
        s.buffered += len;
        s.chunks.push_back(chunk);
        let waker = s.read_waker.take();
        drop(s);
        self.readable.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// A signal from the core.
    pub(crate) fn signal(&self, signal: StreamSignal) {
        let mut s = self.state.lock();
        match signal {
            StreamSignal::Accepted => s.accepted = true,
            StreamSignal::Sent(bytes) => s.queued = s.queued.saturating_sub(bytes),
            StreamSignal::Finished => s.eof = true,
            StreamSignal::Stopped => {
                s.stopped = true;
                s.queued = 0;
            }
            StreamSignal::Failed(error) => {
                if s.failed.is_none() {
                    s.failed = Some(error);
                }
                s.queued = 0;
            }
            StreamSignal::Released => {
                s.released = true;
                let reader_over = s.eof || s.reader_gone;
                let writer_over = s.writer_done || s.stopped;
                if s.failed.is_none() && !(reader_over && writer_over) {
                    // Forgotten without an ending a half could report (a
                    // refused stream): nobody may wait for it.
                    s.failed = Some(StreamError::Closed);
                }
            }
        }
        let wakers = [s.read_waker.take(), s.write_waker.take()];
        drop(s);
        self.readable.notify_all();
        self.writable.notify_all();
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
    }

    // ---- for the halves ----------------------------------------------------

    /// Waits until the opener's stream is accepted or failed, or `deadline`.
    pub(crate) fn wait_accepted(&self, deadline: Instant) -> Result<(), StreamError> {
        let mut s = self.state.lock();
        loop {
            if let Some(done) = accepted_now(&s, deadline) {
                return done;
            }
            wait(&self.readable, &mut s, Some(deadline));
        }
    }

    /// [`Shared::wait_accepted`] for a task; the deadline wakes it through
    /// the process's deadline thread.
    pub(crate) fn poll_accepted(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        deadline: Instant,
    ) -> Poll<Result<(), StreamError>> {
        let mut s = self.state.lock();
        if let Some(done) = accepted_now(&s, deadline) {
            let timed = s.timed.take();
            drop(s);
            if let Some(key) = timed {
                deadlines::forget(key);
            }
            return Poll::Ready(done);
        }
        // Nobody reads yet while the opener waits: the reader's slot is free.
        park(&mut s.read_waker, cx);
        if s.timed.is_none() {
            let weak: std::sync::Weak<Shared> = Arc::downgrade(self);
            s.timed = Some(deadlines::wake_at(deadline, weak));
        }
        Poll::Pending
    }

    /// Copies what arrived into `buf`, waiting until something did, the
    /// stream ended, or `deadline`. Returns the count (0 at EOF) and, when
    /// enough was read, the bytes to report to the core as consumed.
    pub(crate) fn read(
        &self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<(usize, Option<u64>), ReadError> {
        let mut s = self.state.lock();
        let mut timed_out = false;
        loop {
            if let Some(done) = self.read_now(&mut s, buf) {
                return done;
            }
            if timed_out {
                return Err(ReadError::TimedOut);
            }
            timed_out = wait(&self.readable, &mut s, deadline);
        }
    }

    /// [`Shared::read`] for a task: `Pending` (and woken later) instead of waiting.
    pub(crate) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<Result<(usize, Option<u64>), ReadError>> {
        let mut s = self.state.lock();
        match self.read_now(&mut s, buf) {
            Some(done) => Poll::Ready(done),
            None => {
                park(&mut s.read_waker, cx);
                Poll::Pending
            }
        }
    }

    /// What a read gets now, if it need not wait.
    fn read_now(
        &self,
        s: &mut State,
        buf: &mut [u8],
    ) -> Option<Result<(usize, Option<u64>), ReadError>> {
        if s.buffered > 0 {
            let mut n = 0;
            while n < buf.len() {
                let Some(front) = s.chunks.front_mut() else {
                    break;
                };
                let bytes = front.bytes();
                let take = bytes.len().min(buf.len() - n);
                buf[n..n + take].copy_from_slice(&bytes[..take]);
                n += take;
                if take == bytes.len() {
                    s.chunks.pop_front();
                } else {
                    front.advance(take);
                }
            }
            s.buffered -= n;
            s.unreported += n as u64;
            let report = (s.unreported >= self.report_every && !s.eof)
                .then(|| std::mem::take(&mut s.unreported));
            return Some(Ok((n, report)));
        }
        if s.eof {
            return Some(Ok((0, None)));
        }
        if let Some(e) = &s.failed {
            return Some(Err(ReadError::Stream(e.clone())));
        }
        if buf.is_empty() {
            return Some(Ok((0, None)));
        }
        None
    }

    /// Reserves room for up to `want` bytes in the send buffer, waiting
    /// until there is some, the stream ended, or `deadline`.
    pub(crate) fn reserve(
        &self,
        want: usize,
        deadline: Option<Instant>,
    ) -> Result<usize, WriteError> {
        let mut s = self.state.lock();
        let mut timed_out = false;
        loop {
            if let Some(done) = self.reserve_now(&mut s, want) {
                return done;
            }
            if timed_out {
                return Err(WriteError::TimedOut);
            }
            timed_out = wait(&self.writable, &mut s, deadline);
        }
    }

    /// [`Shared::reserve`] for a task.
    pub(crate) fn poll_reserve(
        &self,
        cx: &mut Context<'_>,
        want: usize,
    ) -> Poll<Result<usize, WriteError>> {
        let mut s = self.state.lock();
        match self.reserve_now(&mut s, want) {
            Some(done) => Poll::Ready(done),
            None => {
                park(&mut s.write_waker, cx);
                Poll::Pending
            }
        }
    }

    /// What a reservation gets now, if it need not wait.
    fn reserve_now(&self, s: &mut State, want: usize) -> Option<Result<usize, WriteError>> {
        if let Some(e) = &s.failed {
            return Some(Err(WriteError::Stream(e.clone())));
        }
        if s.stopped {
            return Some(Err(WriteError::Stream(StreamError::Stopped)));
        }
        if s.writer_done {
            return Some(Err(WriteError::Finished));
        }
        if s.queued < self.send_buffer {
            let room = usize::try_from(self.send_buffer - s.queued).unwrap_or(usize::MAX);
            let n = want.min(room);
            s.queued += n as u64;
            return Some(Ok(n));
        }
        None
    }

    /// Gives back a reservation that could not be handed to the reactor.
    pub(crate) fn unreserve(&self, n: usize) {
        let mut s = self.state.lock();
        s.queued = s.queued.saturating_sub(n as u64);
    }

    /// Waits until every queued byte has gone to the link.
    pub(crate) fn drain(&self, deadline: Option<Instant>) -> Result<(), WriteError> {
        let mut s = self.state.lock();
        let mut timed_out = false;
        loop {
            if let Some(done) = drained_now(&s) {
                return done;
            }
            if timed_out {
                return Err(WriteError::TimedOut);
            }
            timed_out = wait(&self.writable, &mut s, deadline);
        }
    }

    /// [`Shared::drain`] for a task.
    pub(crate) fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<Result<(), WriteError>> {
        let mut s = self.state.lock();
        match drained_now(&s) {
            Some(done) => Poll::Ready(done),
            None => {
                park(&mut s.write_waker, cx);
                Poll::Pending
            }
        }
    }

    /// Bytes the writer has queued that have not reached the link yet.
    pub(crate) fn queued(&self) -> u64 {
        self.state.lock().queued
    }

    /// Bytes that arrived and were not read yet.
    pub(crate) fn buffered(&self) -> usize {
        self.state.lock().buffered
    }
}

/// The answer to an open, if there is one by now.
fn accepted_now(s: &State, deadline: Instant) -> Option<Result<(), StreamError>> {
    if let Some(e) = &s.failed {
        Some(Err(e.clone()))
    } else if s.accepted {
        Some(Ok(()))
    } else if Instant::now() >= deadline {
        Some(Err(StreamError::Timeout))
    } else {
        None
    }
}

impl deadlines::Expire for Shared {
    fn expire(&self) {
        let waker = self.state.lock().read_waker.take();
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// Whether the send buffer is empty (or can never empty), if a drain need not wait.
fn drained_now(s: &State) -> Option<Result<(), WriteError>> {
    if let Some(e) = &s.failed {
        return Some(Err(WriteError::Stream(e.clone())));
    }
    if s.stopped {
        return Some(Err(WriteError::Stream(StreamError::Stopped)));
    }
    (s.queued == 0).then_some(Ok(()))
}

/// Why a read returned no bytes.
pub(crate) enum ReadError {
    Stream(StreamError),
    TimedOut,
}

/// Why a write or flush did not complete.
pub(crate) enum WriteError {
    Stream(StreamError),
    Finished,
    TimedOut,
}

impl From<ReadError> for std::io::Error {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Stream(e) => e.into(),
            ReadError::TimedOut => {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "stream read timed out")
            }
        }
    }
}

impl From<WriteError> for std::io::Error {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Stream(e) => e.into(),
            WriteError::Finished => std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the stream was finished for writing",
            ),
            WriteError::TimedOut => {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "stream write timed out")
            }
        }
    }
}
