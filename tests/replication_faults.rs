//! Replication under faults, with real nodes: a node killed with SIGKILL in
//! the middle of pulling a large backlog, a receiver that takes only small
//! batches, a push whose answer is lost after the receiver committed (a
//! fault-injecting proxy), a peer that is down for a while under continuous
//! sync, a node restored from a backup (new epoch), and the replication
//! commands of the CLI.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use common::cluster::{
    add_peer, epoch_of, issue_token, peer_status, run_sync, wait_for, Cluster, NodeState, SyncApi,
};
use common::{create, id_of, TestNode};

/// Nodes that sync only when the test says so.
const MANUAL: &str = "auto_sync = false\n";
/// Feed rows per page (`crm_sync::replicate::PAGE`).
const PAGE: u64 = crm_sync::replicate::PAGE as u64;

/// Creates `n` clients on `node` with 16 concurrent writers; returns their ids.
async fn create_many(node: &TestNode, n: usize, prefix: &str) -> Vec<String> {
    const WRITERS: usize = 16;
    let mut writers = JoinSet::new();
    for w in 0..WRITERS {
        let client = node.client().clone();
        let url = node.url("/api/v1/clients");
        let prefix = prefix.to_owned();
        writers.spawn(async move {
            let mut ids = Vec::new();
            for i in (w..n).step_by(WRITERS) {
                let body = json!({"name": format!("{prefix} {i}"), "city": "Backlog"});
                let response = client
                    .post(&url)
                    .json(&body)
                    .send()
                    .await
                    .expect("create a client");
                assert_eq!(response.status().as_u16(), 201, "create {body}");
                let record: Value = response.json().await.expect("read the created client");
                ids.push(id_of(&record));
            }
            ids
        });
    }
    let mut ids = Vec::with_capacity(n);
    while let Some(done) = writers.join_next().await {
        ids.extend(done.expect("a writer task"));
    }
    ids
}

/// Asserts that two nodes show the same records.
async fn assert_same(a: &TestNode, b: &TestNode, context: &str) -> NodeState {
    let (sa, sb) = (NodeState::read(a).await, NodeState::read(b).await);
    assert!(sa == sb, "{context}: nodes differ:\n{}", sa.diff(&sb));
    sa
}

fn count(step: &Value, key: &str) -> u64 {
    step[key]
        .as_u64()
        .unwrap_or_else(|| panic!("no {key} in {step}"))
}

// ---------------------------------------------------------------------------
// SIGKILL while pulling

#[tokio::test]
async fn a_sync_killed_mid_backlog_resumes_from_its_checkpoint() {
    const TOTAL: usize = 3000;
    let mut cluster = Cluster::start(2, MANUAL).await;
    // B (node1) pulls from A (node0); the first sync, of an empty A, ends
    // the document copy so that the backlog comes through the feed.
    cluster.link(1, 0).await;
    cluster.sync_pair(1, 0).await;
    let a_token = issue_token(&cluster.nodes[0], "probe").await;
    let b_token = issue_token(&cluster.nodes[1], "probe").await;
    // The first sync exchanged each node's first admin user and its record
    // in the directory of nodes.
    let before = SyncApi::new(&cluster.nodes[0], &a_token).latest_seq().await;
    let b_before = SyncApi::new(&cluster.nodes[1], &b_token).latest_seq().await;
    let started = Instant::now();
    create_many(&cluster.nodes[0], TOTAL, "Backlog").await;
    println!("created {TOTAL} clients in {:?}", started.elapsed());
    let total = SyncApi::new(&cluster.nodes[0], &a_token).latest_seq().await;
    assert_eq!(
        total - before,
        TOTAL as i64,
        "one feed row per created client"
    );

    let b = &cluster.nodes[1];
    let run = tokio::spawn(
        b.client()
            .post(b.url("/api/v1/sync/run"))
            .json(&json!({"peer": "node0"}))
            .send(),
    );
    let b_api = SyncApi::new(b, &b_token);
    let (api, run_ref) = (&b_api, &run);
    let seen = wait_for(
        Duration::from_secs(120),
        "B applied part of the backlog",
        || async move {
            let seq = api.latest_seq().await;
            if run_ref.is_finished() {
                panic!("the sync ended before B could be killed (B at seq {seq})");
            }
            if seq > b_before && seq < total {
                Ok(seq)
            } else {
                Err(format!("B at seq {seq}"))
            }
        },
    )
    .await;
    let started = Instant::now();
    cluster.nodes[1].kill9().await;
    let answer = run.await.expect("the sync request task");
    assert!(
        answer.is_err(),
        "the sync run answered although B was killed in the middle: {answer:?}"
    );
    println!(
        "killed B at seq {seen} or later ({:?} after seeing it)",
        started.elapsed()
    );

    cluster.nodes[1].restart_same_port().await;
    let b = &cluster.nodes[1];
    let kept = SyncApi::new(b, &b_token).latest_seq().await;
    assert!(
        kept >= seen && kept < total,
        "after the restart B is at seq {kept} (saw {seen} before the kill, total {total})"
    );
    let round = cluster.sync_pair(1, 0).await;
    let pulled = &round["pulled"];
    println!("resumed sync: {round}");
    let missing = (total - kept) as u64;
    let changes = count(pulled, "changes");
    assert!(
        changes <= missing + PAGE && changes < total as u64,
        "the resumed sync pulled {changes} changes; only {missing} of {total} were missing: {round}"
    );
    assert_eq!(count(pulled, "applied"), missing, "{round}");
    let state = assert_same(&cluster.nodes[0], b, "after the resumed sync").await;
    assert_eq!(state.ids("clients").len(), TOTAL);
    assert_eq!(
        SyncApi::new(b, &b_token).latest_seq().await,
        total,
        "B's feed holds each change once"
    );
}

