//! A simulated network of meshes: frames are delivered at once (or dropped by
//! a partition), time only moves when a test says so.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::core::*;
use crate::protocol::{self, NodeName, ReplyStatus, Security};

/// Completion handle used in tests: the call's number.
pub type Call = u32;

pub struct SimNode {
    pub mesh: Mesh<Call>,
    /// Peers whose DEALER is open, with the endpoint (a node name) it dials.
    pub links: BTreeMap<NodeName, String>,
    pub events: Vec<PeerEvent>,
    pub resolved: Vec<(Call, usize, Outcome)>,
    pub jobs: VecDeque<Job>,
    /// Every frame this node sent, decoded kind name and destination.
    pub sent: Vec<(NodeName, Link, String)>,
    /// Run handlers at once, echoing the arguments.
    pub auto_reply: bool,
    pub up: bool,
    /// CURVE mode: ROUTER messages carry their sender's name as User-Id.
    pub curve: bool,
    /// Streams peers opened, in order.
    pub incoming: Vec<IncomingStream>,
    /// Every stream signal, in order.
    pub signals: Vec<(StreamId, StreamSignal)>,
    /// Stream bytes delivered, per stream.
    pub received: BTreeMap<StreamId, Vec<u8>>,
    /// Accept every incoming stream at once.
    pub auto_accept: bool,
}

pub struct Sim {
    pub t0: Instant,
    pub now: Instant,
    pub nodes: BTreeMap<String, SimNode>,
    /// Directed pairs (from, to) whose frames are dropped.
    pub blocked: HashSet<(String, String)>,
    /// Directed pairs (from, to) whose frames are held, in order, until
    /// [`Sim::unstall`]: a receiver that does not read, not a lossy network.
    pub stalled: HashSet<(String, String)>,
    held: Vec<(String, Option<String>, Transmit)>,
    /// One-shot losses: the next frame of this kind sent by this node is dropped.
    pub lose: Vec<(String, String)>,
    /// Every frame delivered: sender, kind, length.
    pub log: Vec<(String, String, usize)>,
    /// Stream bytes already reported consumed, per (node, stream).
    pub consumed: BTreeMap<(String, StreamId), u64>,
    seed: u64,
}

