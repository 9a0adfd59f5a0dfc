//! The injector: applies a [`FaultPlan`] to items passing one way or the
//! other, holding delayed ones until they are due. Sans-IO: it takes the time
//! as an argument and never reads a clock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{FaultPlan, Faults};
use crate::core::Rng;

/// Which way an item travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Send,
    Receive,
}

/// What the injector did, since the plan was set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FaultStats {
    /// Messages dropped at random.
    pub dropped: u64,
    /// Messages dropped because of a partition.
    pub partitioned: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Messages delivered late (delay, jitter or reordering).
    pub delayed: u64,
}

/// Applies a fault plan to items of type `T`.
#[derive(Debug)]
pub(crate) struct FaultInjector<T> {
    plan: FaultPlan,
    rng: Rng,
    held: BTreeMap<(Instant, u64), T>,
    seq: u64,
    stats: FaultStats,
}

impl<T: Clone> FaultInjector<T> {
    pub(crate) fn new(plan: FaultPlan) -> Self {
        let rng = Rng::new(plan.seed);
        FaultInjector {
            plan,
            rng,
            held: BTreeMap::new(),
            seq: 0,
            stats: FaultStats::default(),
        }
    }

    pub(crate) fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// Replaces the plan; items already held stay held until due.
    pub(crate) fn set_plan(&mut self, plan: FaultPlan) {
        self.rng = Rng::new(plan.seed);
        self.plan = plan;
    }

    pub(crate) fn stats(&self) -> FaultStats {
        self.stats
    }

    /// Items held back, not yet due.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    fn faults(&self, direction: Direction, peer: &str) -> &Faults {
        let (overrides, general) = match direction {
            Direction::Send => (&self.plan.peer_send, &self.plan.send),
            Direction::Receive => (&self.plan.peer_receive, &self.plan.receive),
        };
        overrides.get(peer).unwrap_or(general)
    }

    /// An item travelling `direction` to or from `peer` at `now`: returns the
    /// copies to deliver at once (none, one or two); delayed copies are held
    /// and come out of [`FaultInjector::take_due`].
    pub(crate) fn apply(
        &mut self,
        direction: Direction,
        peer: &str,
        item: T,
        now: Instant,
    ) -> Vec<T> {
        let cut = match direction {
            Direction::Send => &self.plan.cut_send,
            Direction::Receive => &self.plan.cut_receive,
        };
        if cut.contains(peer) {
            self.stats.partitioned += 1;
            return Vec::new();
        }
        let faults = self.faults(direction, peer).clone();
        if faults.is_clean() {
            return vec![item];
        }
        if self.rng.next_f64() < faults.drop {
            self.stats.dropped += 1;
            return Vec::new();
        }
        let copies = if self.rng.next_f64() < faults.duplicate {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        let mut now_items = Vec::new();
        for _ in 0..copies {
            let mut delay = faults.delay + faults.jitter.mul_f64(self.rng.next_f64());
            if self.rng.next_f64() < faults.reorder {
                delay += faults.reorder_window.mul_f64(self.rng.next_f64());
            }
            if delay.is_zero() {
                now_items.push(item.clone());
            } else {
                self.stats.delayed += 1;
                self.seq += 1;
                self.held.insert((now + delay, self.seq), item.clone());
            }
        }
        now_items
    }

    /// When the next held item is due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.held.keys().next().map(|&(t, _)| t)
    }

    /// Every held item due at or before `now`, in due order.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<T> {
        let later = self.held.split_off(&(now + Duration::from_nanos(1), 0));
        std::mem::replace(&mut self.held, later)
            .into_values()
            .collect()
    }
}
