//! The `/sync/v1` replication protocol seen from outside, against real
//! nodes: token checks (missing, wrong, revoked), protocol version checks in
//! both directions (a fake peer that speaks version 2), hostile pushes and
//! query strings, duplicated and reordered batches, the cost of a no-op
//! sync, skewed clocks, and nodes with different schema versions in a relay
//! chain.

mod common;

use std::path::Path;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use crm_sync::frame::{Entry, Frame, FrameType, Sender};
use crm_sync::{Epoch, NodeId};
use reqwest::Method;
use serde_json::{json, Value};
use tempfile::TempDir;

use common::cluster::{
    add_peer, peer_status, run_sync, Cluster, NodeState, SyncApi, Topology, FRAME_MEDIA_TYPE,
};
use common::{create, id_of, Resp, TestNode};

/// Nodes that sync only when the test says so.
const MANUAL: &str = "auto_sync = false\n";

/// What must not move when a node refuses a request: its records and its
/// feed position.
#[derive(Debug, PartialEq)]
struct Snapshot {
    state: NodeState,
    latest_seq: i64,
}

impl Snapshot {
    async fn take(api: &SyncApi<'_>) -> Snapshot {
        Snapshot {
            state: NodeState::read(api.node).await,
            latest_seq: api.latest_seq().await,
        }
    }

    /// Panics unless the node still shows exactly `self` and answers.
    async fn assert_unchanged(&self, api: &SyncApi<'_>, context: &str) {
        let now = Snapshot::take(api).await;
        assert_eq!(
            now.latest_seq,
            self.latest_seq,
            "{context}: the feed moved\nlog:\n{}",
            api.node.log_tail()
        );
        assert!(
            now.state == self.state,
            "{context}: records changed:\n{}",
            self.state.diff(&now.state)
        );
        api.node
            .get("/healthz")
            .await
            .expect_status(200, &format!("{context}: node still serves"));
    }
}

/// Panics unless `resp` is a problem with `status` whose detail contains
/// every one of `fragments` (case-insensitively).
fn expect_problem_saying(resp: &Resp, status: u16, fragments: &[&str], context: &str) {
    resp.expect_problem(status, context);
    let detail = resp.json["detail"]
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    for fragment in fragments {
        assert!(
            detail.contains(&fragment.to_lowercase()),
            "{context}: detail does not mention {fragment:?}: {}",
            resp.text
        );
    }
}

fn some_sender() -> Sender {
    Sender {
        node: NodeId(uuid::Uuid::new_v4()),
        epoch: Epoch(1),
    }
}

/// A frame of changes from `sender` holding `entries`.
fn changes_frame(sender: Sender, entries: Vec<Entry>) -> Frame {
    Frame {
        frame_type: FrameType::Changes,
        sender,
        kinds: ["clients".to_owned(), "contacts".to_owned()].into(),
        through: entries.last().map_or(0, |e| e.seq),
        latest: entries.last().map_or(0, |e| e.seq),
        entries,
    }
}

/// The one sync round result of `node` with `peer`, expecting success.
async fn synced(node: &TestNode, peer: &str) -> Value {
    let result = run_sync(node, peer, None).await;
    assert_eq!(
        result["ok"],
        json!(true),
        "sync with {peer} failed: {result}\nlog:\n{}",
        node.log_tail()
    );
    result
}

// ---------------------------------------------------------------------------
// Tokens

/// A `/sync/v1` request with the protocol header and `authorization` as given.
async fn send_with_auth(
    node: &TestNode,
    method: Method,
    path: &str,
    authorization: Option<&str>,
    body: Option<Vec<u8>>,
) -> Resp {
    let mut request = node.request(method, path).header("crm-sync-protocol", "1");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    if let Some(body) = body {
        request = request.header("content-type", FRAME_MEDIA_TYPE).body(body);
    }
    node.send(request).await
}