pub fn name(s: &str) -> NodeName {
    NodeName::new(s).unwrap()
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn timers() -> Timers {
    Timers {
        backoff_jitter: 0.0,
        ..Timers::default()
    }
}

pub fn config(node: &str, network: &str, incarnation: u64, timers: Timers) -> MeshConfig {
    MeshConfig {
        name: name(node),
        network: network.to_string(),
        incarnation,
        security: Security::Null,
        access: Access::AllowList,
        allowed_keys: Vec::new(),
        timers,
        limits: Limits::default(),
        seed: incarnation,
    }
}

fn kind(frame: &[u8]) -> String {
    match protocol::decode(frame) {
        Ok(env) => crate::core::mesh::kind_name(&env.message),
        Err(_) => "GARBAGE",
    }
    .to_string()
}

impl SimNode {
    /// Keeps the stream bytes a delivery points at.
    pub fn take_delivery(&mut self, delivery: Option<Delivery>, frame: &[u8]) {
        if let Some(d) = delivery {
            self.received
                .entry(d.stream)
                .or_default()
                .extend_from_slice(&frame[d.range]);
        }
    }

    /// The signals of stream `id`, in order.
    pub fn signals_of(&self, id: StreamId) -> Vec<StreamSignal> {
        self.signals
            .iter()
            .filter(|(i, _)| *i == id)
            .map(|(_, s)| s.clone())
            .collect()
    }
}

impl Sim {
    pub fn new() -> Self {
        let t0 = Instant::now();
        Sim {
            t0,
            now: t0,
            nodes: BTreeMap::new(),
            blocked: HashSet::new(),
            stalled: HashSet::new(),
            held: Vec::new(),
            lose: Vec::new(),
            log: Vec::new(),
            consumed: BTreeMap::new(),
            seed: 1,
        }
    }

    pub fn add(&mut self, node: &str) -> &mut SimNode {
        self.add_with(node, "net", timers())
    }

    pub fn add_with(&mut self, node: &str, network: &str, timers: Timers) -> &mut SimNode {
        self.seed += 1;
        let mesh = Mesh::new(config(node, network, self.seed * 1000, timers), self.now);
        self.insert(node, mesh, false)
    }

    /// A CURVE node named by a fresh key, allowing `allowed` to connect.
    /// Returns its name (the key in Z85).
    pub fn add_curve(&mut self, allowed: &[&str]) -> String {
        let key = crate::security::Keypair::generate().unwrap();
        let name = key.public().to_z85();
        self.seed += 1;
        let mut cfg = config(&name, "net", self.seed * 1000, timers());
        cfg.security = Security::Curve;
        cfg.allowed_keys = allowed.iter().map(|k| k.parse().unwrap()).collect();
        let mesh = Mesh::new(cfg, self.now);
        self.insert(&name, mesh, true);
        name
    }

    /// A node that joins the network with no link yet.
    fn insert(&mut self, node: &str, mesh: Mesh<Call>, curve: bool) -> &mut SimNode {
        self.nodes.insert(
            node.to_string(),
            SimNode {
                mesh,
                links: BTreeMap::new(),
                events: Vec::new(),
                resolved: Vec::new(),
                jobs: VecDeque::new(),
                sent: Vec::new(),
                auto_reply: true,
                up: true,
                curve,
                incoming: Vec::new(),
                signals: Vec::new(),
                received: BTreeMap::new(),
                auto_accept: true,
            },
        );
        self.nodes.get_mut(node).unwrap()
    }

    /// Replaces `node` with a fresh start: new incarnation, no state.
    pub fn restart(&mut self, node: &str) -> &mut SimNode {
        let network = self.nodes[node].mesh.config().network.clone();
        let timers = self.nodes[node].mesh.config().timers.clone();
        self.add_with(node, &network, timers)
    }

    pub fn node(&mut self, node: &str) -> &mut SimNode {
        self.nodes.get_mut(node).unwrap()
    }

    pub fn mesh(&mut self, node: &str) -> &mut Mesh<Call> {
        &mut self.node(node).mesh
    }

    pub fn connect(&mut self, from: &str, to: &str) {
        let now = self.now;
        self.mesh(from)
            .handle_connect(name(to), to.to_string(), now);
    }

    pub fn block(&mut self, from: &str, to: &str) {
        self.blocked.insert((from.to_string(), to.to_string()));
    }

    pub fn partition(&mut self, a: &str, b: &str) {
        self.block(a, b);
        self.block(b, a);
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// `to` stops reading what `from` sends; nothing is lost.
    pub fn stall(&mut self, from: &str, to: &str) {
        self.stalled.insert((from.to_string(), to.to_string()));
    }

    /// Every stalled receiver reads what was held for it, in order.
    pub fn unstall(&mut self) {
        self.stalled.clear();
        for (from, endpoint, t) in std::mem::take(&mut self.held) {
            self.deliver(&from, endpoint, t);
        }
        self.settle();
    }

    /// A call of `method` with `args` from `from` to `to`.
    pub fn call_with(&mut self, from: &str, to: &str, args: &[u8], call: Call, timeout: Duration) {
        let now = self.now;
        self.mesh(from)
            .handle_call(&[name(to)], "echo", args, now + timeout, call, now);
    }

    pub fn elapsed(&self) -> Duration {
        self.now - self.t0
    }

    /// Executes every action of every node and delivers every frame, until quiet.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut progress = false;
            let mut deliveries = Vec::new();
            let now = self.now;
            for (from, node) in self.nodes.iter_mut() {
                while let Some(action) = node.mesh.poll_action() {
                    progress = true;
                    match action {
                        Action::Transmit(t) => {
                            node.sent.push((t.peer.clone(), t.link, kind(&t.frame)));
                            // A DEALER's frames leave before a later close of it.
                            let endpoint = node.links.get(&t.peer).cloned();
                            deliveries.push((from.clone(), endpoint, t));
                        }
                        Action::OpenLink { peer, endpoint } => {
                            node.links.insert(peer, endpoint);
                        }
                        Action::CloseLink { peer, .. } => {
                            node.links.remove(&peer);
                        }
                        Action::Event(e) => node.events.push(e),
                        Action::Dispatch(job) => node.jobs.push_back(job),
                        Action::Resolve {
                            completion,
                            index,
                            outcome,
                        } => node.resolved.push((completion, index, outcome)),
                        Action::IncomingStream(incoming) => {
                            if node.auto_accept {
                                node.mesh.handle_accept_stream(incoming.id, now);
                            }
                            node.incoming.push(incoming);
                        }
                        Action::Stream { id, signal } => node.signals.push((id, signal)),
                    }
                }
                while node.auto_reply {
                    let Some(job) = node.jobs.pop_front() else {
                        break;
                    };
                    progress = true;
                    let outcome = job.answer(ReplyStatus::Ok, job.args.clone());
                    node.mesh.handle_job_done(job.done(outcome), now);
                }
            }
            for (from, endpoint, t) in deliveries {
                self.deliver(&from, endpoint, t);
            }
            if !progress {
                // What each node says it holds for its peers is what its
                // structures hold: the memory count never drifts.
                for (name, node) in &self.nodes {
                    let (held, counted) = node.mesh.memory_audit();
                    assert_eq!(held, counted, "{name}'s memory count drifted");
                }
                return;
            }
        }
        panic!("the simulated network never went quiet");
    }

    fn deliver(&mut self, from: &str, endpoint: Option<String>, t: Transmit) {
        let now = self.now;
        let to = match t.link {
            Link::Outbound => endpoint.clone().unwrap_or_default(),
            Link::Inbound => t.peer.to_string(),
        };
        if self.stalled.contains(&(from.to_string(), to)) {
            self.held.push((from.to_string(), endpoint, t));
            return;
        }
        let kind = kind(&t.frame);
        if let Some(i) = self.lose.iter().position(|(f, k)| f == from && *k == kind) {
            self.lose.remove(i);
            return;
        }
        self.log.push((from.to_string(), kind, t.frame.len()));
        match t.link {
            Link::Outbound => {
                // Our DEALER to t.peer reaches the ROUTER of the node at its endpoint.
                let Some(endpoint) = endpoint else { return };
                if self.blocked.contains(&(from.to_string(), endpoint.clone())) {
                    return;
                }
                let Some(dst) = self.nodes.get_mut(&endpoint).filter(|n| n.up) else {
                    return;
                };
                // In CURVE mode the connection is authenticated as its sender.
                let user_id = dst.curve.then_some(from);
                let origin = Origin::Router { user_id };
                let delivery =
                    dst.mesh
                        .handle_inbound(origin, &[from.as_bytes(), &t.frame], 2, now);
                dst.take_delivery(delivery, &t.frame);
            }
            Link::Inbound => {
                // Our ROUTER reaches the DEALER that t.peer opened to us.
                let to = t.peer.to_string();
                if self.blocked.contains(&(from.to_string(), to.clone())) {
                    return;
                }
                let Some(dst) = self.nodes.get_mut(&to).filter(|n| n.up) else {
                    return;
                };
                // Whichever DEALER of the destination is connected to us,
                // whatever name the destination believes we have.
                let Some(key) = dst
                    .links
                    .iter()
                    .find(|(_, e)| e.as_str() == from)
                    .map(|(k, _)| k.clone())
                else {
                    return;
                };
                let delivery = dst
                    .mesh
                    .handle_inbound(Origin::Outbound(&key), &[&t.frame], 1, now);
                dst.take_delivery(delivery, &t.frame);
            }
        }
    }

    /// Moves time to `self.now + d`, firing every timer on the way in order.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.settle();
            let next = self
                .nodes
                .values()
                .filter(|n| n.up)
                .filter_map(|n| n.mesh.poll_timeout())
                .filter(|&t| t <= end)
                .min();
            let Some(next) = next else { break };
            self.now = self.now.max(next);
            let now = self.now;
            for node in self.nodes.values_mut().filter(|n| n.up) {
                node.mesh.handle_timeout(now);
            }
        }
        self.now = end;
        let now = self.now;
        for node in self.nodes.values_mut().filter(|n| n.up) {
            node.mesh.handle_timeout(now);
        }
        self.settle();
    }

    pub fn active(&mut self, node: &str, peer: &str) -> bool {
        self.nodes[node]
            .mesh
            .peer_info(peer)
            .is_some_and(|p| p.state == PeerState::Active)
    }

    pub fn count_sent(&self, node: &str, kind: &str) -> usize {
        self.nodes[node]
            .sent
            .iter()
            .filter(|(_, _, k)| k == kind)
            .count()
    }

    pub fn joined(&self, node: &str) -> Vec<String> {
        self.nodes[node]
            .events
            .iter()
            .filter_map(|e| match e {
                PeerEvent::Joined { peer, .. } => Some(peer.to_string()),
                _ => None,
            })
            .collect()
    }

    pub fn lost(&self, node: &str) -> Vec<(String, LostReason)> {
        self.nodes[node]
            .events
            .iter()
            .filter_map(|e| match e {
                PeerEvent::Lost { peer, reason, .. } => Some((peer.to_string(), *reason)),
                _ => None,
            })
            .collect()
    }

    pub fn call(&mut self, from: &str, to: &[&str], call: Call, timeout: Duration) {
        let now = self.now;
        let targets: Vec<NodeName> = to.iter().map(|t| name(t)).collect();
        self.mesh(from)
            .handle_call(&targets, "echo", b"\x01", now + timeout, call, now);
    }

    pub fn results(&self, node: &str, call: Call) -> Vec<(usize, Outcome)> {
        let mut r: Vec<(usize, Outcome)> = self.nodes[node]
            .resolved
            .iter()
            .filter(|(c, _, _)| *c == call)
            .map(|(_, i, o)| (*i, o.clone()))
            .collect();
        r.sort_by_key(|(i, _)| *i);
        r
    }
}

