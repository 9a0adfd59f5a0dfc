//! A queue bounded by a count but allocated as it fills: the commands from
//! user threads to the reactor.
//!
//! A bounded crossbeam channel allocates all its slots up front: the
//! default of 65 536 commands took 8 MB of every idle node. This one is an
//! unbounded (list) channel with a count beside it: a sender takes a place
//! before it sends and the receiver gives it back after it received, so the
//! queue never holds more than `capacity` items, and memory follows what is
//! queued. The count can only be higher than what the channel holds (a
//! place is taken before the item is in, given back after it is out), so
//! the bound is exact for senders.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError, unbounded};

/// Places taken, and how many there are.
#[derive(Debug)]
struct Places {
    taken: AtomicUsize,
    capacity: usize,
}

/// The sending side (cloned by every handle).
#[derive(Debug)]
pub(crate) struct QueueTx<T> {
    tx: Sender<T>,
    places: Arc<Places>,
}

impl<T> Clone for QueueTx<T> {
    fn clone(&self) -> Self {
        QueueTx {
            tx: self.tx.clone(),
            places: self.places.clone(),
        }
    }
}

/// The receiving side.
#[derive(Debug)]
pub(crate) struct QueueRx<T> {
    rx: Receiver<T>,
    places: Arc<Places>,
}

impl<T> Clone for QueueRx<T> {
    fn clone(&self) -> Self {
        QueueRx {
            rx: self.rx.clone(),
            places: self.places.clone(),
        }
    }
}

/// A queue of at most `capacity` items.
pub(crate) fn queue<T>(capacity: usize) -> (QueueTx<T>, QueueRx<T>) {
    let (tx, rx) = unbounded();
    let places = Arc::new(Places {
        taken: AtomicUsize::new(0),
        capacity,
    });
    (
        QueueTx {
            tx,
            places: places.clone(),
        },
        QueueRx { rx, places },
    )
}

impl<T> QueueTx<T> {
    /// Queues `item`, or hands it back if the queue is full or its
    /// receivers are gone.
    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let places = &self.places;
        let took = places
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < places.capacity).then_some(n + 1)
            });
        if took.is_err() {
            return Err(TrySendError::Full(item));
        }
        self.tx.try_send(item).inspect_err(|_| {
            places.taken.fetch_sub(1, Ordering::AcqRel);
        })
    }
}

impl<T> QueueRx<T> {
    /// The next item, if one is queued.
    pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
        let item = self.rx.try_recv()?;
        self.places.taken.fetch_sub(1, Ordering::AcqRel);
        Ok(item)
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_its_capacity_and_frees_places_as_items_leave() {
        let (tx, rx) = queue(3);
        for i in 0..3 {
            tx.try_send(i).unwrap();
        }
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.try_recv(), Ok(0));
        tx.try_send(3).unwrap();
        let got: Vec<i32> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        assert_eq!(got, [1, 2, 3]);
        assert!(rx.is_empty());
    }

    #[test]
    fn a_queue_without_receivers_refuses_and_keeps_no_place() {
        let (tx, rx) = queue(1);
        drop(rx);
        assert!(matches!(tx.try_send(1), Err(TrySendError::Disconnected(1))));
        assert_eq!(tx.places.taken.load(Ordering::Acquire), 0);
    }

    #[test]
    fn many_senders_never_pass_the_bound() {
        let (tx, rx) = queue::<u32>(100);
        let sent: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let tx = tx.clone();
                    s.spawn(move || (0..1000).filter(|&i| tx.try_send(i).is_ok()).count())
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(sent, 100);
        assert_eq!(std::iter::from_fn(|| rx.try_recv().ok()).count(), 100);
    }
}
