// An implementation whose method does not match the service does not compile.
#[bilateral::service]
pub trait Counter {
    fn add(&self, by: u32) -> u64;
}

struct Wrong;

impl Counter for Wrong {
    fn add(&self, by: String) -> u64 {
        by.len() as u64
    }
}

fn main() {}
