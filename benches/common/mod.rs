//! Helpers the benchmarks share: machine facts, formatting, and CURVE set-up
//! of raw libzmq sockets (the baselines the ratios are taken against).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bilateral::Keypair;
use bilateral::testkit::zmq::Socket;

/// CPUs this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A duration in microseconds, one decimal.
pub fn fmt(d: Duration) -> String {
    format!("{:.1} us", d.as_secs_f64() * 1e6)
}

/// A fresh CURVE key pair.
pub fn keys() -> Keypair {
    Keypair::generate().unwrap()
}

/// Makes `router` a CURVE server with `server`'s keys.
pub fn curve_server(router: &Socket, server: &Keypair) {
    router.set_curve_server(true).unwrap();
    router.set_curve_secretkey(&secret(server)).unwrap();
}

/// Makes `dealer` a CURVE client with `client`'s keys, of the server `server`.
pub fn curve_client(dealer: &Socket, server: &Keypair, client: &Keypair) {
    dealer
        .set_curve_serverkey(server.public().as_bytes())
        .unwrap();
    dealer
        .set_curve_publickey(client.public().as_bytes())
        .unwrap();
    dealer.set_curve_secretkey(&secret(client)).unwrap();
}

fn secret(keys: &Keypair) -> [u8; 32] {
    bilateral::testkit::zmq::z85_decode(&keys.secret_z85())
        .unwrap()
        .try_into()
        .unwrap()
}

/// The reactor spin of the benchmark's nodes: `BILATERAL_SPIN_US`
/// microseconds (default 50, as a node's).
pub fn spin() -> Duration {
    let us = std::env::var("BILATERAL_SPIN_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    Duration::from_micros(us)
}

/// The median and 99th percentile of some samples.
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
}

pub fn summarize(mut samples: Vec<Duration>) -> Latency {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Latency {
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// Starts this benchmark again as a child process with `envs` (its mode),
/// and reads the first line it prints: `READY` and what it serves, returned
/// as words after `READY`. The child runs until its stdin closes
/// ([`stop_child`]).
pub fn spawn_self(envs: &[(&str, String)]) -> (Child, Vec<String>) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    for (k, v) in envs {
        command.env(k, v);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the benchmark starts itself as a child");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut words = line.split_whitespace().map(str::to_string);
    if words.next().as_deref() != Some("READY") {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the child did not start: {line:?}");
    }
    (child, words.collect())
}

/// Closes a child's stdin (it stops) and waits for it.
pub fn stop_child(child: &mut Child) {
    drop(child.stdin.take());
    let _ = child.wait();
}

/// In a child: says `READY` with `what`, then waits until the parent
/// closes its stdin.
pub fn ready_and_wait(what: &str) {
    use std::io::{Read, Write};
    println!("READY {what}");
    std::io::stdout().flush().unwrap();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
