//! The node a command runs, built from the global options, and the peers it
//! joins.

use std::path::Path;
use std::time::{Duration, Instant};

use bilateral::security::{load_public_key, read_key_list, secret_path};
use bilateral::{Keypair, Node, NodeBuilder, PublicKey};

use crate::Global;
use crate::outcome::Failure;

/// A peer named on the command line.
#[derive(Debug, Clone)]
pub struct Peer {
    pub name: String,
    pub endpoint: String,
}

/// The length of a CURVE public key in Z85.
const Z85_KEY_LEN: usize = 40;

/// The peers of `--peer NAME=ENDPOINT` (NAME may be `@FILE`, a public key file).
pub fn peers(g: &Global) -> Result<Vec<Peer>, Failure> {
    g.peers.iter().map(|p| parse_peer(p)).collect()
}

fn parse_peer(text: &str) -> Result<Peer, Failure> {
    // A Z85 key (40 characters) may itself contain '=': a key followed by
    // '=' is taken whole before the first '=' is looked for.
    let split = match (text.get(..Z85_KEY_LEN), text.get(Z85_KEY_LEN..)) {
        (Some(key), Some(rest)) if rest.starts_with('=') && PublicKey::from_z85(key).is_ok() => {
            Some((key, &rest[1..]))
        }
        _ => text.split_once('='),
    };
    let Some((name, endpoint)) = split else {
        return Err(Failure::Usage(format!(
            "--peer {text:?}: expected NAME=ENDPOINT (tcp://host:port)"
        )));
    };
    let name = match name.strip_prefix('@') {
        Some(file) => load_public_key(file)
            .map_err(|e| Failure::Local(format!("--peer {text:?}: {e}")))?
            .to_z85(),
        None => name.to_string(),
    };
    if name.is_empty() || endpoint.is_empty() {
        return Err(Failure::Usage(format!(
            "--peer {text:?}: expected NAME=ENDPOINT"
        )));
    }
    Ok(Peer {
        name,
        endpoint: endpoint.to_string(),
    })
}

/// The peers, requiring at least one.
pub fn some_peers(g: &Global) -> Result<Vec<Peer>, Failure> {
    let peers = peers(g)?;
    if peers.is_empty() {
        return Err(Failure::Usage(
            "no peer given: add --peer NAME=ENDPOINT".to_string(),
        ));
    }
    Ok(peers)
}

/// A builder with the global options: name or CURVE keys, network.
pub fn builder(g: &Global) -> Result<NodeBuilder, Failure> {
    let builder = if g.curve {
        let Some(key) = &g.key else {
            return Err(Failure::Usage("--curve needs --key FILE".to_string()));
        };
        let keys = Keypair::load(secret_path(key))
            .map_err(|e| Failure::Local(format!("--key {}: {e}", key.display())))?;
        let mut allowed: Vec<PublicKey> = Vec::new();
        for file in &g.allow {
            allowed.extend(allow_file(file)?);
        }
        // The peers named on the command line are trusted too.
        for peer in peers(g)? {
            if let Ok(key) = PublicKey::from_z85(&peer.name) {
                allowed.push(key);
            }
        }
        Node::secure_builder(&keys).allow_keys(allowed)
    } else {
        if g.key.is_some() || !g.allow.is_empty() {
            return Err(Failure::Usage("--key and --allow need --curve".to_string()));
        }
        let name = g
            .name
            .clone()
            .unwrap_or_else(|| format!("cli-{}", std::process::id()));
        Node::builder(name)
    };
    Ok(builder.network(g.network.clone()).call_timeout(g.timeout))
}

/// The keys of an allow file, read as the library reads them
/// (`security::read_key_list`: Z85 keys one per line, `#` comments, or
/// public key files as `keygen` writes them).
pub fn allow_file(path: &Path) -> Result<Vec<PublicKey>, Failure> {
    read_key_list(path).map_err(|e| Failure::Local(format!("--allow {}: {e}", path.display())))
}

