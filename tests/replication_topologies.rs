//! Replication across several nodes linked in star, chain and mesh
//! topologies, each sync driven by the test (`auto_sync = false`):
//! - 3 and 5 nodes where every node creates, edits, deletes and restores
//!   records, first its own and then other nodes' ones; after the cluster
//!   quiesces every node serves identical records (fields, `version`,
//!   `conflicts`), identical filtered and sorted lists, identical search hits
//!   and the same status for every id, deleted ones included;
//! - concurrent edits of one field on two nodes show the same `conflicts` on
//!   every node, and an edit on a third node resolves them everywhere;
//! - relay: in a chain 0-1-2 a record written on node 0 reaches node 2,
//!   which never talks to node 0, and back (edits and deletes too);
//! - converged nodes serve the same search page even when more hits rank
//!   equally than one page holds.
//!
//! And with the continuous background workers (`auto_sync` on): writes show
//! up on the other node within a bounded wait in both directions (also
//! relayed along a chain), and `/api/v1/sync/status` reports the peer
//! connected with an empty backlog.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::cluster::{peer_status, Cluster, Observed, Probe, Topology};
use common::{create, id_of, list_ids, TestNode};
use serde_json::{json, Value};

/// Nodes that sync only when the test says so.
const MANUAL: &str = "auto_sync = false\n";
/// Continuous replication: the default configuration.
const AUTOMATIC: &str = "";
/// How often a continuous-replication test looks, and for how long at most.
const POLL_EVERY: Duration = Duration::from_millis(50);
const POLL_DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Small helpers.

fn path(collection: &str, id: &str) -> String {
    format!("/api/v1/{collection}/{id}")
}

/// PATCHes a record, expecting 200, and returns it.
async fn patch(node: &TestNode, collection: &str, id: &str, body: Value) -> Value {
    let resp = node.patch_json(&path(collection, id), &body, None).await;
    resp.expect_status(
        200,
        &format!("{} PATCH {collection}/{id} {body}", node.name()),
    );
    resp.json
}

/// Soft-deletes a record, expecting 204, and checks that it is gone here.
async fn delete(node: &TestNode, collection: &str, id: &str) {
    node.delete(&path(collection, id))
        .await
        .expect_status(204, &format!("{} DELETE {collection}/{id}", node.name()));
    node.get(&path(collection, id)).await.expect_problem(
        410,
        &format!("{} GET deleted {collection}/{id}", node.name()),
    );
}

/// Restores a record, expecting 200, and checks that it is back here.
async fn restore(node: &TestNode, collection: &str, id: &str) {
    node.post_empty(&format!("{}/restore", path(collection, id)))
        .await
        .expect_status(200, &format!("{} restore {collection}/{id}", node.name()));
    node.get(&path(collection, id)).await.expect_status(
        200,
        &format!("{} GET restored {collection}/{id}", node.name()),
    );
}

/// The node id `/healthz` reports.
async fn node_id(node: &TestNode) -> String {
    let resp = node.get("/healthz").await;
    resp.expect_status(200, "healthz");
    resp.json["node_id"]
        .as_str()
        .unwrap_or_else(|| panic!("healthz has no node_id: {}", resp.text))
        .to_owned()
}

/// The record `key` as node `i` observed it; panics when it was not probed.
fn view<'a>(observed: &'a [Observed], i: usize, collection: &str, id: &str) -> &'a Value {
    let key = (collection.to_owned(), id.to_owned());
    let view = observed[i]
        .records
        .get(&key)
        .unwrap_or_else(|| panic!("{collection}/{id} was not probed"));
    assert_eq!(
        view.status, 200,
        "node{i}: {collection}/{id} should be live, GET answered {}",
        view.status
    );
    &view.body
}

/// Asserts that on every node the record answers `status`.
fn assert_status_everywhere(observed: &[Observed], collection: &str, id: &str, status: u16) {
    let key = (collection.to_owned(), id.to_owned());
    for (i, o) in observed.iter().enumerate() {
        let got = o.records.get(&key).map(|v| v.status);
        assert_eq!(
            got,
            Some(status),
            "node{i}: GET {collection}/{id} should answer {status}"
        );
    }
}

