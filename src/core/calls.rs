//! The pending-call table: calls awaiting replies, matched on (peer, request id).
//!
//! A multicast call is one *group* with one request id and one entry per
//! targeted peer; replies are matched on `(peer, id)`, so the same id can go
//! to every target. Deadlines live in an ordered set, so expiring every due
//! call at once costs `O(k log n)` for `k` expired calls (the predecessor
//! looked only at the first entry of a list and expired one call per tick).

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use crate::core::errors::CallError;
use crate::protocol::NodeName;

/// A reply payload (MessagePack) or why there is none.
pub type Outcome = Result<Vec<u8>, CallError>;

/// One entry of a call settled: tell `completion` that target `index` ended with `outcome`.
#[derive(Debug)]
pub(crate) struct Resolved<C> {
    pub completion: C,
    pub index: usize,
    pub outcome: Outcome,
}

#[derive(Debug)]
struct Target {
    peer: NodeName,
    index: usize,
    waiting: bool,
}

#[derive(Debug)]
struct Group<C> {
    completion: C,
    deadline: Instant,
    targets: Vec<Target>,
    outstanding: usize,
}

/// Calls awaiting replies, with their deadlines.
#[derive(Debug)]
pub(crate) struct CallTable<C> {
    groups: HashMap<u64, Group<C>>,
    deadlines: BTreeSet<(Instant, u64)>,
    next_id: u64,
}

impl<C: Clone> CallTable<C> {
    /// A table whose request ids start at `first_id` (random per incarnation,
    /// so a reply meant for an earlier incarnation cannot match a new call).
    pub(crate) fn new(first_id: u64) -> Self {
        CallTable {
            groups: HashMap::new(),
            deadlines: BTreeSet::new(),
            next_id: first_id,
        }
    }

    /// Calls (groups) awaiting replies.
    pub(crate) fn len(&self) -> usize {
        self.groups.len()
    }

    /// A request id not in use.
    pub(crate) fn allocate_id(&mut self) -> u64 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1);
            if !self.groups.contains_key(&id) {
                return id;
            }
        }
    }

    /// Registers call `id` waiting on `targets` (peer, result index) until `deadline`.
    pub(crate) fn insert(
        &mut self,
        id: u64,
        completion: C,
        deadline: Instant,
        targets: Vec<(NodeName, usize)>,
    ) {
        if targets.is_empty() {
            return;
        }
        let outstanding = targets.len();
        let targets = targets
            .into_iter()
            .map(|(peer, index)| Target {
                peer,
                index,
                waiting: true,
            })
            .collect();
        self.deadlines.insert((deadline, id));
        self.groups.insert(
            id,
            Group {
                completion,
                deadline,
                targets,
                outstanding,
            },
        );
    }

    /// Settles the entry of `peer` in call `id`, if it is still waiting.
    pub(crate) fn resolve(
        &mut self,
        id: u64,
        peer: &NodeName,
        outcome: Outcome,
    ) -> Option<Resolved<C>> {
        let group = self.groups.get_mut(&id)?;
        let target = group
            .targets
            .iter_mut()
            .find(|t| t.waiting && &t.peer == peer)?;
        target.waiting = false;
        let index = target.index;
        group.outstanding -= 1;
        let completion = if group.outstanding == 0 {
            let group = self.groups.remove(&id)?;
            self.deadlines.remove(&(group.deadline, id));
            group.completion
        } else {
            group.completion.clone()
        };
        Some(Resolved {
            completion,
            index,
            outcome,
        })
    }

    /// Settles every entry waiting on `peer` with `error`.
    pub(crate) fn fail_peer(&mut self, peer: &NodeName, error: &CallError) -> Vec<Resolved<C>> {
        let ids: Vec<u64> = self
            .groups
            .iter()
            .filter(|(_, g)| g.targets.iter().any(|t| t.waiting && &t.peer == peer))
            .map(|(&id, _)| id)
            .collect();
        ids.into_iter()
            .filter_map(|id| self.resolve(id, peer, Err(error.clone())))
            .collect()
    }

    /// Forgets call `id` without settling its entries; whether it was pending.
    pub(crate) fn cancel(&mut self, id: u64) -> bool {
        let Some(group) = self.groups.remove(&id) else {
            return false;
        };
        self.deadlines.remove(&(group.deadline, id));
        true
    }

    /// The deadline of call `id` if it still waits for `peer`.
    pub(crate) fn deadline(&self, id: u64, peer: &NodeName) -> Option<Instant> {
        let group = self.groups.get(&id)?;
        group
            .targets
            .iter()
            .any(|t| t.waiting && &t.peer == peer)
            .then_some(group.deadline)
    }

    /// Settles every entry of every call whose deadline is at or before `now`.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Resolved<C>> {
        let mut out = Vec::new();
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(group) = self.groups.remove(&id) {
                Self::drain(group, &CallError::Timeout, &mut out);
            }
        }
        out
    }

    /// Settles everything with `error`.
    pub(crate) fn fail_all(&mut self, error: &CallError) -> Vec<Resolved<C>> {
        let mut out = Vec::new();
        self.deadlines.clear();
        for (_, group) in self.groups.drain() {
            Self::drain(group, error, &mut out);
        }
        out
    }

    fn drain(group: Group<C>, error: &CallError, out: &mut Vec<Resolved<C>>) {
        for t in group.targets.into_iter().filter(|t| t.waiting) {
            out.push(Resolved {
                completion: group.completion.clone(),
                index: t.index,
                outcome: Err(error.clone()),
            });
        }
    }

    /// The earliest deadline of any pending call.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(d, _)| d)
    }
}
