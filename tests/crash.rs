//! The crash test: node A is killed with SIGKILL at random moments (seeded)
//! while several tasks create, edit, delete and restore its records and while
//! it pulls from and pushes to a peer that is written to as well. After every
//! kill the database must pass `PRAGMA integrity_check` (opened read-only
//! before the restart), the node must start, and every write that was
//! answered 2xx must be there with its value or a later one. A write whose
//! request the kill cut off may or may not be there: the oracle keeps every
//! value a record may have and narrows it down at the next check. At the end
//! the two nodes must converge.
//!
//! `CRM_CRASH_KILLS=<n>` sets the number of kills (default 50);
//! `CRM_CRASH_SEED=<n>` replays a printed seed (the kill moments and the
//! operations; the node's own timing still varies). The peer links both
//! ways, so A is killed while pulling, pushing and applying pushed batches.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::Instant;

use common::cluster::{Cluster, NodeState};
use common::seeded::Rng;
use common::storage::{database_of, integrity_check};
use common::TestNode;

const DEFAULT_KILLS: usize = 50;
/// Concurrent writer tasks on the node that is killed.
const WRITERS: usize = 6;
/// The longest a node runs under load before it is killed.
const MAX_RUN_MS: usize = 900;
/// A writer stops after this many requests in one life of the node.
const MAX_OPS_PER_LIFE: usize = 400;
/// The whole test must end within this; beyond, something hangs.
const TEST_DEADLINE: Duration = Duration::from_secs(600);
/// How long a writer may take to notice the kill.
const JOIN_DEADLINE: Duration = Duration::from_secs(40);
const CONFIG: &str = "auto_sync = true\n";

/// What a record may look like: live with a city, or deleted (keeping the
/// city it had, which a restore brings back).
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Live(String),
    Deleted(String),
}

/// A record a writer created and owns (only its writer changes it).
#[derive(Debug)]
struct Tracked {
    id: String,
    /// Every state the record may be in: one after an acknowledged write; a
    /// cut-off write adds the state it would have made.
    candidates: Vec<State>,
    /// Written in this life of the node: checked after the next kill.
    dirty: bool,
}

