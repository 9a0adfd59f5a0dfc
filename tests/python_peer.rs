//! The reference Python peer (`interop/python/bilateral_peer.py`, written from
//! PROTOCOL.md alone with pyzmq and msgpack) against real Rust nodes over TCP
//! loopback: joining both ways, calls and casts both ways with every outcome,
//! a multicast that reaches it among Rust peers, loss detected both ways, a
//! restart with a new incarnation, and CURVE with keys saved as `keygen`
//! saves them.
//!
//! The peer is driven through its control protocol: JSON lines on its stdin
//! (commands) and stdout (responses and events). Without a `python3` that
//! imports `zmq` and `msgpack` the tests skip with a message, except under
//! `CI=true`, where they fail (`.ci/run` installs both).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use bilateral::{CallError, HandlerError, Keypair, Node, NodeBuilder, PeerEvent, To};
use common::{PATIENCE, is_joined, is_lost};
use serde_json::{Value, json};

/// Both sides' timers: short enough for loss to be seen in a test, long
/// enough that a loaded machine's stall is not taken for one.
const HEARTBEAT: Duration = Duration::from_millis(200);
const LOST: Duration = Duration::from_millis(2_000);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/python/bilateral_peer.py")
}

/// Whether the Python peer can run here; panics under CI if it cannot.
fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import zmq, msgpack"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but python3 cannot import zmq and msgpack \
             (pip install -r interop/python/requirements.txt)"
        );
        eprintln!("skipped: python3 with pyzmq and msgpack not found (pip install pyzmq msgpack)");
    }
    ok
}

/// A running Python peer and the lines it wrote.
struct PyPeer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Value>,
    /// Events read while waiting for something else.
    seen: Vec<Value>,
    next_id: u64,
    name: String,
    endpoint: String,
    incarnation: u64,
}

impl PyPeer {
    /// Starts the peer with `args` and waits for its `ready` line.
    fn start(args: &[&str]) -> PyPeer {
        let mut child = Command::new("python3")
            .arg(script())
            .args(["--listen", "tcp://127.0.0.1:0"])
            .args(["--heartbeat-ms", &HEARTBEAT.as_millis().to_string()])
            .args(["--lost-ms", &LOST.as_millis().to_string()])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let value: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("the peer wrote {line:?}, not JSON: {e}"));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut peer = PyPeer {
            child,
            stdin,
            lines,
            seen: Vec::new(),
            next_id: 1,
            name: String::new(),
            endpoint: String::new(),
            incarnation: 0,
        };
        let ready = peer.event(|e| e["event"] == "ready");
        peer.name = ready["name"].as_str().unwrap().to_string();
        peer.endpoint = ready["endpoint"].as_str().unwrap().to_string();
        peer.incarnation = ready["incarnation"].as_u64().unwrap();
        peer
    }

    fn named(name: &str) -> PyPeer {
        PyPeer::start(&["--name", name])
    }

    /// The next line, within the test's patience.
    fn next_line(&mut self, deadline: Instant) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(left) {
            Ok(v) => v,
            Err(RecvTimeoutError::Timeout) => panic!("{}: nothing within {PATIENCE:?}", self.name),
            Err(RecvTimeoutError::Disconnected) => {
                panic!("{}: the peer's stdout closed", self.name)
            }
        }
    }

    /// Waits for an event matching `pred` (earlier ones that did not match
    /// are kept for later waits).
    fn event(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.seen.iter().position(&pred) {
            return self.seen.remove(i);
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let line = self.next_line(deadline);
            if pred(&line) {
                return line;
            }
            if line.get("event").is_some() {
                self.seen.push(line);
            }
        }
    }

    /// Sends a command and waits for its response.
    fn request(&mut self, mut command: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        command["id"] = json!(id);
        self.send(&command);
        self.event(|l| l["id"] == json!(id) && l.get("ok").is_some())
    }

    fn send(&mut self, command: &Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}").expect("the peer reads its stdin");
        stdin.flush().unwrap();
    }

    fn dial(&mut self, node: &Node) {
        let r = self.request(
            json!({"op": "dial", "peer": node.name(), "endpoint": node.endpoint().unwrap()}),
        );
        assert_eq!(r["ok"], true, "{r}");
    }

    fn call(&mut self, peer: &str, method: &str, args: Value) -> Value {
        self.request(
            json!({"op": "call", "peer": peer, "method": method, "args": args, "timeout_ms": 5000}),
        )
    }

    /// Leaves (PART) and waits for the process to end.
    fn quit(mut self) {
        let r = self.request(json!({"op": "quit"}));
        assert_eq!(r["ok"], true, "{r}");
        self.wait_exit();
    }

    /// Ends at once, as a kill -9 would.
    fn crash(mut self) {
        self.send(&json!({"op": "crash"}));
        self.wait_exit();
    }

    fn wait_exit(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{}: exited with {status}", self.name);
                return;
            }
            assert!(Instant::now() < deadline, "{}: did not exit", self.name);
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for PyPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rust_builder(name: &str) -> NodeBuilder {
    with_short_timers(Node::builder(name))
}

