// A client call with an argument of the wrong type does not compile.
#[bilateral::service]
pub trait Counter {
    fn add(&self, by: u32) -> u64;
}

fn main() {
    let node = bilateral::Node::builder("n").start().unwrap();
    let counter = CounterClient::new(&node);
    let _ = counter.add("peer", "three");
}
