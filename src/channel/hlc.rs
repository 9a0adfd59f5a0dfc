//! Versions from a hybrid logical clock, with the writing node as tie-break.

use serde::{Deserialize, Serialize};

/// The version of one write: highest wins, on every replica.
///
/// Ordered by `time` (milliseconds of wall clock, as the writer's hybrid
/// logical clock saw it), then `counter` (writes within the same
/// millisecond, or while the clock lags a version already seen), then `node`
/// (the writer's name), so two different writes never tie.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Milliseconds since the Unix epoch, as the hybrid clock saw them.
    pub time: u64,
    /// Order within one `time`.
    pub counter: u32,
    /// The node that made the write.
    pub node: String,
}

/// A hybrid logical clock (Kulkarni et al.): close to wall-clock time, yet
/// never going backwards and always ahead of every version it has seen, so a
/// write made after seeing another always wins over it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Hlc {
    time: u64,
    counter: u32,
}

/// How far ahead of this node's wall clock a remote version may pull the
/// clock: a peer with a clock hours ahead must not drag every later write
/// into the future. Versions further ahead are still accepted, but not
/// followed.
pub(crate) const MAX_DRIFT_MS: u64 = 60_000;

impl Hlc {
    /// A timestamp for a new local write at wall time `wall_ms`.
    pub(crate) fn tick(&mut self, wall_ms: u64) -> (u64, u32) {
        if wall_ms > self.time {
            self.time = wall_ms;
            self.counter = 0;
        } else {
            self.counter = self.counter.saturating_add(1);
        }
        (self.time, self.counter)
    }

    /// Moves the clock past a version seen from elsewhere.
    pub(crate) fn observe(&mut self, version: &Version, wall_ms: u64) {
        if version.time > wall_ms.saturating_add(MAX_DRIFT_MS) {
            log::warn!(
                "ignoring a version {} ms ahead of this clock",
                version.time - wall_ms
            );
            return;
        }
        if (version.time, version.counter) > (self.time, self.counter) {
            self.time = version.time;
            self.counter = version.counter;
        }
    }
}