// ---------------------------------------------------------------------------
// A receiver that takes small batches only

#[tokio::test]
async fn a_backlog_reaches_a_receiver_with_the_smallest_batch_limit() {
    const CREATED: usize = 600;
    let a = TestNode::start_with_config("node0", MANUAL).await;
    let b =
        TestNode::start_with_config("node1", "auto_sync = false\nmax_batch_bytes = 65536\n").await;
    let token = issue_token(&b, "for-node0").await;
    add_peer(&a, "node1", b.base_url(), &token).await;
    // About 100 KB of changes: more than B takes in one push.
    create_many(&a, CREATED, "Pushed in pieces").await;
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let round = run_sync(&a, "node1", None).await;
        let ok = round["ok"] == json!(true);
        rounds.push(round);
        if ok {
            break;
        }
    }
    let on_b = NodeState::read(&b).await;
    assert_eq!(
        on_b.ids("clients").len(),
        CREATED,
        "B never got A's backlog; A's rounds: {rounds:#?}\nA log:\n{}\nB log:\n{}",
        a.log_tail(),
        b.log_tail()
    );
    assert_same(&a, &b, "after pushing in pieces").await;
}

// ---------------------------------------------------------------------------
// A lost answer

/// A loopback TCP proxy in front of a node. While armed, it lets one
/// `POST /sync/v1/changes` through, waits for the node to start answering
/// (so the batch is committed), then closes the connection instead of
/// passing the answer on, and disarms.
struct LossyProxy {
    url: String,
    armed: Arc<AtomicBool>,
    dropped: Arc<AtomicUsize>,
}

const TRIGGER: &[u8] = b"POST /sync/v1/changes";

impl LossyProxy {
    async fn start(upstream: &str) -> LossyProxy {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http:// node URL")
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("the proxy's address")
        );
        let armed = Arc::new(AtomicBool::new(true));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (a, d) = (armed.clone(), dropped.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, a.clone(), d.clone()));
            }
        });
        LossyProxy {
            url,
            armed,
            dropped,
        }
    }
}

