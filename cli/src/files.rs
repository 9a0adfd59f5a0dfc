//! `send`, `receive`, and the directory `serve --dir` exposes, over
//! Bilateral streams.
//!
//! Two stream services, with a MessagePack init and raw bytes after it:
//!
//! - `files.put`, init `{name, size}`: the opener writes `size` bytes and
//!   an 8-byte FNV-1a checksum (big-endian), then finishes; the server
//!   answers `OK <checksum>` or `failed: <why>` and finishes. The file is
//!   written to a temporary name and renamed only once the checksum matched.
//! - `files.get`, init `{name}`: the server writes the size (8 bytes,
//!   big-endian), the bytes and the checksum, then finishes.
//!
//! Names are plain file names (no directories); anything else is refused.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bilateral::{Incoming, Node, Stream};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::Global;
use crate::mesh;
use crate::outcome::Failure;

const PUT: &str = "files.put";
const GET: &str = "files.get";
/// The largest file a server takes.
const MAX_SIZE: u64 = 64 << 30;
const BLOCK: usize = 256 * 1024;

#[derive(Serialize, Deserialize, Debug)]
struct Put {
    name: String,
    size: u64,
}

#[derive(Serialize, Deserialize, Debug)]
struct Get {
    name: String,
}

/// FNV-1a, 64 bits.
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

/// `name` if it is a plain file name.
fn plain_name(name: &str) -> Option<&str> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).file_name().is_some_and(|n| n == name);
    ok.then_some(name)
}

/// Serves `dir` to `send` and `receive`.
pub fn serve_dir(node: &Node, dir: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)?;
    let put_dir = dir.to_path_buf();
    node.on_stream(PUT, move |incoming: Incoming<Put>| {
        let offer = incoming.init();
        let Some(name) = plain_name(&offer.name).map(str::to_string) else {
            incoming.refuse("not a plain file name");
            return Ok(());
        };
        if offer.size > MAX_SIZE {
            incoming.refuse(format!("larger than {MAX_SIZE} bytes"));
            return Ok(());
        }
        let (offer, mut stream) = incoming.accept()?;
        let verdict = match store(&mut stream, &put_dir, &name, offer.size) {
            Ok(sum) => format!("OK {sum:016x}"),
            Err(e) => format!("failed: {e}"),
        };
        log::info!("{name}: {verdict}");
        stream.write_all(verdict.as_bytes())?;
        stream.finish()?;
        Ok(())
    })?;
    let get_dir = dir.to_path_buf();
    node.on_stream(GET, move |incoming: Incoming<Get>| {
        let Some(path) = plain_name(&incoming.init().name).map(|n| get_dir.join(n)) else {
            incoming.refuse("not a plain file name");
            return Ok(());
        };
        let Ok(file) = File::open(&path) else {
            incoming.refuse("no such file");
            return Ok(());
        };
        let (_, mut stream) = incoming.accept()?;
        let size = file.metadata()?.len();
        stream.write_all(&size.to_be_bytes())?;
        let sum = copy(&mut BufReader::new(file), &mut stream, size, None)?;
        stream.write_all(&sum.to_be_bytes())?;
        stream.finish()?;
        Ok(())
    })?;
    Ok(())
}

/// Reads `size` bytes and their checksum from `stream` into `dir/name`.
fn store(stream: &mut Stream, dir: &Path, name: &str, size: u64) -> std::io::Result<u64> {
    let partial = dir.join(format!(".{name}.partial"));
    let result = (|| {
        let mut file = BufWriter::new(File::create(&partial)?);
        let sum = copy(stream, &mut file, size, None)?;
        file.flush()?;
        check_trailer(stream, sum)?;
        std::fs::rename(&partial, dir.join(name))?;
        Ok(sum)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn check_trailer(stream: &mut impl Read, sum: u64) -> std::io::Result<()> {
    let mut trailer = [0u8; 8];
    stream.read_exact(&mut trailer)?;
    if u64::from_be_bytes(trailer) != sum {
        return Err(std::io::Error::other("checksum mismatch"));
    }
    Ok(())
}

/// Copies exactly `size` bytes, returning their checksum.
fn copy(
    from: &mut impl Read,
    to: &mut impl Write,
    size: u64,
    mut bar: Option<&mut Progress>,
) -> std::io::Result<u64> {
    let mut sum = Checksum::new();
    let mut buf = vec![0u8; BLOCK];
    let mut done = 0u64;
    while done < size {
        let want = (size - done).min(BLOCK as u64) as usize;
        let n = from.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::other("ended before the file did"));
        }
        sum.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        done += n as u64;
        if let Some(bar) = bar.as_deref_mut() {
            bar.show(done);
        }
    }
    Ok(sum.0)
}

/// `send FILE`: to the first peer given.
pub fn send(g: &Global, path: &Path) -> Result<(), Failure> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Failure::Usage(format!("{}: not a file", path.display())))?;
    let file = File::open(path).map_err(|e| Failure::Local(format!("{}: {e}", path.display())))?;
    let size = file.metadata()?.len();
    let (node, peers) = mesh::join(g)?;
    let peer = &peers[0].name;
    let started = Instant::now();
    let mut stream = node
        .open_stream(
            peer,
            PUT,
            &Put {
                name: name.clone(),
                size,
            },
            g.timeout,
        )
        .map_err(|e| Failure::of_stream(peer, &e))?;
    let mut bar = Progress::new(size, !g.json);
    let sent = (|| {
        let sum = copy(&mut BufReader::new(file), &mut stream, size, Some(&mut bar))?;
        stream.write_all(&sum.to_be_bytes())?;
        stream.finish()?;
        let mut verdict = String::new();
        stream.read_to_string(&mut verdict)?;
        Ok::<_, std::io::Error>(verdict)
    })();
    bar.done(size);
    node.close();
    let verdict = sent.map_err(|e| Failure::Remote(format!("{peer}: {e}")))?;
    report(g, "sent", &name, size, started.elapsed(), peer);
    if verdict.starts_with("OK") {
        Ok(())
    } else {
        Err(Failure::Remote(format!("{peer}: {verdict}")))
    }
}