/// A DATA frame as a writer makes it: room for the header, then `bytes`.
pub fn data_frame(bytes: &[u8]) -> Vec<u8> {
    let mut frame = vec![0u8; crate::protocol::DATA_HEADER_LEN];
    frame.extend_from_slice(bytes);
    frame
}

impl Sim {
    /// `from` opens a stream to `to`'s `service`; returns the opener's id.
    pub fn open(&mut self, from: &str, to: &str, service: &str) -> StreamId {
        let now = self.now;
        self.mesh(from)
            .handle_open_stream(&name(to), service, b"\xc0", now + ms(1000), now)
            .unwrap()
    }

    /// The acceptor's id of the last stream `node` was offered.
    pub fn last_incoming(&self, node: &str) -> StreamId {
        self.nodes[node].incoming.last().unwrap().id
    }

    /// Writes `bytes` on stream `id` of `node`, one frame per `chunk` bytes.
    pub fn write(&mut self, node: &str, id: StreamId, bytes: &[u8], chunk: usize) {
        let now = self.now;
        for piece in bytes.chunks(chunk) {
            self.mesh(node)
                .handle_stream_write(id, data_frame(piece), now);
        }
    }

    /// The application of `node` consumed everything delivered on `id` so far.
    pub fn consume_all(&mut self, node: &str, id: StreamId) {
        let now = self.now;
        let got = self.nodes[node].received.get(&id).map_or(0, Vec::len) as u64;
        let already = *self.consumed.entry((node.to_string(), id)).or_default();
        self.mesh(node)
            .handle_stream_consumed(id, got - already, now);
        self.consumed.insert((node.to_string(), id), got);
    }

    /// Bytes delivered on stream `id` of `node`.
    pub fn received(&self, node: &str, id: StreamId) -> &[u8] {
        self.nodes[node]
            .received
            .get(&id)
            .map_or(&[], Vec::as_slice)
    }
}