/// Copies one connection both ways until either side closes, swallowing
/// the answer to a triggering request as described on [`LossyProxy`].
async fn relay(
    client: TcpStream,
    server: TcpStream,
    armed: Arc<AtomicBool>,
    dropped: Arc<AtomicUsize>,
) {
    let (mut client_in, mut client_out) = client.into_split();
    let (mut server_in, mut server_out) = server.into_split();
    let swallow = AtomicBool::new(false);
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        // The end of the previous read, so a trigger split across reads is seen.
        let mut window: Vec<u8> = Vec::new();
        loop {
            let n = match client_in.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            window.extend_from_slice(&buf[..n]);
            if window.windows(TRIGGER.len()).any(|w| w == TRIGGER)
                && armed.swap(false, Ordering::SeqCst)
            {
                swallow.store(true, Ordering::SeqCst);
            }
            let keep = window.len().saturating_sub(TRIGGER.len());
            window.drain(..keep);
            if server_out.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_in.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if swallow.load(Ordering::SeqCst) {
                dropped.fetch_add(1, Ordering::SeqCst);
                return;
            }
            if client_out.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

#[tokio::test]
async fn a_push_whose_answer_is_lost_is_sent_again_and_counted_as_duplicates() {
    const CREATED: u64 = 5;
    let cluster = Cluster::start(2, MANUAL).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let proxy = LossyProxy::start(b.base_url()).await;
    let token = issue_token(b, "for-node0").await;
    add_peer(a, "node1", &proxy.url, &token).await;
    for i in 0..CREATED {
        create(a, "clients", json!({"name": format!("Pushed {i}")})).await;
    }
    create(b, "clients", json!({"name": "From B"})).await;

    let first = run_sync(a, "node1", None).await;
    assert_eq!(
        first["ok"],
        json!(false),
        "the lost answer went unnoticed: {first}"
    );
    assert_eq!(proxy.dropped.load(Ordering::SeqCst), 1, "{first}");
    assert!(!proxy.armed.load(Ordering::SeqCst));
    let status = peer_status(a, "node1").await;
    // A's backlog: the clients, A's first admin user and A's own record
    // in the directory of nodes.
    assert!(
        status["last_error"].is_string() && count(&status, "backlog") == CREATED + 2,
        "A must know the push is not acknowledged: {status}"
    );
    // The receiver committed although its answer was lost.
    let on_b = NodeState::read(b).await;
    assert_eq!(on_b.ids("clients").len(), CREATED as usize + 1, "{on_b:?}");

    let second = run_sync(a, "node1", None).await;
    assert_eq!(
        second["ok"],
        json!(true),
        "{second}\nA log:\n{}",
        a.log_tail()
    );
    let pushed = &second["pushed"];
    assert_eq!(
        (
            count(pushed, "requests"),
            count(pushed, "changes"),
            count(pushed, "applied")
        ),
        (1, CREATED + 2, 0),
        "the batch is sent again and taken as duplicates: {second}"
    );
    let state = assert_same(a, b, "after the second round").await;
    assert_eq!(state.ids("clients").len(), CREATED as usize + 1);
    assert_eq!(count(&peer_status(a, "node1").await, "backlog"), 0);
}

// ---------------------------------------------------------------------------
// A peer down for a while

#[tokio::test]
async fn continuous_sync_reconnects_to_a_peer_that_was_down() {
    let mut cluster = Cluster::start(2, "").await;
    cluster.link(0, 1).await;
    create(&cluster.nodes[0], "clients", json!({"name": "Before A"})).await;
    create(&cluster.nodes[1], "clients", json!({"name": "Before B"})).await;
    cluster.await_convergence(Duration::from_secs(30)).await;

    cluster.nodes[1].terminate().await;
    let down_at = Instant::now();
    let a = &cluster.nodes[0];
    for i in 0..3 {
        create(a, "clients", json!({"name": format!("While down {i}")})).await;
    }
    let status = wait_for(
        Duration::from_secs(30),
        "A shows node1 offline with a backlog",
        || async move {
            let status = peer_status(a, "node1").await;
            let offline = status["state"] == json!("offline")
                && status["last_error"].is_string()
                && status["backlog"].as_i64() > Some(0);
            if offline {
                Ok(status)
            } else {
                Err(status.to_string())
            }
        },
    )
    .await;
    println!("while node1 is down: {status}");
    // Long enough for the worker's backoff to grow past its first steps.
    tokio::time::sleep(Duration::from_secs(5)).await;

    cluster.nodes[1].restart_same_port().await;
    let back_at = Instant::now();
    let states = cluster.await_convergence(Duration::from_secs(90)).await;
    println!(
        "converged {:?} after node1 came back (down for {:?})",
        back_at.elapsed(),
        back_at - down_at
    );
    assert_eq!(states[0].ids("clients").len(), 5);
    let a = &cluster.nodes[0];
    wait_for(
        Duration::from_secs(30),
        "A shows node1 connected with no backlog",
        || async move {
            let status = peer_status(a, "node1").await;
            if status["state"] == json!("connected") && status["backlog"] == json!(0) {
                Ok(())
            } else {
                Err(status.to_string())
            }
        },
    )
    .await;
}

// ---------------------------------------------------------------------------
// Backup, restore and epochs

#[tokio::test]
async fn a_node_restored_from_a_backup_gets_back_what_it_lost_and_goes_on() {
    let mut cluster = Cluster::start(2, MANUAL).await;
    cluster.link(0, 1).await;
    cluster.link(1, 0).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(id_of(
            &create(
                &cluster.nodes[0],
                "clients",
                json!({"name": format!("Backed up {i}")}),
            )
            .await,
        ));
    }
    cluster.quiesce().await;
    let epoch_before = epoch_of(&cluster.nodes[0]).await;

    let backups = tempfile::TempDir::new().expect("a folder for the backup");
    let backup = backups.path().join("a.sqlite3");
    let backup_arg = backup.to_str().expect("a UTF-8 path");
    let (ok, stdout, stderr) = cluster.nodes[0].cli(&["backup", backup_arg]).await;
    assert!(ok, "backup failed: {stdout}\n{stderr}");

    // Written after the backup: reaches B, then A forgets it by restoring.
    let a = &cluster.nodes[0];
    for i in 0..3 {
        ids.push(id_of(
            &create(a, "clients", json!({"name": format!("After backup {i}")})).await,
        ));
    }
    a.patch_json(
        &format!("/api/v1/clients/{}", ids[0]),
        &json!({"city": "Lost and found"}),
        None,
    )
    .await
    .expect_status(200, "patch after the backup");
    cluster.sync_pair(0, 1).await;
    let before_restore = assert_same(a, &cluster.nodes[1], "before the restore").await;

    cluster.nodes[0].terminate().await;
    let (ok, stdout, stderr) = cluster.nodes[0].cli(&["restore", backup_arg]).await;
    assert!(ok, "restore failed: {stdout}\n{stderr}");
    let printed_epoch = epoch_before + 1;
    assert!(
        stdout.contains(&format!("epoch {printed_epoch}")),
        "restore does not print the new epoch {printed_epoch}: {stdout}"
    );
    cluster.nodes[0].restart_same_port().await;
    let a = &cluster.nodes[0];
    assert_eq!(
        epoch_of(a).await,
        printed_epoch,
        "healthz epoch after restore"
    );
    let restored = NodeState::read(a).await;
    assert_eq!(
        restored.ids("clients").len(),
        3,
        "the restore did not bring back the backup's state"
    );

    let states = cluster.quiesce().await;
    assert!(
        states[0] == before_restore,
        "A did not get back what it lost:\n{}",
        before_restore.diff(&states[0])
    );
    // A writes on in its new epoch, and B's writes still reach it.
    ids.push(id_of(
        &create(a, "clients", json!({"name": "After restore"})).await,
    ));
    a.patch_json(
        &format!("/api/v1/clients/{}", ids[1]),
        &json!({"city": "New epoch"}),
        None,
    )
    .await
    .expect_status(200, "patch after the restore");
    ids.push(id_of(
        &create(
            &cluster.nodes[1],
            "clients",
            json!({"name": "From B after restore"}),
        )
        .await,
    ));
    let states = cluster.quiesce().await;
    let clients = &states[1].records["clients"];
    for id in &ids {
        assert!(clients.contains_key(id), "client {id} is lost");
    }
    assert_eq!(clients.len(), ids.len());
    assert_eq!(clients[&ids[0]]["city"], json!("Lost and found"));
    assert_eq!(clients[&ids[1]]["city"], json!("New epoch"));
}

// ---------------------------------------------------------------------------
// The CLI

/// `N changes (M new)` after `pulled` in a `crm-node sync` line.
fn pulled_counts(line: &str) -> (u64, u64) {
    let rest = line
        .split_once("pulled ")
        .unwrap_or_else(|| panic!("no `pulled` in {line:?}"))
        .1;
    let mut words = rest.split_whitespace();
    let changes = words.next().and_then(|w| w.parse().ok());
    let new = words
        .nth(1)
        .and_then(|w| w.trim_start_matches('(').parse().ok());
    match (changes, new) {
        (Some(changes), Some(new)) => (changes, new),
        _ => panic!("cannot read the pulled counts of {line:?}"),
    }
}

async fn cli_ok(node: &TestNode, args: &[&str]) -> String {
    let (ok, stdout, stderr) = node.cli(args).await;
    assert!(ok, "crm-node {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

async fn cli_fails(node: &TestNode, args: &[&str], says: &[&str]) {
    let (ok, stdout, stderr) = node.cli(args).await;
    assert!(!ok, "crm-node {args:?} succeeded: {stdout}");
    for fragment in says {
        assert!(
            stderr.contains(fragment),
            "crm-node {args:?}: the error does not say {fragment:?}:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn cli_tokens_peers_and_sync() {
    let mut cluster = Cluster::start(2, MANUAL).await;
    let b = &cluster.nodes[1];

    let stdout = cli_ok(b, &["token", "create", "laptop"]).await;
    let secret = stdout.lines().last().unwrap_or_default();
    assert!(
        secret.starts_with("crmt_") && !secret.contains(char::is_whitespace) && secret.len() > 40,
        "the last line is not the secret alone: {stdout:?}"
    );
    SyncApi::new(b, secret).info().await;
    cli_ok(b, &["token", "create", "old"]).await;
    cli_ok(b, &["token", "revoke", "old"]).await;
    let list = cli_ok(b, &["token", "list"]).await;
    let line_of = |name: &str| {
        list.lines()
            .find(|l| l.split('\t').next() == Some(name))
            .unwrap_or_else(|| panic!("token list lacks {name}: {list}"))
            .to_owned()
    };
    assert!(line_of("laptop").contains("\tactive\t"), "{list}");
    assert!(line_of("laptop").ends_with("scope everything"), "{list}");
    assert!(line_of("old").contains("revoked"), "{list}");
    assert!(!list.contains(secret), "token list shows a secret: {list}");

    let a = &cluster.nodes[0];
    for (url, says) in [
        ("ftp://127.0.0.1:1", &["ftp://127.0.0.1:1", "http://"][..]),
        ("not a url", &["not a URL"][..]),
        ("http://user:pw@127.0.0.1:1", &["credentials"][..]),
    ] {
        cli_fails(a, &["peer", "add", "node1", url, "--token", secret], says).await;
    }
    let peers = a.get("/api/v1/peers").await;
    assert_eq!(
        peers.json,
        json!([]),
        "a refused peer was added: {}",
        peers.text
    );
    let added = cli_ok(
        a,
        &["peer", "add", "node1", b.base_url(), "--token", secret],
    )
    .await;
    assert!(added.contains("node1"), "{added}");
    let list = cli_ok(a, &["peer", "list"]).await;
    assert!(list.contains(b.base_url()), "peer list: {list}");

    // While A runs, the CLI asks A to sync: A's own status shows the round.
    for i in 0..2 {
        create(b, "clients", json!({"name": format!("Via node {i}")})).await;
    }
    let stdout = cli_ok(a, &["sync", "--peer", "node1"]).await;
    println!("crm-node sync through the running node: {stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("node1: pulled"))
        .unwrap_or_else(|| panic!("no result line for node1: {stdout}"));
    // The two clients, B's first admin user and B's own record in the
    // directory of nodes.
    assert_eq!(pulled_counts(line).1, 4, "{line}");
    let status = peer_status(a, "node1").await;
    assert_eq!(
        status["state"],
        json!("connected"),
        "the round did not run in the node: {status}"
    );
    assert_eq!(NodeState::read(a).await.ids("clients").len(), 2);
    cli_fails(a, &["sync", "--peer", "nobody"], &["nobody"]).await;

    // Stopped, the CLI syncs on the data folder itself.
    cluster.nodes[0].terminate().await;
    create(&cluster.nodes[1], "clients", json!({"name": "Direct"})).await;
    let stdout = cli_ok(&cluster.nodes[0], &["sync", "--peer", "node1"]).await;
    println!("crm-node sync on the stopped node's folder: {stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("node1: pulled"))
        .unwrap_or_else(|| panic!("no result line for node1: {stdout}"));
    assert_eq!(pulled_counts(line).1, 1, "{line}");
    cluster.nodes[0].restart().await;
    assert_same(
        &cluster.nodes[0],
        &cluster.nodes[1],
        "after the offline sync",
    )
    .await;
}
