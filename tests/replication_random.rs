//! Seeded randomized convergence. Each seed builds a cluster of 2-5 nodes
//! (`auto_sync = false`) linked as a star, a chain, a mesh or a random
//! connected graph, then runs 15-40 random operations: creating clients and
//! contacts, editing fields (also the same field on several nodes with no
//! sync in between, to make conflicts), deleting, restoring, partial
//! (`max_steps` 1) and full syncs of random links, storms of 2-3 rounds and
//! edits running at once, `kill -9` of a random node followed by a restart
//! on the same port, and `kill -9` of a node in the middle of a sync round.
//!
//! An oracle records every acknowledged write with what its node surely and
//! possibly knew then (sure knowledge grows only by complete sync rounds,
//! possible knowledge by any sync attempt). After the cluster quiesces every
//! node must serve identical records, lists and searches; every created id
//! must be known everywhere (GET 200 or 410); a write that surely saw every
//! other write of its field (or of the deleted flag) must win everywhere
//! without a conflict; edits that cannot have seen each other must show as a
//! conflict; a node never lacks a record it surely got nor has one it
//! cannot have heard of; lists and search must agree with the records; and,
//! after one more round, every peer must show connected with no backlog and
//! nothing held.
//!
//! Seeds 0..200 and the `REGRESSIONS` run, 4 at a time. To replay or hunt:
//! `CRM_SEED=<n>` runs only seed n and prints its operations as they happen;
//! `CRM_SEEDS=<n>` runs seeds 0..n instead of 0..200; `CRM_OPS=<lo>-<hi>`
//! draws the number of operations from lo..=hi instead of 15..=40 (longer
//! histories find more).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{peer_name, peer_status, Cluster, NodeState, Observed, Probe, Topology};
use common::seeded::Rng;
use common::{id_of, Resp, TestNode};
use serde_json::{json, Value};
use tokio::task::JoinSet;

/// Seeds `0..RANDOM_SEEDS` run on every test run.
const RANDOM_SEEDS: u64 = 200;
/// Histories that once found a node bug; they always run.
const REGRESSIONS: &[Case] = &[
    // More than 20 equally ranked search hits: converged nodes served
    // different search pages (ties fall back to each node's insertion order).
    Case {
        seed: 39,
        ops: (60, 120),
    },
];
/// Seeds simulated at the same time.
const IN_FLIGHT: usize = 4;
/// One seed may take this long before it counts as hung.
const SEED_DEADLINE: Duration = Duration::from_secs(180);
/// How long an interrupted sync request may take to answer.
const SYNC_DEADLINE: Duration = Duration::from_secs(60);
const CONFIG: &str = "auto_sync = false\n";
/// Operations per history, by default.
const OPS: (usize, usize) = (15, 40);
const NODES: (usize, usize) = (2, 5);

/// Fields the operations edit. All but `tags` (a set) take any short
/// string; `notes` (text) and `tags` merge concurrent edits instead of
/// showing a conflict.
const CLIENT_FIELDS: &[&str] = &[
    "name", "city", "region", "industry", "manager", "notes", "tags",
];
const CONTACT_FIELDS: &[&str] = &[
    "last_name",
    "first_name",
    "position",
    "middle_name",
    "notes",
];
const MERGING_FIELDS: &[&str] = &["notes", "tags"];
/// A word in every record's name, for the search compared across nodes.
const NAME_WORD: &str = "Randy";
/// Hits a search returns by default.
const SEARCH_PAGE: usize = 20;

/// One history to simulate: its seed, and the range its number of
/// operations is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Case {
    seed: u64,
    ops: (usize, usize),
}

impl Case {
    fn replay(&self) -> String {
        let (lo, hi) = self.ops;
        format!(
            "CRM_SEED={} CRM_OPS={lo}-{hi} cargo test --test replication_random",
            self.seed
        )
    }
}

// ---------------------------------------------------------------------------
// The oracle.

/// A record some node acknowledged creating.
struct Rec {
    collection: &'static str,
    id: String,
    /// The write that created it.
    created: usize,
    /// Values of the editable fields at creation (`Null` when not set).
    initial: BTreeMap<&'static str, Value>,
}