fn with_short_timers(builder: NodeBuilder) -> NodeBuilder {
    common::init_logging();
    builder
        .listen("tcp://127.0.0.1:*")
        .heartbeat_interval(HEARTBEAT)
        .lost_timeout(LOST)
        .join_timeout(Duration::from_millis(500), Duration::from_millis(100))
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
}

/// A Rust node serving `add`, `echo`, `fail`, `whoami` and `record` (whose
/// casts it reports on the returned channel).
fn rust_node(builder: NodeBuilder) -> (Node, Receiver<Value>) {
    let node = builder.start().expect("node starts");
    serve(&node)
}

fn serve(node: &Node) -> (Node, Receiver<Value>) {
    node.register("add", |_c, (a, b): (i64, i64)| Ok(a + b))
        .unwrap();
    node.register("echo", |_c, v: Value| Ok(v)).unwrap();
    node.register("fail", |_c, ()| -> Result<(), HandlerError> {
        Err(HandlerError::new("rust says no"))
    })
    .unwrap();
    let name = node.name().to_string();
    node.register("whoami", move |_c, ()| Ok(name.clone()))
        .unwrap();
    let (tx, rx) = channel();
    let tx = std::sync::Mutex::new(tx);
    node.register("record", move |_c, v: Value| {
        let _ = tx.lock().unwrap().send(v);
        Ok(())
    })
    .unwrap();
    (node.clone(), rx)
}

fn wait_event(
    node: &Node,
    events: &bilateral::Events,
    pred: impl Fn(&PeerEvent) -> bool,
) -> PeerEvent {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Some(e) if pred(&e) => return e,
            Some(_) => {}
            None => panic!("{}: no such event within {PATIENCE:?}", node.name()),
        }
    }
}

fn error_kind(response: &Value) -> &str {
    assert_eq!(response["ok"], false, "{response}");
    response["error"]["kind"].as_str().unwrap_or_default()
}

