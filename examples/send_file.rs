//! Sends a file to a peer over a stream, with a progress bar, and has the
//! receiving node verify a checksum.
//!
//! ```text
//! cargo run --release --example send_file                 # demo: 256 MiB between two local nodes
//! cargo run --release --example send_file -- --curve      # the same, encrypted
//!
//! # two terminals (or two machines):
//! cargo run --release --example send_file -- receive tcp://0.0.0.0:7100 /tmp/incoming
//! cargo run --release --example send_file -- send tcp://127.0.0.1:7100 ./big.iso
//! ```
//!
//! The stream travels over the connection the nodes already share: same
//! port, same security, and calls between them keep flowing meanwhile. The
//! sender writes the file, then an 8-byte checksum; the receiver checks both
//! the length and the checksum and answers `OK` or what went wrong.

use std::error::Error;
use std::fs::File;
use std::io::{BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bilateral::{Incoming, Keypair, Node, NodeBuilder};
use serde::{Deserialize, Serialize};

/// What the sender announces when it opens the stream.
#[derive(Serialize, Deserialize, Debug)]
struct Offer {
    name: String,
    size: u64,
}

/// The largest file the receiver takes.
const MAX_SIZE: u64 = 64 << 30;
const BLOCK: usize = 256 * 1024;

/// FNV-1a, 64 bits, over everything fed to it.
struct Checksum(u64);

impl Checksum {
    fn new() -> Self {
        Checksum(0xcbf2_9ce4_8422_2325)
    }

    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("receive") if args.len() == 3 => receive_forever(&args[1], Path::new(&args[2])),
        Some("send") if args.len() == 3 => send_to(&args[1], Path::new(&args[2])),
        None => demo(false),
        Some("--curve") if args.len() == 1 => demo(true),
        _ => {
            eprintln!(
                "usage: send_file [--curve] | receive <endpoint> <dir> | send <endpoint> <file>"
            );
            std::process::exit(2);
        }
    }
}

/// Two nodes in this process; a generated file goes from one to the other.
fn demo(curve: bool) -> Result<(), Box<dyn Error>> {
    let dir = std::env::temp_dir().join(format!("bilateral-send-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let source = dir.join("payload.bin");
    let size = 256u64 << 20;
    make_file(&source, size)?;

    let (receiver, sender) = if curve {
        let (kr, ks) = (Keypair::generate()?, Keypair::generate()?);
        (
            Node::secure_builder(&kr).allow_keys([*ks.public()]),
            Node::secure_builder(&ks),
        )
    } else {
        (Node::builder("receiver"), Node::builder("sender"))
    };
    let receiver = receiving_node(receiver.listen("tcp://127.0.0.1:*"), dir.join("received"))?;
    let sender = sender.start()?;
    sender.connect(receiver.name(), receiver.endpoint().unwrap_or_default())?;
    sender.wait_for_peer(receiver.name(), Duration::from_secs(5))?;
    println!(
        "{} mode: sending {} MiB from {} to {}",
        if curve { "CURVE" } else { "plaintext" },
        size >> 20,
        short(sender.name()),
        short(receiver.name())
    );
    let result = send(&sender, receiver.name(), &source);
    std::fs::remove_dir_all(&dir)?;
    result
}

fn short(name: &str) -> String {
    name.chars().take(12).collect()
}

/// Writes `size` pseudo-random bytes to `path`.
fn make_file(path: &Path, size: u64) -> std::io::Result<()> {
    let mut file = std::io::BufWriter::new(File::create(path)?);
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; BLOCK];
    let mut left = size;
    while left > 0 {
        for word in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
        }
        let n = left.min(BLOCK as u64) as usize;
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.flush()
}

/// A node that stores every file it is sent in `dir`.
fn receiving_node(builder: NodeBuilder, dir: PathBuf) -> Result<Node, Box<dyn Error>> {
    std::fs::create_dir_all(&dir)?;
    let node = builder.start()?;
    node.on_stream("file", move |incoming: Incoming<Offer>| {
        let offer = incoming.init();
        // Only a plain file name, and a size the receiver agrees to.
        let name = Path::new(&offer.name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty() && n != "." && n != "..");
        let Some(name) = name else {
            incoming.refuse("not a file name");
            return Ok(());
        };
        if offer.size > MAX_SIZE {
            incoming.refuse(format!("larger than {MAX_SIZE} bytes"));
            return Ok(());
        }
        let from = incoming.peer().to_string();
        let (offer, mut stream) = incoming.accept()?;
        let path = dir.join(&name);
        let verdict = match receive(&mut stream, &path, offer.size) {
            Ok(sum) => format!("OK {sum:016x}"),
            Err(e) => {
                // Nothing half-written stays behind.
                let _ = std::fs::remove_file(&path);
                format!("failed: {e}")
            }
        };
        println!("receiver: {name} from {} -> {verdict}", short(&from));
        // If the stream itself failed, so does this, and the sender knows.
        stream.write_all(verdict.as_bytes())?;
        stream.finish()?;
        Ok(())
    })?;
    Ok(node)
}

/// Reads `size` bytes and the checksum trailer from `stream` into a new
/// file at `path`; returns the checksum once it matched.
fn receive(stream: &mut bilateral::Stream, path: &Path, size: u64) -> std::io::Result<u64> {
    let mut file = std::io::BufWriter::new(File::create(path)?);
    let mut sum = Checksum::new();
    let mut buf = vec![0u8; BLOCK];
    let mut left = size;
    while left > 0 {
        let want = left.min(BLOCK as u64) as usize;
        let n = stream.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::other(
                "the stream ended before the file did",
            ));
        }
        sum.update(&buf[..n]);
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    let mut trailer = [0u8; 8];
    stream.read_exact(&mut trailer)?;
    if u64::from_be_bytes(trailer) != sum.0 {
        return Err(std::io::Error::other("checksum mismatch: file discarded"));
    }
    Ok(sum.0)
}

