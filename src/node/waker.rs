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
    Ok((
        Waker {
            tx,
            pending: AtomicBool::new(false),
        },
        WakeReceiver { rx },
    ))
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
        // An RMW, so the clear acquires every earlier `wake`'s release: work
        // pushed before a wake is visible to the drain that follows.
        self.pending.swap(false, Ordering::AcqRel);
    }
}

impl WakeReceiver {
    pub(crate) fn fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    /// Consumes the bytes of pending wake-ups, leaving the flag set: while
    /// the reactor is awake, threads that push work need not write (it will
    /// look at its channels before it sleeps again).
    pub(crate) fn drain(&self, waker: &Waker) {
        let mut buf = [0u8; 64];
        loop {
            match (&self.rx).read(&mut buf) {
                Ok(n) if n == buf.len() => continue,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
        waker.pending.store(true, Ordering::Release);
    }

    /// The reactor woke for another reason than the waker: it is awake, so
    /// pushers need not write until it next prepares to sleep.
    pub(crate) fn stay_awake(&self, waker: &Waker) {
        waker.pending.store(true, Ordering::Release);
    }

    /// The reactor is about to block: from now on a `wake` must write. The
    /// reactor must look at its channels *after* this and block only if they
    /// are empty: work pushed before the clear was pushed by a thread that
    /// saw the flag set and did not write.
    pub(crate) fn before_sleep(&self, waker: &Waker) {
        waker.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::zmq::{PollItem, poll};

    /// Many threads wake while the "reactor" drains: after the last wake,
    /// the receiver must always become readable (no lost wake-up).
    #[test]
    fn no_wake_up_is_lost_under_contention() {
        let (waker, rx) = pair().unwrap();
        let waker = Arc::new(waker);
        for _round in 0..200 {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let w = waker.clone();
                    std::thread::spawn(move || {
                        for _ in 0..50 {
                            w.wake();
                        }
                    })
                })
                .collect();
            for _ in 0..20 {
                rx.drain(&waker);
                rx.before_sleep(&waker);
            }
            for t in threads {
                t.join().unwrap();
            }
            // The reactor is about to sleep: one more wake must be seen.
            rx.before_sleep(&waker);
            waker.wake();
            let mut items = [PollItem::fd_readable(rx.fd())];
            let ready = poll(&mut items, Some(Duration::from_secs(5))).unwrap();
            assert_eq!(ready, 1, "a wake-up was lost");
            rx.drain(&waker);
            rx.before_sleep(&waker);
        }
    }
}
