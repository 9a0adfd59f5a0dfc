//! A thousand connect/disconnect cycles leave threads and file descriptors
//! where they started.

mod common;

use common::*;

#[test]
fn thousand_connect_disconnect_cycles_leak_nothing() {
    let a = node("a");
    let b = node("b");
    // One warm-up cycle: libzmq creates its I/O and reaper threads lazily.
    join(&a, &b);
    a.disconnect("b").unwrap();
    wait_until(PATIENCE, || b.active_connections().is_empty());
    let (threads, fds) = (thread_count(), fd_count());
    let events = a.events();
    for i in 0..1000 {
        a.connect("b", b.endpoint().unwrap()).unwrap();
        // A real join every time: the Joined event of this cycle.
        let joined = events.wait_for(PATIENCE, |e| is_joined(e, "b"));
        assert!(joined.is_some(), "cycle {i} never joined");
        a.disconnect("b").unwrap();
        assert!(
            a.peer_state("b").is_none(),
            "cycle {i}: b forgotten once disconnect returns"
        );
    }
    wait_until(PATIENCE, || {
        b.active_connections().is_empty() && a.peers().is_empty()
    });
    wait_for_baseline(threads, fds);
    // And the node still works.
    b.register("ping", |_c, (): ()| Ok(1u8)).unwrap();
    join(&a, &b);
    assert_eq!(a.call_one::<_, u8>("b", "ping", &(), PATIENCE), Ok(1));
}