/// Every `/sync/v1` endpoint answers 401 with `WWW-Authenticate: Bearer`
/// for `authorization`, and a push with it applies nothing (checked with
/// the valid token of `probe`).
async fn assert_refused_everywhere(
    probe: &SyncApi<'_>,
    authorization: Option<&str>,
    frame: &[u8],
    before: &Snapshot,
    case: &str,
) {
    let node = probe.node;
    let calls = [
        (Method::GET, "/sync/v1/info", None),
        (Method::GET, "/sync/v1/feed?since=0", None),
        (Method::GET, "/sync/v1/snapshots", None),
        (Method::POST, "/sync/v1/changes", Some(frame.to_vec())),
    ];
    for (method, path, body) in calls {
        let context = format!("{case}: {method} {path}");
        let resp = send_with_auth(node, method, path, authorization, body).await;
        resp.expect_problem(401, &context);
        let challenge = resp.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer"),
            "{context}: WWW-Authenticate is {challenge:?}"
        );
    }
    before.assert_unchanged(probe, case).await;
}

#[tokio::test]
async fn sync_api_refuses_missing_wrong_and_revoked_tokens() {
    let cluster = Cluster::start(2, MANUAL).await;
    let (source, target) = (&cluster.nodes[0], &cluster.nodes[1]);
    create(
        source,
        "clients",
        json!({"name": "Token probe", "city": "Perm"}),
    )
    .await;
    let source_api = SyncApi::issue(source, "reader").await;
    let (frame, _) = source_api.feed_page(0, 100).await;
    let api = SyncApi::issue(target, "pusher").await;
    let probe = SyncApi::issue(target, "probe").await;
    let before = Snapshot::take(&probe).await;

    let wrong_secret = format!("crmt_{}", "0".repeat(64));
    let cases: [(&str, Option<String>); 6] = [
        ("no Authorization header", None),
        ("empty bearer", Some("Bearer ".to_owned())),
        ("Basic scheme", Some(format!("Basic {}", api.token))),
        ("unknown secret", Some(format!("Bearer {wrong_secret}"))),
        ("not a token at all", Some("Bearer hunter2".to_owned())),
        (
            "a token of another node",
            Some(format!("Bearer {}", source_api.token)),
        ),
    ];
    for (case, authorization) in &cases {
        assert_refused_everywhere(&probe, authorization.as_deref(), &frame, &before, case).await;
    }

    // The issued token works until it is revoked while the node runs.
    let bearer = format!("Bearer {}", api.token);
    send_with_auth(target, Method::GET, "/sync/v1/info", Some(&bearer), None)
        .await
        .expect_status(200, "info with the issued token");
    let (ok, stdout, stderr) = target.cli(&["token", "revoke", "pusher"]).await;
    assert!(ok, "token revoke failed: {stdout}\n{stderr}");
    assert_refused_everywhere(&probe, Some(&bearer), &frame, &before, "revoked token").await;

    // The same frame with a valid token is applied: the refusals above were
    // about the token, not the frame.
    let resp = probe.push(frame, FRAME_MEDIA_TYPE).await;
    resp.expect_status(200, "push with a valid token");
    assert!(
        resp.json["applied"].as_u64() > Some(0),
        "nothing applied: {}",
        resp.text
    );
}

// ---------------------------------------------------------------------------
// Protocol versions

