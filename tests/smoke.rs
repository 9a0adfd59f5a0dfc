mod common;
use common::*;
use std::time::Duration;

#[test]
fn smoke() {
    let a = node("a");
    let b = node("b");
    a.register("add", |_ctx, (x, y): (i32, i32)| Ok(x + y)).unwrap();
    b.register("add", |_ctx, (x, y): (i32, i32)| Ok(x + y)).unwrap();
    join(&a, &b);
    let r: i32 = a.call_one("b", "add", &(2, 3), Duration::from_secs(5)).unwrap();
    assert_eq!(r, 5);
    let r: i32 = b.call_one("a", "add", &(4, 3), Duration::from_secs(5)).unwrap();
    assert_eq!(r, 7);
    a.close();
    b.close();
}
