//! Deterministic tests of the core: simulated network, injected time.

mod calls;
mod handshake;
mod hostile;
mod liveness;
mod sim;
