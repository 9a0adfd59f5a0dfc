//! Generates a CURVE key pair the way an operator keeps one: a public key
//! file to hand out, and a secret key file readable by its owner only.
//!
//! ```sh
//! cargo run --example keygen -- keys/alpha.key          # writes keys/alpha.key and keys/alpha.key_secret
//! cargo run --example keygen -- keys/alpha.key --force  # replaces an existing pair
//! ```
//!
//! The public key (printed, and in `alpha.key`) is the node's name in CURVE
//! mode and the line to add to other nodes' allow-list files.

use std::error::Error;
use std::path::PathBuf;

use bilateral::Keypair;
use bilateral::security::secret_path;

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next().map(PathBuf::from) else {
        eprintln!("usage: keygen <public-key-file> [--force]");
        std::process::exit(2);
    };
    let force = args.any(|a| a == "--force");
    let secret = secret_path(&path);
    if !force && (path.exists() || secret.exists()) {
        eprintln!(
            "{} or {} exists; pass --force to replace the pair",
            path.display(),
            secret.display()
        );
        std::process::exit(1);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let keys = Keypair::generate()?;
    let secret = keys.save(&path)?;
    println!("public key  {}", keys.public());
    println!("public file {}", path.display());
    println!(
        "secret file {} (mode 600: keep it on this machine only)",
        secret.display()
    );
    Ok(())
}
