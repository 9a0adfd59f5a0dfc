//! `bilateral`: a Bilateral node from the shell.
//!
//! Every command but `keygen` and `serve` starts a short-lived node of its
//! own, joins the peers given with `--peer NAME=ENDPOINT`, does its work
//! and leaves (PART). Values travel as MessagePack and are shown as JSON.

/// `println!` for results: when stdout is a pipe whose reader has gone
/// (`bilateral registry watch ... | head -1`), the command ends quietly
/// instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            $crate::stdout_failed(e);
        }
    }};
}

mod channel;
mod files;
mod mesh;
mod outcome;
mod peers;
mod registry;
mod rpc;
mod serve;
mod value;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use outcome::Failure;

const EXAMPLES: &str = "\
Examples:
  bilateral keygen keys/alpha.key
  bilateral serve --name alpha --listen tcp://127.0.0.1:7100 --channel config --register services/web='\"http://10.0.0.1\"' --dir /srv/files
  bilateral peers --peer alpha=tcp://127.0.0.1:7100
  bilateral ping --peer alpha=tcp://127.0.0.1:7100 --count 3
  bilateral call echo '{\"hello\": [1, 2]}' --peer alpha=tcp://127.0.0.1:7100
  bilateral call ping --peer alpha=tcp://127.0.0.1:7100 --peer beta=tcp://127.0.0.1:7200
  bilateral cast log '\"started\"' --peer alpha=tcp://127.0.0.1:7100
  bilateral channel set config mode '\"fast\"' --peer alpha=tcp://127.0.0.1:7100
  bilateral channel get config mode --peer alpha=tcp://127.0.0.1:7100
  bilateral channel watch config --count 1 --peer alpha=tcp://127.0.0.1:7100
  bilateral registry ls --peer alpha=tcp://127.0.0.1:7100
  bilateral registry watch services --count 1 --peer alpha=tcp://127.0.0.1:7100
  bilateral send ./report.pdf --peer alpha=tcp://127.0.0.1:7100
  bilateral receive report.pdf --out /tmp/report.pdf --peer alpha=tcp://127.0.0.1:7100
  bilateral call echo 1 --curve --key keys/me.key --allow keys/allowed --peer @keys/alpha.key=tcp://10.0.0.1:7100

Exit codes:
  0  done
  1  the remote side failed (a call's error, a refused file, a write not confirmed)
  2  bad usage (arguments, JSON)
  3  a peer could not be reached in time (join, timeout, lost)
  4  a local failure (files, keys, binding)

With --json every result is one JSON object per line on stdout; errors
are also JSON ({\"error\": {\"kind\", \"message\"}}) with the same exit codes.";

/// A Bilateral node from the shell.
#[derive(Parser, Debug)]
#[command(name = "bilateral", version, about, after_help = EXAMPLES)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Results as JSON lines, for scripts.
    #[arg(long, global = true)]
    json: bool,
    /// The mesh's network name (nodes join only nodes of the same network).
    #[arg(long, global = true, default_value = "")]
    network: String,
    /// How long to wait for peers and answers (`500ms`, `5s`, `2m`; a bare number is seconds).
    #[arg(long, global = true, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// CURVE: encrypt and authenticate every connection (needs --key).
    #[arg(long, global = true)]
    curve: bool,
    /// CURVE: this node's public key file (its secret beside it, `FILE_secret`), as `keygen` writes them.
    #[arg(long, global = true, value_name = "FILE")]
    key: Option<PathBuf>,
    /// CURVE: a file of the public keys allowed to join (Z85 keys one per line, `#` comments, or public key files from keygen concatenated); repeatable.
    #[arg(long, global = true, value_name = "FILE")]
    allow: Vec<PathBuf>,
    /// This node's name (plaintext; under CURVE the name is the public key).
    #[arg(long, global = true)]
    name: Option<String>,
    /// A peer to join, `NAME=ENDPOINT` (under CURVE NAME is its Z85 key, or `@FILE` for its public key file); repeatable.
    #[arg(
        long = "peer",
        short = 'p',
        global = true,
        value_name = "NAME=ENDPOINT"
    )]
    peers: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate a CURVE key pair: FILE (public, to hand out) and FILE_secret (mode 600).
    Keygen {
        /// The public key file to write.
        file: PathBuf,
        /// Replace an existing pair.
        #[arg(long)]
        force: bool,
    },
    /// Run a node until interrupted: `ping` and `echo`, and optionally channels, the registry and a directory for files.
    Serve(serve::ServeArgs),
    /// Join the peers and show each one: state, incarnation, round trip, counters.
    Peers,
    /// Call `ping` on the peers and show each round trip.
    Ping {
        /// How many pings to each peer.
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Call METHOD with ARGS (JSON, default null) on every peer given; one line per peer.
    Call {
        /// The method.
        method: String,
        /// The arguments, as JSON.
        args: Option<String>,
    },
    /// Cast METHOD with ARGS (JSON, default null) to every peer given: nothing comes back.
    Cast {
        /// The method.
        method: String,
        /// The arguments, as JSON.
        args: Option<String>,
    },
    /// Read, write or watch a replicated channel shared with the peers.
    #[command(subcommand)]
    Channel(channel::ChannelCommand),
    /// List or watch the registry as the peers know it.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Send FILE to a peer serving a directory (`serve --dir`), with a progress bar.
    Send {
        /// The file to send.
        file: PathBuf,
    },
    /// Fetch the file NAME from a peer serving a directory (`serve --dir`), with a progress bar.
    Receive {
        /// The file's name in the peer's directory.
        #[arg(id = "file_name", value_name = "NAME")]
        name: String,
        /// Where to write it (default: NAME in the current directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let shown = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || matches!(
                    e.kind(),
                    ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                );
            if !shown && std::env::args().any(|a| a == "--json") {
                // Scripts asked for JSON: the usage error is JSON too.
                let message = e.kind().as_str().unwrap_or("bad usage").to_string();
                Failure::Usage(format!("{message} (see bilateral --help)")).report(true);
                return ExitCode::from(2);
            }
            e.exit();
        }
    };
    let json = cli.global.json;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.report(json);
            ExitCode::from(failure.code())
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let g = &cli.global;
    match cli.command {
        Command::Keygen { file, force } => mesh::keygen(g, &file, force),
        Command::Serve(args) => serve::run(g, &args),
        Command::Peers => peers::show(g),
        Command::Ping { count } => rpc::ping(g, count),
        Command::Call { method, args } => rpc::call(g, &method, args.as_deref()),
        Command::Cast { method, args } => rpc::cast(g, &method, args.as_deref()),
        Command::Channel(c) => channel::run(g, c),
        Command::Registry(r) => registry::run(g, r),
        Command::Send { file } => files::send(g, &file),
        Command::Receive { name, out } => files::receive(g, &name, out.as_deref()),
    }
}

/// Stdout could not be written: a closed pipe ends the command with success
/// (its reader has what it wanted), anything else is a local failure.
fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("bilateral: cannot write to stdout: {e}");
    std::process::exit(4);
}

/// The longest `--timeout` (a deadline further out could not be computed).
const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// `500ms`, `5s`, `2m`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (500ms, 5s, 2m)"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m)")),
    };
    let d = Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))?;
    if d > MAX_TIMEOUT {
        return Err(format!("{text:?}: longer than a year"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("9999999999999999999").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
