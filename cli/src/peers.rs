//! `peers`: the peers as this node sees them once joined.

use std::time::{Duration, Instant};

use bilateral::{PeerInfo, PeerState};
use serde_json::json;

use crate::Global;
use crate::mesh;
use crate::outcome::Failure;

/// How long `peers` waits for a heartbeat's round trip from each peer.
const RTT_WAIT: Duration = Duration::from_secs(2);

/// Joins the peers and prints one row (or JSON line) per peer.
pub fn show(g: &Global) -> Result<(), Failure> {
    let (node, peers) = mesh::join(g)?;
    // The round trip comes with the first heartbeat answered.
    let deadline = Instant::now() + RTT_WAIT.min(g.timeout);
    while Instant::now() < deadline
        && !peers.iter().all(|p| {
            node.peer_info(&p.name)
                .is_some_and(|i| i.stats.rtt_last.is_some())
        })
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let infos: Vec<PeerInfo> = peers
        .iter()
        .filter_map(|p| node.peer_info(&p.name))
        .collect();
    if !g.json {
        say!(
            "{:<24} {:<8} {:<16} {:>9} {:>9} {:>9} {:>10} {:>10}",
            "PEER",
            "STATE",
            "INCARNATION",
            "RTT ms",
            "MSGS IN",
            "MSGS OUT",
            "BYTES IN",
            "BYTES OUT"
        );
    }
    for info in &infos {
        print_row(g, info);
    }
    node.close();
    Ok(())
}

fn state(s: PeerState) -> &'static str {
    match s {
        PeerState::Joining => "joining",
        PeerState::Active => "active",
        PeerState::Backoff => "backoff",
        _ => "other",
    }
}

fn print_row(g: &Global, info: &PeerInfo) {
    let s = &info.stats;
    let rtt = s.rtt_smoothed.or(s.rtt_last);
    if g.json {
        say!(
            "{}",
            json!({
                "peer": info.name.as_str(),
                "state": state(info.state),
                "incarnation": info.incarnation.map(|i| format!("{i:016x}")),
                "endpoint": info.endpoint,
                "rtt_us": rtt.map(|r| r.as_micros() as u64),
                "messages_in": s.messages_in,
                "messages_out": s.messages_out,
                "bytes_in": s.bytes_in,
                "bytes_out": s.bytes_out,
                "calls_in": s.calls_in,
                "calls_out": s.calls_out,
                "malformed": s.malformed,
                "sessions": s.sessions,
            })
        );
    } else {
        let name: String = info.name.as_str().chars().take(24).collect();
        say!(
            "{:<24} {:<8} {:<16} {:>9} {:>9} {:>9} {:>10} {:>10}",
            name,
            state(info.state),
            info.incarnation
                .map_or("-".to_string(), |i| format!("{i:016x}")),
            rtt.map_or("-".to_string(), |r| format!("{:.3}", r.as_secs_f64() * 1e3)),
            s.messages_in,
            s.messages_out,
            s.bytes_in,
            s.bytes_out
        );
    }
}
