//! Who one node can reach through sessions both ends confirm, kept up to
//! date as records and sessions change, without walking the whole mesh on
//! every change.
//!
//! The graph: a vertex per node session that has a record here; an edge
//! between two when each one's record lists the other. The **roots** are
//! this node's own sessions; a session is *reached* when a path of edges
//! joins it to a root (a root with a record is reached itself).
//!
//! Adding can only reach more: a new edge or root that touches the reached
//! part spreads from there over what it newly joins, which costs what it
//! reaches and nothing else. Removing may cut any number of sessions off,
//! which only a walk from the roots can tell: a removal that may cut
//! something off marks the whole **stale**, and [`Reach::recompute`] walks
//! it once for any number of removals (the book does so when readers ask,
//! or after a short delay that lets a burst of removals share one walk).
//! While stale, [`Reach::reaches`] answers what held before.
//!
//! Owners are interned: the walk compares and hashes `u32`s, not names. An
//! id lives as long as a record, a root or a record's listing names it, so
//! this holds no more owners than the records themselves list.

use std::collections::{HashMap, VecDeque};

use super::wire::Owner;

type Id = u32;

#[derive(Debug)]
struct Slot {
    owner: Owner,
    /// Records that list it, plus one for its own record, plus one if it is a root.
    refs: u32,
    /// Whether it has a record here.
    record: bool,
    /// The sessions its record lists, as sorted ids.
    lists: Vec<Id>,
    /// One of this node's sessions.
    root: bool,
    reached: bool,
}

/// Incremental reachability over the records of one node (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Reach {
    ids: HashMap<Owner, Id>,
    slots: Vec<Option<Slot>>,
    free: Vec<Id>,
    stale: bool,
    /// Owners whose reached state changed since [`Reach::take_flipped`].
    flipped: Vec<Owner>,
    reached_count: usize,
}

impl Reach {
    /// Whether `owner` is reached (as of the last walk, if stale).
    pub(crate) fn reaches(&self, owner: &Owner) -> bool {
        self.ids
            .get(owner)
            .and_then(|&id| self.slot(id))
            .is_some_and(|s| s.reached)
    }

    /// Every reached owner, in no order.
    pub(crate) fn reached(&self) -> impl Iterator<Item = &Owner> {
        self.slots
            .iter()
            .flatten()
            .filter(|s| s.reached)
            .map(|s| &s.owner)
    }

    /// How many owners are reached.
    pub(crate) fn reached_count(&self) -> usize {
        self.reached_count
    }

    /// Whether `a`'s record lists `b`.
    pub(crate) fn lists(&self, a: &Owner, b: &Owner) -> bool {
        match (self.ids.get(a), self.ids.get(b)) {
            (Some(&a), Some(&b)) => self.lists_id(a, b),
            _ => false,
        }
    }

    /// Whether a removal may have cut sessions off since the last walk.
    pub(crate) fn is_stale(&self) -> bool {
        self.stale
    }

    /// The owners whose reached state changed since the last call.
    pub(crate) fn take_flipped(&mut self) -> Vec<Owner> {
        std::mem::take(&mut self.flipped)
    }

    /// `owner`'s record is now `listed` (new, or replacing its previous one).
    pub(crate) fn set_record(&mut self, owner: &Owner, listed: &[Owner]) {
        let x = self.intern(owner);
        let mut lists: Vec<Id> = listed
            .iter()
            .filter(|o| *o != owner)
            .map(|o| self.intern(o))
            .collect();
        lists.sort_unstable();
        // A session listed twice holds one reference.
        for pair in lists
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect::<Vec<_>>()
        {
            self.release(pair);
        }
        lists.dedup();
        let (old, had_record) = {
            let s = self.slot_mut(x);
            let had = s.record;
            s.record = true;
            if had {
                // The record held its reference already.
                s.refs -= 1;
            }
            (std::mem::replace(&mut s.lists, lists.clone()), had)
        };
        let x_reached = self.reached_id(x);
        // Sessions no longer listed: if the edge joined two reached ones,
        // one side may be cut off now.
        for &y in difference(&old, &lists) {
            if x_reached && self.reached_id(y) && self.lists_id(y, x) {
                self.stale = true;
            }
        }
        if !self.stale {
            let newly: Vec<Id> = if had_record {
                difference(&lists, &old).copied().collect()
            } else {
                lists.clone()
            };
            if x_reached {
                for y in newly {
                    if !self.reached_id(y) && self.confirmed(x, y) {
                        self.spread(y);
                    }
                }
            } else {
                let joined = self.is_root(x)
                    || lists
                        .iter()
                        .any(|&y| self.reached_id(y) && self.lists_id(y, x));
                if joined {
                    self.spread(x);
                }
            }
        }
        // Release after spreading: ids still listed keep their slots.
        for y in old {
            self.release(y);
        }
    }

    /// `owner`'s record is gone (forgotten, or its session replaced).
    pub(crate) fn remove_record(&mut self, owner: &Owner) {
        let Some((x, s)) = self.known_mut(owner) else {
            return;
        };
        if !s.record {
            return;
        }
        s.record = false;
        let lists = std::mem::take(&mut s.lists);
        if s.reached {
            s.reached = false;
            self.reached_count -= 1;
            self.flipped.push(owner.clone());
            self.stale = true;
        }
        for y in lists {
            self.release(y);
        }
        self.release(x);
    }

