//! Which discovered nodes to dial, and which to forget: a sans-IO state
//! machine fed with the nodes the registry shows and the sessions the node
//! has, and polled for what to do.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use super::{ConnectPolicy, Discovery};

/// How long a node waits for a discovered peer whose name sorts before its
/// own to dial it, before it dials that peer itself.
pub(crate) const DIAL_GRACE: Duration = Duration::from_secs(2);

/// Something the node should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Dial `peer` at `endpoint`.
    Connect { peer: String, endpoint: String },
    /// Stop dialling `peer` and forget it: it is gone.
    Forget { peer: String },
}

/// Counters of the planner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PlannerStats {
    /// Dials started for discovered nodes.
    pub dialled: u64,
    /// Node entries refused: no usable endpoint, too many endpoints, or a
    /// key the access policy does not allow.
    pub refused: u64,
    /// Discovered nodes forgotten after being gone for `forget_after`.
    pub forgotten: u64,
}

/// Where the planner heard of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// Its entry in the registry's `bilateral.nodes`.
    Registry,
    /// Its LAN beacon.
    Beacon,
}

impl Source {
    fn bit(self) -> u8 {
        match self {
            Source::Registry => 1,
            Source::Beacon => 2,
        }
    }
}

#[derive(Debug)]
struct Known {
    endpoints: Vec<String>,
    /// The sources that show it now (bits of [`Source`]).
    sources: u8,
    /// When it was first shown: of two nodes that find each other, the one
    /// whose name sorts first dials at once, the other only if no session
    /// came after [`DIAL_GRACE`], so that most pairs have one connection,
    /// not two.
    since: Instant,
    /// Since when no source shows it.
    gone_since: Option<Instant>,
}

/// The planner of one node.
#[derive(Debug)]
pub(crate) struct Planner {
    me: String,
    cfg: Discovery,
    /// Nodes the application dials itself (seeds and its own connects).
    seeds: BTreeSet<String>,
    known: BTreeMap<String, Known>,
    sessions: BTreeSet<String>,
    /// Nodes this planner dialled, and when.
    dialled: BTreeMap<String, Instant>,
    actions: VecDeque<Plan>,
    /// When the next look at the candidates is due.
    next_look: Option<Instant>,
    stats: PlannerStats,
}

impl Planner {
    pub(crate) fn new(me: &str, cfg: Discovery) -> Self {
        Planner {
            me: me.to_string(),
            cfg,
            seeds: BTreeSet::new(),
            known: BTreeMap::new(),
            sessions: BTreeSet::new(),
            dialled: BTreeMap::new(),
            actions: VecDeque::new(),
            next_look: None,
            stats: PlannerStats::default(),
        }
    }

    pub(crate) fn stats(&self) -> PlannerStats {
        self.stats
    }

    /// Nodes known now (shown by the registry), and nodes this planner dials.
    pub(crate) fn sizes(&self) -> (usize, usize) {
        let shown = self
            .known
            .values()
            .filter(|k| k.gone_since.is_none())
            .count();
        (shown, self.dialled.len())
    }

    /// `peer` is dialled by the application: never dialled or forgotten here.
    pub(crate) fn add_seed(&mut self, peer: &str) {
        self.seeds.insert(peer.to_string());
        self.dialled.remove(peer);
    }

    /// `source` shows node `peer` with `endpoints`. `allowed` is whether
    /// the access policy lets this node talk to it.
    pub(crate) fn handle_node(
        &mut self,
        peer: &str,
        endpoints: Vec<String>,
        allowed: bool,
        source: Source,
        now: Instant,
    ) {
        if peer == self.me {
            return;
        }
        let usable: Vec<String> = endpoints.into_iter().filter(|e| usable(e)).collect();
        if !allowed || usable.is_empty() || usable.len() > self.cfg.max_endpoints {
            self.stats.refused += 1;
            log::debug!(
                "discovery: node {peer} refused (allowed: {allowed}, {} usable endpoints)",
                usable.len()
            );
            return;
        }
        if self.known.len() >= self.cfg.max_nodes && !self.known.contains_key(peer) {
            self.stats.refused += 1;
            return;
        }
        let (since, sources) = self
            .known
            .get(peer)
            .map_or((now, 0), |k| (k.since, k.sources));
        self.known.insert(
            peer.to_string(),
            Known {
                endpoints: usable,
                sources: sources | source.bit(),
                gone_since: None,
                since,
            },
        );
        self.look_now(now);
    }