/// Waits until `done` holds for every peer, within the timeout; a peer
/// for which it does not is unreachable (exit 3).
pub fn wait_for_all(
    g: &Global,
    peers: &[Peer],
    what: &str,
    done: impl Fn(&str) -> bool,
) -> Result<(), Failure> {
    let deadline = Instant::now() + g.timeout;
    for p in peers {
        while !done(&p.name) {
            if Instant::now() >= deadline {
                return Err(Failure::Unreachable(format!(
                    "{}: no {what} within {:?}",
                    p.name, g.timeout
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

/// Whether none of `peers` is in session any more.
pub fn all_gone(node: &Node, peers: &[Peer]) -> bool {
    peers
        .iter()
        .all(|p| node.peer_state(&p.name) != Some(bilateral::PeerState::Active))
}

/// Starts a node with the global options (no listening endpoint) and joins
/// every peer given, each within the timeout.
pub fn join(g: &Global) -> Result<(Node, Vec<Peer>), Failure> {
    let peers = some_peers(g)?;
    let node = builder(g)?.start()?;
    connect_all(&node, &peers, g.timeout)?;
    Ok((node, peers))
}

/// A peer given on the command line, and whether it could be joined.
pub type Joined = (Peer, Result<(), Failure>);

/// Like [`join`], but a peer that cannot be joined in time is reported
/// instead of failing the command: each peer given, in order, with whether
/// it is in session (or why not). For commands that address every peer at
/// once and report each (`ping`, `call`, `cast`).
pub fn join_each(g: &Global) -> Result<(Node, Vec<Joined>), Failure> {
    let peers = some_peers(g)?;
    let node = builder(g)?.start()?;
    let joined = connect_each(&node, &peers, g.timeout)?;
    Ok((node, peers.into_iter().zip(joined).collect()))
}

/// Dials every peer and waits until each is in session.
pub fn connect_all(node: &Node, peers: &[Peer], timeout: Duration) -> Result<(), Failure> {
    connect_each(node, peers, timeout)?.into_iter().collect()
}

/// Dials every peer, then waits for each in turn within one deadline: for
/// each, whether it is in session (or why not).
fn connect_each(
    node: &Node,
    peers: &[Peer],
    timeout: Duration,
) -> Result<Vec<Result<(), Failure>>, Failure> {
    for p in peers {
        node.connect(&p.name, &p.endpoint)?;
    }
    let deadline = Instant::now() + timeout;
    Ok(peers
        .iter()
        .map(|p| {
            let left = deadline.saturating_duration_since(Instant::now());
            node.wait_for_peer(&p.name, left)
                .map_err(|e| Failure::Unreachable(format!("{} at {}: {e}", p.name, p.endpoint)))
        })
        .collect())
}

/// `keygen`: a key pair as files.
pub fn keygen(g: &Global, path: &Path, force: bool) -> Result<(), Failure> {
    let secret = secret_path(path);
    if !force && (path.exists() || secret.exists()) {
        return Err(Failure::Local(format!(
            "{} or {} exists; pass --force to replace the pair",
            path.display(),
            secret.display()
        )));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let keys = Keypair::generate().map_err(|e| Failure::Local(e.to_string()))?;
    let secret = keys.save(path).map_err(|e| Failure::Local(e.to_string()))?;
    if g.json {
        say!(
            "{}",
            serde_json::json!({
                "public_key": keys.public().to_z85(),
                "public_file": path,
                "secret_file": secret,
            })
        );
    } else {
        say!("public key  {}", keys.public());
        say!("public file {}", path.display());
        say!(
            "secret file {} (mode 600: keep it on this machine only)",
            secret.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_bad_ones_are_usage_errors() {
        let p = parse_peer("alpha=tcp://127.0.0.1:7100").unwrap();
        assert_eq!(
            (p.name.as_str(), p.endpoint.as_str()),
            ("alpha", "tcp://127.0.0.1:7100")
        );
        for bad in ["alpha", "=tcp://x:1", "alpha="] {
            assert_eq!(parse_peer(bad).unwrap_err().code(), 2, "{bad}");
        }
        assert_eq!(
            parse_peer("@/nonexistent.key=tcp://x:1")
                .unwrap_err()
                .code(),
            4
        );
    }

    #[test]
    fn a_z85_key_containing_equals_signs_is_a_peer_name() {
        let key = (0..10_000)
            .map(|_| Keypair::generate().unwrap().public().to_z85())
            .find(|z| z.contains('='))
            .expect("about a third of all keys hold an '='");
        let p = parse_peer(&format!("{key}=tcp://127.0.0.1:7100")).unwrap();
        assert_eq!(
            (p.name.as_str(), p.endpoint.as_str()),
            (key.as_str(), "tcp://127.0.0.1:7100")
        );
    }
}
