//! Wakes the reactor from `zmq_poll` when another thread has work for it.
//!
//! A Unix socket pair: user and worker threads write a byte to one end, the
//! reactor polls the other end's file descriptor next to its ZeroMQ sockets.
//! An atomic flag keeps it to one write per wake-up however many threads push
//! work in the meantime.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};

/// The writing end, shared by every thread that hands work to the reactor.
#[derive(Debug)]
pub(crate) struct Waker {
    tx: UnixStream,
    pending: AtomicBool,
}

/// The reading end, owned by the reactor.
#[derive(Debug)]
pub(crate) struct WakeReceiver {
    rx: UnixStream,
}

pub(crate) fn pair() -> std::io::Result<(Waker, WakeReceiver)> {
    let (tx, rx) = UnixStream::pair()?;
    tx.set_nonblocking(true)?;
    rx.set_nonblocking(true)?;
    Ok((Waker { tx, pending: AtomicBool::new(false) }, WakeReceiver { rx }))
}

impl Waker {
    /// Makes the reactor's next (or current) poll return. Call it after
    /// pushing work onto a channel the reactor drains.
    pub(crate) fn wake(&self) {
        if !self.pending.swap(true, Ordering::AcqRel) {
            // A full socket buffer already guarantees a wake-up; any other
            // error means the reactor is gone, which `close` handles.
            let _ = (&self.tx).write(&[1]);
        }
    }

    fn clear(&self) {
        self.pending.store(false, Ordering::Release);
    }
}

impl WakeReceiver {
    pub(crate) fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// Consumes pending wake-ups. The reactor must drain its channels *after*
    /// this, so work pushed while it runs triggers a fresh wake-up.
    pub(crate) fn drain(&self, waker: &Waker) {
        waker.clear();
        let mut buf = [0u8; 64];
        loop {
            match (&self.rx).read(&mut buf) {
                Ok(n) if n == buf.len() => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
    }
}
