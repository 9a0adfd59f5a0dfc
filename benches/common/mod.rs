//! Helpers the benchmarks share: machine facts, formatting, and CURVE set-up
//! of raw libzmq sockets (the baselines the ratios are taken against).

#![allow(dead_code)]

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