    /// `source` no longer shows node `peer`; it is gone when no source does.
    pub(crate) fn handle_node_gone(&mut self, peer: &str, source: Source, now: Instant) {
        if let Some(known) = self.known.get_mut(peer) {
            known.sources &= !source.bit();
            if known.sources == 0 {
                known.gone_since.get_or_insert(now);
                self.look_at(now + self.cfg.forget_after);
            }
        }
    }

    pub(crate) fn handle_joined(&mut self, peer: &str) {
        self.sessions.insert(peer.to_string());
    }

    pub(crate) fn handle_left(&mut self, peer: &str, now: Instant) {
        self.sessions.remove(peer);
        self.look_now(now);
    }

    fn look_now(&mut self, now: Instant) {
        self.next_look = Some(now);
    }

    fn look_at(&mut self, at: Instant) {
        self.next_look = Some(self.next_look.map_or(at, |t| t.min(at)));
    }

    /// Forgets what is gone and dials what the policy wants.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.next_look.is_none_or(|t| t > now) {
            return;
        }
        self.next_look = None;
        self.forget(now);
        self.dial(now);
    }

    fn forget(&mut self, now: Instant) {
        let forget_after = self.cfg.forget_after;
        let gone: Vec<String> = self
            .known
            .iter()
            .filter(|(_, k)| k.gone_since.is_some_and(|t| now >= t + forget_after))
            .map(|(name, _)| name.clone())
            .collect();
        for peer in gone {
            if self.sessions.contains(&peer) {
                continue; // back in session: keep it
            }
            self.known.remove(&peer);
            if self.dialled.remove(&peer).is_some() {
                self.stats.forgotten += 1;
                self.actions.push_back(Plan::Forget { peer });
            }
        }
        if let Some(next) = self
            .known
            .iter()
            .filter(|(p, _)| !self.sessions.contains(*p))
            .filter_map(|(_, k)| k.gone_since)
            .map(|t| t + forget_after)
            .min()
        {
            self.look_at(next.max(now));
        }
    }

    fn dial(&mut self, now: Instant) {
        let target = match self.cfg.policy {
            ConnectPolicy::SeedsOnly => return,
            ConnectPolicy::Full => usize::MAX,
            ConnectPolicy::MaxPeers(n) => n,
        };
        // Dials still trying (not yet in session, younger than dial_timeout)
        // hold a place; older ones no longer do.
        let trying = self
            .dialled
            .iter()
            .filter(|(p, since)| {
                !self.sessions.contains(*p) && now < **since + self.cfg.dial_timeout
            })
            .count();
        let mut connected = self.sessions.len() + trying;
        if connected >= target {
            // Enough peers: nothing to choose from (a dial that times out
            // frees its place, so look again then).
            if trying > 0 {
                self.look_at(now + self.cfg.dial_timeout.min(Duration::from_secs(1)));
            }
            return;
        }
        let mut places = self.cfg.max_dials.saturating_sub(trying);
        let mut later: Option<Instant> = None;
        let mut candidates: Vec<(u64, &String, &Known)> = self
            .known
            .iter()
            .filter(|(p, k)| {
                k.gone_since.is_none()
                    && !self.sessions.contains(*p)
                    && !self.dialled.contains_key(*p)
                    && !self.seeds.contains(*p)
            })
            .filter(|(p, k)| {
                // The peer sorts first: give it the time to dial us.
                let due = k.since + DIAL_GRACE;
                let wait = p.as_str() < self.me.as_str() && now < due;
                if wait {
                    later = Some(later.map_or(due, |t| t.min(due)));
                }
                !wait
            })
            .map(|(p, k)| (spread(&self.me, p), p, k))
            .collect();
        // In a partial mesh, each node picks its own spread of peers.
        candidates.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut dials = Vec::new();
        for (_, peer, known) in candidates {
            if connected >= target || places == 0 {
                break;
            }
            dials.push((peer.clone(), known.endpoints[0].clone()));
            connected += 1;
            places -= 1;
        }
        let blocked = places == 0 && connected < target;
        for (peer, endpoint) in dials {
            self.stats.dialled += 1;
            self.dialled.insert(peer.clone(), now);
            self.actions.push_back(Plan::Connect { peer, endpoint });
        }
        if blocked || trying > 0 {
            // Look again when a dial's place frees up.
            self.look_at(now + self.cfg.dial_timeout.min(Duration::from_secs(1)));
        }
        if let Some(due) = later {
            self.look_at(due);
        }
    }

    /// When [`Planner::handle_timeout`] must run next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.next_look
    }

    /// The next thing to do.
    pub(crate) fn poll_action(&mut self) -> Option<Plan> {
        self.actions.pop_front()
    }
}