#[tokio::test]
async fn sync_api_refuses_another_protocol_version() {
    let node = TestNode::start_with_config("node0", MANUAL).await;
    let api = SyncApi::issue(&node, "peer").await;
    let source = TestNode::start_with_config("node1", MANUAL).await;
    create(&source, "clients", json!({"name": "Versioned"})).await;
    let (frame, _) = SyncApi::issue(&source, "reader")
        .await
        .feed_page(0, 10)
        .await;
    let before = Snapshot::take(&api).await;
    let bearer = format!("Bearer {}", api.token);

    let calls = [
        (Method::GET, "/sync/v1/info", None),
        (Method::GET, "/sync/v1/feed", None),
        (Method::POST, "/sync/v1/changes", Some(frame.clone())),
    ];
    for (method, path, body) in calls {
        let mut request = node
            .request(method.clone(), path)
            .header("authorization", &bearer)
            .header("crm-sync-protocol", "2");
        if let Some(body) = body {
            request = request.header("content-type", FRAME_MEDIA_TYPE).body(body);
        }
        let resp = node.send(request).await;
        expect_problem_saying(
            &resp,
            400,
            &["version 2", "version 1"],
            &format!("{method} {path} with protocol 2"),
        );
    }
    let resp = node
        .send(
            node.request(Method::GET, "/sync/v1/info")
                .header("authorization", &bearer),
        )
        .await;
    expect_problem_saying(
        &resp,
        400,
        &["crm-sync-protocol"],
        "info without the protocol header",
    );

    // A frame that says version 2 inside, sent with the version 1 header.
    let mut future = frame.clone();
    future[4] = 2;
    let resp = api.push(future, FRAME_MEDIA_TYPE).await;
    expect_problem_saying(&resp, 400, &["version 2", "version 1"], "a version 2 frame");
    before
        .assert_unchanged(&api, "protocol version refusals")
        .await;
}

/// How the fake peer of a newer protocol answers.
#[derive(Debug, Clone, Copy)]
enum FuturePeer {
    /// Frames whose version byte is 2.
    SendsVersion2Frames,
    /// A 400 problem, as a version 2 node refuses a version 1 request.
    RefusesVersion1,
}

fn future_answer(mode: FuturePeer, path: &str) -> Response {
    match mode {
        FuturePeer::SendsVersion2Frames => {
            let frame_type = if path.ends_with("/snapshots") {
                FrameType::Snapshots
            } else {
                FrameType::Changes
            };
            let mut frame = changes_frame(some_sender(), Vec::new());
            frame.frame_type = frame_type;
            let mut bytes = frame.encode();
            bytes[4] = 2;
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, FRAME_MEDIA_TYPE)],
                bytes,
            )
                .into_response()
        }
        FuturePeer::RefusesVersion1 => {
            let problem = json!({
                "type": "urn:crm-node:problem:protocol-version",
                "title": "Bad Request",
                "status": 400,
                "detail": "replication protocol version 1 is not supported: this node speaks version 2; upgrade the older node",
            });
            (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/problem+json")],
                problem.to_string(),
            )
                .into_response()
        }
    }
}

/// Serves a fake peer on a loopback port until the test's runtime ends;
/// returns its base URL.
async fn start_future_peer(mode: FuturePeer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the fake peer");
    let addr = listener.local_addr().expect("the fake peer's address");
    let app = axum::Router::new()
        .fallback(move |uri: axum::http::Uri| async move { future_answer(mode, uri.path()) });
    tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("the fake peer serves");
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_peer_speaking_another_version_is_reported_clearly() {
    let node = TestNode::start_with_config("node0", MANUAL).await;
    create(&node, "clients", json!({"name": "Stays here"})).await;
    let api = SyncApi::issue(&node, "probe").await;
    let before = Snapshot::take(&api).await;
    for mode in [FuturePeer::SendsVersion2Frames, FuturePeer::RefusesVersion1] {
        let name = format!("{mode:?}").to_lowercase();
        let url = start_future_peer(mode).await;
        add_peer(&node, &name, &url, "crmt_whatever").await;
        let result = run_sync(&node, &name, None).await;
        assert_eq!(result["ok"], json!(false), "{mode:?}: {result}");
        let error = result["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("version 2") && error.contains("version 1"),
            "{mode:?}: the error does not name both versions: {result}"
        );
        let status = peer_status(&node, &name).await;
        let last_error = status["last_error"].as_str().unwrap_or_default();
        assert!(
            last_error.contains("version 2"),
            "{mode:?}: status has no last_error naming the version: {status}"
        );
        assert_eq!(status["state"], json!("failing"), "{mode:?}: {status}");
    }
    before
        .assert_unchanged(&api, "after talking to fake peers")
        .await;
}

// ---------------------------------------------------------------------------
// Hostile pushes

/// One bad push and what the node must answer.
struct BadPush {
    case: &'static str,
    body: Vec<u8>,
    content_type: &'static str,
    status: u16,
    says: &'static [&'static str],
}