/// `receive NAME`: from the first peer given, into `out` (or `./NAME`).
pub fn receive(g: &Global, name: &str, out: Option<&Path>) -> Result<(), Failure> {
    let Some(plain) = plain_name(name) else {
        return Err(Failure::Usage(format!("{name:?}: not a plain file name")));
    };
    let out: PathBuf = out.map_or_else(|| PathBuf::from(plain), Path::to_path_buf);
    let (node, peers) = mesh::join(g)?;
    let peer = &peers[0].name;
    let started = Instant::now();
    let mut stream = node
        .open_stream(
            peer,
            GET,
            &Get {
                name: name.to_string(),
            },
            g.timeout,
        )
        .map_err(|e| Failure::of_stream(peer, &e))?;
    let partial = out.with_extension("partial");
    let received = (|| {
        let mut size = [0u8; 8];
        stream.read_exact(&mut size)?;
        let size = u64::from_be_bytes(size);
        let mut bar = Progress::new(size, !g.json);
        let mut file = BufWriter::new(File::create(&partial)?);
        let sum = copy(&mut stream, &mut file, size, Some(&mut bar))?;
        file.flush()?;
        check_trailer(&mut stream, sum)?;
        bar.done(size);
        std::fs::rename(&partial, &out)?;
        Ok::<_, std::io::Error>(size)
    })();
    node.close();
    match received {
        Ok(size) => {
            report(
                g,
                "received",
                &out.display().to_string(),
                size,
                started.elapsed(),
                peer,
            );
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(Failure::Remote(format!("{peer}: {name}: {e}")))
        }
    }
}

fn report(g: &Global, what: &str, name: &str, size: u64, took: Duration, peer: &str) {
    let secs = took.as_secs_f64().max(1e-6);
    if g.json {
        println!(
            "{}",
            json!({what: name, "bytes": size, "peer": peer, "seconds": secs})
        );
    } else {
        println!(
            "{what} {name}: {size} bytes in {secs:.2} s ({:.1} MB/s)",
            size as f64 / secs / 1e6
        );
    }
}

/// A progress bar on stderr, redrawn in place when stderr is a terminal.
struct Progress {
    total: u64,
    started: Instant,
    last: Instant,
    shown: bool,
}

impl Progress {
    fn new(total: u64, wanted: bool) -> Self {
        let now = Instant::now();
        Progress {
            total: total.max(1),
            started: now,
            last: now,
            shown: wanted && std::io::stderr().is_terminal(),
        }
    }

    fn show(&mut self, done: u64) {
        if self.shown && self.last.elapsed() >= Duration::from_millis(100) {
            self.last = Instant::now();
            eprint!("\r{}", self.line(done));
        }
    }

    fn done(&mut self, done: u64) {
        if self.shown {
            eprintln!("\r{}", self.line(done));
        }
    }

    fn line(&self, done: u64) -> String {
        const WIDTH: u64 = 30;
        let filled = (done.min(self.total) * WIDTH / self.total) as usize;
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-6) / 1e6;
        format!(
            "[{}{}] {:>3}% {:>8.1} MB/s",
            "#".repeat(filled),
            ".".repeat(WIDTH as usize - filled),
            done.min(self.total) * 100 / self.total,
            rate
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_file_names_are_served() {
        assert_eq!(plain_name("report.pdf"), Some("report.pdf"));
        for bad in ["", ".", "..", "a/b", "../x", "/etc/passwd", "a\\b", "x\0y"] {
            assert_eq!(plain_name(bad), None, "{bad:?}");
        }
    }
}