    /// `owner` is one of this node's sessions now.
    pub(crate) fn add_root(&mut self, owner: &Owner) {
        let x = self.intern(owner);
        let s = self.slot_mut(x);
        if s.root {
            self.release(x);
            return;
        }
        s.root = true;
        if s.record && !s.reached && !self.stale {
            self.spread(x);
        }
    }

    /// `owner` is no longer one of this node's sessions.
    pub(crate) fn remove_root(&mut self, owner: &Owner) {
        let Some((x, s)) = self.known_mut(owner) else {
            return;
        };
        if !s.root {
            return;
        }
        s.root = false;
        if s.reached {
            self.stale = true;
        }
        self.release(x);
    }

    /// Walks from the roots: who is reached now, for sure.
    pub(crate) fn recompute(&mut self) {
        self.stale = false;
        let before: Vec<bool> = self
            .slots
            .iter()
            .map(|s| s.as_ref().is_some_and(|s| s.reached))
            .collect();
        for s in self.slots.iter_mut().flatten() {
            s.reached = false;
        }
        self.reached_count = 0;
        let roots: Vec<Id> = (0..self.slots.len() as Id)
            .filter(|&id| self.slot(id).is_some_and(|s| s.root && s.record))
            .collect();
        let mut queue = VecDeque::new();
        for root in roots {
            self.mark(root, &mut queue);
            self.walk(&mut queue, false);
        }
        for (id, was) in before.into_iter().enumerate() {
            if let Some(s) = self.slot(id as Id) {
                if s.reached != was {
                    self.flipped.push(s.owner.clone());
                }
            }
        }
    }

    // ---- the walk ----

    /// Reaches `start` and whatever edges join to it, noting each as flipped.
    fn spread(&mut self, start: Id) {
        let mut queue = VecDeque::new();
        if self.mark(start, &mut queue) {
            if let Some(s) = self.slot(start) {
                self.flipped.push(s.owner.clone());
            }
        }
        self.walk(&mut queue, true);
    }

    /// Marks `id` reached (if it has a record and is not yet) and queues it.
    fn mark(&mut self, id: Id, queue: &mut VecDeque<Id>) -> bool {
        let Some(s) = self.slot_mut_opt(id) else {
            return false;
        };
        if s.reached || !s.record {
            return false;
        }
        s.reached = true;
        self.reached_count += 1;
        queue.push_back(id);
        true
    }

    fn walk(&mut self, queue: &mut VecDeque<Id>, note: bool) {
        while let Some(x) = queue.pop_front() {
            // By index: marking others changes no one's list, and the walk
            // copies none.
            let listed = self.slot(x).map_or(0, |s| s.lists.len());
            for i in 0..listed {
                let Some(&y) = self.slot(x).and_then(|s| s.lists.get(i)) else {
                    break;
                };
                if !self.reached_id(y) && self.lists_id(y, x) && self.mark(y, queue) && note {
                    if let Some(s) = self.slot(y) {
                        self.flipped.push(s.owner.clone());
                    }
                }
            }
        }
    }

    // ---- slots ----

    fn intern(&mut self, owner: &Owner) -> Id {
        if let Some(&id) = self.ids.get(owner) {
            self.slot_mut(id).refs += 1;
            return id;
        }
        let slot = Slot {
            owner: owner.clone(),
            refs: 1,
            record: false,
            lists: Vec::new(),
            root: false,
            reached: false,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(slot);
                id
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as Id
            }
        };
        self.ids.insert(owner.clone(), id);
        id
    }

    fn release(&mut self, id: Id) {
        let Some(s) = self.slot_mut_opt(id) else {
            return;
        };
        s.refs = s.refs.saturating_sub(1);
        if s.refs == 0 {
            if let Some(s) = self.slots[id as usize].take() {
                self.ids.remove(&s.owner);
            }
            self.free.push(id);
        }
    }

    /// The id and slot of an owner interned already.
    fn known_mut(&mut self, owner: &Owner) -> Option<(Id, &mut Slot)> {
        let id = *self.ids.get(owner)?;
        self.slot_mut_opt(id).map(|s| (id, s))
    }

    fn slot(&self, id: Id) -> Option<&Slot> {
        self.slots.get(id as usize).and_then(Option::as_ref)
    }

    fn slot_mut_opt(&mut self, id: Id) -> Option<&mut Slot> {
        self.slots.get_mut(id as usize).and_then(Option::as_mut)
    }

    /// A slot that exists (an id just interned or held).
    fn slot_mut(&mut self, id: Id) -> &mut Slot {
        self.slots[id as usize]
            .as_mut()
            .expect("an interned id has a slot")
    }

    fn reached_id(&self, id: Id) -> bool {
        self.slot(id).is_some_and(|s| s.reached)
    }

    fn is_root(&self, id: Id) -> bool {
        self.slot(id).is_some_and(|s| s.root)
    }

    fn lists_id(&self, a: Id, b: Id) -> bool {
        self.slot(a)
            .is_some_and(|s| s.record && s.lists.binary_search(&b).is_ok())
    }

    fn confirmed(&self, a: Id, b: Id) -> bool {
        self.lists_id(a, b) && self.lists_id(b, a)
    }
}