/// Asserts that every probed record answers 200 or 410 (never 404: every
/// node knows every record) and that no record shows a conflict.
fn assert_known_everywhere_without_conflicts(observed: &[Observed]) {
    for (i, o) in observed.iter().enumerate() {
        for ((collection, id), view) in &o.records {
            assert!(
                view.status == 200 || view.status == 410,
                "node{i}: GET {collection}/{id} answered {}",
                view.status
            );
            assert!(
                view.body.get("conflicts").is_none(),
                "node{i}: {collection}/{id} shows a conflict nobody made: {}",
                view.body
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Every node writes: own records first, then other nodes' records.

/// What node `i` made in the first phase.
struct Made {
    /// A company client, edited by its node and later by the next node.
    client: String,
    /// A contact of `client`; deleted by the next node in phase two.
    contact: String,
    /// A person client deleted by its node; restored by the next node.
    doomed: String,
    /// A company client deleted and restored by its node; edited by the next.
    revived: String,
}

/// Phase one on node `i`: create, edit (with If-Match), delete, restore.
async fn own_writes(node: &TestNode, i: usize) -> Made {
    let client = create(
        node,
        "clients",
        json!({"name": format!("Topo Client {i}"), "client_type": "company", "city": format!("Town{i}")}),
    )
    .await;
    let client_id = id_of(&client);
    let contact = id_of(
        &create(
            node,
            "contacts",
            json!({"client_id": client_id, "last_name": format!("Topolev{i}"), "first_name": "Ivan"}),
        )
        .await,
    );
    let doomed = id_of(
        &create(
            node,
            "clients",
            json!({"name": format!("Topo Doomed {i}"), "client_type": "person"}),
        )
        .await,
    );
    let revived = id_of(
        &create(
            node,
            "clients",
            json!({"name": format!("Topo Revived {i}"), "client_type": "company"}),
        )
        .await,
    );

    let resp = node.get(&path("clients", &client_id)).await;
    resp.expect_status(200, "GET own client");
    let if_match = resp.etag().expect("a record GET has an ETag").to_owned();
    let body = json!({"stage": "regular", "manager": format!("m{i}")});
    node.patch_json(&path("clients", &client_id), &body, Some(&if_match))
        .await
        .expect_status(200, &format!("node{i} conditional PATCH of its client"));
    patch(
        node,
        "contacts",
        &contact,
        json!({"position": format!("Director {i}")}),
    )
    .await;
    delete(node, "clients", &doomed).await;
    delete(node, "clients", &revived).await;
    restore(node, "clients", &revived).await;
    Made {
        client: client_id,
        contact,
        doomed,
        revived,
    }
}

/// Phase two on node `i`, on what node `j` made (synced by now): edit its
/// client and its revived client, delete its contact, restore its doomed
/// client, and add a contact to its client. Returns the new contact's id.
async fn cross_writes(node: &TestNode, i: usize, theirs: &Made) -> String {
    patch(
        node,
        "clients",
        &theirs.client,
        json!({"industry": format!("industry by {i}")}),
    )
    .await;
    patch(
        node,
        "clients",
        &theirs.revived,
        json!({"city": format!("Revived by {i}")}),
    )
    .await;
    delete(node, "contacts", &theirs.contact).await;
    restore(node, "clients", &theirs.doomed).await;
    id_of(
        &create(
            node,
            "contacts",
            json!({"client_id": theirs.client, "last_name": format!("Crosslev{i}"), "first_name": "Petr"}),
        )
        .await,
    )
}

/// What the convergence checks read: every record made, a filtered and
/// sorted list of each collection, and searches.
fn probe_for(made: &[Made], extra_contacts: &[String]) -> Probe {
    let mut records = Vec::new();
    for m in made {
        records.push(("clients".to_owned(), m.client.clone()));
        records.push(("clients".to_owned(), m.doomed.clone()));
        records.push(("clients".to_owned(), m.revived.clone()));
        records.push(("contacts".to_owned(), m.contact.clone()));
    }
    for c in extra_contacts {
        records.push(("contacts".to_owned(), c.clone()));
    }
    let pairs = |p: &[(&str, &str)]| {
        p.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<Vec<_>>()
    };
    Probe {
        records,
        lists: vec![
            (
                "clients".to_owned(),
                pairs(&[("client_type", "company"), ("sort", "name"), ("limit", "3")]),
            ),
            (
                "contacts".to_owned(),
                pairs(&[
                    ("first_name", "petr"),
                    ("sort", "-last_name"),
                    ("limit", "2"),
                ]),
            ),
        ],
        searches: vec!["topo".to_owned(), "crosslev".to_owned(), "ivan".to_owned()],
    }
}

fn sorted_set<I: IntoIterator<Item = String>>(ids: I) -> Vec<String> {
    ids.into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

async fn every_node_writes(n: usize, topology: Topology) {
    let cluster = Cluster::with_topology(n, topology, MANUAL).await;

    // Phase one: every node works on its own records, offline.
    let mut made = Vec::with_capacity(n);
    for (i, node) in cluster.nodes.iter().enumerate() {
        made.push(own_writes(node, i).await);
    }
    let probe = probe_for(&made, &[]);
    let (states, observed) = cluster.settle(&probe).await;
    assert_eq!(
        states[0].ids("clients").len(),
        2 * n,
        "live clients after phase one"
    );
    assert_known_everywhere_without_conflicts(&observed);
    for (i, m) in made.iter().enumerate() {
        assert_status_everywhere(&observed, "clients", &m.doomed, 410);
        for node in 0..n {
            let client = view(&observed, node, "clients", &m.client);
            assert_eq!(client["stage"], json!("regular"), "node{node}: {client}");
            assert_eq!(
                client["manager"],
                json!(format!("m{i}")),
                "node{node}: {client}"
            );
            let contact = view(&observed, node, "contacts", &m.contact);
            assert_eq!(
                contact["position"],
                json!(format!("Director {i}")),
                "node{node}: {contact}"
            );
            view(&observed, node, "clients", &m.revived);
        }
    }

    // Phase two: every node works on the next node's records, offline.
    let mut crossed = Vec::with_capacity(n);
    for (i, node) in cluster.nodes.iter().enumerate() {
        crossed.push(cross_writes(node, i, &made[(i + 1) % n]).await);
    }
    let probe = probe_for(&made, &crossed);
    let (states, observed) = cluster.settle(&probe).await;
    assert_eq!(
        states[0].ids("clients").len(),
        3 * n,
        "live clients after phase two"
    );
    assert_eq!(
        states[0].ids("contacts").len(),
        n,
        "live contacts after phase two"
    );
    assert_known_everywhere_without_conflicts(&observed);
    for (j, m) in made.iter().enumerate() {
        let editor = (j + n - 1) % n;
        assert_status_everywhere(&observed, "contacts", &m.contact, 410);
        assert_status_everywhere(&observed, "clients", &m.doomed, 200);
        for node in 0..n {
            let client = view(&observed, node, "clients", &m.client);
            assert_eq!(
                client["industry"],
                json!(format!("industry by {editor}")),
                "node{node}: {client}"
            );
            assert_eq!(
                client["manager"],
                json!(format!("m{j}")),
                "node{node}: {client}"
            );
            let revived = view(&observed, node, "clients", &m.revived);
            assert_eq!(
                revived["city"],
                json!(format!("Revived by {editor}")),
                "node{node}: {revived}"
            );
        }
    }

    // The lists and searches are identical everywhere (settle checked) and
    // also right: companies by name, live contacts only.
    let mut companies: Vec<(String, String)> = Vec::new();
    for (i, m) in made.iter().enumerate() {
        companies.push((format!("Topo Client {i}"), m.client.clone()));
        companies.push((format!("Topo Revived {i}"), m.revived.clone()));
    }
    companies.sort();
    let listed: Vec<String> = observed[0].lists[0].iter().map(id_of).collect();
    let expected: Vec<String> = companies.into_iter().map(|(_, id)| id).collect();
    assert_eq!(listed, expected, "companies sorted by name");
    let mut crosslevs: Vec<(String, String)> = crossed
        .iter()
        .enumerate()
        .map(|(i, id)| (format!("Crosslev{i}"), id.clone()))
        .collect();
    crosslevs.sort();
    crosslevs.reverse();
    let listed: Vec<String> = observed[0].lists[1].iter().map(id_of).collect();
    let expected: Vec<String> = crosslevs.into_iter().map(|(_, id)| id).collect();
    assert_eq!(
        listed, expected,
        "contacts named Petr by last name, descending"
    );

    let all_clients = sorted_set(
        made.iter()
            .flat_map(|m| [m.client.clone(), m.doomed.clone(), m.revived.clone()]),
    );
    assert_eq!(
        observed[0].searches[0], all_clients,
        "search `topo`: every live client"
    );
    assert_eq!(
        observed[0].searches[1],
        sorted_set(crossed.clone()),
        "search `crosslev`"
    );
    assert_eq!(
        observed[0].searches[2],
        Vec::<String>::new(),
        "search `ivan`: only deleted contacts have that name"
    );
}

#[tokio::test]
async fn three_nodes_star_converge() {
    every_node_writes(3, Topology::Star).await;
}

#[tokio::test]
async fn three_nodes_chain_converge() {
    every_node_writes(3, Topology::Chain).await;
}

#[tokio::test]
async fn three_nodes_mesh_converge() {
    every_node_writes(3, Topology::Mesh).await;
}

#[tokio::test]
async fn five_nodes_star_converge() {
    every_node_writes(5, Topology::Star).await;
}

#[tokio::test]
async fn five_nodes_chain_converge() {
    every_node_writes(5, Topology::Chain).await;
}

#[tokio::test]
async fn five_nodes_mesh_converge() {
    every_node_writes(5, Topology::Mesh).await;
}

// ---------------------------------------------------------------------------
// Concurrent edits of one field.

/// Asserts that `record` (as node `node` shows it) has exactly the
/// conflicting `fields`, each listing `values` (any order) written by
/// `writers`, and shows one of them as the field's value.
fn assert_conflicts(
    node: usize,
    record: &Value,
    fields: &[(&str, [&str; 2])],
    writers: &BTreeSet<String>,
) {
    let conflicts = record["conflicts"]
        .as_object()
        .unwrap_or_else(|| panic!("node{node}: no conflicts member: {record}"));
    let names: BTreeSet<&str> = conflicts.keys().map(String::as_str).collect();
    let wanted: BTreeSet<&str> = fields.iter().map(|(f, _)| *f).collect();
    assert_eq!(names, wanted, "node{node}: conflicting fields: {record}");
    for (field, rivals) in fields {
        let entries = conflicts[*field]
            .as_array()
            .unwrap_or_else(|| panic!("node{node}: {field} conflict is no array: {record}"));
        let values: BTreeSet<&str> = entries.iter().filter_map(|e| e["value"].as_str()).collect();
        assert_eq!(
            values,
            BTreeSet::from(*rivals),
            "node{node}: {field}: {record}"
        );
        let nodes: BTreeSet<String> = entries
            .iter()
            .filter_map(|e| e["node"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(
            &nodes, writers,
            "node{node}: {field} rivals name their writers: {record}"
        );
        assert!(
            entries.iter().all(|e| e["at"].is_string()),
            "node{node}: {field} rivals carry their time: {record}"
        );
        let shown = record[*field].as_str().unwrap_or_default();
        assert!(
            values.contains(shown),
            "node{node}: the shown {field} is one of the rivals: {record}"
        );
    }
}

async fn concurrent_edits_conflict_then_resolve(topology: Topology) {
    let cluster = Cluster::with_topology(3, topology, MANUAL).await;
    let id = id_of(
        &create(
            &cluster.nodes[0],
            "clients",
            json!({"name": "Conflicted", "client_type": "company", "city": "Start"}),
        )
        .await,
    );
    let probe = Probe {
        records: vec![("clients".to_owned(), id.clone())],
        ..Probe::default()
    };
    cluster.settle(&probe).await;

    // Nodes 0 and 1 write the same two fields (a string and an enum) before
    // any sync; node 2 writes another field, which merges silently.
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    patch(
        a,
        "clients",
        &id,
        json!({"city": "Kazan", "stage": "regular"}),
    )
    .await;
    patch(b, "clients", &id, json!({"city": "Omsk", "stage": "lost"})).await;
    patch(c, "clients", &id, json!({"industry": "Retail"})).await;
    let (_, observed) = cluster.settle(&probe).await;
    let writers: BTreeSet<String> = [node_id(a).await, node_id(b).await].into();
    let both = [("city", ["Kazan", "Omsk"]), ("stage", ["regular", "lost"])];
    for node in 0..3 {
        let record = view(&observed, node, "clients", &id);
        assert_conflicts(node, record, &both, &writers);
        assert_eq!(record["industry"], json!("Retail"), "node{node}: {record}");
    }

    // Node 2, neither writer, settles the city on the value shown already
    // (writing it again must still supersede the rival).
    let shown = view(&observed, 2, "clients", &id)["city"].clone();
    let resolved = patch(c, "clients", &id, json!({ "city": shown })).await;
    assert!(
        resolved["conflicts"].get("city").is_none(),
        "resolved on node2: {resolved}"
    );
    let (_, observed) = cluster.settle(&probe).await;
    for node in 0..3 {
        let record = view(&observed, node, "clients", &id);
        assert_eq!(record["city"], shown, "node{node}: {record}");
        assert_conflicts(node, record, &both[1..], &writers);
    }

    // Node 2 then picks a third stage; no conflict is left anywhere.
    patch(c, "clients", &id, json!({"stage": "one_time"})).await;
    let (_, observed) = cluster.settle(&probe).await;
    for node in 0..3 {
        let record = view(&observed, node, "clients", &id);
        assert_eq!(record["stage"], json!("one_time"), "node{node}: {record}");
        assert!(
            record.get("conflicts").is_none(),
            "node{node}: conflict not cleared: {record}"
        );
    }
}

#[tokio::test]
async fn concurrent_edits_star() {
    concurrent_edits_conflict_then_resolve(Topology::Star).await;
}

#[tokio::test]
async fn concurrent_edits_chain() {
    concurrent_edits_conflict_then_resolve(Topology::Chain).await;
}

#[tokio::test]
async fn concurrent_edits_mesh() {
    concurrent_edits_conflict_then_resolve(Topology::Mesh).await;
}

// ---------------------------------------------------------------------------
// Search pages on converged nodes.

/// More equally good hits than one search page holds: converged nodes must
/// still answer with the same page (each node inserted the records in its
/// own order, so a tie left to insertion order would differ).
#[tokio::test]
async fn converged_nodes_serve_the_same_search_page() {
    let cluster = Cluster::with_topology(2, Topology::Chain, MANUAL).await;
    // 2 x 15 clients with titles of one length: their ranks tie.
    let mut made = BTreeSet::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        for j in 0..15 {
            let name = format!("Tie Hit {}{j:02}", (b'a' + i as u8) as char);
            made.insert(id_of(
                &create(
                    node,
                    "clients",
                    json!({"name": name, "client_type": "company"}),
                )
                .await,
            ));
        }
    }
    cluster.quiesce().await;
    let mut pages = Vec::new();
    for node in &cluster.nodes {
        // Every hit is there on each node when the page is big enough...
        let all: BTreeSet<String> = common::search(node, &[("q", "tie hit"), ("limit", "100")])
            .await
            .iter()
            .map(id_of)
            .collect();
        assert_eq!(all, made, "{}: every client is found", node.name());
        // ... and a default page of 20 must be the same everywhere.
        let page: Vec<String> = common::search(node, &[("q", "tie hit")])
            .await
            .iter()
            .map(id_of)
            .collect();
        assert_eq!(page.len(), 20, "{}: a full default page", node.name());
        pages.push(page);
    }
    let first_page_only_on = |i: usize| -> Vec<&String> {
        pages[i]
            .iter()
            .filter(|id| !pages[1 - i].contains(id))
            .collect()
    };
    assert_eq!(
        pages[0],
        pages[1],
        "converged nodes return different search pages for the same query; \
         hits only on node0: {:?}, only on node1: {:?}",
        first_page_only_on(0),
        first_page_only_on(1)
    );
}

// ---------------------------------------------------------------------------
// Relay along a chain.

/// The names of the peers `node` is configured with.
async fn peer_names(node: &TestNode) -> Vec<String> {
    let resp = node.get("/api/v1/peers").await;
    resp.expect_status(200, "list peers");
    resp.json
        .as_array()
        .unwrap_or_else(|| panic!("peers is not an array: {}", resp.text))
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

/// GET of `id` on `node`: the status and the body.
async fn get_record(node: &TestNode, collection: &str, id: &str) -> (u16, Value) {
    let resp = node.get(&path(collection, id)).await;
    (resp.status.as_u16(), resp.json)
}

#[tokio::test]
async fn chain_relays_records_between_ends() {
    let cluster = Cluster::with_topology(3, Topology::Chain, MANUAL).await;
    // Node 0 knows only node 1; node 2 knows nobody and node 1 knows node 2:
    // nodes 0 and 2 never exchange a request.
    assert_eq!(peer_names(&cluster.nodes[0]).await, ["node1"]);
    assert_eq!(peer_names(&cluster.nodes[1]).await, ["node2"]);
    assert!(peer_names(&cluster.nodes[2]).await.is_empty());

    let made = create(
        &cluster.nodes[0],
        "clients",
        json!({"name": "Relayed East", "client_type": "company"}),
    )
    .await;
    let id = id_of(&made);
    assert_eq!(get_record(&cluster.nodes[2], "clients", &id).await.0, 404);
    cluster.sync_pair(0, 1).await;
    assert_eq!(
        get_record(&cluster.nodes[2], "clients", &id).await.0,
        404,
        "node 2 synced with nobody yet"
    );
    let report = cluster.sync_pair(1, 2).await;
    assert!(
        report["pushed"]["applied"].as_u64().unwrap_or_default() >= 1,
        "node1 pushed the record on: {report}"
    );
    let (status, relayed) = get_record(&cluster.nodes[2], "clients", &id).await;
    assert_eq!(
        status, 200,
        "node2 got node0's record through node1: {relayed}"
    );
    assert_eq!(relayed, made, "node2 shows node0's record exactly");

    // An edit on node 0 and a record made on node 2 travel the chain too.
    let edited = patch(
        &cluster.nodes[0],
        "clients",
        &id,
        json!({"city": "Vladivostok"}),
    )
    .await;
    let west = create(
        &cluster.nodes[2],
        "clients",
        json!({"name": "Relayed West", "client_type": "person"}),
    )
    .await;
    let west_id = id_of(&west);
    cluster.sync_pair(1, 2).await;
    cluster.sync_pair(0, 1).await;
    let (status, body) = get_record(&cluster.nodes[0], "clients", &west_id).await;
    assert_eq!(
        status, 200,
        "node0 got node2's record through node1: {body}"
    );
    assert_eq!(body, west);
    cluster.sync_pair(1, 2).await;
    let (_, body) = get_record(&cluster.nodes[2], "clients", &id).await;
    assert_eq!(body, edited, "node2 got node0's edit through node1");

    // A delete on node 2 reaches node 0 the same way.
    delete(&cluster.nodes[2], "clients", &id).await;
    cluster.sync_pair(1, 2).await;
    cluster.sync_pair(0, 1).await;
    let (status, body) = get_record(&cluster.nodes[0], "clients", &id).await;
    assert_eq!(
        status, 410,
        "node0 got node2's delete through node1: {body}"
    );
    assert!(
        peer_names(&cluster.nodes[2]).await.is_empty(),
        "node2 still knows no peer"
    );
}

// ---------------------------------------------------------------------------
// Continuous replication.

/// Polls (every 50 ms, at most 20 s) until `id` is listed on `node` by a
/// list filtered on `name`; returns how long it took.
async fn await_listed(node: &TestNode, name: &str, id: &str) -> Duration {
    let start = Instant::now();
    loop {
        let ids = list_ids(node, "clients", &[("name", name)]).await;
        if ids.iter().any(|i| i == id) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < POLL_DEADLINE,
            "{} did not list client {name:?} ({id}) within {POLL_DEADLINE:?}; log:\n{}",
            node.name(),
            node.log_tail()
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Creates a client named `name` on `from` and waits until `to` lists it.
async fn write_shows_up(from: &TestNode, to: &TestNode, name: &str) -> String {
    let id = id_of(
        &create(
            from,
            "clients",
            json!({"name": name, "client_type": "company"}),
        )
        .await,
    );
    let took = await_listed(to, name, &id).await;
    eprintln!("{name}: {} -> {} in {took:?}", from.name(), to.name());
    id
}

/// Polls until `node` shows `peer` connected with nothing left to push or
/// pull, and returns that status.
async fn await_peer_idle(node: &TestNode, peer: &str) -> Value {
    let start = Instant::now();
    loop {
        let status = peer_status(node, peer).await;
        let idle = status["state"] == json!("connected")
            && status["backlog"] == json!(0)
            && status["behind"] == json!(0)
            && status["held"] == json!(0);
        if idle {
            return status;
        }
        assert!(
            start.elapsed() < POLL_DEADLINE,
            "{} never showed {peer} connected and caught up: {status}; log:\n{}",
            node.name(),
            node.log_tail()
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

#[tokio::test]
async fn continuous_replication_both_ways() {
    // Node 0 has node 1 as its peer; its worker pulls and pushes.
    let cluster = Cluster::with_topology(2, Topology::Chain, AUTOMATIC).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let first = write_shows_up(a, b, "Live Push").await;
    let second = write_shows_up(b, a, "Live Pull").await;
    // An edit travels as well.
    patch(b, "clients", &first, json!({"city": "Tver"})).await;
    let start = Instant::now();
    while list_ids(a, "clients", &[("city", "tver")]).await != [first.clone()] {
        assert!(
            start.elapsed() < POLL_DEADLINE,
            "node0 never saw node1's edit"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }

    let status = await_peer_idle(a, "node1").await;
    assert_eq!(status["node_id"], json!(node_id(b).await), "{status}");
    assert!(status["last_success"].is_string(), "{status}");
    let states = cluster.await_convergence(POLL_DEADLINE).await;
    assert_eq!(
        states[0].ids("clients"),
        sorted_set([first, second]),
        "both records everywhere"
    );
}

#[tokio::test]
async fn continuous_replication_relays_along_chain() {
    let cluster = Cluster::with_topology(3, Topology::Chain, AUTOMATIC).await;
    let (ends, middle) = ([&cluster.nodes[0], &cluster.nodes[2]], &cluster.nodes[1]);
    write_shows_up(ends[0], ends[1], "Live East").await;
    write_shows_up(ends[1], ends[0], "Live West").await;
    let states = cluster.await_convergence(POLL_DEADLINE).await;
    assert_eq!(states[0].ids("clients").len(), 2);
    let mut idle = BTreeMap::new();
    idle.insert("node0", await_peer_idle(ends[0], "node1").await);
    idle.insert("node1", await_peer_idle(middle, "node2").await);
    for (node, status) in idle {
        assert_eq!(status["backlog"], json!(0), "{node}: {status}");
    }
}
