// A caller expecting another reply type than the service's does not compile.
#[bilateral::service]
pub trait Counter {
    fn add(&self, by: u32) -> u64;
}

fn main() {
    let node = bilateral::Node::builder("n").start().unwrap();
    let counter = CounterClient::new(&node);
    let _total: Result<String, bilateral::CallError> = counter.add("peer", 3);
}