impl Rec {
    fn fields(&self) -> &'static [&'static str] {
        if self.collection == "clients" {
            CLIENT_FIELDS
        } else {
            CONTACT_FIELDS
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Create,
    Field(&'static str),
    /// The deleted flag: `true` by a delete, `false` by a restore.
    Deleted,
}

/// One acknowledged write, and the writes its node knew before it.
struct Write {
    rec: usize,
    node: usize,
    target: Target,
    value: Value,
    /// Writes the node surely had.
    sure: BTreeSet<usize>,
    /// Writes the node may have had.
    maybe: BTreeSet<usize>,
}

/// The operations run so far, shared with the runner for failure reports.
type Trace = Arc<Mutex<Vec<String>>>;

fn trace_tail(trace: &Trace, lines: usize) -> String {
    let trace = trace.lock().map(|t| t.clone()).unwrap_or_default();
    trace[trace.len().saturating_sub(lines)..].join("\n")
}

/// A request in flight that owns everything it needs, so that it can run
/// in a task while the test kills nodes; `Err` on a transport error.
type Pending = std::pin::Pin<Box<dyn Future<Output = Result<Resp, reqwest::Error>> + Send>>;

fn send_owned(request: reqwest::RequestBuilder) -> Pending {
    Box::pin(common::read_response(request))
}

/// Counts over a run, to see what the seeds exercised.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    seeds: usize,
    nodes: usize,
    records: usize,
    writes: usize,
    /// Node crashes, and crashes while a round ran.
    kills: usize,
    interrupted_rounds: usize,
    /// Rounds that ran at the same time as other rounds and writes.
    storm_rounds: usize,
    /// Field values checked against the write that saw all others.
    values_checked: usize,
    /// Fields checked for a conflict that must be there.
    conflicts_checked: usize,
}

impl Stats {
    fn add(&mut self, o: Stats) {
        self.seeds += o.seeds;
        self.nodes += o.nodes;
        self.records += o.records;
        self.writes += o.writes;
        self.kills += o.kills;
        self.interrupted_rounds += o.interrupted_rounds;
        self.storm_rounds += o.storm_rounds;
        self.values_checked += o.values_checked;
        self.conflicts_checked += o.conflicts_checked;
    }
}

// ---------------------------------------------------------------------------
// One seed.

struct Sim {
    seed: u64,
    rng: Rng,
    cluster: Cluster,
    records: Vec<Rec>,
    writes: Vec<Write>,
    /// Per node: writes it surely has / may have.
    sure: Vec<BTreeSet<usize>>,
    maybe: Vec<BTreeSet<usize>>,
    trace: Trace,
    verbose: bool,
    /// How many operations to draw from.
    ops: (usize, usize),
    op: usize,
    stats: Stats,
}

/// Links of a random connected graph on `n` nodes: a random spanning tree
/// plus some extra links. A link `(a, b)` means node `a` syncs with `b`.
fn random_links(rng: &mut Rng, n: usize) -> Vec<(usize, usize)> {
    let mut links = Vec::new();
    for i in 1..n {
        let j = rng.below(i);
        links.push(if rng.percent(50) { (i, j) } else { (j, i) });
    }
    for i in 0..n {
        for j in i + 1..n {
            let linked = links.contains(&(i, j)) || links.contains(&(j, i));
            if !linked && rng.percent(25) {
                links.push((i, j));
            }
        }
    }
    links
}

impl Sim {
    async fn new(case: Case, trace: Trace, verbose: bool) -> Sim {
        let seed = case.seed;
        let mut rng = Rng::new(seed);
        let n = rng.between(NODES);
        let (shape, links) = match rng.below(4) {
            0 => ("star", Topology::Star.links(n)),
            1 => ("chain", Topology::Chain.links(n)),
            2 => ("mesh", Topology::Mesh.links(n)),
            _ => ("random", random_links(&mut rng, n)),
        };
        let mut cluster = Cluster::start(n, CONFIG).await;
        for &(a, b) in &links {
            cluster.link(a, b).await;
        }
        let sim = Sim {
            seed,
            rng,
            cluster,
            records: Vec::new(),
            writes: Vec::new(),
            sure: vec![BTreeSet::new(); n],
            maybe: vec![BTreeSet::new(); n],
            trace,
            verbose,
            ops: case.ops,
            op: 0,
            stats: Stats {
                seeds: 1,
                nodes: n,
                ..Stats::default()
            },
        };
        sim.note(format!("seed {seed}: {n} nodes, {shape} links {links:?}"));
        sim
    }

    fn note(&self, line: String) {
        if self.verbose {
            eprintln!("[seed {}] {line}", self.seed);
        }
        if let Ok(mut trace) = self.trace.lock() {
            trace.push(line);
        }
    }

    fn n(&self) -> usize {
        self.cluster.nodes.len()
    }

    fn node(&self, i: usize) -> &TestNode {
        &self.cluster.nodes[i]
    }

    /// A value no other write uses: the seed, the operation, the node and
    /// `suffix`. Tags get a fresh member, with `vip` every other time.
    fn fresh_value(&self, field: &str, node: usize, suffix: &str) -> Value {
        let (seed, op) = (self.seed, self.op);
        if field == "tags" {
            let fresh = format!("t{op}n{node}{suffix}");
            return if op % 2 == 0 {
                json!([fresh, "vip"])
            } else {
                json!([fresh])
            };
        }
        json!(format!("{field} s{seed} o{op} n{node}{suffix}"))
    }

    fn add_write(&mut self, rec: usize, node: usize, target: Target, value: Value) -> usize {
        let id = self.writes.len();
        self.writes.push(Write {
            rec,
            node,
            target,
            value,
            sure: self.sure[node].clone(),
            maybe: self.maybe[node].clone(),
        });
        self.sure[node].insert(id);
        self.maybe[node].insert(id);
        id
    }

    /// After a sync attempt between `a` and `b`: each may have what the
    /// other had; when the round completed both ways, each surely has it.
    fn exchanged(&mut self, a: usize, b: usize, complete: bool) {
        let maybe: BTreeSet<usize> = self.maybe[a].union(&self.maybe[b]).copied().collect();
        self.maybe[a] = maybe.clone();
        self.maybe[b] = maybe;
        if complete {
            let sure: BTreeSet<usize> = self.sure[a].union(&self.sure[b]).copied().collect();
            self.sure[a] = sure.clone();
            self.sure[b] = sure;
        }
    }

    fn path(&self, rec: usize) -> String {
        let r = &self.records[rec];
        format!("/api/v1/{}/{}", r.collection, r.id)
    }

    /// GETs record `rec` on `node` and checks it against what the node can
    /// know: surely known records exist there, never-heard-of ones do not.
    async fn lookup(&self, node: usize, rec: usize) -> Resp {
        let resp = self.node(node).get(&self.path(rec)).await;
        let created = self.records[rec].created;
        let status = resp.status.as_u16();
        if self.sure[node].contains(&created) {
            assert!(
                status == 200 || status == 410,
                "node{node} surely has {} but GET answered {status}: {}",
                self.path(rec),
                resp.text
            );
        } else if !self.maybe[node].contains(&created) {
            assert_eq!(
                status,
                404,
                "node{node} cannot have heard of {} yet GET answered {}",
                self.path(rec),
                resp.text
            );
        }
        resp
    }

    /// A random record that `node` may know, if any.
    fn pick_record(&mut self, node: usize, collection: Option<&str>) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.records.len())
            .filter(|&r| self.maybe[node].contains(&self.records[r].created))
            .filter(|&r| collection.is_none_or(|c| self.records[r].collection == c))
            .collect();
        (!candidates.is_empty()).then(|| self.rng.pick(&candidates))
    }

    // --- operations -------------------------------------------------------

    async fn step(&mut self) {
        let node = self.rng.below(self.n());
        match self.rng.below(100) {
            _ if self.records.is_empty() => self.create_client(node).await,
            0..=12 => self.create_client(node).await,
            13..=21 => self.create_contact(node).await,
            22..=42 => self.edit(node).await,
            43..=49 => self.conflicting_edits().await,
            50..=55 => self.delete(node).await,
            56..=60 => self.restore(node).await,
            61..=69 => self.sync_random_link(Some(1)).await,
            70..=80 => self.sync_random_link(None).await,
            81..=86 => self.storm().await,
            87..=91 => self.crash(node).await,
            _ => self.crash_during_sync().await,
        }
    }

    async fn create(&mut self, node: usize, collection: &'static str, body: Value) -> usize {
        let resp = self
            .node(node)
            .post_json(&format!("/api/v1/{collection}"), &body)
            .await;
        resp.expect_status(201, &format!("node{node} create {collection} {body}"));
        let id = id_of(&resp.json);
        let fields = if collection == "clients" {
            CLIENT_FIELDS
        } else {
            CONTACT_FIELDS
        };
        let initial = fields
            .iter()
            .map(|f| (*f, body.get(*f).cloned().unwrap_or(Value::Null)))
            .collect();
        let rec = self.records.len();
        self.records.push(Rec {
            collection,
            id: id.clone(),
            created: usize::MAX,
            initial,
        });
        let created = self.add_write(rec, node, Target::Create, body);
        self.records[rec].created = created;
        self.note(format!("node{node}: created {collection}/{id} (r{rec})"));
        rec
    }

    async fn create_client(&mut self, node: usize) {
        let body = json!({
            "name": format!("{NAME_WORD} client s{} o{}", self.seed, self.op),
            "client_type": if self.rng.percent(70) { "company" } else { "person" },
            "city": format!("City{}", self.rng.below(5)),
            "notes": "first notes",
            "tags": ["vip"],
        });
        self.create(node, "clients", body).await;
    }

    async fn create_contact(&mut self, node: usize) {
        // The client must be live on this node.
        for _ in 0..3 {
            let Some(client) = self.pick_record(node, Some("clients")) else {
                break;
            };
            if self.lookup(node, client).await.status.as_u16() != 200 {
                continue;
            }
            let body = json!({
                "client_id": self.records[client].id,
                "last_name": format!("{NAME_WORD} contact o{}", self.op),
                "first_name": "Anna",
                "position": "Buyer",
            });
            self.create(node, "contacts", body).await;
            return;
        }
        self.create_client(node).await;
    }

    /// PATCHes `field` of `rec` on `node` with a fresh value when the record
    /// is live there (a deleted one must answer 410). Returns whether it
    /// wrote.
    async fn edit_field(&mut self, node: usize, rec: usize, field: &'static str) -> bool {
        let status = self.lookup(node, rec).await.status.as_u16();
        let value = self.fresh_value(field, node, "");
        let body = json!({ field: value });
        match status {
            200 => {
                let resp = self
                    .node(node)
                    .patch_json(&self.path(rec), &body, None)
                    .await;
                resp.expect_status(200, &format!("node{node} PATCH r{rec} {body}"));
                assert!(
                    same_value(&resp.json[field], &value),
                    "node{node} PATCH {body} answered {}",
                    resp.text
                );
                assert!(
                    resp.json["conflicts"].get(field).is_none(),
                    "node{node}: writing {field} leaves no conflict on it: {}",
                    resp.text
                );
                self.add_write(rec, node, Target::Field(field), value);
                self.note(format!("node{node}: r{rec}.{field} = {body}"));
                true
            }
            410 => {
                self.node(node)
                    .patch_json(&self.path(rec), &body, None)
                    .await
                    .expect_problem(410, &format!("node{node} PATCH deleted r{rec}"));
                self.note(format!("node{node}: r{rec} is deleted here, PATCH refused"));
                false
            }
            _ => false,
        }
    }

    async fn edit(&mut self, node: usize) {
        if let Some(rec) = self.pick_record(node, None) {
            let field = self.rng.pick(self.records[rec].fields());
            self.edit_field(node, rec, field).await;
        }
    }

    /// The same field of one record written on 2-3 nodes, no sync between.
    async fn conflicting_edits(&mut self) {
        if self.records.is_empty() {
            return;
        }
        let rec = self.rng.below(self.records.len());
        let field = self.rng.pick(self.records[rec].fields());
        let mut nodes: Vec<usize> = (0..self.n()).collect();
        let writers = self.rng.between((2, 3)).min(nodes.len());
        for _ in 0..writers {
            let node = nodes.swap_remove(self.rng.below(nodes.len()));
            self.edit_field(node, rec, field).await;
        }
    }

    async fn delete(&mut self, node: usize) {
        let Some(rec) = self.pick_record(node, None) else {
            return;
        };
        let before = self.lookup(node, rec).await.status.as_u16();
        if before == 404 {
            return;
        }
        let resp = self.node(node).delete(&self.path(rec)).await;
        if before == 200 {
            resp.expect_status(204, &format!("node{node} DELETE r{rec}"));
            self.add_write(rec, node, Target::Deleted, json!(true));
            self.note(format!("node{node}: deleted r{rec}"));
        } else {
            resp.expect_problem(410, &format!("node{node} DELETE of deleted r{rec}"));
        }
    }

    async fn restore(&mut self, node: usize) {
        let Some(rec) = self.pick_record(node, None) else {
            return;
        };
        let before = self.lookup(node, rec).await.status.as_u16();
        if before == 404 {
            return;
        }
        let resp = self
            .node(node)
            .post_empty(&format!("{}/restore", self.path(rec)))
            .await;
        resp.expect_status(200, &format!("node{node} restore r{rec}"));
        assert_eq!(
            resp.json["id"],
            json!(self.records[rec].id),
            "{}",
            resp.text
        );
        if before == 410 {
            self.add_write(rec, node, Target::Deleted, json!(false));
            self.note(format!("node{node}: restored r{rec}"));
        }
    }

    /// Node `a`'s sync round with peer `b`, as a task-ready future.
    fn sync_request(&self, a: usize, b: usize, max_steps: Option<u32>) -> Pending {
        let mut body = json!({ "peer": peer_name(b) });
        if let Some(steps) = max_steps {
            body["max_steps"] = json!(steps);
        }
        let node = self.node(a);
        send_owned(node.client().post(node.url("/api/v1/sync/run")).json(&body))
    }

    /// Notes what a sync round answered; returns the round's result.
    fn sync_outcome(&mut self, a: usize, b: usize, resp: &Resp) -> Value {
        resp.expect_status(200, &format!("node{a} sync/run with node{b}"));
        let result = resp.json["results"][0].clone();
        let ok = result["ok"] == json!(true);
        let complete = ok
            && result["pulled"]["caught_up"] == json!(true)
            && result["pushed"]["caught_up"] == json!(true);
        self.exchanged(a, b, complete);
        self.note(format!(
            "node{a} <-> node{b}: ok {ok}, complete {complete}, pulled {} pushed {} {}",
            result["pulled"]["applied"], result["pushed"]["applied"], result["error"]
        ));
        result
    }

    fn random_link(&mut self) -> (usize, usize) {
        let links = &self.cluster.links;
        links[self.rng.below(links.len())]
    }

    async fn sync_random_link(&mut self, max_steps: Option<u32>) {
        let (a, b) = self.random_link();
        let resp = self
            .sync_request(a, b, max_steps)
            .await
            .unwrap_or_else(|e| panic!("node{a} sync/run with node{b}: {e}"));
        let result = self.sync_outcome(a, b, &resp);
        assert_eq!(
            result["ok"],
            json!(true),
            "sync node{a} -> node{b} (max_steps {max_steps:?}) failed with every node up: {result}\nnode{a} log:\n{}",
            self.node(a).log_tail()
        );
    }

    async fn crash(&mut self, node: usize) {
        self.note(format!("node{node}: kill -9 and restart"));
        self.stats.kills += 1;
        self.cluster.nodes[node].kill9().await;
        self.cluster.nodes[node].restart_same_port().await;
    }

    /// Starts a sync round and kills one of its two nodes a moment later.
    async fn crash_during_sync(&mut self) {
        let (a, b) = self.random_link();
        let victim = if self.rng.percent(50) { a } else { b };
        let delay = Duration::from_millis(self.rng.below(8) as u64);
        self.stats.kills += 1;
        self.note(format!(
            "node{a} <-> node{b}: kill -9 node{victim} after {delay:?}"
        ));
        let round = tokio::spawn(self.sync_request(a, b, None));
        tokio::time::sleep(delay).await;
        self.cluster.nodes[victim].kill9().await;
        self.cluster.nodes[victim].restart_same_port().await;
        let answer = tokio::time::timeout(SYNC_DEADLINE, round)
            .await
            .unwrap_or_else(|_| panic!("interrupted sync node{a} -> node{b} never answered"))
            .expect("the sync request task ran");
        match answer {
            Ok(resp) => {
                let result = self.sync_outcome(a, b, &resp);
                if result["ok"] != json!(true) {
                    self.stats.interrupted_rounds += 1;
                }
            }
            Err(e) => {
                self.stats.interrupted_rounds += 1;
                // Only the node serving the request may drop it.
                assert_eq!(victim, a, "node{a} dropped a sync request: {e}");
                self.exchanged(a, b, false);
                self.note(format!("node{a} died serving the round: {e}"));
            }
        }
    }

    /// 2-3 sync rounds of random links (sharing nodes, possibly the same
    /// link twice) and up to 2 edits, all at the same time.
    async fn storm(&mut self) {
        let rounds: Vec<(usize, usize, Option<u32>)> = (0..self.rng.between((2, 3)))
            .map(|_| {
                let (a, b) = self.random_link();
                (a, b, self.rng.percent(30).then_some(1))
            })
            .collect();
        let mut edits = Vec::new();
        for _ in 0..self.rng.below(3) {
            let node = self.rng.below(self.n());
            let known: Vec<usize> = (0..self.records.len())
                .filter(|&r| self.sure[node].contains(&self.records[r].created))
                .collect();
            if known.is_empty() {
                continue;
            }
            let rec = self.rng.pick(&known);
            let field = self.rng.pick(self.records[rec].fields());
            let value = self.fresh_value(field, node, &format!(" e{}", edits.len()));
            edits.push((node, rec, field, value));
        }
        self.note(format!(
            "storm: rounds {rounds:?}, edits {:?}",
            edits
                .iter()
                .map(|(node, rec, field, _)| format!("node{node} r{rec}.{field}"))
                .collect::<Vec<_>>()
        ));
        let mut tasks = Vec::new();
        for &(a, b, steps) in &rounds {
            tasks.push(tokio::spawn(self.sync_request(a, b, steps)));
        }
        for (node, rec, field, value) in &edits {
            let node = self.node(*node);
            let request = node
                .client()
                .patch(node.url(&self.path(*rec)))
                .json(&json!({ *field: value }));
            tasks.push(tokio::spawn(send_owned(request)));
        }
        let mut answers = Vec::new();
        for task in tasks {
            let answer = tokio::time::timeout(SYNC_DEADLINE, task)
                .await
                .unwrap_or_else(|_| panic!("a storm request did not answer in {SYNC_DEADLINE:?}"))
                .expect("the storm request task ran")
                .unwrap_or_else(|e| panic!("storm request failed with every node up: {e}"));
            answers.push(answer);
        }

        // What each node surely had before the storm is what complete
        // rounds surely moved; anything may have moved along every link
        // involved, also relayed through a node in two rounds.
        let before = self.sure.clone();
        let (round_answers, edit_answers) = answers.split_at(rounds.len());
        let mut new_writes = Vec::new();
        for ((node, rec, field, value), resp) in edits.into_iter().zip(edit_answers) {
            match resp.status.as_u16() {
                200 => {
                    assert!(
                        same_value(&resp.json[field], &value),
                        "storm PATCH {field} = {value} answered {}",
                        resp.text
                    );
                    new_writes.push(self.add_write(rec, node, Target::Field(field), value));
                }
                410 => resp.expect_problem(410, "storm PATCH of a deleted record"),
                _ => panic!(
                    "node{node} storm PATCH r{rec}: {} {}",
                    resp.status, resp.text
                ),
            }
        }
        for (&(a, b, _), resp) in rounds.iter().zip(round_answers) {
            resp.expect_status(200, &format!("storm round node{a} -> node{b}"));
            let result = &resp.json["results"][0];
            assert_eq!(
                result["ok"],
                json!(true),
                "storm round node{a} -> node{b} failed with every node up: {result}\nnode{a} log:\n{}",
                self.node(a).log_tail()
            );
            self.stats.storm_rounds += 1;
            let complete = result["pulled"]["caught_up"] == json!(true)
                && result["pushed"]["caught_up"] == json!(true);
            if complete {
                self.sure[a].extend(before[b].iter().copied());
                self.sure[b].extend(before[a].iter().copied());
            }
            self.note(format!("storm: node{a} <-> node{b}: {result}"));
        }
        for _ in 0..rounds.len() {
            for &(a, b, _) in &rounds {
                self.exchanged(a, b, false);
            }
        }
        // Edits of one node in the same storm may have run in either order.
        for w in new_writes {
            let node = self.writes[w].node;
            self.writes[w].sure = before[node].clone();
            self.writes[w].maybe = self.maybe[node].clone();
        }
    }

    // --- final checks -----------------------------------------------------

    fn probe(&self) -> Probe {
        let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        Probe {
            records: self
                .records
                .iter()
                .map(|r| (r.collection.to_owned(), r.id.clone()))
                .collect(),
            lists: vec![
                (
                    "clients".to_owned(),
                    owned(&[("client_type", "company"), ("sort", "city"), ("limit", "4")]),
                ),
                (
                    "contacts".to_owned(),
                    owned(&[
                        ("first_name", "anna"),
                        ("sort", "-updated_at"),
                        ("limit", "3"),
                    ]),
                ),
            ],
            searches: vec![NAME_WORD.to_lowercase(), format!("s{}", self.seed)],
        }
    }

    /// Writes of `target` on record `rec`.
    fn writes_of(&self, rec: usize, target: Target) -> Vec<usize> {
        (0..self.writes.len())
            .filter(|&w| self.writes[w].rec == rec && self.writes[w].target == target)
            .collect()
    }

    /// The write among `ws` that surely saw all the others, if any.
    fn dominant(&self, ws: &[usize]) -> Option<usize> {
        ws.iter().copied().find(|&w| {
            ws.iter()
                .all(|&o| o == w || self.writes[w].sure.contains(&o))
        })
    }

    /// Writes among `ws` that no other write of `ws` can have seen: their
    /// values must still be there.
    fn unsuperseded(&self, ws: &[usize]) -> Vec<usize> {
        ws.iter()
            .copied()
            .filter(|&w| {
                ws.iter()
                    .all(|&o| o == w || !self.writes[o].maybe.contains(&w))
            })
            .collect()
    }

    /// `w3@node1=value, ...`: writes for failure messages.
    fn describe(&self, ws: &[usize]) -> String {
        let parts: Vec<String> = ws
            .iter()
            .map(|&w| format!("w{w}@node{}={}", self.writes[w].node, self.writes[w].value))
            .collect();
        format!("[{}]", parts.join(", "))
    }

    /// Checks one converged node's view of every record against the oracle;
    /// returns the problems found.
    fn check_node(&self, node: usize, observed: &Observed, stats: &mut Stats) -> Vec<String> {
        let mut problems = Vec::new();
        for (rec, r) in self.records.iter().enumerate() {
            let key = (r.collection.to_owned(), r.id.clone());
            let Some(view) = observed.records.get(&key) else {
                problems.push(format!("r{rec} was not probed"));
                continue;
            };
            let deletes = self.writes_of(rec, Target::Deleted);
            let expected_status = match self.dominant(&deletes) {
                None if deletes.is_empty() => Some(200),
                None => None,
                Some(w) => Some(if self.writes[w].value == json!(true) {
                    410
                } else {
                    200
                }),
            };
            if view.status != 200 && view.status != 410 {
                problems.push(format!("node{node}: r{rec} GET answered {}", view.status));
            }
            if expected_status.is_some_and(|s| s != view.status) {
                problems.push(format!(
                    "node{node}: r{rec} GET answered {} but its deletes/restores {} say {expected_status:?}",
                    view.status,
                    self.describe(&deletes)
                ));
            }
            if view.status == 200 {
                problems.extend(self.check_fields(node, rec, &view.body, stats));
            }
        }
        problems
    }

    fn check_fields(
        &self,
        node: usize,
        rec: usize,
        body: &Value,
        stats: &mut Stats,
    ) -> Vec<String> {
        let r = &self.records[rec];
        let mut problems = Vec::new();
        let conflicts = body.get("conflicts").cloned().unwrap_or(json!({}));
        for &field in r.fields() {
            let edits = self.writes_of(rec, Target::Field(field));
            let shown = &body[field];
            let rivals = conflicts.get(field);
            let values: Vec<&Value> = edits.iter().map(|&w| &self.writes[w].value).collect();
            let expected = match self.dominant(&edits) {
                None if edits.is_empty() => Some(&r.initial[field]),
                None => None,
                Some(w) => Some(&self.writes[w].value),
            };
            let merging = MERGING_FIELDS.contains(&field);
            if let Some(expected) = expected {
                stats.values_checked += 1;
                if !same_value(shown, expected) {
                    problems.push(format!(
                        "node{node}: r{rec}.{field} shows {shown} but the write that saw all others of {} set {expected}",
                        self.describe(&edits)
                    ));
                }
                if let Some(rivals) = rivals {
                    problems.push(format!(
                        "node{node}: r{rec}.{field} has conflicts {rivals} though one write of {} saw all others",
                        self.describe(&edits)
                    ));
                }
            } else if !merging && !values.contains(&shown) {
                problems.push(format!(
                    "node{node}: r{rec}.{field} shows {shown}, which no edit {values:?} wrote"
                ));
            }
            if merging {
                continue;
            }
            let standing = self.unsuperseded(&edits);
            if standing.len() >= 2 {
                stats.conflicts_checked += 1;
                let listed: Vec<&Value> = rivals
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(|c| &c["value"]).collect())
                    .unwrap_or_default();
                for w in &standing {
                    if !listed.contains(&&self.writes[*w].value) {
                        problems.push(format!(
                            "node{node}: r{rec}.{field}: edits {} cannot have seen each other, \
                             but the conflicts {rivals:?} lack {}",
                            self.describe(&standing),
                            self.writes[*w].value
                        ));
                    }
                }
            }
        }
        problems
    }

    /// After one more round over every link, each node shows each of its
    /// peers connected with nothing left to move or held.
    async fn check_peers_idle(&self) -> Vec<String> {
        self.cluster.sync_all().await;
        let mut problems = Vec::new();
        for &(a, b) in &self.cluster.links {
            let status = peer_status(self.node(a), &peer_name(b)).await;
            let idle = status["state"] == json!("connected")
                && ["backlog", "behind", "held"]
                    .iter()
                    .all(|k| status[*k] == json!(0));
            if !idle {
                problems.push(format!(
                    "node{a}: converged yet its peer node{b} shows {status}"
                ));
            }
        }
        problems
    }

    async fn run(mut self) -> Stats {
        let ops = self.rng.between(self.ops);
        for op in 0..ops {
            self.op = op;
            self.step().await;
        }
        self.note("quiesce".to_owned());
        let probe = self.probe();
        let (states, observed) = self.cluster.settle(&probe).await;
        let mut problems = Vec::new();
        let mut stats = self.stats;
        for (node, o) in observed.iter().enumerate() {
            problems.extend(self.check_node(node, o, &mut stats));
        }
        problems.extend(self.check_peers_idle().await);
        problems.extend(check_lists_and_search(&states[0], &observed[0]));
        if !problems.is_empty() {
            let logs: Vec<String> = self
                .cluster
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| format!("--- node{i} log tail:\n{}", n.log_tail()))
                .collect();
            panic!("{}\n{}", problems.join("\n"), logs.join("\n"));
        }
        self.note(format!(
            "converged: {} records, {} writes",
            self.records.len(),
            self.writes.len()
        ));
        stats.records = self.records.len();
        stats.writes = self.writes.len();
        stats
    }
}

