//! Several real nodes replicating with each other: links (a token issued on
//! one node, a peer added on the other), topologies, sync rounds on demand,
//! and the comparable state of a node for convergence checks.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::{list_all, search_ids, TestNode};

/// Collections whose records the convergence checks compare.
pub const COLLECTIONS: &[&str] = &["clients", "contacts"];
/// Sync rounds over the whole cluster before `quiesce` gives up.
const MAX_QUIESCE_ROUNDS: usize = 30;

/// How nodes are linked. A link `(a, b)` makes node `a` sync with node `b`
/// (pull from and push to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Node 0 is the hub; every other node syncs with it.
    Star,
    /// Node i syncs with node i + 1.
    Chain,
    /// Every pair.
    Mesh,
}

impl Topology {
    pub fn links(self, n: usize) -> Vec<(usize, usize)> {
        match self {
            Topology::Star => (1..n).map(|i| (i, 0)).collect(),
            Topology::Chain => (0..n.saturating_sub(1)).map(|i| (i, i + 1)).collect(),
            Topology::Mesh => (0..n)
                .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
                .collect(),
        }
    }
}

pub struct Cluster {
    pub nodes: Vec<TestNode>,
    pub links: Vec<(usize, usize)>,
}

/// The peer name node `a` knows node `b` by.
pub fn peer_name(b: usize) -> String {
    format!("node{b}")
}

impl Cluster {
    /// Starts `n` nodes with `config` (a `crm-node.toml` text; e.g.
    /// `auto_sync = false` for tests that drive every sync themselves).
    pub async fn start(n: usize, config: &str) -> Cluster {
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            nodes.push(TestNode::start_with_config(&format!("node{i}"), config).await);
        }
        Cluster {
            nodes,
            links: Vec::new(),
        }
    }

    /// Starts `n` nodes linked in `topology`.
    pub async fn with_topology(n: usize, topology: Topology, config: &str) -> Cluster {
        let mut cluster = Cluster::start(n, config).await;
        for (a, b) in topology.links(n) {
            cluster.link(a, b).await;
        }
        cluster
    }

    /// Makes node `a` sync with node `b`: `b` issues a token (with the CLI,
    /// while it runs) and `a` adds `b` as a peer over the API.
    pub async fn link(&mut self, a: usize, b: usize) {
        let secret = issue_token(&self.nodes[b], &format!("for-node{a}")).await;
        let body = json!({
            "name": peer_name(b),
            "url": self.nodes[b].base_url(),
            "token": secret,
        });
        self.nodes[a]
            .post_json("/api/v1/peers", &body)
            .await
            .expect_status(201, "add peer");
        self.links.push((a, b));
    }

    /// One sync round of node `a` with its peer `b` (both directions);
    /// returns the round's report.
    pub async fn sync_pair(&self, a: usize, b: usize) -> Value {
        let body = json!({ "peer": peer_name(b) });
        let resp = self.nodes[a].post_json("/api/v1/sync/run", &body).await;
        resp.expect_status(200, "sync run");
        let result = resp.json["results"][0].clone();
        assert_eq!(
            result["ok"],
            json!(true),
            "sync node{a} -> node{b} failed: {result}\nnode{a} log:\n{}",
            self.nodes[a].log_tail()
        );
        result
    }

    /// One round over every link, in link order.
    pub async fn sync_all(&self) {
        for &(a, b) in &self.links {
            self.sync_pair(a, b).await;
        }
    }

    /// Syncs every link until all nodes show the same state; panics with the
    /// differences after a bounded number of rounds.
    pub async fn quiesce(&self) -> Vec<NodeState> {
        let mut states = Vec::new();
        for _ in 0..MAX_QUIESCE_ROUNDS {
            self.sync_all().await;
            states = self.states().await;
            if states.windows(2).all(|w| w[0] == w[1]) {
                return states;
            }
        }
        let first = &states[0];
        for (i, state) in states.iter().enumerate().skip(1) {
            if state != first {
                panic!(
                    "node{i} differs from node0 after {MAX_QUIESCE_ROUNDS} rounds:\n{}",
                    first.diff(state)
                );
            }
        }
        states
    }

    /// Waits (bounded) until every node shows the same state, with the
    /// continuous workers doing the syncing.
    pub async fn await_convergence(&self, deadline: Duration) -> Vec<NodeState> {
        let start = std::time::Instant::now();
        loop {
            let states = self.states().await;
            if states.windows(2).all(|w| w[0] == w[1]) {
                return states;
            }
            if start.elapsed() > deadline {
                panic!(
                    "nodes did not converge within {deadline:?}:\n{}",
                    states[0].diff(
                        &states[1..]
                            .iter()
                            .find(|s| **s != states[0])
                            .cloned()
                            .unwrap_or_default()
                    )
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn states(&self) -> Vec<NodeState> {
        let mut states = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            states.push(NodeState::read(node).await);
        }
        states
    }
}

/// Issues a token on `node` with `crm-node token create` and returns the
/// secret from the last line of its output.
pub async fn issue_token(node: &TestNode, name: &str) -> String {
    let (ok, stdout, stderr) = node.cli(&["token", "create", name]).await;
    assert!(ok, "token create failed: {stdout}\n{stderr}");
    stdout
        .lines()
        .last()
        .expect("token create printed the secret")
        .trim()
        .to_owned()
}

/// What must be identical on converged nodes: every live record as the API
/// serves it (fields, version, conflicts), and the ids a search finds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeState {
    /// collection -> id -> record JSON
    pub records: BTreeMap<String, BTreeMap<String, Value>>,
}

impl NodeState {
    pub async fn read(node: &TestNode) -> NodeState {
        let mut records = BTreeMap::new();
        for collection in COLLECTIONS {
            let items = list_all(node, collection, &[("sort", "created_at")]).await;
            let by_id = items
                .into_iter()
                .map(|r| (r["id"].as_str().unwrap_or_default().to_owned(), r))
                .collect();
            records.insert((*collection).to_owned(), by_id);
        }
        NodeState { records }
    }

    pub fn ids(&self, collection: &str) -> Vec<String> {
        self.records
            .get(collection)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// A readable account of how `other` differs from `self`.
    pub fn diff(&self, other: &NodeState) -> String {
        let mut out = String::new();
        for (collection, mine) in &self.records {
            let empty = BTreeMap::new();
            let theirs = other.records.get(collection).unwrap_or(&empty);
            for (id, record) in mine {
                match theirs.get(id) {
                    None => out.push_str(&format!("{collection}/{id}: missing on the other\n")),
                    Some(r) if r != record => out.push_str(&format!(
                        "{collection}/{id}:\n  one:   {record}\n  other: {r}\n"
                    )),
                    _ => {}
                }
            }
            for id in theirs.keys().filter(|id| !mine.contains_key(*id)) {
                out.push_str(&format!("{collection}/{id}: only on the other\n"));
            }
        }
        out
    }
}

/// The ids a full-text search for `q` finds on `node`, sorted.
pub async fn search_set(node: &TestNode, q: &str) -> Vec<String> {
    let mut ids = search_ids(node, q).await;
    ids.sort();
    ids
}
