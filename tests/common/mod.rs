//! Helpers shared by the integration tests: nodes on loopback with short
//! timers, and waits that always have a deadline.

#![allow(dead_code)]

pub mod raw;

use std::time::{Duration, Instant};

use bilateral::{Node, NodeBuilder, PeerEvent};

/// A generous bound for things that normally take milliseconds.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub fn init_logging() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// A builder on a fresh loopback port with timers short enough for tests.
pub fn builder(name: &str) -> NodeBuilder {
    builder_on(name, "tcp://127.0.0.1:*")
}

/// The same on a given endpoint (to restart a node where it was).
pub fn builder_on(name: &str, endpoint: &str) -> NodeBuilder {
    init_logging();
    Node::builder(name)
        .network("test")
        .listen(endpoint)
        .heartbeat_interval(Duration::from_millis(100))
        .lost_timeout(Duration::from_millis(600))
        .join_timeout(Duration::from_millis(500), Duration::from_millis(100))
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
}

pub fn node(name: &str) -> Node {
    builder(name).start().expect("node starts")
}

/// `a` dials `b` and both see the session.
pub fn join(a: &Node, b: &Node) {
    a.connect(b.name(), b.endpoint().unwrap()).unwrap();
    a.wait_for_peer(b.name(), PATIENCE).unwrap();
    wait_until(PATIENCE, || {
        b.active_connections().iter().any(|p| p == a.name())
    });
}

/// Polls `cond` until it holds; panics with a clear message at the deadline.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "condition not reached within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn is_joined(e: &PeerEvent, name: &str) -> bool {
    matches!(e, PeerEvent::Joined { peer, .. } if peer.as_str() == name)
}

pub fn is_lost(e: &PeerEvent, name: &str) -> bool {
    matches!(e, PeerEvent::Lost { peer, .. } if peer.as_str() == name)
}

/// Threads of this process.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident memory of this process, in bytes.
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// Waits until threads and file descriptors are back to `(threads, fds)`.
pub fn wait_for_baseline(threads: usize, fds: usize) {
    let deadline = Instant::now() + PATIENCE;
    while thread_count() > threads || fd_count() > fds {
        assert!(
            Instant::now() < deadline,
            "leak: {} threads (was {threads}), {} fds (was {fds})",
            thread_count(),
            fd_count()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tokio runtime with two worker threads, for async tests.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A copy of this test binary running one test as a child process, killed
/// when dropped. The child reports "READY <endpoint>" on its standard output.
pub struct Child {
    pub process: std::process::Child,
    pub endpoint: String,
}

impl Child {
    /// Runs test `test` of this binary with `env` set to `value`, and waits
    /// for its endpoint.
    pub fn spawn(test: &str, env: &str, value: &str) -> Child {
        Child::spawn_with(test, &[(env, value)])
    }

    /// [`Child::spawn`] with several environment variables set.
    pub fn spawn_with(test: &str, envs: &[(&str, &str)]) -> Child {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the test binary can run itself");
        let stdout = process.stdout.take().unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The harness prints "test <name> ... " without a newline first.
                if let Some(at) = line.find("READY ") {
                    let _ = tx.send(line[at + 6..].trim().to_string());
                }
            }
        });
        let mut child = Child {
            process,
            endpoint: String::new(),
        };
        child.endpoint = rx.recv_timeout(PATIENCE).expect("the child is ready");
        child
    }

    /// The child's resident memory, in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// In a child started by [`Child::spawn`]: says where it listens, then
/// serves until the parent goes away (closes our standard input).
pub fn serve_as_child(node: &Node) {
    println!("READY {}", node.endpoint().unwrap());
    let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
}

/// FNV-1a, 64 bits: a checksum cheap enough for a quarter gigabyte.
#[derive(Clone, Copy)]
pub struct Fnv(pub u64);

impl Fnv {
    pub fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The checksum of `bytes` at once.
    pub fn of(bytes: &[u8]) -> u64 {
        let mut sum = Fnv::new();
        sum.update(bytes);
        sum.0
    }
}

/// Runs `f` on another thread and fails the test if it has not returned by
/// `limit`.
pub fn within(limit: Duration, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not return within {limit:?}"));
}
