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
    issue_scoped_token(node, name, &[]).await
}

/// Issues a token limited by `scope` (`--kinds`/`--filter` arguments).
pub async fn issue_scoped_token(node: &TestNode, name: &str, scope: &[&str]) -> String {
    let mut args = vec!["token", "create", name];
    args.extend_from_slice(scope);
    let (ok, stdout, stderr) = node.cli(&args).await;
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

// ---------------------------------------------------------------------------
// Helpers of the replication protocol and fault tests.

/// The media type of replication frames on the wire.
pub const FRAME_MEDIA_TYPE: &str = "application/vnd.crm-node.frame";

/// A test's own client of a node's `/sync/v1` API: every request carries
/// the bearer `token` (issued by the node) and `crm-sync-protocol: 1`.
pub struct SyncApi<'a> {
    pub node: &'a TestNode,
    pub token: String,
}

impl<'a> SyncApi<'a> {
    pub fn new(node: &'a TestNode, token: &str) -> SyncApi<'a> {
        SyncApi {
            node,
            token: token.to_owned(),
        }
    }

    /// Issues a fresh token named `name` on `node` (CLI) and wraps it.
    pub async fn issue(node: &'a TestNode, name: &str) -> SyncApi<'a> {
        let token = issue_token(node, name).await;
        SyncApi::new(node, &token)
    }

    /// A request with the token and the protocol header.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.node
            .request(method, path)
            .header("authorization", format!("Bearer {}", self.token))
            .header("crm-sync-protocol", "1")
    }

    pub async fn get(&self, path: &str) -> super::Resp {
        self.node
            .send(self.request(reqwest::Method::GET, path))
            .await
    }

    /// `GET /sync/v1/info`, expecting 200.
    pub async fn info(&self) -> Value {
        let resp = self.get("/sync/v1/info").await;
        resp.expect_status(200, "GET /sync/v1/info");
        resp.json
    }

    /// The node's latest feed seq, from `/sync/v1/info`.
    pub async fn latest_seq(&self) -> i64 {
        let info = self.info().await;
        info["latest_seq"]
            .as_i64()
            .unwrap_or_else(|| panic!("info has no latest_seq: {info}"))
    }

    /// One raw feed page (`since`, `limit`, no requester), expecting 200
    /// and a frame: its bytes and the frame decoded.
    pub async fn feed_page(&self, since: i64, limit: usize) -> (Vec<u8>, crm_sync::frame::Frame) {
        let path = format!("/sync/v1/feed?since={since}&limit={limit}");
        let response = self
            .request(reqwest::Method::GET, &path)
            .send()
            .await
            .expect("GET a feed page");
        assert_eq!(response.status().as_u16(), 200, "GET {path}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert_eq!(content_type, FRAME_MEDIA_TYPE, "content type of {path}");
        let bytes = response.bytes().await.expect("read a feed page").to_vec();
        let frame = crm_sync::frame::Frame::decode(&bytes)
            .unwrap_or_else(|e| panic!("feed page {path} does not decode: {e}"));
        (bytes, frame)
    }

    /// `POST /sync/v1/changes` with `body` sent as `content_type`.
    pub async fn push(&self, body: Vec<u8>, content_type: &str) -> super::Resp {
        self.node
            .send(
                self.request(reqwest::Method::POST, "/sync/v1/changes")
                    .header("content-type", content_type)
                    .body(body),
            )
            .await
    }
}

/// Adds a peer named `name` at `url` (any URL: a node, a proxy, a fake) to
/// `node` over the API, expecting 201.
pub async fn add_peer(node: &TestNode, name: &str, url: &str, token: &str) {
    let body = json!({ "name": name, "url": url, "token": token });
    node.post_json("/api/v1/peers", &body)
        .await
        .expect_status(201, &format!("add peer {name} at {url}"));
}

/// Runs one on-demand round of `node` with `peer` (`max_steps` pages per
/// direction at most) and returns its result, successful or not.
pub async fn run_sync(node: &TestNode, peer: &str, max_steps: Option<u32>) -> Value {
    let mut body = json!({ "peer": peer });
    if let Some(steps) = max_steps {
        body["max_steps"] = json!(steps);
    }
    let resp = node.post_json("/api/v1/sync/run", &body).await;
    resp.expect_status(200, &format!("sync run with {peer}"));
    resp.json["results"][0].clone()
}

/// The `/api/v1/sync/status` entry of `peer` on `node`.
pub async fn peer_status(node: &TestNode, peer: &str) -> Value {
    let resp = node.get("/api/v1/sync/status").await;
    resp.expect_status(200, "GET /api/v1/sync/status");
    resp.json["peers"]
        .as_array()
        .and_then(|peers| peers.iter().find(|p| p["name"] == json!(peer)))
        .cloned()
        .unwrap_or_else(|| panic!("sync status lists no peer {peer}: {}", resp.text))
}

/// Polls `probe` every 100 ms until it yields `Ok`, for at most `deadline`;
/// panics naming `what` and the last `Err` (what was seen) otherwise.
pub async fn wait_for<T, F, Fut>(deadline: Duration, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = std::time::Instant::now();
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if start.elapsed() > deadline => {
                panic!("{what}: not reached within {deadline:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

// ---------------------------------------------------------------------------
// Convergence of chosen records, lists and searches (topology and random
// replication tests).

/// Extra sync rounds [`Cluster::settle`] runs after `quiesce` while the
/// probed records (deleted ones included) still differ between nodes.
const MAX_SETTLE_ROUNDS: usize = 10;

/// A record as one node serves it: the status of its GET, and the body when
/// that is 200 (`Null` otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordView {
    pub status: u16,
    pub body: Value,
}

/// What a convergence check looks at beyond [`NodeState`]: records by id
/// (deleted ones too), some filtered and sorted lists, some searches.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    /// `(collection, id)` of every record to GET.
    pub records: Vec<(String, String)>,
    /// `(collection, query pairs)` of lists to read whole, in order.
    pub lists: Vec<(String, Vec<(String, String)>)>,
    /// Words to search for; hits are compared as sorted id sets.
    pub searches: Vec<String>,
}

/// One node's answers to a [`Probe`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub records: BTreeMap<(String, String), RecordView>,
    pub lists: Vec<Vec<Value>>,
    pub searches: Vec<Vec<String>>,
}

impl Probe {
    pub async fn observe(&self, node: &TestNode) -> Observed {
        let mut observed = Observed::default();
        for (collection, id) in &self.records {
            let resp = node.get(&format!("/api/v1/{collection}/{id}")).await;
            let status = resp.status.as_u16();
            let body = if status == 200 {
                resp.json
            } else {
                Value::Null
            };
            observed.records.insert(
                (collection.clone(), id.clone()),
                RecordView { status, body },
            );
        }
        for (collection, pairs) in &self.lists {
            let pairs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            observed
                .lists
                .push(list_all(node, collection, &pairs).await);
        }
        for q in &self.searches {
            observed.searches.push(search_set(node, q).await);
        }
        observed
    }
}

impl Observed {
    /// A readable account of how `other` differs from `self`.
    pub fn diff(&self, probe: &Probe, other: &Observed) -> String {
        let mut out = String::new();
        for (key, mine) in &self.records {
            match other.records.get(key) {
                Some(theirs) if theirs == mine => {}
                theirs => out.push_str(&format!(
                    "{}/{}:\n  one:   {} {}\n  other: {:?}\n",
                    key.0, key.1, mine.status, mine.body, theirs
                )),
            }
        }
        for (i, (collection, pairs)) in probe.lists.iter().enumerate() {
            if self.lists.get(i) != other.lists.get(i) {
                out.push_str(&format!(
                    "list {collection} {pairs:?}:\n  one:   {:?}\n  other: {:?}\n",
                    self.lists
                        .get(i)
                        .map(|l| l.iter().map(super::id_of).collect::<Vec<_>>()),
                    other
                        .lists
                        .get(i)
                        .map(|l| l.iter().map(super::id_of).collect::<Vec<_>>()),
                ));
            }
        }
        for (i, q) in probe.searches.iter().enumerate() {
            if self.searches.get(i) != other.searches.get(i) {
                out.push_str(&format!(
                    "search {q:?}:\n  one:   {:?}\n  other: {:?}\n",
                    self.searches.get(i),
                    other.searches.get(i)
                ));
            }
        }
        out
    }
}

impl Cluster {
    /// [`Cluster::quiesce`], then more rounds (bounded) until every node
    /// also answers `probe` identically: a record only ever seen deleted
    /// leaves no trace in the states `quiesce` compares. Panics with the
    /// differences and the nodes' log tails when they persist.
    pub async fn settle(&self, probe: &Probe) -> (Vec<NodeState>, Vec<Observed>) {
        let mut states = self.quiesce().await;
        let mut observed = Vec::new();
        for round in 0..=MAX_SETTLE_ROUNDS {
            if round > 0 {
                self.sync_all().await;
                states = self.states().await;
            }
            observed = Vec::with_capacity(self.nodes.len());
            for node in &self.nodes {
                observed.push(probe.observe(node).await);
            }
            let same_states = states.windows(2).all(|w| w[0] == w[1]);
            if same_states && observed.windows(2).all(|w| w[0] == w[1]) {
                return (states, observed);
            }
        }
        let mut report = String::new();
        for (i, o) in observed.iter().enumerate().skip(1) {
            if *o != observed[0] || states[i] != states[0] {
                report.push_str(&format!(
                    "node{i} vs node0:\n{}{}",
                    observed[0].diff(probe, o),
                    states[0].diff(&states[i])
                ));
            }
        }
        for (i, node) in self.nodes.iter().enumerate() {
            report.push_str(&format!("--- node{i} log tail:\n{}\n", node.log_tail()));
        }
        panic!("nodes still differ {MAX_SETTLE_ROUNDS} rounds after quiesce:\n{report}");
    }
}

/// The epoch `node` reports on `/healthz` (a restore raises it).
pub async fn epoch_of(node: &TestNode) -> u64 {
    let resp = node.get("/healthz").await;
    resp.expect_status(200, "healthz");
    resp.json["epoch"]
        .as_u64()
        .unwrap_or_else(|| panic!("healthz has no epoch: {}", resp.text))
}
