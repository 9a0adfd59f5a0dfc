//! `serve`: a node that runs until the process is stopped.

use std::path::PathBuf;
use std::time::Duration;

use bilateral::Node;
use bilateral::channel::ChannelConfig;
use clap::Args;
use serde_json::Value;

use crate::Global;
use crate::mesh;
use crate::outcome::Failure;
use crate::value::{self, Json};

/// How often a served channel asks its peers for news: also how soon a
/// writer learns its write arrived (`channel set` waits for that).
pub const CHANNEL_SYNC: Duration = Duration::from_secs(1);

/// What `serve` runs.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The endpoint to listen on (`tcp://0.0.0.0:7100`; `*` as port picks a free one).
    #[arg(long, default_value = "tcp://127.0.0.1:*")]
    listen: String,
    /// Replicate this channel with every peer that does; repeatable.
    #[arg(long = "channel", value_name = "NAME")]
    channels: Vec<String>,
    /// Register an entry in the registry, `COLLECTION/NAME=JSON`; repeatable.
    #[arg(long = "register", value_name = "COLLECTION/NAME=JSON")]
    registrations: Vec<String>,
    /// Serve this directory: `send` stores files in it, `receive` fetches them.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Runs the node until the process is stopped.
pub fn run(g: &Global, args: &ServeArgs) -> Result<(), Failure> {
    let node = mesh::builder(g)?.listen(args.listen.clone()).start()?;
    node.register("ping", |_c, ()| Ok("pong"))?;
    node.register("echo", |_c, v: Json| Ok(v.0))?;
    let mut channels = Vec::new();
    for name in &args.channels {
        let config = ChannelConfig::default().sync_interval(CHANNEL_SYNC);
        let channel = node.channel_with::<Value>(name, Some(config))?;
        channel.peer_all();
        channels.push(channel);
    }
    let registry = node.registry()?;
    let mut registrations = Vec::new();
    for r in &args.registrations {
        let (path, json) = r.split_once('=').unwrap_or((r.as_str(), "null"));
        let Some((collection, name)) = path.split_once('/') else {
            return Err(Failure::Usage(format!(
                "--register {r:?}: expected COLLECTION/NAME=JSON"
            )));
        };
        let value = value::parse(Some(json))?;
        let registration = registry
            .register(collection, name, &value)
            .map_err(|e| Failure::Usage(format!("--register {r:?}: {e}")))?;
        registrations.push(registration);
    }
    if let Some(dir) = &args.dir {
        crate::files::serve_dir(&node, dir)?;
    }
    mesh::connect_all(&node, &mesh::peers(g)?, g.timeout)?;
    announce(g, &node);
    // Serves until the process is stopped; the node's threads do the work.
    loop {
        std::thread::park();
    }
}

fn announce(g: &Global, node: &Node) {
    let endpoint = node.endpoint().unwrap_or_default();
    if g.json {
        say!(
            "{}",
            serde_json::json!({
                "name": node.name(),
                "endpoint": endpoint,
                "incarnation": format!("{:016x}", node.incarnation()),
            })
        );
    } else {
        say!("serving {} at {endpoint}", node.name());
    }
}