/// On a converged node: the full lists (`state`) hold exactly the live
/// records, as GET serves them; the filtered lists and the search for
/// [`NAME_WORD`] find exactly the live records they should.
fn check_lists_and_search(state: &NodeState, observed: &Observed) -> Vec<String> {
    let mut problems = Vec::new();
    let mut live: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for ((collection, id), view) in &observed.records {
        let listed = state.records.get(collection).and_then(|m| m.get(id));
        match (view.status, listed) {
            (200, Some(item)) if *item == view.body => {}
            (200, item) => problems.push(format!(
                "{collection}/{id}: GET serves {} but the list holds {item:?}",
                view.body
            )),
            (_, Some(item)) => problems.push(format!(
                "{collection}/{id}: GET answers {} but the list holds {item}",
                view.status
            )),
            (_, None) => {}
        }
        if view.status == 200 {
            live.entry(collection.as_str())
                .or_default()
                .insert(id.clone());
        }
    }
    let listed: usize = state.records.values().map(BTreeMap::len).sum();
    let served: usize = live.values().map(BTreeSet::len).sum();
    if listed != served {
        problems.push(format!(
            "the lists hold {listed} records, GET finds {served} live"
        ));
    }

    // What the probe's filtered lists and searches must find.
    let matching = |collection: &str, field: &str, wanted: &dyn Fn(&str) -> bool| {
        observed
            .records
            .iter()
            .filter(|((c, _), v)| c == collection && v.status == 200)
            .filter(|(_, v)| v.body[field].as_str().is_some_and(wanted))
            .map(|((_, id), _)| id.clone())
            .collect::<BTreeSet<String>>()
    };
    let ids = |items: &[Value]| items.iter().map(id_of).collect::<BTreeSet<String>>();
    let has_word = |s: &str| s.split_whitespace().any(|w| w == NAME_WORD);
    let expected = [
        matching("clients", "client_type", &|t| t == "company"),
        matching("contacts", "first_name", &|n| {
            n.eq_ignore_ascii_case("anna")
        }),
    ];
    for (i, expected) in expected.iter().enumerate() {
        if ids(&observed.lists[i]) != *expected {
            problems.push(format!(
                "filtered list #{i} finds {:?}, the live records say {expected:?}",
                ids(&observed.lists[i])
            ));
        }
    }
    let mut named = matching("clients", "name", &has_word);
    named.extend(matching("contacts", "last_name", &has_word));
    let found: BTreeSet<String> = observed.searches[0].iter().cloned().collect();
    if named.len() <= SEARCH_PAGE && found != named {
        problems.push(format!(
            "search {NAME_WORD:?} finds {found:?}, the live records say {named:?}"
        ));
    }
    problems
}