/// Whether an advertised endpoint is one this node could dial: a ZeroMQ
/// transport it uses, of a sane length, not a wildcard address.
pub(crate) fn usable(endpoint: &str) -> bool {
    let Some((transport, address)) = endpoint.split_once("://") else {
        return false;
    };
    if address.is_empty() || endpoint.len() > 256 || endpoint.chars().any(char::is_control) {
        return false;
    }
    match transport {
        "tcp" => match address.rsplit_once(':') {
            Some((host, port)) => {
                !host.is_empty()
                    && !matches!(host, "*" | "0.0.0.0" | "[::]" | "::")
                    && port.parse::<u16>().is_ok_and(|p| p != 0)
            }
            None => false,
        },
        "ipc" | "inproc" => true,
        _ => false,
    }
}

/// A per-node order of peers (FNV-1a over both names), so that nodes of a
/// partial mesh do not all pick the same peers.
fn spread(me: &str, peer: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in me.bytes().chain([0]).chain(peer.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planner(policy: ConnectPolicy) -> Planner {
        Planner::new("me", Discovery::default().policy(policy))
    }

    fn drain(p: &mut Planner) -> Vec<Plan> {
        std::iter::from_fn(|| p.poll_action()).collect()
    }

    /// The registry shows `peer` (allowed) at one endpoint.
    fn show(p: &mut Planner, peer: impl AsRef<str>, endpoint: impl Into<String>, now: Instant) {
        p.handle_node(
            peer.as_ref(),
            vec![endpoint.into()],
            true,
            Source::Registry,
            now,
        );
    }

    fn connects(plans: &[Plan]) -> Vec<String> {
        plans
            .iter()
            .filter_map(|p| match p {
                Plan::Connect { peer, .. } => Some(peer.clone()),
                Plan::Forget { .. } => None,
            })
            .collect()
    }

    #[test]
    fn full_mesh_dials_every_node_shown_once() {
        let now = Instant::now();
        let mut p = planner(ConnectPolicy::Full);
        for i in 0..5 {
            show(
                &mut p,
                format!("n{i}"),
                format!("tcp://127.0.0.1:{}", 1000 + i),
                now,
            );
        }
        show(&mut p, "me", "tcp://127.0.0.1:1", now);
        p.handle_timeout(now);
        let mut dialled = connects(&drain(&mut p));
        dialled.sort();
        assert_eq!(dialled, ["n0", "n1", "n2", "n3", "n4"]);
        // Shown again (an update): not dialled twice.
        show(&mut p, "n0", "tcp://127.0.0.1:1000", now);
        p.handle_timeout(now);
        assert!(connects(&drain(&mut p)).is_empty());
        assert_eq!(p.stats().dialled, 5);
    }

    #[test]
    fn a_partial_mesh_stops_at_max_peers_and_seeds_only_dials_nothing() {
        let now = Instant::now();
        let mut p = planner(ConnectPolicy::MaxPeers(3));
        p.handle_joined("seed");
        p.add_seed("seed");
        for i in 0..10 {
            show(&mut p, format!("n{i}"), format!("ipc:///tmp/n{i}"), now);
        }
        p.handle_timeout(now);
        assert_eq!(
            connects(&drain(&mut p)).len(),
            2,
            "the seed is one of the three"
        );
        let mut q = planner(ConnectPolicy::SeedsOnly);
        show(&mut q, "n0", "ipc:///tmp/n0", now);
        q.handle_timeout(now);
        assert!(drain(&mut q).is_empty());
    }

    #[test]
    fn garbage_is_refused_and_counted_and_dials_are_bounded() {
        let now = Instant::now();
        let mut p = Planner::new("me", Discovery::default().max_dials(4));
        p.handle_node(
            "a",
            vec!["http://example.com".into(), "tcp://0.0.0.0:80".into()],
            true,
            Source::Registry,
            now,
        );
        p.handle_node(
            "b",
            (0..100)
                .map(|i| format!("tcp://10.0.0.1:{}", i + 1))
                .collect(),
            true,
            Source::Registry,
            now,
        );
        p.handle_node(
            "c",
            vec!["tcp://127.0.0.1:5".into()],
            false,
            Source::Registry,
            now,
        );
        assert_eq!(p.stats().refused, 3);
        for i in 0..50 {
            show(
                &mut p,
                format!("n{i:02}"),
                format!("tcp://127.0.0.1:{}", 2000 + i),
                now,
            );
        }
        p.handle_timeout(now);
        assert_eq!(
            connects(&drain(&mut p)).len(),
            4,
            "at most max_dials at once"
        );
        // Two join; two more places.
        let first = p.dialled.keys().take(2).cloned().collect::<Vec<_>>();
        for peer in &first {
            p.handle_joined(peer);
        }
        let later = now + Duration::from_secs(1);
        p.handle_timeout(later);
        assert_eq!(connects(&drain(&mut p)).len(), 2);
        // Dials that never succeed free their place after dial_timeout.
        let much_later = later + Discovery::default().dial_timeout;
        p.handle_timeout(much_later);
        assert_eq!(connects(&drain(&mut p)).len(), 4);
    }

    #[test]
    fn a_node_gone_for_forget_after_is_forgotten_unless_back() {
        let now = Instant::now();
        let mut p = planner(ConnectPolicy::Full);
        show(&mut p, "x", "tcp://127.0.0.1:9", now);
        show(&mut p, "y", "tcp://127.0.0.1:10", now);
        p.handle_timeout(now);
        drain(&mut p);
        p.handle_joined("x");
        p.handle_node_gone("x", Source::Registry, now);
        p.handle_node_gone("y", Source::Registry, now);
        let forget_after = Discovery::default().forget_after;
        assert!(p.poll_timeout().is_some_and(|t| t <= now + forget_after));
        p.handle_timeout(now + forget_after);
        assert_eq!(drain(&mut p), vec![Plan::Forget { peer: "y".into() }]);
        assert_eq!(p.stats().forgotten, 1);
        // x is still in session: kept until it leaves and stays gone.
        p.handle_left("x", now + forget_after);
        p.handle_timeout(now + forget_after);
        assert_eq!(drain(&mut p), vec![Plan::Forget { peer: "x".into() }]);
    }

    #[test]
    fn a_node_is_gone_only_when_every_source_stopped_showing_it() {
        let now = Instant::now();
        let mut p = planner(ConnectPolicy::Full);
        let endpoint = || vec!["tcp://127.0.0.1:9".to_string()];
        p.handle_node("x", endpoint(), true, Source::Registry, now);
        p.handle_node("x", endpoint(), true, Source::Beacon, now);
        p.handle_timeout(now);
        assert_eq!(connects(&drain(&mut p)), ["x"]);
        let forget_after = Discovery::default().forget_after;
        // The registry lost it, the beacon still hears it: kept.
        p.handle_node_gone("x", Source::Registry, now);
        p.handle_timeout(now + forget_after);
        assert!(drain(&mut p).is_empty());
        assert_eq!(p.sizes().0, 1);
        // The beacon fell silent too: forgotten forget_after later.
        let silent = now + forget_after;
        p.handle_node_gone("x", Source::Beacon, silent);
        assert_eq!(p.sizes().0, 0);
        p.handle_timeout(silent + forget_after);
        assert_eq!(drain(&mut p), vec![Plan::Forget { peer: "x".into() }]);
    }

    #[test]
    fn of_two_nodes_that_find_each_other_the_first_in_order_dials() {
        let now = Instant::now();
        // "me" sorts after "a": a is expected to dial; me waits DIAL_GRACE.
        let mut p = planner(ConnectPolicy::Full);
        show(&mut p, "a", "tcp://127.0.0.1:9", now);
        p.handle_timeout(now);
        assert!(drain(&mut p).is_empty());
        assert_eq!(p.poll_timeout(), Some(now + DIAL_GRACE));
        // It did: nothing to do.
        p.handle_joined("a");
        p.handle_timeout(now + DIAL_GRACE);
        assert!(drain(&mut p).is_empty());
        // Another that did not: dialled after the grace.
        show(&mut p, "b", "tcp://127.0.0.1:10", now);
        p.handle_timeout(now + DIAL_GRACE);
        assert_eq!(connects(&drain(&mut p)), ["b"]);
    }

    #[test]
    fn endpoints_are_checked() {
        for good in [
            "tcp://127.0.0.1:5555",
            "tcp://[::1]:80",
            "tcp://host.example:1",
            "ipc:///tmp/x",
            "inproc://n1",
        ] {
            assert!(usable(good), "{good}");
        }
        for bad in [
            "",
            "tcp://",
            "tcp://127.0.0.1",
            "tcp://127.0.0.1:0",
            "tcp://*:5555",
            "tcp://0.0.0.0:1",
            "udp://1.2.3.4:5",
            "tcp://a:99999",
        ] {
            assert!(!usable(bad), "{bad}");
        }
    }
}