/// Streams `path` to `peer` with a progress bar; prints the receiver's verdict.
fn send(node: &Node, peer: &str, path: &Path) -> Result<(), Box<dyn Error>> {
    let size = std::fs::metadata(path)?.len();
    let offer = Offer {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        size,
    };
    let mut stream = node.open_stream(peer, "file", &offer, Duration::from_secs(10))?;
    let mut file = BufReader::with_capacity(BLOCK, File::open(path)?);
    let mut sum = Checksum::new();
    let mut buf = vec![0u8; BLOCK];
    let mut bar = Progress::new(size);
    let started = Instant::now();
    let mut sent = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sum.update(&buf[..n]);
        stream.write_all(&buf[..n])?;
        sent += n as u64;
        bar.show(sent);
    }
    if sent != size {
        return Err(format!("{} changed while it was read", path.display()).into());
    }
    stream.write_all(&sum.0.to_be_bytes())?;
    stream.finish()?;
    let mut verdict = String::new();
    stream.read_to_string(&mut verdict)?;
    bar.done(sent);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sender: {} MiB in {secs:.2} s ({:.0} MB/s); receiver says: {verdict}",
        size >> 20,
        size as f64 / secs / 1e6
    );
    if verdict.starts_with("OK") {
        Ok(())
    } else {
        Err(verdict.into())
    }
}

fn receive_forever(endpoint: &str, dir: &Path) -> Result<(), Box<dyn Error>> {
    let node = receiving_node(
        Node::builder("receiver")
            .network("send_file")
            .listen(endpoint),
        dir.to_path_buf(),
    )?;
    println!(
        "receiver listening on {}; files go to {}",
        node.endpoints().join(", "),
        dir.display()
    );
    loop {
        std::thread::park();
    }
}

fn send_to(endpoint: &str, path: &Path) -> Result<(), Box<dyn Error>> {
    let node = Node::builder(format!("sender-{}", std::process::id()))
        .network("send_file")
        .start()?;
    node.connect("receiver", endpoint)?;
    node.wait_for_peer("receiver", Duration::from_secs(10))?;
    send(&node, "receiver", path)
}

/// A progress bar on stderr: redrawn in place on a terminal, a line per
/// quarter otherwise.
struct Progress {
    total: u64,
    started: Instant,
    last: Instant,
    quarter: u64,
    tty: bool,
}

impl Progress {
    fn new(total: u64) -> Self {
        let now = Instant::now();
        Progress {
            total: total.max(1),
            started: now,
            last: now,
            quarter: 0,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self, done: u64) {
        if self.tty {
            if self.last.elapsed() >= Duration::from_millis(100) {
                self.last = Instant::now();
                eprint!("\r{}", self.line(done));
            }
        } else if done * 4 / self.total > self.quarter {
            self.quarter = done * 4 / self.total;
            eprintln!("{}", self.line(done));
        }
    }

    fn done(&mut self, done: u64) {
        if self.tty {
            eprintln!("\r{}", self.line(done));
        }
    }

    fn line(&self, done: u64) -> String {
        const WIDTH: u64 = 30;
        let filled = (done * WIDTH / self.total) as usize;
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-6) / 1e6;
        format!(
            "[{}{}] {:>3}% {:>6} / {} MiB {:>6.0} MB/s",
            "#".repeat(filled),
            ".".repeat(WIDTH as usize - filled),
            done * 100 / self.total,
            done >> 20,
            self.total >> 20,
            rate
        )
    }
}
