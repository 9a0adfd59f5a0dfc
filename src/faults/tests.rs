//! The injector, deterministically: seeded choices, held items, partitions.

use std::time::{Duration, Instant};

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn run(plan: FaultPlan, n: u32) -> (Vec<u32>, FaultInjector<u32>) {
    let mut inj = FaultInjector::new(plan);
    let t0 = Instant::now();
    let mut out = Vec::new();
    for i in 0..n {
        out.extend(inj.apply(Direction::Send, "b", i, t0));
    }
    (out, inj)
}

#[test]
fn a_clean_plan_passes_everything_at_once() {
    let (out, inj) = run(FaultPlan::new(1), 1000);
    assert_eq!(out, (0..1000).collect::<Vec<_>>());
    assert_eq!(inj.stats(), FaultStats::default());
}

#[test]
fn losses_follow_the_fraction_and_the_seed() {
    let plan = FaultPlan::new(7).send(Faults::loss(0.05));
    let (a, inj) = run(plan.clone(), 20_000);
    let lost = 20_000 - a.len();
    assert!((800..1200).contains(&lost), "{lost} of 20000 lost at 5%");
    assert_eq!(inj.stats().dropped as usize, lost);
    let (b, _) = run(plan, 20_000);
    assert_eq!(a, b, "the same seed makes the same choices");
    let (c, _) = run(FaultPlan::new(8).send(Faults::loss(0.05)), 20_000);
    assert_ne!(a, c);
}

#[test]
fn duplicates_follow_the_fraction() {
    let (out, inj) = run(
        FaultPlan::new(3).send(Faults {
            duplicate: 0.1,
            ..Faults::none()
        }),
        10_000,
    );
    let extra = out.len() - 10_000;
    assert!((800..1200).contains(&extra), "{extra}");
    assert_eq!(inj.stats().duplicated as usize, extra);
}

#[test]
fn delayed_items_are_held_until_due_then_released_in_order() {
    let mut inj = FaultInjector::new(FaultPlan::new(1).send(Faults {
        delay: ms(10),
        ..Faults::none()
    }));
    let t0 = Instant::now();
    assert!(inj.apply(Direction::Send, "b", 1, t0).is_empty());
    assert!(inj.apply(Direction::Send, "b", 2, t0 + ms(3)).is_empty());
    assert!(
        inj.apply(Direction::Receive, "b", 99, t0).len() == 1,
        "receiving is not delayed"
    );
    assert_eq!(inj.poll_timeout(), Some(t0 + ms(10)));
    assert!(inj.take_due(t0 + ms(9)).is_empty());
    assert_eq!(inj.take_due(t0 + ms(10)), vec![1]);
    assert_eq!(inj.poll_timeout(), Some(t0 + ms(13)));
    assert_eq!(inj.take_due(t0 + ms(100)), vec![2]);
    assert_eq!(inj.held(), 0);
    assert_eq!(inj.poll_timeout(), None);
}

#[test]
fn jitter_and_reordering_let_later_items_overtake() {
    let faults = Faults {
        jitter: ms(20),
        reorder: 0.2,
        reorder_window: ms(50),
        ..Faults::none()
    };
    let mut inj = FaultInjector::new(FaultPlan::new(5).send(faults));
    let t0 = Instant::now();
    for i in 0..200u32 {
        let sent = inj.apply(Direction::Send, "b", i, t0 + ms(u64::from(i)));
        assert!(sent.len() <= 1);
    }
    let out = inj.take_due(t0 + ms(10_000));
    assert!(out.len() <= 200);
    assert!(
        out.windows(2).any(|w| w[0] > w[1]),
        "something was reordered"
    );
    let mut sorted = out.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), out.len(), "no duplicates were asked for");
}

#[test]
fn partitions_cut_per_peer_and_per_direction_until_healed() {
    let mut inj = FaultInjector::new(FaultPlan::new(1).partition("b").cut_sending_to("c"));
    let t0 = Instant::now();
    assert!(inj.apply(Direction::Send, "b", 1, t0).is_empty());
    assert!(inj.apply(Direction::Receive, "b", 2, t0).is_empty());
    assert!(inj.apply(Direction::Send, "c", 3, t0).is_empty());
    assert_eq!(inj.apply(Direction::Receive, "c", 4, t0), vec![4]);
    assert_eq!(inj.apply(Direction::Send, "d", 5, t0), vec![5]);
    assert_eq!(inj.stats().partitioned, 3);
    let healed = inj.plan().clone().heal();
    inj.set_plan(healed);
    assert_eq!(inj.apply(Direction::Send, "b", 6, t0), vec![6]);
}

#[test]
fn per_peer_faults_replace_the_general_ones() {
    let plan = FaultPlan::new(1)
        .send(Faults::loss(1.0))
        .send_to("friend", Faults::none());
    let mut inj = FaultInjector::new(plan);
    let t0 = Instant::now();
    assert!(inj.apply(Direction::Send, "stranger", 1, t0).is_empty());
    assert_eq!(inj.apply(Direction::Send, "friend", 2, t0), vec![2]);
}

#[test]
fn fractions_outside_zero_to_one_are_invalid() {
    assert!(FaultPlan::new(1).send(Faults::loss(0.5)).is_valid());
    assert!(!FaultPlan::new(1).send(Faults::loss(1.5)).is_valid());
    assert!(
        !FaultPlan::new(1)
            .receive_from(
                "x",
                Faults {
                    duplicate: -0.1,
                    ..Faults::none()
                }
            )
            .is_valid()
    );
}
