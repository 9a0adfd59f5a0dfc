//! `registry ls|watch`: the registry as the peers know it.
//!
//! Every node runs the registry; the command's node joins the peers, waits
//! until it holds each one's record and wants none (`Registry::caught_up`),
//! and reads.

use std::time::Duration;

use bilateral::registry::{Entry, Registry, RegistryEvent};
use clap::Subcommand;
use serde_json::json;

use crate::Global;
use crate::mesh;
use crate::outcome::Failure;
use crate::value::Json;

/// The registry subcommands.
#[derive(Subcommand, Debug)]
pub enum RegistryCommand {
    /// List the entries of COLLECTION, or of every collection.
    Ls {
        /// The collection.
        collection: Option<String>,
    },
    /// Print the entries of COLLECTION as they are added, updated and removed.
    Watch {
        /// The collection.
        collection: String,
        /// Stop after this many changes (default: run until interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
}

pub fn run(g: &Global, command: RegistryCommand) -> Result<(), Failure> {
    let (node, peers) = mesh::join(g)?;
    let registry = node.registry()?;
    mesh::wait_for_all(g, &peers, "registry record", |p| registry.caught_up(p))?;
    let result = match command {
        RegistryCommand::Ls { collection } => ls(g, &registry, collection.as_deref()),
        RegistryCommand::Watch { collection, count } => {
            watch(g, &registry, &collection, count, || {
                mesh::all_gone(&node, &peers)
            })
        }
    };
    node.close();
    result
}

fn ls(g: &Global, registry: &Registry, collection: Option<&str>) -> Result<(), Failure> {
    let collections = match collection {
        Some(c) => vec![c.to_string()],
        None => registry.collections(),
    };
    if !g.json {
        say!("{:<20} {:<20} {:<24} VALUE", "COLLECTION", "NAME", "OWNER");
    }
    for c in collections {
        let entries = registry
            .list::<Json>(&c)
            .map_err(|e| Failure::Remote(format!("{c}: {e}")))?;
        for e in entries {
            print_entry(g, "entry", &e);
        }
    }
    Ok(())
}

fn print_entry(g: &Global, event: &str, e: &Entry<Json>) {
    if g.json {
        say!(
            "{}",
            json!({
                "event": event,
                "collection": e.collection,
                "name": e.name,
                "owner": e.owner,
                "incarnation": format!("{:016x}", e.incarnation),
                "value": e.value.0,
            })
        );
    } else if event == "entry" {
        say!(
            "{:<20} {:<20} {:<24} {}",
            e.collection,
            e.name,
            e.owner,
            e.value.0
        );
    } else {
        say!(
            "{event} {}/{} by {}: {}",
            e.collection,
            e.name,
            e.owner,
            e.value.0
        );
    }
}

/// Prints changes until `count` of them, or until every peer is gone
/// (exit 3: nothing more can come).
fn watch(
    g: &Global,
    registry: &Registry,
    collection: &str,
    count: Option<u64>,
    gone: impl Fn() -> bool,
) -> Result<(), Failure> {
    let changes = registry.watch::<Json>(collection);
    let mut seen = 0u64;
    while count.is_none_or(|c| seen < c) {
        let Some(event) = changes.recv_timeout(Duration::from_millis(500)) else {
            if gone() {
                return Err(Failure::Unreachable("every peer left".to_string()));
            }
            continue;
        };
        seen += 1;
        match event {
            RegistryEvent::Added(e) => print_entry(g, "added", &e),
            RegistryEvent::Updated(e) => print_entry(g, "updated", &e),
            RegistryEvent::Removed {
                collection,
                name,
                owner,
                ..
            } => {
                if g.json {
                    say!(
                        "{}",
                        json!({"event": "removed", "collection": collection, "name": name, "owner": owner})
                    );
                } else {
                    say!("removed {collection}/{name} by {owner}");
                }
            }
            other => log::debug!("registry event {other:?}"),
        }
    }
    Ok(())
}
