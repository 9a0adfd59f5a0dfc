//! `ping`, `call` and `cast`.

use std::time::Instant;

use bilateral::{CallError, To};
use serde_json::{Value, json};

use crate::Global;
use crate::mesh::{self, Joined};
use crate::outcome::Failure;
use crate::value::{self, Json};

/// Calls `ping` on every peer `count` times; one line per answer, and one
/// per peer that could not be joined.
pub fn ping(g: &Global, count: u32) -> Result<(), Failure> {
    let (node, peers) = mesh::join_each(g)?;
    let mut failure = report_unjoined(g, &peers);
    for round in 1..=count {
        for (p, _) in peers.iter().filter(|(_, joined)| joined.is_ok()) {
            let started = Instant::now();
            let result = node.call_one::<_, Json>(&p.name, "ping", &(), g.timeout);
            let rtt = started.elapsed();
            match result {
                Ok(_) if g.json => say!(
                    "{}",
                    json!({"peer": p.name, "seq": round, "rtt_us": rtt.as_micros() as u64})
                ),
                Ok(_) => say!(
                    "{}: seq={round} time={:.3} ms",
                    p.name,
                    rtt.as_secs_f64() * 1e3
                ),
                Err(e) => {
                    print_failure(g, &p.name, &e);
                    failure.get_or_insert(Failure::of_call(&p.name, &e));
                }
            }
        }
    }
    node.close();
    failure.map_or(Ok(()), |f| Err(Failure::Printed(Box::new(f))))
}

/// Calls `method` on every peer; prints each peer's result (one peer: the
/// result alone, as JSON), in the order the peers were given, a peer that
/// could not be joined included.
pub fn call(g: &Global, method: &str, args: Option<&str>) -> Result<(), Failure> {
    let args = value::parse(args)?;
    let (node, peers) = mesh::join_each(g)?;
    let single = peers.len() == 1;
    let names = joined_names(&peers);
    let responses = if names.is_empty() {
        Vec::new()
    } else {
        node.call::<_, Json>(To::peers(names), method, &args, g.timeout)?
            .into_iter()
            .collect()
    };
    let mut failure = None;
    for (p, joined) in &peers {
        let peer = p.name.as_str();
        if let Err(f) = joined {
            print_unreachable(g, peer, f);
            failure.get_or_insert(f.clone());
            continue;
        }
        let Some(response) = responses.iter().find(|r| r.peer.as_str() == peer) else {
            continue;
        };
        match &response.result {
            Ok(Json(v)) => print_result(g, peer, v, single),
            Err(e) => {
                print_failure(g, peer, e);
                failure.get_or_insert(Failure::of_call(peer, e));
            }
        }
    }
    node.close();
    // The failure was printed with its peer; the exit code says what kind.
    failure.map_or(Ok(()), |f| Err(Failure::Printed(Box::new(f))))
}

/// Casts `method` to every peer that could be joined; says which could not.
pub fn cast(g: &Global, method: &str, args: Option<&str>) -> Result<(), Failure> {
    let args = value::parse(args)?;
    let (node, peers) = mesh::join_each(g)?;
    let failure = report_unjoined(g, &peers);
    let names: Vec<String> = peers.iter().map(|(p, _)| p.name.clone()).collect();
    let joined = joined_names(&peers);
    let queued = if joined.is_empty() {
        0
    } else {
        node.cast(To::peers(joined.clone()), method, &args)?
    };
    // Closing lets the casts leave (the sockets' linger) before the PART.
    node.close();
    if g.json {
        say!(
            "{}",
            json!({"cast": method, "queued": queued, "peers": names})
        );
    } else {
        say!("cast {method} to {queued} of {} peer(s)", names.len());
    }
    if let Some(f) = failure {
        return Err(Failure::Printed(Box::new(f)));
    }
    if queued < joined.len() {
        return Err(Failure::Unreachable(format!(
            "{} peer(s) left before the cast was queued",
            joined.len() - queued
        )));
    }
    Ok(())
}

fn print_result(g: &Global, peer: &str, v: &Value, single: bool) {
    if g.json {
        say!("{}", json!({"peer": peer, "ok": true, "result": v}));
    } else if single {
        say!("{v}");
    } else {
        say!("{peer}\t{v}");
    }
}

/// The names of the peers that could be joined.
fn joined_names(peers: &[Joined]) -> Vec<String> {
    peers
        .iter()
        .filter(|(_, joined)| joined.is_ok())
        .map(|(p, _)| p.name.clone())
        .collect()
}

/// Prints a line for each peer that could not be joined; the first one's
/// failure gives the exit code.
fn report_unjoined(g: &Global, peers: &[Joined]) -> Option<Failure> {
    let mut first = None;
    for (p, joined) in peers {
        if let Err(f) = joined {
            print_unreachable(g, &p.name, f);
            first.get_or_insert_with(|| f.clone());
        }
    }
    first
}

/// A peer that could not be joined, as a line of its own.
fn print_unreachable(g: &Global, peer: &str, f: &Failure) {
    if g.json {
        say!(
            "{}",
            json!({"peer": peer, "ok": false, "error": {"kind": f.kind(), "message": f.message()}})
        );
    } else {
        eprintln!("{}", f.message());
    }
}

fn print_failure(g: &Global, peer: &str, e: &CallError) {
    if g.json {
        let f = Failure::of_call(peer, e);
        say!(
            "{}",
            json!({"peer": peer, "ok": false, "error": {"kind": f.kind(), "message": e.to_string()}})
        );
    } else {
        eprintln!("{peer}: {e}");
    }
}
