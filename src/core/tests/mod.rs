//! Deterministic tests of the core: simulated network, injected time.

mod access;
mod calls;
mod fuzz;
mod handshake;
mod hostile;
mod lanes;
mod liveness;
mod sim;
mod streams;
