//! An in-process mesh for tests: N nodes in one process, joined in a given
//! topology, with waits that always have a deadline.
//!
//! ```
//! use std::time::Duration;
//! use bilateral::testkit::{TestMesh, Topology};
//!
//! # fn main() -> Result<(), bilateral::Error> {
//! let mesh = TestMesh::builder(3).topology(Topology::Line).start()?;
//! mesh.wait_all_joined(Duration::from_secs(10))?;
//! mesh.node(0).partition([mesh.name(1)])?;          // cut the line in two
//! mesh.wait_lost(0, 1, Duration::from_secs(10))?;
//! mesh.node(0).heal()?;
//! mesh.wait_joined(0, 1, Duration::from_secs(10))?;
//! # Ok(()) }
//! ```
//!
//! Nodes are named `n0`, `n1`, … (or with another prefix), listen on
//! `inproc://` endpoints of one shared ZeroMQ context (or on TCP loopback),
//! and use timers short enough for tests: heartbeat 100 ms, lost after
//! 600 ms, join attempts of 500 ms retransmitted every 100 ms, backoff from
//! 50 ms to 500 ms. [`TestMeshBuilder::configure`] changes any setting of any
//! node.

use std::time::{Duration, Instant};

/// The raw ZeroMQ binding the crate is built on, for tests that must speak
/// the wire protocol by hand (a hostile or foreign peer) and for benchmarks
/// that measure raw libzmq beside Bilateral. Not a stable API.
pub mod zmq {
    pub use crate::zmq::{
        Context, Error, Message, PollItem, SendFlags, Socket, SocketType, poll, z85_decode,
        z85_encode,
    };
}

use crate::core::PeerState;
use crate::error::Error;
use crate::node::{Node, NodeBuilder};
use crate::zmq::Context;

/// Which node dials which.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Topology {
    /// Every node dials every node after it: everyone is joined to everyone.
    Full,
    /// `n0 – n1 – … – n(N-1)`: each node dials the next.
    Line,
    /// A line whose last node also dials the first.
    Ring,
    /// `n0` dials every other node.
    Star,
    /// Exactly these links: `(a, b)` means node `a` dials node `b`.
    Edges(Vec<(usize, usize)>),
    /// Discovery on every node, and `n0` the only seed of the others: they
    /// find each other, and the mesh becomes full (the links waited for).
    Seed,
}

impl Topology {
    fn edges(&self, size: usize) -> Vec<(usize, usize)> {
        match self {
            Topology::Full => (0..size)
                .flat_map(|a| (a + 1..size).map(move |b| (a, b)))
                .collect(),
            Topology::Line => (1..size).map(|b| (b - 1, b)).collect(),
            Topology::Ring if size > 2 => (0..size).map(|a| (a, (a + 1) % size)).collect(),
            Topology::Ring => Topology::Line.edges(size),
            Topology::Star => (1..size).map(|b| (0, b)).collect(),
            Topology::Edges(edges) => edges
                .iter()
                .copied()
                .filter(|&(a, b)| a < size && b < size && a != b)
                .collect(),
            Topology::Seed => Topology::Full.edges(size),
        }
    }

    /// The links the mesh dials itself (with `Seed`, discovery dials the rest).
    fn dials(&self, size: usize) -> Vec<(usize, usize)> {
        match self {
            Topology::Seed => Vec::new(),
            other => other.edges(size),
        }
    }
}

/// How the nodes of a test mesh reach each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// `inproc://` on one shared context: no sockets, no ports.
    Inproc,
    /// TCP on 127.0.0.1 with free ports.
    Tcp,
}

type Configure = Box<dyn Fn(usize, NodeBuilder) -> NodeBuilder>;

/// Configures a [`TestMesh`]. Obtained from [`TestMesh::builder`].
#[must_use = "a builder does nothing until `start` is called"]
pub struct TestMeshBuilder {
    size: usize,
    topology: Topology,
    transport: Transport,
    prefix: String,
    configure: Option<Configure>,
}

impl TestMeshBuilder {
    /// Which node dials which (default [`Topology::Full`]).
    pub fn topology(mut self, topology: Topology) -> Self {
        self.topology = topology;
        self
    }

    /// `inproc://` (default) or TCP loopback.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Node names are this prefix and the node's index (default `n`).
    pub fn name_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Changes node `i`'s builder before it starts (timers, limits, faults...).
    pub fn configure(mut self, f: impl Fn(usize, NodeBuilder) -> NodeBuilder + 'static) -> Self {
        self.configure = Some(Box::new(f));
        self
    }

