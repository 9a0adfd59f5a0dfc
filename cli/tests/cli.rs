//! The `bilateral` command line as a user runs it: a `serve` process, and
//! every other command against it over TCP loopback; exit codes, `--json`,
//! CURVE with keys from `keygen`, and the Python reference peer.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::Duration;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_bilateral");

fn bilateral() -> Command {
    let mut c = Command::new(BIN);
    c.timeout(Duration::from_secs(30));
    c
}

/// A temporary directory removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "bilateral-cli-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `bilateral serve` process, stopped at the end.
struct Server {
    child: Child,
    name: String,
    endpoint: String,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = StdCommand::new(BIN)
            .args(["serve", "--json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("bilateral serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("serve printed {line:?}: {e}"));
        Server {
            child,
            name: ready["name"].as_str().unwrap().to_string(),
            endpoint: ready["endpoint"].as_str().unwrap().to_string(),
        }
    }

    fn named(name: &str, args: &[&str]) -> Server {
        let mut all = vec!["--name", name];
        all.extend_from_slice(args);
        Server::start(&all)
    }

    fn peer(&self) -> String {
        format!("{}={}", self.name, self.endpoint)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed when the test ends, passed or not.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nobody listens on: one this process just had and closed.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

#[test]
fn help_shows_an_example_of_every_subcommand() {
    let out = bilateral()
        .arg("--help")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let help = String::from_utf8(out).unwrap();
    for sub in [
        "keygen",
        "serve",
        "peers",
        "ping",
        "call",
        "cast",
        "channel set",
        "channel get",
        "channel watch",
        "registry ls",
        "registry watch",
        "send",
        "receive",
    ] {
        assert!(
            help.contains(&format!("bilateral {sub} ")),
            "no example of {sub}:\n{help}"
        );
    }
    assert!(help.contains("Exit codes"));
}

#[test]
fn keygen_writes_a_pair_and_will_not_overwrite_it() {
    let dir = TempDir::new("keygen");
    let public = dir.path("alpha.key");
    let out = bilateral()
        .args(["--json", "keygen"])
        .arg(&public)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let line = &json_lines(&out)[0];
    assert_eq!(line["public_key"].as_str().unwrap().len(), 40);
    let secret = dir.path("alpha.key_secret");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    bilateral()
        .arg("keygen")
        .arg(&public)
        .assert()
        .code(4)
        .stderr(predicate::str::contains("--force"));
    bilateral()
        .arg("keygen")
        .arg(&public)
        .arg("--force")
        .assert()
        .success();
}

#[test]
fn calls_pings_casts_and_peers_against_a_served_node() {
    let server = Server::named("alpha", &[]);
    let p = server.peer();
    bilateral()
        .args([
            "call",
            "echo",
            r#"{"a": [1, 2.5, null], "b": "x"}"#,
            "--peer",
            &p,
        ])
        .assert()
        .success()
        .stdout(r#"{"a":[1,2.5,null],"b":"x"}"#.to_string() + "\n");
    let out = bilateral()
        .args(["--json", "ping", "--count", "3", "--peer", &p])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let pings = json_lines(&out);
    assert_eq!(pings.len(), 3);
    assert!(
        pings
            .iter()
            .all(|l| l["peer"] == "alpha" && l["rtt_us"].as_u64().is_some())
    );
    bilateral()
        .args(["cast", "echo", "1", "--peer", &p])
        .assert()
        .success()
        .stdout(predicate::str::contains("to 1 of 1"));
    let out = bilateral()
        .args(["--json", "peers", "--peer", &p])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let peers = json_lines(&out);
    assert_eq!(peers[0]["peer"], "alpha");
    assert_eq!(peers[0]["state"], "active");
    assert!(peers[0]["messages_in"].as_u64().unwrap() > 0);
    bilateral()
        .args(["peers", "--peer", &p])
        .assert()
        .success()
        .stdout(predicate::str::contains("PEER").and(predicate::str::contains("active")));
}

#[test]
fn a_multicast_prints_one_line_per_peer() {
    let (a, b) = (Server::named("alpha", &[]), Server::named("beta", &[]));
    let out = bilateral()
        .args(["call", "ping", "--peer", &a.peer(), "--peer", &b.peer()])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["alpha\t\"pong\"", "beta\t\"pong\""]);
    let out = bilateral()
        .args([
            "--json",
            "call",
            "nope",
            "--peer",
            &a.peer(),
            "--peer",
            &b.peer(),
        ])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    assert!(
        lines
            .iter()
            .all(|l| l["ok"] == false && l["error"]["kind"] == "remote")
    );
    // A peer that cannot be joined gets its own line among the answers,
    // and the exit code is that of the first failure (here: unreachable).
    let ghost = format!("ghost=tcp://127.0.0.1:{}", closed_port());
    for command in [
        &["call", "ping"][..],
        &["ping", "--count", "1"],
        &["cast", "log", "1"],
    ] {
        let out = bilateral()
            .args(["--json", "--timeout", "1s"])
            .args(command)
            .args(["--peer", &ghost, "--peer", &a.peer()])
            .assert()
            .code(3)
            .get_output()
            .stdout
            .clone();
        let lines = json_lines(&out);
        assert!(
            lines
                .iter()
                .any(|l| l["peer"] == "ghost" && l["error"]["kind"] == "unreachable"),
            "{command:?}: {lines:?}"
        );
        let answered = lines
            .iter()
            .any(|l| l["peer"] == "alpha" || l["queued"] == 1);
        assert!(answered, "{command:?}: alpha answered too: {lines:?}");
    }
}

#[test]
fn exit_codes_tell_remote_usage_and_unreachable_apart() {
    let server = Server::named("alpha", &[]);
    let p = server.peer();
    bilateral()
        .args(["call", "nope", "--peer", &p])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unknown method"));
    bilateral()
        .args(["call", "echo", "{not json", "--peer", &p])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not JSON"));
    bilateral()
        .args(["call", "echo", "--peer", "alpha"])
        .assert()
        .code(2);
    bilateral().args(["call", "echo"]).assert().code(2);
    bilateral().args(["frobnicate"]).assert().code(2);
    let closed = closed_port();
    let out = bilateral()
        .args(["--json", "--timeout", "500ms", "call", "echo", "1"])
        .arg("--peer")
        .arg(format!("ghost=tcp://127.0.0.1:{closed}"))
        .assert()
        .code(3)
        .get_output()
        .stdout
        .clone();
    assert_eq!(json_lines(&out)[0]["error"]["kind"], "unreachable");
}

#[test]
fn channels_set_get_and_watch_through_a_served_node() {
    let server = Server::named("alpha", &["--channel", "config"]);
    let p = server.peer();
    bilateral()
        .args([
            "channel",
            "set",
            "config",
            "mode",
            r#""fast""#,
            "--peer",
            &p,
        ])
        .assert()
        .success();
    // A second command, a second node: it finds the value on the server.
    bilateral()
        .args(["channel", "get", "config", "mode", "--peer", &p])
        .assert()
        .success()
        .stdout("\"fast\"\n");
    bilateral()
        .args(["channel", "get", "config", "missing", "--peer", &p])
        .assert()
        .code(1);
    let watcher = Killed(
        StdCommand::new(BIN)
            .args([
                "--json", "channel", "watch", "config", "--count", "1", "--peer", &p,
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The watcher reports changes from the moment it has caught up; keep
    // writing until it has seen one (each write is confirmed by the server).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut watcher = watcher;
    let mut n = 0;
    let status = loop {
        n += 1;
        bilateral()
            .args([
                "channel",
                "set",
                "config",
                "n",
                &n.to_string(),
                "--peer",
                &p,
            ])
            .assert()
            .success();
        if let Some(status) = watcher.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher saw nothing"
        );
    };
    assert!(status.success());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut watcher.0.stdout.take().unwrap(), &mut out).unwrap();
    let change = &json_lines(out.as_bytes())[0];
    assert_eq!(change["key"], "n");
    assert!(change["value"].as_u64().is_some());
}

#[test]
fn the_registry_lists_what_a_served_node_registered() {
    let server = Server::named(
        "alpha",
        &[
            "--register",
            r#"services/web="http://10.0.0.1""#,
            "--register",
            "services/db=5432",
        ],
    );
    let out = bilateral()
        .args([
            "--json",
            "registry",
            "ls",
            "services",
            "--peer",
            &server.peer(),
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let entries = json_lines(&out);
    let got: Vec<(&str, &Value)> = entries
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), &e["value"]))
        .collect();
    assert_eq!(
        got,
        [
            ("db", &Value::from(5432)),
            ("web", &Value::from("http://10.0.0.1"))
        ]
    );
    assert!(entries.iter().all(|e| e["owner"] == "alpha"));
    bilateral()
        .args([
            "--json",
            "registry",
            "watch",
            "services",
            "--count",
            "2",
            "--peer",
            &server.peer(),
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""event":"added""#).count(2));
}

#[test]
fn files_go_both_ways_and_names_are_checked() {
    let dir = TempDir::new("files");
    let served = dir.path("served");
    let server = Server::named("alpha", &["--dir", served.to_str().unwrap()]);
    let p = server.peer();
    let source = dir.path("data.bin");
    let bytes: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&source, &bytes).unwrap();
    bilateral()
        .arg("send")
        .arg(&source)
        .args(["--peer", &p])
        .assert()
        .success();
    assert_eq!(std::fs::read(served.join("data.bin")).unwrap(), bytes);
    let back = dir.path("back.bin");
    bilateral()
        .args(["--json", "receive", "data.bin", "--out"])
        .arg(&back)
        .args(["--peer", &p])
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""bytes":3000000"#));
    assert_eq!(std::fs::read(&back).unwrap(), bytes);
    bilateral()
        .args(["receive", "missing.bin", "--out"])
        .arg(dir.path("x"))
        .args(["--peer", &p])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no such file"));
    bilateral()
        .args(["receive", "../etc/passwd", "--peer", &p])
        .assert()
        .code(2);
    assert!(!dir.path("x").exists());
}

#[test]
fn curve_with_keys_from_keygen_and_an_allow_file() {
    let dir = TempDir::new("curve");
    for who in ["alpha", "me", "stranger"] {
        bilateral()
            .arg("keygen")
            .arg(dir.path(&format!("{who}.key")))
            .assert()
            .success();
    }
    let public = |who: &str| {
        let text = std::fs::read_to_string(dir.path(&format!("{who}.key"))).unwrap();
        text.lines()
            .find_map(|l| l.trim().strip_prefix("public-key = "))
            .unwrap()
            .trim_matches('"')
            .to_string()
    };
    std::fs::write(
        dir.path("allowed"),
        format!("# who may join alpha\n{}\n", public("me")),
    )
    .unwrap();
    let key = |who: &str| {
        dir.path(&format!("{who}.key"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let server = Server::start(&[
        "--curve",
        "--key",
        &key("alpha"),
        "--allow",
        dir.path("allowed").to_str().unwrap(),
    ]);
    assert_eq!(server.name, public("alpha"));
    let peer = format!("@{}={}", key("alpha"), server.endpoint);
    bilateral()
        .args([
            "--curve",
            "--key",
            &key("me"),
            "call",
            "echo",
            "[7]",
            "--peer",
            &peer,
        ])
        .assert()
        .success()
        .stdout("[7]\n");
    bilateral()
        .args([
            "--curve",
            "--key",
            &key("stranger"),
            "--timeout",
            "1s",
            "call",
            "echo",
            "1",
        ])
        .args(["--peer", &peer])
        .assert()
        .code(3);
    bilateral()
        .args(["--curve", "call", "echo", "--peer", &peer])
        .assert()
        .code(2);
}

/// The Python reference peer (interop/python), driven by its control
/// protocol only to start it: the command line then calls it like any node.
#[test]
fn the_command_line_calls_the_python_peer() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop/python/bilateral_peer.py");
    let ready = StdCommand::new("python3")
        .args(["-c", "import zmq, msgpack"])
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but python3 cannot import zmq and msgpack"
        );
        eprintln!("skipped: python3 with pyzmq and msgpack not found");
        return;
    }
    let mut py = Killed(
        StdCommand::new("python3")
            .arg(script)
            .args(["--name", "py", "--listen", "tcp://127.0.0.1:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(py.0.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    let ready: Value = serde_json::from_str(&line).unwrap();
    // Its events keep coming: read them all (a closed pipe would end it).
    let (events, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = events.send(v);
            }
        }
    });
    let peer = format!("py={}", ready["endpoint"].as_str().unwrap());
    bilateral()
        .args(["call", "add", "[2, 3]", "--peer", &peer])
        .assert()
        .success()
        .stdout("5\n");
    bilateral()
        .args(["--json", "call", "fail", "--peer", &peer])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("python says no"));
    bilateral()
        .args(["--json", "peers", "--peer", &peer])
        .assert()
        .success()
        .stdout(predicate::str::contains(r#""state":"active""#));
    bilateral()
        .args(["cast", "record", r#"{"from": "cli"}"#, "--peer", &peer])
        .assert()
        .success();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let event = seen
            .recv_timeout(left)
            .expect("the cast reached the Python peer");
        if event["event"] == "cast" {
            assert_eq!(event["args"], serde_json::json!({"from": "cli"}));
            break;
        }
    }
}

#[test]
fn scripts_get_json_usage_errors_local_failures_and_a_quiet_closed_pipe() {
    let out = bilateral()
        .args(["--json", "call"])
        .assert()
        .code(2)
        .get_output()
        .stdout
        .clone();
    assert_eq!(json_lines(&out)[0]["error"]["kind"], "usage");
    let dir = TempDir::new("local");
    bilateral()
        .arg("send")
        .arg(&dir.0)
        .args(["--peer", "x=tcp://127.0.0.1:1"])
        .assert()
        .code(4);
    bilateral()
        .args(["--timeout", "99999999999", "peers"])
        .assert()
        .code(2);
    // A reader that stops after one line ends the command, without a panic.
    let server = Server::named("alpha", &[]);
    let mut ping = Killed(
        StdCommand::new(BIN)
            .args([
                "--json",
                "ping",
                "--count",
                "2000",
                "--peer",
                &server.peer(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut first = String::new();
    BufReader::new(ping.0.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("rtt_us"), "{first}");
    let status = ping.0.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut ping.0.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_watch_ends_with_exit_3_when_its_peer_dies_and_receive_fills_a_directory() {
    let dir = TempDir::new("watch");
    let served = dir.path("served");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(served.join("a.txt"), b"hello").unwrap();
    let mut server = Server::named(
        "alpha",
        &[
            "--dir",
            served.to_str().unwrap(),
            "--register",
            "services/web=1",
        ],
    );
    let into = dir.path("into");
    std::fs::create_dir_all(&into).unwrap();
    bilateral()
        .args(["receive", "a.txt", "--out"])
        .arg(&into)
        .args(["--peer", &server.peer()])
        .assert()
        .success();
    assert_eq!(std::fs::read(into.join("a.txt")).unwrap(), b"hello");
    let mut watch = Killed(
        StdCommand::new(BIN)
            .args([
                "registry",
                "watch",
                "services",
                "--count",
                "5",
                "--peer",
                &server.peer(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Its first line (the entry there already) says it is watching.
    let mut lines = BufReader::new(watch.0.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("added services/web by alpha"), "{first}");
    std::thread::spawn(move || lines.for_each(drop));
    let _ = server.child.kill();
    let _ = server.child.wait();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = watch.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the watch outlived its peer"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(3));
}
