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
/// How long a server's transfer waits for a peer that makes no progress
/// before it gives the stream (and its thread) up.
const SERVER_PATIENCE: Duration = Duration::from_secs(30);

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
        stream.set_read_timeout(Some(SERVER_PATIENCE));
        stream.set_write_timeout(Some(SERVER_PATIENCE));
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
        stream.set_read_timeout(Some(SERVER_PATIENCE));
        stream.set_write_timeout(Some(SERVER_PATIENCE));
        let size = file.metadata()?.len();
        stream.write_all(&size.to_be_bytes())?;
        let sum = copy(&mut BufReader::new(file), &mut stream, size)?;
        stream.write_all(&sum.to_be_bytes())?;
        stream.finish()?;
        Ok(())
    })?;
    Ok(())
}

/// A new file beside `path` to write into before it is complete, named
/// after it and unique (two transfers of one name never share it).
fn partial_beside(path: &Path) -> std::io::Result<(PathBuf, File)> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for attempt in 0u32..1000 {
        let candidate = dir.join(format!(".{name}.{}.{attempt}.partial", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&candidate)
        {
            Ok(file) => return Ok((candidate, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free temporary name"))
}

/// Reads `size` bytes and their checksum from `stream` into `dir/name`.
fn store(stream: &mut Stream, dir: &Path, name: &str, size: u64) -> std::io::Result<u64> {
    let (partial, file) = partial_beside(&dir.join(name))?;
    let result = (|| {
        let mut file = BufWriter::new(file);
        let sum = copy(stream, &mut file, size)?;
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
fn copy(from: &mut impl Read, to: &mut impl Write, size: u64) -> std::io::Result<u64> {
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
    }
    Ok(sum.0)
}

/// Where a transfer failed: this machine's files, or the stream.
fn local(path: &Path) -> impl Fn(std::io::Error) -> Failure + '_ {
    move |e| Failure::Local(format!("{}: {e}", path.display()))
}

/// A stream failure: a peer that stopped answering is unreachable (exit 3),
/// anything else the remote side's (exit 1).
fn remote(peer: &str) -> impl Fn(std::io::Error) -> Failure + '_ {
    move |e| match e.kind() {
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            Failure::Unreachable(format!("{peer}: {e}"))
        }
        _ => Failure::Remote(format!("{peer}: {e}")),
    }
}

/// The longest verdict a server may send.
const MAX_VERDICT: u64 = 1024;

/// `send FILE`: to the first peer given.
pub fn send(g: &Global, path: &Path) -> Result<(), Failure> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Failure::Usage(format!("{}: not a file", path.display())))?;
    let file = File::open(path).map_err(local(path))?;
    let meta = file.metadata().map_err(local(path))?;
    if !meta.is_file() {
        return Err(Failure::Local(format!(
            "{}: not a regular file",
            path.display()
        )));
    }
    let size = meta.len();
    let (node, peers) = mesh::join(g)?;
    let peer = peers[0].name.clone();
    let result = send_over(g, &node, &peer, file, &name, size, path);
    node.close();
    result
}

fn send_over(
    g: &Global,
    node: &Node,
    peer: &str,
    file: File,
    name: &str,
    size: u64,
    path: &Path,
) -> Result<(), Failure> {
    let started = Instant::now();
    let init = Put {
        name: name.to_string(),
        size,
    };
    let mut stream = node
        .open_stream(peer, PUT, &init, g.timeout)
        .map_err(|e| Failure::of_stream(peer, &e))?;
    // No progress for a whole timeout is a peer that stopped answering.
    stream.set_read_timeout(Some(g.timeout));
    stream.set_write_timeout(Some(g.timeout));
    let mut bar = Progress::new(size, !g.json);
    let mut reader = BufReader::with_capacity(BLOCK, file);
    let mut sum = Checksum::new();
    let mut buf = vec![0u8; BLOCK];
    let mut sent = 0u64;
    let mut wrote = Ok(());
    while sent < size {
        let n = reader.read(&mut buf).map_err(local(path))?;
        if n == 0 {
            return Err(Failure::Local(format!(
                "{}: shorter than it was",
                path.display()
            )));
        }
        sum.update(&buf[..n]);
        if let Err(e) = stream.write_all(&buf[..n]) {
            wrote = Err(e);
            break;
        }
        sent += n as u64;
        bar.show(sent);
    }
    if wrote.is_ok() {
        wrote = stream
            .write_all(&sum.0.to_be_bytes())
            .and_then(|()| stream.finish());
    }
    // The server's verdict says why, even when it stopped reading.
    let mut verdict = String::new();
    let read = (&mut stream).take(MAX_VERDICT).read_to_string(&mut verdict);
    bar.done(sent);
    if verdict.starts_with("OK") {
        report(g, "sent", name, size, started.elapsed(), peer);
        return Ok(());
    }
    if !verdict.is_empty() {
        return Err(Failure::Remote(format!("{peer}: {verdict}")));
    }
    wrote.and(read.map(drop)).map_err(remote(peer))?;
    Err(Failure::Remote(format!("{peer}: no verdict")))
}

/// `receive NAME`: from the first peer given, into `out` (a file, or a
/// directory to put NAME in; default `./NAME`).
pub fn receive(g: &Global, name: &str, out: Option<&Path>) -> Result<(), Failure> {
    let Some(plain) = plain_name(name) else {
        return Err(Failure::Usage(format!("{name:?}: not a plain file name")));
    };
    let out: PathBuf = match out {
        Some(o) if o.is_dir() => o.join(plain),
        Some(o) => o.to_path_buf(),
        None => PathBuf::from(plain),
    };
    let (node, peers) = mesh::join(g)?;
    let peer = peers[0].name.clone();
    let result = receive_over(g, &node, &peer, name, &out);
    node.close();
    result
}

fn receive_over(
    g: &Global,
    node: &Node,
    peer: &str,
    name: &str,
    out: &Path,
) -> Result<(), Failure> {
    let started = Instant::now();
    let init = Get {
        name: name.to_string(),
    };
    let mut stream = node
        .open_stream(peer, GET, &init, g.timeout)
        .map_err(|e| Failure::of_stream(peer, &e))?;
    stream.set_read_timeout(Some(g.timeout));
    stream.set_write_timeout(Some(g.timeout));
    let mut size = [0u8; 8];
    stream.read_exact(&mut size).map_err(remote(peer))?;
    let size = u64::from_be_bytes(size);
    let (partial, file) = partial_beside(out).map_err(local(out))?;
    let result = (|| {
        let mut bar = Progress::new(size, !g.json);
        let mut file = BufWriter::new(file);
        let mut sum = Checksum::new();
        let mut buf = vec![0u8; BLOCK];
        let mut done = 0u64;
        while done < size {
            let want = (size - done).min(BLOCK as u64) as usize;
            let n = stream.read(&mut buf[..want]).map_err(remote(peer))?;
            if n == 0 {
                return Err(Failure::Remote(format!(
                    "{peer}: {name} ended before its size"
                )));
            }
            sum.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(local(out))?;
            done += n as u64;
            bar.show(done);
        }
        file.flush().map_err(local(out))?;
        check_trailer(&mut stream, sum.0).map_err(remote(peer))?;
        bar.done(done);
        std::fs::rename(&partial, out).map_err(local(out))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result?;
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

fn report(g: &Global, what: &str, name: &str, size: u64, took: Duration, peer: &str) {
    let secs = took.as_secs_f64().max(1e-6);
    if g.json {
        say!(
            "{}",
            json!({what: name, "bytes": size, "peer": peer, "seconds": secs})
        );
    } else {
        say!(
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
        let done = done.min(self.total);
        let filled = (u128::from(done) * u128::from(WIDTH) / u128::from(self.total)) as usize;
        let rate = done as f64 / self.started.elapsed().as_secs_f64().max(1e-6) / 1e6;
        format!(
            "[{}{}] {:>3}% {:>8.1} MB/s",
            "#".repeat(filled),
            ".".repeat(WIDTH as usize - filled),
            u128::from(done) * 100 / u128::from(self.total),
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