/// Equal values, sets (arrays) compared in any order.
fn same_value(a: &Value, b: &Value) -> bool {
    let members = |v: &Value| {
        v.as_array()
            .map(|items| items.iter().map(Value::to_string).collect::<BTreeSet<_>>())
    };
    match (members(a), members(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------
// The runner.

fn env_number<T: std::str::FromStr>(name: &str, text: &str) -> T {
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name} must be a number, got {text:?}"))
}

/// The histories to run (from the environment, see the top of the file),
/// and whether to print their operations as they run.
fn cases_to_run() -> (Vec<Case>, bool) {
    let ops = std::env::var("CRM_OPS").map_or(OPS, |range| {
        let (lo, hi) = range
            .split_once('-')
            .unwrap_or_else(|| panic!("CRM_OPS must look like 15-40, got {range:?}"));
        let (lo, hi) = (env_number("CRM_OPS", lo), env_number("CRM_OPS", hi));
        assert!(lo <= hi, "CRM_OPS: {lo} > {hi}");
        (lo, hi)
    });
    if let Ok(seed) = std::env::var("CRM_SEED") {
        let seed = env_number("CRM_SEED", &seed);
        return (vec![Case { seed, ops }], true);
    }
    let count = std::env::var("CRM_SEEDS").map_or(RANDOM_SEEDS, |n| env_number("CRM_SEEDS", &n));
    let mut cases = REGRESSIONS.to_vec();
    cases.extend((0..count).map(|seed| Case { seed, ops }));
    cases.dedup();
    (cases, false)
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Runs one seed to the end; `Err` with the reason and the last operations.
async fn run_case(case: Case, verbose: bool) -> Result<Stats, String> {
    let trace: Trace = Arc::default();
    let sim_trace = trace.clone();
    let task = tokio::spawn(async move { Sim::new(case, sim_trace, verbose).await.run().await });
    let reason = match tokio::time::timeout(SEED_DEADLINE, task).await {
        Ok(Ok(stats)) => return Ok(stats),
        Ok(Err(e)) if e.is_panic() => panic_text(&*e.into_panic()),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("did not finish within {SEED_DEADLINE:?}"),
    };
    Err(format!(
        "seed {} failed (replay: {}): {reason}\nlast operations:\n{}",
        case.seed,
        case.replay(),
        trace_tail(&trace, 60)
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_histories_converge() {
    let (cases, verbose) = cases_to_run();
    let started = Instant::now();
    let total = cases.len();
    let mut pending = cases.into_iter();
    let mut running = JoinSet::new();
    let mut failures = Vec::new();
    let mut stats = Stats::default();
    loop {
        while running.len() < IN_FLIGHT {
            let Some(case) = pending.next() else { break };
            running.spawn(run_case(case, verbose));
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        match done.expect("run_case catches its simulation's panics") {
            Ok(seed_stats) => stats.add(seed_stats),
            Err(failure) => {
                eprintln!("{failure}");
                failures.push(failure);
            }
        }
    }
    eprintln!(
        "{total} seeds in {:.1?}, {} failed; passed seeds: {stats:?}",
        started.elapsed(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} seeds failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