#[tokio::test]
async fn hostile_pushes_are_refused_whole_and_the_node_keeps_serving() {
    let source = TestNode::start_with_config("source", MANUAL).await;
    let target =
        TestNode::start_with_config("target", "auto_sync = false\nmax_batch_bytes = 65536\n").await;
    let client = create(&source, "clients", json!({"name": "Real one"})).await;
    source
        .patch_json(
            &format!("/api/v1/clients/{}", id_of(&client)),
            &json!({"city": "Ufa"}),
            None,
        )
        .await
        .expect_status(200, "patch on the source");
    create(&source, "clients", json!({"name": "Real two"})).await;
    create(&target, "clients", json!({"name": "Already here"})).await;

    let (real, frame) = SyncApi::issue(&source, "reader")
        .await
        .feed_page(0, 100)
        .await;
    assert!(frame.entries.len() >= 3, "feed page: {frame:?}");
    let api = SyncApi::issue(&target, "pusher").await;
    let before = Snapshot::take(&api).await;

    let relabelled = |kind: &str| {
        let mut f = frame.clone();
        for e in &mut f.entries {
            e.kind = kind.to_owned();
        }
        f.encode()
    };
    let mut undecodable = frame.clone();
    undecodable.entries[0].payload = b"definitely not an automerge change".to_vec();
    let mut half_bad = frame.clone();
    half_bad.entries.last_mut().expect("entries").payload = vec![0x85, 0x6f, 0x4a, 0x83, 1, 2];
    let mut snapshots = frame.clone();
    snapshots.frame_type = FrameType::Snapshots;
    let oversized = changes_frame(
        frame.sender,
        vec![Entry {
            seq: 1,
            doc: frame.entries[0].doc,
            kind: "clients".into(),
            payload: vec![7; 100_000],
        }],
    );
    let mut too_many = real.clone();
    let kinds_len: usize = frame.kinds.iter().map(|k| k.len() + 1).sum::<usize>() - 1;
    let count_at = 4 + 1 + 1 + 20 + 8 + 8 + 2 + kinds_len;
    too_many[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut trailing = real.clone();
    trailing.push(0);

    let cases = vec![
        BadPush {
            case: "garbage bytes",
            body: b"GET / HTTP/1.1 this is no frame".to_vec(),
            content_type: FRAME_MEDIA_TYPE,
            status: 400,
            says: &["not a replication frame"],
        },
        BadPush {
            case: "empty body",
            body: Vec::new(),
            content_type: FRAME_MEDIA_TYPE,
            status: 400,
            says: &["truncated"],
        },
        BadPush {
            case: "header only",
            body: real[..30].to_vec(),
            content_type: FRAME_MEDIA_TYPE,
            status: 400,
            says: &["truncated"],
        },
        BadPush {
            case: "cut in half",
            body: real[..real.len() / 2].to_vec(),
            content_type: FRAME_MEDIA_TYPE,
            status: 400,
            says: &["truncated"],
        },
        BadPush {
            case: "last byte missing",
            body: real[..real.len() - 1].to_vec(),
            content_type: FRAME_MEDIA_TYPE,
            status: 400,
            says: &["truncated"],
        },
        BadPush {
            case: "a byte too many",
            body: trailing,
            content_type: FRAME_MEDIA_TYPE,
            status: 400,
            says: &["after the last entry"],
        },
        BadPush {
            case: "entry count of 4 billion",
            body: too_many,
            content_type: FRAME_MEDIA_TYPE,
            status: 400,
            says: &["entries"],
        },
        BadPush {
            case: "sent as JSON",
            body: real.clone(),
            content_type: "application/json",
            status: 415,
            says: &[FRAME_MEDIA_TYPE],
        },
        BadPush {
            case: "sent as text",
            body: real.clone(),
            content_type: "text/plain",
            status: 415,
            says: &[FRAME_MEDIA_TYPE],
        },
        BadPush {
            case: "unknown kind",
            body: relabelled("hackers"),
            content_type: FRAME_MEDIA_TYPE,
            status: 422,
            says: &["hackers", "nothing of it applied"],
        },
        BadPush {
            case: "clients labelled as contacts",
            body: relabelled("contacts"),
            content_type: FRAME_MEDIA_TYPE,
            status: 422,
            says: &["nothing of it applied"],
        },
        BadPush {
            case: "a change that does not decode",
            body: undecodable.encode(),
            content_type: FRAME_MEDIA_TYPE,
            status: 422,
            says: &["does not decode"],
        },
        BadPush {
            case: "good changes followed by a bad one",
            body: half_bad.encode(),
            content_type: FRAME_MEDIA_TYPE,
            status: 422,
            says: &["does not decode", "nothing of it applied"],
        },
        BadPush {
            case: "a batch over max_batch_bytes",
            body: oversized.encode(),
            content_type: FRAME_MEDIA_TYPE,
            status: 413,
            says: &["smaller batches"],
        },
        BadPush {
            case: "a snapshot frame pushed",
            body: snapshots.encode(),
            content_type: FRAME_MEDIA_TYPE,
            status: 400,
            says: &["type 1"],
        },
    ];
    for bad in cases {
        let resp = api.push(bad.body, bad.content_type).await;
        expect_problem_saying(&resp, bad.status, bad.says, bad.case);
        before.assert_unchanged(&api, bad.case).await;
    }

    // The real frame is taken: the node could have applied each of the above.
    let resp = api.push(real, FRAME_MEDIA_TYPE).await;
    resp.expect_status(200, "the real frame");
    assert_eq!(
        resp.json["applied"].as_u64(),
        Some(frame.entries.len() as u64),
        "{}",
        resp.text
    );
    let state = NodeState::read(&target).await;
    assert_eq!(state.ids("clients").len(), 3, "{state:?}");
}

#[tokio::test]
async fn bad_feed_and_snapshot_queries_are_refused() {
    let node = TestNode::start_with_config("node0", MANUAL).await;
    create(&node, "clients", json!({"name": "Queried"})).await;
    let api = SyncApi::issue(&node, "peer").await;
    let requester = some_sender().to_hex();
    let good = [
        format!("/sync/v1/feed?since=0&limit=5&wait=0&requester={requester}&kinds=clients"),
        "/sync/v1/feed".to_owned(),
        "/sync/v1/snapshots?limit=1&kinds=clients,contacts".to_owned(),
    ];
    for path in &good {
        api.get(path).await.expect_status(200, path);
    }
    let bad = [
        "/sync/v1/feed?bogus=1".to_owned(),
        "/sync/v1/feed?since=-1".to_owned(),
        "/sync/v1/feed?since=abc".to_owned(),
        "/sync/v1/feed?limit=10001".to_owned(),
        "/sync/v1/feed?limit=99999999999999999999999".to_owned(),
        "/sync/v1/feed?limit=-5".to_owned(),
        "/sync/v1/feed?wait=3600".to_owned(),
        "/sync/v1/feed?requester=zz".to_owned(),
        format!("/sync/v1/feed?requester={}", &requester[..38]),
        format!("/sync/v1/feed?requester={requester}00"),
        "/sync/v1/feed?kinds=Clients!".to_owned(),
        "/sync/v1/snapshots?bogus=1".to_owned(),
        "/sync/v1/snapshots?limit=10001".to_owned(),
        "/sync/v1/snapshots?after=not-a-record-id".to_owned(),
        "/sync/v1/snapshots?kinds=a;b".to_owned(),
    ];
    let mut wrong = Vec::new();
    for path in &bad {
        let resp = api.get(path).await;
        if resp.status.as_u16() != 400 {
            wrong.push(format!(
                "{path}: status {} ({}, {} bytes)",
                resp.status,
                resp.content_type(),
                resp.text.len()
            ));
        } else if let Some(problem) = resp.problem_mismatch(400) {
            wrong.push(format!("{path}: {problem}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "bad queries not refused with 400:\n{}",
        wrong.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Duplicated, reordered batches

#[tokio::test]
async fn duplicated_and_reordered_batches_converge_with_nothing_left_held() {
    let mut cluster = Cluster::start(2, MANUAL).await;
    // B (node1) knows A as a peer, so that its status counts what it holds
    // from A.
    cluster.link(1, 0).await;
    synced(&cluster.nodes[1], "node0").await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let source = SyncApi::issue(a, "reader").await;
    // The first sync brought B what A had (each node's first admin user
    // and its record in the directory of nodes); the pages start after it.
    let before = source.latest_seq().await;

    for i in 0..3 {
        let client = create(a, "clients", json!({"name": format!("Order {i}")})).await;
        let path = format!("/api/v1/clients/{}", id_of(&client));
        for patch in [json!({"city": format!("City {i}")}), json!({"tags": ["x"]})] {
            a.patch_json(&path, &patch, None)
                .await
                .expect_status(200, "patch on A");
        }
        if i == 0 {
            create(
                a,
                "contacts",
                json!({"client_id": id_of(&client), "last_name": "Petrov"}),
            )
            .await;
        }
    }

    let latest = source.latest_seq().await;
    let mut pages = Vec::new();
    let mut since = before;
    for limit in [1, 2, 3].into_iter().cycle().take(100) {
        if since >= latest {
            break;
        }
        let (bytes, frame) = source.feed_page(since, limit).await;
        assert!(frame.through > since, "the feed did not advance: {frame:?}");
        since = frame.through;
        pages.push((bytes, frame.entries.len() as u64));
    }
    assert_eq!(since, latest, "paging did not reach the end of the feed");
    assert!(pages.len() >= 4, "too few pages: {}", pages.len());

    let target = SyncApi::issue(b, "pusher").await;
    let (mut held, mut released, mut applied) = (0, 0, 0);
    let mut held_midway = None;
    for (i, (bytes, entries)) in pages.iter().enumerate().rev() {
        if i == 0 {
            held_midway = Some(peer_status(b, "node0").await["held"].clone());
        }
        for attempt in 0..2 {
            let resp = target.push(bytes.clone(), FRAME_MEDIA_TYPE).await;
            resp.expect_status(200, &format!("page {i} push {attempt}"));
            let count = |key: &str| resp.json[key].as_u64().unwrap_or(0);
            if attempt == 0 {
                held += count("held");
                released += count("released");
                applied += count("applied");
            } else {
                assert_eq!(
                    (count("duplicates"), count("applied"), count("held")),
                    (*entries, 0, 0),
                    "page {i} sent again must be all duplicates: {}",
                    resp.text
                );
            }
        }
    }
    assert!(held > 0, "reversed pages never held a change");
    assert_eq!(
        released, held,
        "every held change must be released once its dependencies came"
    );
    assert_eq!(
        applied,
        (latest - before) as u64,
        "every change B lacked applied exactly once"
    );
    let midway = held_midway.expect("page 0 was pushed");
    assert!(
        midway.as_i64() > Some(0),
        "status showed nothing held before the first page: {midway}"
    );
    let status = peer_status(b, "node0").await;
    assert_eq!(status["held"], json!(0), "still held at the end: {status}");

    let states = cluster.states().await;
    assert!(states[0] == states[1], "{}", states[0].diff(&states[1]));
    assert_eq!(states[0].ids("clients").len(), 3);
    // A real sync now finds nothing new.
    let round = synced(b, "node0").await;
    assert_eq!(round["pulled"]["applied"], json!(0), "{round}");
}

// ---------------------------------------------------------------------------
// A converged pair

#[tokio::test]
async fn a_no_op_sync_is_one_small_request() {
    let cluster = Cluster::with_topology(2, Topology::Chain, MANUAL).await;
    for (i, node) in cluster.nodes.iter().enumerate() {
        for j in 0..5 {
            create(
                node,
                "clients",
                json!({"name": format!("Noop {i}-{j}"), "city": "Omsk"}),
            )
            .await;
        }
    }
    cluster.quiesce().await;
    let round = cluster.sync_pair(0, 1).await;
    let requests = (
        round["pulled"]["requests"].as_u64(),
        round["pushed"]["requests"].as_u64(),
    );
    assert_eq!(requests, (Some(1), Some(0)), "{round}");
    assert_eq!(round["pulled"]["changes"], json!(0), "{round}");
    let bytes = round["pulled"]["bytes"].as_u64().unwrap_or(u64::MAX)
        + round["pushed"]["bytes"].as_u64().unwrap_or(u64::MAX);
    println!("no-op sync between converged nodes: {bytes} bytes ({round})");
    assert!(bytes < 2048, "a no-op sync moved {bytes} bytes: {round}");
}

// ---------------------------------------------------------------------------
// Skewed clocks

/// Every value written to `field` (the shown one and the conflicting ones).
fn written_values(record: &Value, field: &str) -> Vec<String> {
    let mut values: Vec<String> = record["conflicts"][field]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|v| v["value"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if let Some(shown) = record[field].as_str() {
        values.push(shown.to_owned());
    }
    values.sort();
    values.dedup();
    values
}

fn timestamp(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{value} is not an RFC 3339 time: {e}"))
}

#[tokio::test]
async fn skewed_clocks_converge_without_losing_writes() {
    let offsets = [0i64, 6 * 3600, -5 * 3600];
    let mut nodes = Vec::new();
    for (i, offset) in offsets.iter().enumerate() {
        let config = format!("auto_sync = false\nclock_offset_secs = {offset}\n");
        nodes.push(TestNode::start_with_config(&format!("node{i}"), &config).await);
    }
    let mut cluster = Cluster {
        nodes,
        links: Vec::new(),
    };
    for (a, b) in Topology::Mesh.links(3) {
        cluster.link(a, b).await;
    }
    let shared = create(&cluster.nodes[0], "clients", json!({"name": "Shared"})).await;
    let path = format!("/api/v1/clients/{}", id_of(&shared));
    cluster.quiesce().await;

    // Concurrent: the same field on every node, one other field each, and a
    // record of each node's own.
    let cities = ["Kazan", "Omsk", "Tver"];
    let others = [
        json!({"industry": "Retail"}),
        json!({"website": "https://ahead.example"}),
        json!({"region": "Behind"}),
    ];
    let mut own = Vec::new();
    let mut created_at = Vec::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let mut patch = others[i].clone();
        patch["city"] = json!(cities[i]);
        node.patch_json(&path, &patch, None)
            .await
            .expect_status(200, &format!("patch on node{i}"));
        let record = create(node, "clients", json!({"name": format!("Own {i}")})).await;
        own.push(id_of(&record));
        created_at.push(timestamp(&record["created_at"]));
    }
    // The offsets are in effect: node1 writes 6 hours ahead, node2 5 behind.
    let hours = |a: usize, b: usize| (created_at[a] - created_at[b]).num_minutes() as f64 / 60.0;
    assert!(
        (5.9..6.1).contains(&hours(1, 0)) && (4.9..5.1).contains(&hours(0, 2)),
        "clock offsets not applied: created_at {created_at:?}"
    );
    let states = cluster.quiesce().await;
    let record = &states[0].records["clients"][&id_of(&shared)];
    for (i, other) in others.iter().enumerate() {
        for (field, value) in other.as_object().expect("object") {
            assert_eq!(&record[field], value, "node{i}'s edit is lost: {record}");
        }
    }
    assert_eq!(
        written_values(record, "city"),
        cities.to_vec(),
        "a concurrent city write is lost: {record}"
    );
    for id in &own {
        assert!(
            states[0].records["clients"].contains_key(id),
            "record {id} is lost"
        );
    }

    // The node whose clock is behind resolves the conflict: its write wins
    // everywhere although its timestamps are the oldest.
    cluster.nodes[2]
        .patch_json(&path, &json!({"city": "Resolved"}), None)
        .await
        .expect_status(200, "resolve on node2");
    let states = cluster.quiesce().await;
    let record = &states[0].records["clients"][&id_of(&shared)];
    assert_eq!(record["city"], json!("Resolved"), "{record}");
    assert!(
        record["conflicts"].get("city").is_none(),
        "the conflict is still shown: {record}"
    );
}

// ---------------------------------------------------------------------------
// Mixed schema versions

const EXTRA_FIELD: &str = "loyalty_tier";

/// A kinds folder whose clients have one field more than the built-in ones.
fn newer_kinds() -> TempDir {
    let dir = TempDir::new().expect("create a kinds folder");
    let builtin = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/kinds/clients.toml");
    let mut text = std::fs::read_to_string(&builtin).expect("read schema/kinds/clients.toml");
    text.push_str(&format!(
        "\n[[fields]]\nname = \"{EXTRA_FIELD}\"\ntype = \"string\"\nmax_len = 50\n"
    ));
    std::fs::write(dir.path().join("clients.toml"), text).expect("write clients.toml");
    dir
}

fn config_with_kinds(kinds: &Path) -> String {
    format!(
        "auto_sync = false\nkinds_dir = {:?}\n",
        kinds.display().to_string()
    )
}

/// Restarts `node` (same port) with the newer kinds.
async fn upgrade(node: &mut TestNode, kinds: &Path) {
    std::fs::write(
        node.data_dir().join("crm-node.toml"),
        config_with_kinds(kinds),
    )
    .expect("write crm-node.toml");
    node.terminate().await;
    node.restart_same_port().await;
}

async fn client_on(node: &TestNode, id: &str) -> Value {
    let resp = node.get(&format!("/api/v1/clients/{id}")).await;
    resp.expect_status(200, &format!("client {id} on {}", node.name()));
    resp.json
}

#[tokio::test]
async fn a_field_of_a_newer_schema_survives_older_nodes_and_shows_after_upgrade() {
    let kinds = newer_kinds();
    let newer = TestNode::start_with_config("node0", &config_with_kinds(kinds.path())).await;
    let older = TestNode::start_with_config("node1", MANUAL).await;
    let relay_target = TestNode::start_with_config("node2", MANUAL).await;
    let mut cluster = Cluster {
        nodes: vec![newer, older, relay_target],
        links: Vec::new(),
    };
    for (a, b) in Topology::Chain.links(3) {
        cluster.link(a, b).await;
    }
    let created = create(
        &cluster.nodes[0],
        "clients",
        json!({"name": "Loyal", EXTRA_FIELD: "gold"}),
    )
    .await;
    assert_eq!(created[EXTRA_FIELD], json!("gold"), "{created}");
    let id = id_of(&created);
    cluster.sync_all().await;
    cluster.sync_all().await;

    // The older nodes have the record without showing the field.
    for i in [1, 2] {
        let record = client_on(&cluster.nodes[i], &id).await;
        assert_eq!(record["name"], json!("Loyal"), "node{i}: {record}");
        assert!(
            record.get(EXTRA_FIELD).is_none(),
            "node{i} shows a field it does not know: {record}"
        );
    }
    // An older node edits another field: the unknown one is kept.
    cluster.nodes[1]
        .patch_json(
            &format!("/api/v1/clients/{id}"),
            &json!({"city": "Samara"}),
            None,
        )
        .await
        .expect_status(200, "patch on the older node");
    cluster.sync_all().await;
    cluster.sync_all().await;
    let on_newer = client_on(&cluster.nodes[0], &id).await;
    assert_eq!(
        (&on_newer["city"], &on_newer[EXTRA_FIELD]),
        (&json!("Samara"), &json!("gold")),
        "{on_newer}"
    );
    for i in [1, 2] {
        let record = client_on(&cluster.nodes[i], &id).await;
        assert_eq!(
            record["version"], on_newer["version"],
            "node{i} has another document: {record}"
        );
    }

    for i in [1, 2] {
        upgrade(&mut cluster.nodes[i], kinds.path()).await;
        let record = client_on(&cluster.nodes[i], &id).await;
        assert_eq!(
            record[EXTRA_FIELD],
            json!("gold"),
            "node{i} after its upgrade: {record}\nlog:\n{}",
            cluster.nodes[i].log_tail()
        );
    }
    cluster.quiesce().await;
}