    /// Starts every node and dials the topology's links (without waiting for
    /// the joins: see [`TestMesh::wait_all_joined`]).
    pub fn start(self) -> Result<TestMesh, Error> {
        let context = match self.transport {
            Transport::Inproc => {
                let ctx = Context::new()?;
                // A full mesh of N nodes holds about 3 N (N + 1) sockets (a
                // DEALER per peer and a ROUTER per node, each with a
                // monitor pair); libzmq allows 1 023 per context unless
                // told otherwise. Twice that: the slots of closed sockets
                // come back only when libzmq has reaped them, and the
                // context needs free ones when it terminates.
                let sockets = 6 * self.size * (self.size + 2);
                if sockets > 1023 {
                    ctx.set_max_sockets(i32::try_from(sockets).unwrap_or(i32::MAX))?;
                }
                Some(ctx)
            }
            Transport::Tcp => None,
        };
        let tag = format!("{:08x}", std::process::id() ^ crate::node::random_u32());
        let mut nodes: Vec<Node> = Vec::with_capacity(self.size);
        for i in 0..self.size {
            let name = format!("{}{i}", self.prefix);
            let mut builder = Node::builder(&name)
                .network("testkit")
                .heartbeat_interval(Duration::from_millis(100))
                .lost_timeout(Duration::from_millis(600))
                .join_timeout(Duration::from_millis(500), Duration::from_millis(100))
                .backoff(Duration::from_millis(50), Duration::from_millis(500));
            builder = match &context {
                Some(ctx) => builder
                    .context(crate::Context(ctx.clone()))
                    .listen(format!("inproc://testkit-{tag}-{name}")),
                None => builder.listen("tcp://127.0.0.1:*"),
            };
            if self.topology == Topology::Seed {
                builder = builder.discovery(crate::Discovery::default());
                if let Some(seed) = nodes.first() {
                    let endpoint = seed.endpoint().unwrap_or_default().to_string();
                    builder = builder.seed(seed.name(), endpoint);
                }
            }
            if let Some(f) = &self.configure {
                builder = f(i, builder);
            }
            nodes.push(builder.start()?);
        }
        let edges = self.topology.edges(self.size);
        for &(a, b) in &self.topology.dials(self.size) {
            let endpoint = nodes[b]
                .endpoint()
                .ok_or_else(|| Error::InvalidConfig(format!("node {b} does not listen")))?;
            nodes[a].connect(nodes[b].name(), endpoint)?;
        }
        Ok(TestMesh {
            nodes,
            edges,
            _context: context,
        })
    }
}

/// Nodes of one process joined in a topology. Closes its nodes when dropped.
pub struct TestMesh {
    nodes: Vec<Node>,
    edges: Vec<(usize, usize)>,
    _context: Option<Context>,
}

/// How often the waits look at the nodes' state.
const POLL: Duration = Duration::from_millis(5);

impl TestMesh {
    /// A mesh of `size` nodes.
    pub fn builder(size: usize) -> TestMeshBuilder {
        TestMeshBuilder {
            size,
            topology: Topology::Full,
            transport: Transport::Inproc,
            prefix: "n".into(),
            configure: None,
        }
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Every node, by index.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Node `i`'s name.
    pub fn name(&self, i: usize) -> &str {
        self.nodes[i].name()
    }

    /// The links: `(a, b)` means node `a` dials node `b`.
    pub fn edges(&self) -> &[(usize, usize)] {
        &self.edges
    }

    /// Waits until both ends of every link are in session.
    pub fn wait_all_joined(&self, timeout: Duration) -> Result<(), Error> {
        self.wait_until(timeout, |m| {
            m.edges
                .iter()
                .all(|&(a, b)| m.active(a, b) && m.active(b, a))
        })
    }

    /// Waits until node `observer` has a session with node `peer`.
    pub fn wait_joined(
        &self,
        observer: usize,
        peer: usize,
        timeout: Duration,
    ) -> Result<(), Error> {
        self.wait_until(timeout, |m| m.active(observer, peer))
    }

    /// Waits until node `observer` has no session with node `peer`.
    pub fn wait_lost(&self, observer: usize, peer: usize, timeout: Duration) -> Result<(), Error> {
        self.wait_until(timeout, |m| !m.active(observer, peer))
    }

    /// Waits until `converged` holds (checked every few milliseconds), or
    /// fails with [`Error::Timeout`] at the deadline.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut converged: impl FnMut(&TestMesh) -> bool,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if converged(self) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout);
            }
            std::thread::sleep(POLL);
        }
    }

    fn active(&self, observer: usize, peer: usize) -> bool {
        self.nodes[observer].peer_state(self.nodes[peer].name()) == Some(PeerState::Active)
    }

    /// Closes every node.
    pub fn close(&self) {
        // All at once: a node closed while its peers run is dialled again
        // by each of them, and over `inproc://` every such dial of an
        // endpoint no longer bound stays pending in the shared context
        // until it terminates.
        std::thread::scope(|scope| {
            for node in &self.nodes {
                scope.spawn(move || node.close());
            }
        });
    }
}

impl Drop for TestMesh {
    fn drop(&mut self) {
        self.close();
    }
}