/// The ids of sorted `a` not in sorted `b`.
fn difference<'a>(a: &'a [Id], b: &'a [Id]) -> impl Iterator<Item = &'a Id> {
    a.iter().filter(move |x| b.binary_search(x).is_err())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet, HashSet};

    fn o(i: u8) -> Owner {
        Owner {
            name: format!("n{}", i % 8),
            incarnation: u64::from(i / 8),
        }
    }

    /// The definition, walked in full.
    fn brute(records: &BTreeMap<Owner, Vec<Owner>>, roots: &BTreeSet<Owner>) -> HashSet<Owner> {
        let lists = |a: &Owner, b: &Owner| records.get(a).is_some_and(|l| l.contains(b));
        let mut reached: HashSet<Owner> = HashSet::new();
        let mut queue: Vec<Owner> = roots
            .iter()
            .filter(|r| records.contains_key(*r))
            .cloned()
            .collect();
        reached.extend(queue.iter().cloned());
        while let Some(x) = queue.pop() {
            for y in &records[&x] {
                if y != &x && lists(y, &x) && reached.insert(y.clone()) {
                    queue.push(y.clone());
                }
            }
        }
        reached
    }

    #[derive(Clone, Debug)]
    enum Op {
        Record(u8, Vec<u8>),
        Remove(u8),
        Root(u8),
        Unroot(u8),
        Recompute,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u8..16, proptest::collection::vec(0u8..16, 0..6)).prop_map(|(a, l)| Op::Record(a, l)),
            1 => (0u8..16).prop_map(Op::Remove),
            2 => (0u8..16).prop_map(Op::Root),
            1 => (0u8..16).prop_map(Op::Unroot),
            1 => Just(Op::Recompute),
        ]
    }

    proptest! {
        /// Whenever it is not stale, the incremental answer is the full
        /// walk's; after a recompute always; the flips tell every change;
        /// and no slot outlives what names it.
        #[test]
        fn incremental_reach_is_the_full_walk(ops in proptest::collection::vec(op(), 1..80)) {
            let mut reach = Reach::default();
            let mut records: BTreeMap<Owner, Vec<Owner>> = BTreeMap::new();
            let mut roots: BTreeSet<Owner> = BTreeSet::new();
            let mut shown: HashSet<Owner> = HashSet::new();
            for op in ops {
                match op {
                    Op::Record(a, l) => {
                        let listed: Vec<Owner> = l.into_iter().map(o).collect();
                        reach.set_record(&o(a), &listed);
                        records.insert(o(a), listed);
                    }
                    Op::Remove(a) => {
                        reach.remove_record(&o(a));
                        records.remove(&o(a));
                    }
                    Op::Root(a) => {
                        reach.add_root(&o(a));
                        roots.insert(o(a));
                    }
                    Op::Unroot(a) => {
                        reach.remove_root(&o(a));
                        roots.remove(&o(a));
                    }
                    Op::Recompute => reach.recompute(),
                }
                for owner in reach.take_flipped() {
                    if !shown.remove(&owner) {
                        shown.insert(owner);
                    }
                }
                let now: HashSet<Owner> = reach.reached().cloned().collect();
                prop_assert_eq!(&shown, &now, "flips follow the reached set");
                prop_assert_eq!(reach.reached_count(), now.len());
                if !reach.is_stale() {
                    prop_assert_eq!(&now, &brute(&records, &roots));
                }
            }
            reach.recompute();
            for owner in reach.take_flipped() {
                if !shown.remove(&owner) {
                    shown.insert(owner);
                }
            }
            let expected = brute(&records, &roots);
            prop_assert_eq!(&reach.reached().cloned().collect::<HashSet<_>>(), &expected);
            prop_assert_eq!(&shown, &expected);
            // Interned: exactly the owners that have a record, are a root, or are listed.
            let mut named: HashSet<Owner> = records.keys().cloned().collect();
            named.extend(roots.iter().cloned());
            for (a, l) in &records {
                named.extend(l.iter().filter(|x| *x != a).cloned());
            }
            prop_assert_eq!(reach.ids.len(), named.len());
        }
    }

    #[test]
    fn a_chain_is_reached_from_its_root_and_cut_by_a_removal() {
        let mut reach = Reach::default();
        reach.add_root(&o(1));
        reach.set_record(&o(1), &[o(2)]);
        reach.set_record(&o(2), &[o(1), o(3)]);
        assert!(!reach.reaches(&o(3)), "3 has no record yet");
        reach.set_record(&o(3), &[o(2)]);
        assert!(reach.reaches(&o(3)) && !reach.is_stale());
        reach.set_record(&o(2), &[o(1)]);
        assert!(reach.is_stale(), "2 dropped 3: it may be cut off");
        reach.recompute();
        assert!(reach.reaches(&o(2)) && !reach.reaches(&o(3)));
    }
}
