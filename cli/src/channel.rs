//! `channel get|set|watch`: a replicated channel shared with the peers.
//!
//! The command's node replicates the channel with the peers given, reads
//! once it holds what they had (`Channel::synced_with`), and after a write
//! waits until each peer confirms it (`Channel::delivered_to`), which a
//! peer does at its next pull: within a second for `bilateral serve`,
//! within the channel's `sync_interval` (5 s by default) for other nodes,
//! so the write waits for that on top of `--timeout`.

use std::time::Duration;

use bilateral::channel::{Channel, ChannelConfig, ChannelEvent};
use clap::Subcommand;
use serde_json::json;

use crate::Global;
use crate::mesh;
use crate::outcome::Failure;
use crate::value::{self, Json};

/// The channel subcommands.
#[derive(Subcommand, Debug)]
pub enum ChannelCommand {
    /// Print KEY's value, or every entry without KEY.
    Get {
        /// The channel.
        channel: String,
        /// The key.
        #[arg(id = "entry", value_name = "KEY")]
        key: Option<String>,
    },
    /// Set KEY to VALUE (JSON) and wait until every peer has it.
    Set {
        /// The channel.
        channel: String,
        /// The key.
        #[arg(id = "entry", value_name = "KEY")]
        key: String,
        /// The value, as JSON.
        value: String,
    },
    /// Print changes from now on (the peers' and this node's), one line each.
    Watch {
        /// The channel.
        channel: String,
        /// Stop after this many changes (default: run until interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
}

/// How often the command's own replica pulls while it waits.
const SYNC: Duration = Duration::from_millis(200);

pub fn run(g: &Global, command: ChannelCommand) -> Result<(), Failure> {
    let (node, peers) = mesh::join(g)?;
    let name = match &command {
        ChannelCommand::Get { channel, .. }
        | ChannelCommand::Set { channel, .. }
        | ChannelCommand::Watch { channel, .. } => channel.clone(),
    };
    let config = ChannelConfig::default().sync_interval(SYNC);
    let channel = node.channel_with::<Json>(&name, Some(config))?;
    channel.peer(peers.iter().map(|p| p.name.clone()));
    // Every command starts from what the peers hold (for `watch`, that is
    // not news).
    mesh::wait_for_all(g, &peers, "the channel's entries", |p| {
        channel.synced_with(p)
    })?;
    let result = match command {
        ChannelCommand::Get { key, .. } => get(g, &channel, key.as_deref()),
        ChannelCommand::Set { key, value, .. } => {
            let v = value::parse(Some(&value))?;
            channel
                .set(key.clone(), Json(v.clone()))
                .map_err(|e| Failure::Usage(format!("{name}/{key}: {e}")))?;
            // A peer confirms at its next pull: within its sync interval
            // (5 s by default) on top of the usual wait.
            let confirm = Global {
                timeout: g.timeout + ChannelConfig::default().sync_interval,
                ..g.clone()
            };
            mesh::wait_for_all(&confirm, &peers, "a confirmation of the write", |p| {
                channel.delivered_to(p)
            })
            .map_err(|f| Failure::Remote(f.message().to_string()))?;
            if g.json {
                say!(
                    "{}",
                    json!({"channel": name, "key": key, "value": v, "peers": peers.len()})
                );
            } else {
                say!("{name}/{key} = {v} on {} peer(s)", peers.len());
            }
            Ok(())
        }
        ChannelCommand::Watch { count, .. } => {
            watch(g, &channel, count, || mesh::all_gone(&node, &peers))
        }
    };
    node.close();
    result
}

fn get(g: &Global, channel: &Channel<Json>, key: Option<&str>) -> Result<(), Failure> {
    let bad = |e| Failure::Remote(format!("{}: {e}", channel.name()));
    match key {
        Some(key) => match channel.get(key).map_err(bad)? {
            Some(Json(v)) if g.json => say!("{}", json!({"key": key, "value": v})),
            Some(Json(v)) => say!("{v}"),
            None => {
                return Err(Failure::Remote(format!(
                    "{}/{key}: no such entry",
                    channel.name()
                )));
            }
        },
        None => {
            for (k, Json(v)) in channel.get_all().map_err(bad)? {
                if g.json {
                    say!("{}", json!({"key": k, "value": v}));
                } else {
                    say!("{k}\t{v}");
                }
            }
        }
    }
    Ok(())
}

/// Prints changes until `count` of them, or until every peer is gone
/// (exit 3: nothing more can come).
fn watch(
    g: &Global,
    channel: &Channel<Json>,
    count: Option<u64>,
    gone: impl Fn() -> bool,
) -> Result<(), Failure> {
    let changes = channel.watch();
    let mut seen = 0u64;
    while count.is_none_or(|c| seen < c) {
        let Some(event) = changes.recv_timeout(Duration::from_millis(500)) else {
            if gone() {
                return Err(Failure::Unreachable("every peer left".to_string()));
            }
            continue;
        };
        match event {
            ChannelEvent::Changed(change) => {
                seen += 1;
                let value = change.value.map(|Json(v)| v);
                if g.json {
                    say!(
                        "{}",
                        json!({"key": change.key, "value": value, "by": change.by})
                    );
                } else {
                    match value {
                        Some(v) => say!("{} = {v} (by {})", change.key, change.by),
                        None => say!("{} removed (by {})", change.key, change.by),
                    }
                }
            }
            ChannelEvent::Refused {
                peer,
                entries,
                reason,
            } => {
                log::warn!("{peer}: {entries} entries refused: {reason:?}");
            }
            _ => {}
        }
    }
    Ok(())
}