#[test]
fn python_dials_rust_and_calls_and_casts_go_both_ways() {
    if !python_ready() {
        return;
    }
    let (rust, recorded) = rust_node(rust_builder("rust-a"));
    let events = rust.events();
    let mut py = PyPeer::named("py-a");
    py.dial(&rust);
    let joined = py.event(|e| e["event"] == "joined");
    assert_eq!(joined["peer"], "rust-a");
    assert_eq!(joined["incarnation"], json!(rust.incarnation()));
    let e = wait_event(&rust, &events, |e| is_joined(e, "py-a"));
    assert_eq!(
        e,
        PeerEvent::Joined {
            peer: "py-a".parse().unwrap(),
            incarnation: py.incarnation
        }
    );

    // Python calls Rust.
    let r = py.call("rust-a", "add", json!([2, 3]));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"], 5);
    let nested = json!({"list": [1, -2, 3.5, null, true], "text": "héllo", "map": {"k": "v"}});
    let r = py.call("rust-a", "echo", nested.clone());
    assert_eq!(r["result"], nested, "{r}");
    assert_eq!(py.call("rust-a", "whoami", json!(null))["result"], "rust-a");
    assert_eq!(
        error_kind(&py.call("rust-a", "nope", json!(null))),
        "unknown_method"
    );
    assert_eq!(
        error_kind(&py.call("rust-a", "add", json!("x"))),
        "bad_arguments"
    );
    let r = py.call("rust-a", "fail", json!(null));
    assert_eq!(error_kind(&r), "remote_error");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rust says no"),
        "{r}"
    );

    // Rust calls Python.
    let t = Duration::from_secs(5);
    assert_eq!(
        rust.call_one::<_, i64>("py-a", "add", &(40, 2), t).unwrap(),
        42
    );
    let back: Value = rust.call_one("py-a", "echo", &nested, t).unwrap();
    assert_eq!(back, nested);
    assert_eq!(
        rust.call_one::<_, String>("py-a", "whoami", &(), t)
            .unwrap(),
        "py-a"
    );
    assert!(matches!(
        rust.call_one::<_, ()>("py-a", "nope", &(), t),
        Err(CallError::UnknownMethod)
    ));
    assert!(matches!(
        rust.call_one::<_, i64>("py-a", "add", &"x", t),
        Err(CallError::BadArguments(_))
    ));
    match rust.call_one::<_, ()>("py-a", "fail", &(), t) {
        Err(CallError::Remote(e)) => assert_eq!(e.message(), "python says no"),
        other => panic!("expected a remote error, got {other:?}"),
    }
    py.event(|e| e["event"] == "served" && e["method"] == "add");

    // Casts both ways.
    assert_eq!(rust.cast("py-a", "record", &json!({"n": 1})).unwrap(), 1);
    let cast = py.event(|e| e["event"] == "cast");
    assert_eq!(
        (
            cast["peer"].clone(),
            cast["method"].clone(),
            cast["args"].clone()
        ),
        (json!("rust-a"), json!("record"), json!({"n": 1}))
    );
    let r = py
        .request(json!({"op": "cast", "peer": "rust-a", "method": "record", "args": [7, "seven"]}));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        recorded.recv_timeout(PATIENCE).unwrap(),
        json!([7, "seven"])
    );

    // The Python peer lists the session.
    let peers = py.request(json!({"op": "peers"}));
    let listed = peers["peers"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|p| p["name"] == "rust-a" && p["incarnation"] == json!(rust.incarnation())),
        "{peers}"
    );

    // A PART from Python ends the session at once on the Rust side.
    py.quit();
    let e = wait_event(&rust, &events, |e| is_lost(e, "py-a"));
    assert!(
        matches!(
            e,
            PeerEvent::Lost {
                reason: bilateral::LostReason::Parted,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn rust_dials_python_and_a_closing_rust_node_is_seen_leaving() {
    if !python_ready() {
        return;
    }
    let mut py = PyPeer::named("py-b");
    let (rust, _) = rust_node(rust_builder("rust-b"));
    rust.connect("py-b", &py.endpoint).unwrap();
    rust.wait_for_peer("py-b", PATIENCE).unwrap();
    let joined = py.event(|e| e["event"] == "joined");
    assert_eq!(joined["peer"], "rust-b");
    assert_eq!(
        rust.call_one::<_, i64>("py-b", "add", &(1, 2), Duration::from_secs(5))
            .unwrap(),
        3
    );
    let r = py.call("rust-b", "add", json!([4, 5]));
    assert_eq!(r["result"], 9, "{r}");
    rust.close();
    let left = py.event(|e| e["event"] == "left" || e["event"] == "lost");
    assert_eq!(left["event"], "left", "a closing node says PART: {left}");
    assert_eq!(left["peer"], "rust-b");
}

#[test]
fn mutual_dialling_makes_one_session() {
    if !python_ready() {
        return;
    }
    let mut py = PyPeer::named("py-m");
    let (rust, _) = rust_node(rust_builder("rust-m"));
    let events = rust.events();
    rust.connect("py-m", &py.endpoint).unwrap();
    py.dial(&rust);
    rust.wait_for_peer("py-m", PATIENCE).unwrap();
    py.event(|e| e["event"] == "joined");
    // Calls work both ways, whichever link each side chose.
    for i in 0..20 {
        assert_eq!(
            rust.call_one::<_, i64>("py-m", "add", &(i, 1), Duration::from_secs(5))
                .unwrap(),
            i + 1
        );
        assert_eq!(
            py.call("rust-m", "add", json!([i, 2]))["result"],
            json!(i + 2)
        );
    }
    // One session: no loss was reported on either side.
    let lost = std::iter::from_fn(|| events.try_recv()).find(|e| is_lost(e, "py-m"));
    assert!(lost.is_none(), "{lost:?}");
    assert!(
        py.seen
            .iter()
            .all(|e| e["event"] != "lost" && e["event"] != "left"),
        "{:?}",
        py.seen
    );
}

#[test]
fn a_multicast_from_rust_reaches_python_among_rust_peers() {
    if !python_ready() {
        return;
    }
    let (hub, _) = rust_node(rust_builder("hub"));
    let others: Vec<Node> = (0..2)
        .map(|i| rust_node(rust_builder(&format!("rust-{i}"))).0)
        .collect();
    for o in &others {
        hub.connect(o.name(), o.endpoint().unwrap()).unwrap();
        hub.wait_for_peer(o.name(), PATIENCE).unwrap();
    }
    let mut py = PyPeer::named("py-c");
    py.dial(&hub);
    hub.wait_for_peer("py-c", PATIENCE).unwrap();
    let all = hub
        .call::<_, String>(To::All, "whoami", &(), Duration::from_secs(5))
        .unwrap();
    assert!(all.all_ok(), "{:?}", all.failures().collect::<Vec<_>>());
    let mut names: Vec<&str> = all.replies().map(|(_, r)| r.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["py-c", "rust-0", "rust-1"]);
    // Each reply came from the peer it is filed under.
    assert!(all.replies().all(|(peer, name)| peer == name));
    let failed = hub
        .call::<_, ()>(To::All, "fail", &(), Duration::from_secs(5))
        .unwrap();
    assert_eq!(failed.failures().count(), 3);
    assert!(
        matches!(failed.get("py-c"), Some(Err(CallError::Remote(e))) if e.message() == "python says no")
    );
}

#[test]
fn loss_is_detected_both_ways_and_a_restart_rejoins_with_a_new_incarnation() {
    if !python_ready() {
        return;
    }
    let (rust, _) = rust_node(rust_builder("rust-d"));
    let events = rust.events();
    let mut py = PyPeer::named("py-d");
    py.dial(&rust);
    wait_event(&rust, &events, |e| is_joined(e, "py-d"));
    let first = py.incarnation;

    // Python dies without a word: the Rust side's liveness finds out.
    py.crash();
    let e = wait_event(&rust, &events, |e| is_lost(e, "py-d"));
    assert!(
        matches!(e, PeerEvent::Lost { reason: bilateral::LostReason::Timeout, incarnation, .. } if incarnation == first),
        "{e:?}"
    );

    // It comes back under the same name with a new incarnation.
    let mut py = PyPeer::named("py-d");
    assert_ne!(py.incarnation, first);
    py.dial(&rust);
    let e = wait_event(&rust, &events, |e| is_joined(e, "py-d"));
    assert_eq!(
        e,
        PeerEvent::Joined {
            peer: "py-d".parse().unwrap(),
            incarnation: py.incarnation
        }
    );
    assert_eq!(
        rust.call_one::<_, i64>("py-d", "add", &(2, 2), Duration::from_secs(5))
            .unwrap(),
        4
    );

    // The Rust node dies without a word: the Python side's liveness finds out.
    rust.kill();
    let lost = py.event(|e| e["event"] == "lost" || e["event"] == "left");
    assert_eq!(
        (lost["event"].clone(), lost["peer"].clone()),
        (json!("lost"), json!("rust-d")),
        "{lost}"
    );
}

#[test]
fn a_rust_node_restarting_is_a_new_session_for_python() {
    if !python_ready() {
        return;
    }
    let mut py = PyPeer::named("py-e");
    let (rust, _) = rust_node(rust_builder("rust-e"));
    rust.connect("py-e", &py.endpoint).unwrap();
    rust.wait_for_peer("py-e", PATIENCE).unwrap();
    let first = py.event(|e| e["event"] == "joined")["incarnation"].clone();
    rust.kill();
    let (again, _) = rust_node(rust_builder("rust-e"));
    again.connect("py-e", &py.endpoint).unwrap();
    again.wait_for_peer("py-e", PATIENCE).unwrap();
    let second = py.event(|e| e["event"] == "joined" && e["incarnation"] != first);
    assert_eq!(second["incarnation"], json!(again.incarnation()));
    assert_eq!(py.call("rust-e", "whoami", json!(null))["result"], "rust-e");
}

/// Saves `keys` as `keygen` does and returns the secret file.
fn save_keys(dir: &Path, name: &str, keys: &Keypair) -> PathBuf {
    keys.save(dir.join(format!("{name}.key"))).unwrap()
}

fn allow_file(dir: &Path, name: &str, keys: &[&bilateral::PublicKey]) -> PathBuf {
    let path = dir.join(name);
    let text: String = keys.iter().map(|k| format!("{}\n", k.to_z85())).collect();
    std::fs::write(&path, format!("# allowed\n{text}")).unwrap();
    path
}

#[test]
fn curve_with_keys_from_keygen_and_an_allow_list() {
    if !python_ready() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("bilateral-py-curve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (rust_keys, py_keys, stranger) = (
        Keypair::generate().unwrap(),
        Keypair::generate().unwrap(),
        Keypair::generate().unwrap(),
    );
    let py_secret = save_keys(&dir, "py", &py_keys);
    let allow = allow_file(&dir, "allow", &[rust_keys.public()]);
    let py_name = py_keys.public().to_z85();
    let rust_name = rust_keys.public().to_z85();

    let builder =
        with_short_timers(Node::secure_builder(&rust_keys)).allow_keys([*py_keys.public()]);
    let (rust, recorded) = rust_node(builder);
    assert_eq!(rust.name(), rust_name);
    let mut py = PyPeer::start(&[
        "--curve-secret",
        py_secret.to_str().unwrap(),
        "--allow",
        allow.to_str().unwrap(),
    ]);
    assert_eq!(py.name, py_name);

    // Python dials Rust; Rust dials Python: both ways, encrypted.
    py.dial(&rust);
    rust.wait_for_peer(&py_name, PATIENCE).unwrap();
    py.event(|e| e["event"] == "joined");
    // Rust dials too: under CURVE, as in plaintext, still one session.
    rust.connect(&py_name, &py.endpoint).unwrap();
    rust.wait_for_peer(&py_name, PATIENCE).unwrap();
    let r = py.call(&rust_name, "add", json!([20, 22]));
    assert_eq!(r["result"], 42, "{r}");
    assert_eq!(
        rust.call_one::<_, String>(&py_name, "whoami", &(), Duration::from_secs(5))
            .unwrap(),
        py_name
    );
    py.request(json!({"op": "cast", "peer": rust_name, "method": "record", "args": "secret"}));
    assert_eq!(recorded.recv_timeout(PATIENCE).unwrap(), json!("secret"));

    // A Rust node the Python peer does not allow is refused, and so is a
    // Python peer the Rust node does not allow.
    let (outsider, _) = rust_node(with_short_timers(Node::secure_builder(&stranger)));
    outsider.connect(&py_name, &py.endpoint).unwrap();
    common::wait_until(PATIENCE, || outsider.stats().handshakes_failed > 0);
    assert!(!outsider.active_connections().contains(&py_name));
    let stranger_secret = save_keys(&dir, "stranger", &stranger);
    let mut refused = PyPeer::start(&["--curve-secret", stranger_secret.to_str().unwrap()]);
    let before = rust.stats().unauthorized;
    refused.dial(&rust);
    common::wait_until(PATIENCE, || rust.stats().unauthorized > before);
    assert!(
        !rust.active_connections().contains(&refused.name),
        "a stranger joined"
    );
    let listed = refused.request(json!({"op": "peers"}));
    assert!(
        listed["peers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["incarnation"].is_null()),
        "the stranger thinks it is in session: {listed}"
    );
    // The peer it does know is still served.
    assert_eq!(py.call(&rust_name, "add", json!([1, 1]))["result"], 2);
    assert!(
        refused.seen.iter().all(|e| e["event"] != "joined"),
        "{:?}",
        refused.seen
    );
    let _ = std::fs::remove_dir_all(&dir);
}