impl Tracked {
    fn settled(&self) -> Option<&State> {
        match self.candidates.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// What one writer did in one life of the node.
#[derive(Default)]
struct Log {
    ops: usize,
    unexpected: Vec<String>,
}

fn kills() -> usize {
    std::env::var("CRM_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_KILLS)
}

fn seed() -> u64 {
    match std::env::var("CRM_CRASH_SEED") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("CRM_CRASH_SEED must be a number, not {v:?}")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    }
}

/// One request's outcome as the oracle sees it.
enum Outcome {
    /// Answered with this status and body.
    Answered(StatusCode, Value),
    /// The connection broke: the node was killed.
    Cut,
}

async fn send(request: reqwest::RequestBuilder) -> Outcome {
    let response = match request.send().await {
        Ok(r) => r,
        Err(_) => return Outcome::Cut,
    };
    let status = response.status();
    match response.text().await {
        Ok(text) => Outcome::Answered(status, serde_json::from_str(&text).unwrap_or(Value::Null)),
        Err(_) => Outcome::Cut,
    }
}

/// Writes on node A until the kill cuts a request off (or the stop flag or
/// the operation cap ends the life early).
async fn writer(
    client: Client,
    base: String,
    writer_no: usize,
    mut rng: Rng,
    mut records: Vec<Tracked>,
    stop: Arc<AtomicBool>,
) -> (usize, Vec<Tracked>, Log) {
    let mut log = Log::default();
    let mut serial = 0usize;
    while log.ops < MAX_OPS_PER_LIFE && !stop.load(Ordering::SeqCst) {
        log.ops += 1;
        serial += 1;
        let city = format!("w{writer_no}-{}-{serial}", rng.next_u64() % 1_000_000);
        let settled: Vec<usize> = (0..records.len())
            .filter(|&i| records[i].settled().is_some())
            .collect();
        let roll = rng.below(100);
        if roll < 35 || settled.is_empty() {
            let body = json!({"name": format!("Crash {writer_no} {city}"), "city": city});
            match send(client.post(format!("{base}/clients")).json(&body)).await {
                Outcome::Cut => break,
                Outcome::Answered(StatusCode::CREATED, reply) => {
                    let id = reply["id"].as_str().unwrap_or_default().to_owned();
                    records.push(Tracked {
                        id,
                        candidates: vec![State::Live(city)],
                        dirty: true,
                    });
                }
                Outcome::Answered(status, reply) => {
                    log.unexpected.push(format!("create: {status} {reply}"))
                }
            }
            continue;
        }
        let i = settled[rng.below(settled.len())];
        let record = &mut records[i];
        record.dirty = true;
        let url = format!("{base}/clients/{}", record.id);
        let (request, next, ok) = match record.settled().cloned() {
            Some(State::Live(_)) if roll < 85 => (
                client.patch(&url).json(&json!({"city": city})),
                State::Live(city),
                StatusCode::OK,
            ),
            Some(State::Live(old)) => (
                client.delete(&url),
                State::Deleted(old),
                StatusCode::NO_CONTENT,
            ),
            Some(State::Deleted(old)) => (
                client.post(format!("{url}/restore")),
                State::Live(old),
                StatusCode::OK,
            ),
            None => continue,
        };
        match send(request).await {
            Outcome::Cut => {
                record.candidates.push(next);
                break;
            }
            Outcome::Answered(status, _) if status == ok => record.candidates = vec![next],
            Outcome::Answered(status, reply) => log
                .unexpected
                .push(format!("{url} -> {next:?}: {status} {reply}")),
        }
    }
    (writer_no, records, log)
}

/// Writes on the peer (never killed) so that A has changes to pull.
async fn peer_writer(client: Client, base: String, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut acked = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) && n < 100_000 {
        n += 1;
        let body = json!({"name": format!("Peer {n}"), "city": format!("peer-{n}")});
        if let Outcome::Answered(StatusCode::CREATED, reply) =
            send(client.post(format!("{base}/clients")).json(&body)).await
        {
            acked.push(reply["id"].as_str().unwrap_or_default().to_owned());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    acked
}

/// The state node A shows for a record.
async fn observed(node: &TestNode, id: &str) -> Result<State, String> {
    let resp = node.get(&format!("/api/v1/clients/{id}")).await;
    match resp.status {
        StatusCode::OK => Ok(State::Live(
            resp.json["city"].as_str().unwrap_or_default().to_owned(),
        )),
        StatusCode::GONE => Ok(State::Deleted(String::new())),
        other => Err(format!("{id}: {other} {}", resp.text)),
    }
}

/// Checks every record written in the last life against what the node
/// shows now; narrows the candidates to what it found.
async fn verify(
    node: &TestNode,
    records: &mut [Tracked],
    life: usize,
    cut: &mut usize,
) -> Vec<String> {
    let mut failures = Vec::new();
    for record in records.iter_mut().filter(|r| r.dirty) {
        record.dirty = false;
        if record.candidates.len() > 1 {
            *cut += 1;
        }
        let found = match observed(node, &record.id).await {
            Ok(found) => found,
            Err(e) => {
                failures.push(format!(
                    "life {life}: {e} (acknowledged {:?})",
                    record.candidates
                ));
                continue;
            }
        };
        let matched = record.candidates.iter().find(|c| match (c, &found) {
            (State::Live(a), State::Live(b)) => a == b,
            (State::Deleted(_), State::Deleted(_)) => true,
            _ => false,
        });
        match matched.cloned() {
            Some(state) => record.candidates = vec![state],
            None => failures.push(format!(
                "life {life}: {} shows {found:?}, acknowledged {:?}",
                record.id, record.candidates
            )),
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill_under_load_and_sync() {
    let kills = kills();
    let seed = seed();
    eprintln!("crash test: {kills} kills, seed {seed} (replay: CRM_CRASH_SEED={seed} CRM_CRASH_KILLS={kills} cargo test --test crash)");
    tokio::time::timeout(TEST_DEADLINE, crash_loop(kills, seed))
        .await
        .unwrap_or_else(|_| panic!("the crash test hung (seed {seed})"));
}

async fn crash_loop(kills: usize, seed: u64) {
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut cluster = Cluster::start(2, CONFIG).await;
    // Both ways: A pulls from and pushes to P, and P pushes into A, so
    // received batches are being applied on A when it dies as well.
    cluster.link(0, 1).await;
    cluster.link(1, 0).await;
    let peer_stop = Arc::new(AtomicBool::new(false));
    let peer_task = tokio::spawn(peer_writer(
        cluster.nodes[1].client().clone(),
        cluster.nodes[1].url("/api/v1"),
        Arc::clone(&peer_stop),
    ));

    let mut owned: Vec<Vec<Tracked>> = (0..WRITERS).map(|_| Vec::new()).collect();
    let mut unexpected = Vec::new();
    let mut ops = 0;
    // Writes the kill cut off, whose outcome the oracle had to leave open.
    let mut cut = 0;
    for life in 0..kills {
        let a = &mut cluster.nodes[0];
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = JoinSet::new();
        for (writer_no, records) in owned.iter_mut().enumerate() {
            writers.spawn(writer(
                a.client().clone(),
                a.url("/api/v1"),
                writer_no,
                Rng::new(rng.next_u64()),
                std::mem::take(records),
                Arc::clone(&stop),
            ));
        }
        tokio::time::sleep(Duration::from_millis(rng.below(MAX_RUN_MS) as u64)).await;
        a.kill9().await;
        stop.store(true, Ordering::SeqCst);
        let joined = tokio::time::timeout(JOIN_DEADLINE, writers.join_all())
            .await
            .unwrap_or_else(|_| panic!("life {life}: writers did not stop after the kill"));
        for (writer_no, records, log) in joined {
            ops += log.ops;
            unexpected.extend(log.unexpected);
            owned[writer_no] = records;
        }

        let check = integrity_check(&database_of(a.data_dir()));
        assert_eq!(
            check, "ok",
            "life {life} (seed {seed}): integrity_check after the kill"
        );
        a.restart_same_port().await;
        let mut failures = Vec::new();
        for records in owned.iter_mut() {
            failures.extend(verify(a, records, life, &mut cut).await);
        }
        assert!(
            failures.is_empty(),
            "seed {seed}: acknowledged writes lost or changed after kill {life}:\n{}\nnode log:\n{}",
            failures.join("\n"),
            a.log_tail()
        );
    }
    assert!(
        unexpected.is_empty(),
        "seed {seed}: unexpected answers:\n{}",
        unexpected.join("\n")
    );

    peer_stop.store(true, Ordering::SeqCst);
    let peer_acked = tokio::time::timeout(JOIN_DEADLINE, peer_task)
        .await
        .expect("the peer writer stops")
        .expect("the peer writer did not panic");
    let states = cluster.quiesce().await;
    let records: usize = owned.iter().map(Vec::len).sum();
    let on_a = &states[0];
    let missing: Vec<&String> = peer_acked
        .iter()
        .filter(|id| !on_a.records["clients"].contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "seed {seed}: the peer's writes never reached A: {missing:?}"
    );
    assert_converged_with_oracle(on_a, &owned, seed);
    eprintln!(
        "crash test: {kills} kills, {ops} requests ({cut} cut off by a kill), {records} tracked records, {} peer creates, converged in {:?}",
        peer_acked.len(),
        started.elapsed()
    );
}

/// After the quiesce, every tracked record shows its settled state on both
/// nodes (the states compared equal already).
fn assert_converged_with_oracle(state: &NodeState, owned: &[Vec<Tracked>], seed: u64) {
    let clients = &state.records["clients"];
    for record in owned.iter().flatten() {
        let shown = clients.get(&record.id);
        match (record.settled(), shown) {
            (Some(State::Live(city)), Some(r)) if r["city"] == json!(city) => {}
            (Some(State::Deleted(_)), None) => {}
            other => panic!(
                "seed {seed}: {} after convergence: oracle and node disagree: {other:?}",
                record.id
            ),
        }
    }
}
