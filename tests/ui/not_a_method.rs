// A service method must take `&self`.
#[bilateral::service]
pub trait Counter {
    fn add(by: u32) -> u64;
}

fn main() {}
