//! Replication in process: stores exchange frames through a transport that
//! calls the other store directly, so that many seeded multi-node scenarios
//! run in seconds. Covers receiving (duplicates, held changes, refusals),
//! feed filters, first sync by snapshot and convergence.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ReadDoc, ROOT};
use crm_sync::feed::{self, FeedQuery, KindSet, SnapshotQuery};
use crm_sync::frame::{Entry, Frame, FrameType};
use crm_sync::replicate::{FeedRequest, PushReply, Replicator, Transport, TransportError};
use crm_sync::{
    peers, ChangeMeta, DocId, NoProjection, ReceiveError, Store, StoreConfig, StoreError,
};

struct Node {
    store: Store,
    _dir: tempfile::TempDir,
}

fn kinds() -> KindSet {
    ["things".to_owned()].into()
}

async fn node() -> Node {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = StoreConfig {
        path: dir.path().join("store.sqlite3"),
        cache_capacity: 8,
        readers: 2,
        node_name: Some("sim".into()),
        max_database_bytes: None,
    };
    let store = tokio::task::spawn_blocking(move || {
        Store::open(&config, "test", &[], Arc::new(NoProjection))
    })
    .await
    .expect("open task")
    .expect("store opens");
    Node { store, _dir: dir }
}

fn meta() -> ChangeMeta {
    ChangeMeta {
        author: "sim".into(),
        time_ms: 1_700_000_000_000,
    }
}

async fn create(store: &Store, value: i64) -> DocId {
    store
        .write(move |txn| {
            txn.create("things", &meta(), |tx| {
                tx.put(ROOT, "a", value).map_err(StoreError::from)?;
                Ok::<_, StoreError>(())
            })
        })
        .await
        .expect("create commits")
}

async fn edit(store: &Store, id: DocId, field: &'static str, value: i64) {
    store
        .write(move |txn| {
            txn.edit(&id, &meta(), |tx| {
                tx.put(ROOT, field, value).map_err(StoreError::from)?;
                Ok::<_, StoreError>(())
            })
        })
        .await
        .expect("edit commits");
}

async fn feed_page(store: &Store, since: i64, limit: usize) -> Frame {
    read_feed(
        store,
        FeedQuery {
            since,
            limit,
            requester: None,
            kinds: None,
        },
    )
    .await
}

async fn read_feed(store: &Store, query: FeedQuery) -> Frame {
    let me = store.sender();
    store
        .read_frame(move |conn| feed::read_feed(conn, me, &kinds(), &query, None))
        .await
        .expect("feed reads")
}

async fn receive(store: &Store, frame: Frame) -> Result<crm_sync::ApplyReport, ReceiveError> {
    store
        .write(move |txn| txn.receive_changes(frame.sender, frame.entries, &kinds(), None))
        .await
}

/// Every document with its heads: equal on converged stores.
async fn docs(store: &Store) -> BTreeMap<String, Vec<String>> {
    store
        .read(|conn| {
            let mut stmt = conn.prepare("SELECT id FROM docs ORDER BY id")?;
            let ids = stmt
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = BTreeMap::new();
            for id in ids {
                let doc_id: DocId = id.parse().map_err(|_| StoreError::NoSuchDoc(id.clone()))?;
                let (_, doc) = crm_sync::load_doc(conn, &doc_id)?
                    .ok_or_else(|| StoreError::NoSuchDoc(id.clone()))?;
                let mut heads: Vec<String> =
                    doc.get_heads().iter().map(|h| h.to_string()).collect();
                heads.sort();
                out.insert(id, heads);
            }
            Ok::<_, StoreError>(out)
        })
        .await
        .expect("docs read")
}

async fn held(store: &Store) -> i64 {
    store
        .read(|conn| crm_sync::held_count(conn, None))
        .await
        .expect("held count")
}

async fn value(store: &Store, id: DocId, field: &'static str) -> Option<i64> {
    store
        .read(move |conn| {
            let (_, doc) = crm_sync::load_doc(conn, &id)?.ok_or(StoreError::Closed)?;
            Ok::<_, StoreError>(
                doc.get(ROOT, field)
                    .ok()
                    .flatten()
                    .and_then(|(v, _)| v.as_i64()),
            )
        })
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn changes_apply_once_and_out_of_order_ones_wait_for_their_dependencies() {
    let a = node().await;
    let b = node().await;
    let id = create(&a.store, 1).await;
    edit(&a.store, id, "a", 2).await;
    edit(&a.store, id, "b", 3).await;
    let whole = feed_page(&a.store, 0, 100).await;
    assert_eq!(whole.entries.len(), 3);

    // The last change first: held, nothing visible.
    let mut last = whole.clone();
    last.entries = vec![whole.entries[2].clone()];
    let report = receive(&b.store, last.clone()).await.expect("accepted");
    assert_eq!((report.applied, report.held), (0, 1));
    assert!(docs(&b.store).await.is_empty());
    // Sent again while held: a duplicate, still held once.
    let report = receive(&b.store, last).await.expect("accepted");
    assert_eq!((report.duplicates, report.held), (1, 0));
    assert_eq!(held(&b.store).await, 1);

    // The rest arrives: everything applies, the held change is released.
    let mut rest = whole.clone();
    rest.entries.truncate(2);
    let report = receive(&b.store, rest).await.expect("accepted");
    assert_eq!((report.applied, report.released), (3, 1));
    assert_eq!(held(&b.store).await, 0);
    assert_eq!(docs(&a.store).await, docs(&b.store).await);
    assert_eq!(value(&b.store, id, "b").await, Some(3));

    // The whole batch again: all duplicates, the feed does not grow.
    let before = feed_page(&b.store, 0, 100).await.entries.len();
    let report = receive(&b.store, whole).await.expect("accepted");
    assert_eq!((report.applied, report.duplicates), (0, 3));
    assert_eq!(feed_page(&b.store, 0, 100).await.entries.len(), before);
}

#[tokio::test]
async fn a_bad_batch_is_refused_whole() {
    let a = node().await;
    let b = node().await;
    let id = create(&a.store, 1).await;
    let good = feed_page(&a.store, 0, 10).await;

    let mut unknown_kind = good.clone();
    unknown_kind.entries.push(Entry {
        kind: "hackers".into(),
        ..good.entries[0].clone()
    });
    assert!(matches!(
        receive(&b.store, unknown_kind).await,
        Err(ReceiveError::UnknownKind { index: 1, .. })
    ));

    let mut garbage = good.clone();
    garbage.entries.push(Entry {
        seq: 2,
        doc: DocId::new(),
        kind: "things".into(),
        payload: vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3],
    });
    assert!(matches!(
        receive(&b.store, garbage).await,
        Err(ReceiveError::Undecodable { index: 1, .. })
    ));

    // A document's first change under another document's id.
    create(&a.store, 5).await;
    let page = feed_page(&a.store, 1, 10).await;
    let mut stolen = page.clone();
    stolen.entries[0].doc = id;
    receive(&b.store, good)
        .await
        .expect("the good batch applies");
    let refused = receive(&b.store, stolen).await;
    assert!(
        matches!(refused, Err(ReceiveError::Rejected { .. })),
        "{refused:?}"
    );
    // Nothing of the refused batches stuck: b holds exactly the first doc.
    assert_eq!(docs(&b.store).await.len(), 1);
    assert_eq!(held(&b.store).await, 0);
}

#[tokio::test]
async fn feed_skips_what_the_requester_has_and_kinds_it_does_not_know() {
    let a = node().await;
    let b = node().await;
    create(&a.store, 1).await;
    let page = feed_page(&a.store, 0, 10).await;
    receive(&b.store, page).await.expect("applies");
    create(&b.store, 2).await;
    let for_a = read_feed(
        &b.store,
        FeedQuery {
            since: 0,
            limit: 10,
            requester: Some(a.store.sender()),
            kinds: None,
        },
    )
    .await;
    // A's own change (received from A) is skipped; B's is sent.
    assert_eq!(for_a.entries.len(), 1);
    assert_eq!(for_a.through, 2);
    let other_kinds = read_feed(
        &b.store,
        FeedQuery {
            since: 0,
            limit: 10,
            requester: None,
            kinds: Some(["contacts".to_owned()].into()),
        },
    )
    .await;
    assert!(other_kinds.entries.is_empty());
    assert_eq!(other_kinds.through, 2, "a filtered page still advances");
}

/// Calls another store directly, through the frame encoding.
struct LocalPeer {
    store: Store,
}

fn wire(frame: Frame) -> Result<(Frame, u64), TransportError> {
    let bytes = frame.encode();
    let len = bytes.len() as u64;
    Frame::decode(&bytes)
        .map(|f| (f, len))
        .map_err(|e| TransportError::BadAnswer(e.to_string()))
}

impl Transport for LocalPeer {
    async fn feed(&self, request: &FeedRequest) -> Result<(Frame, u64), TransportError> {
        let me = self.store.sender();
        let query = request.query.clone();
        let frame = self
            .store
            .read_frame(move |conn| feed::read_feed(conn, me, &kinds(), &query, None))
            .await
            .map_err(|e| TransportError::Unreachable(e.to_string()))?;
        wire(frame)
    }

    async fn snapshots(&self, query: &SnapshotQuery) -> Result<(Frame, u64), TransportError> {
        let me = self.store.sender();
        let query = query.clone();
        let frame = self
            .store
            .read_frame(move |conn| feed::read_snapshots(conn, me, &kinds(), &query, None))
            .await
            .map_err(|e| TransportError::Unreachable(e.to_string()))?;
        wire(frame)
    }

    async fn push(&self, frame: &Frame) -> Result<(PushReply, u64), TransportError> {
        let (frame, len) = wire(frame.clone())?;
        assert_eq!(frame.frame_type, FrameType::Changes);
        let report = receive(&self.store, frame)
            .await
            .map_err(|e| TransportError::Refused {
                status: 422,
                detail: e.to_string(),
            })?;
        Ok((
            PushReply {
                receiver: self.store.sender(),
                report,
            },
            len,
        ))
    }
}

async fn add_peer(store: &Store, name: &str) {
    let name = name.to_owned();
    store
        .write(move |txn| peers::add(txn.conn(), &name, "local://", "secret", 0))
        .await
        .expect("peer added");
}

fn replicator(from: &Store, to: &Store, to_index: usize) -> Replicator<LocalPeer> {
    Replicator::new(
        from.clone(),
        format!("n{to_index}"),
        LocalPeer { store: to.clone() },
        kinds(),
    )
}

#[tokio::test]
async fn first_sync_copies_documents_then_follows_the_feed() {
    let a = node().await;
    let b = node().await;
    let mut ids = Vec::new();
    for n in 0..25 {
        let id = create(&a.store, n).await;
        edit(&a.store, id, "b", n * 10).await;
        ids.push(id);
    }
    add_peer(&b.store, "n0").await;
    let sync = replicator(&b.store, &a.store, 0);
    let round = sync.round(100).await.expect("round");
    assert!(round.pulled.changes >= 50, "{round:?}");
    assert_eq!(docs(&a.store).await, docs(&b.store).await);
    // B's feed holds every change, so a third node learns them from B.
    assert_eq!(feed_page(&b.store, 0, 1000).await.entries.len(), 50);
    // Then the feed: one edit on A moves one change.
    edit(&a.store, ids[3], "a", 99).await;
    let round = sync.round(100).await.expect("round");
    assert_eq!(round.pulled.applied, 1, "{round:?}");
    assert_eq!(value(&b.store, ids[3], "a").await, Some(99));
    // Converged: a round is one request and moves nothing.
    let round = sync.round(100).await.expect("round");
    assert_eq!((round.pulled.requests, round.pulled.changes), (1, 0));
    assert_eq!(round.pushed.requests, 0);
}

/// A new document made off the writer from its root, as the node's creates
/// and imports make them: a first sync reads such a document back from its
/// one change without loading it.
async fn create_from_root(store: &Store, value: i64) -> DocId {
    let root = std::collections::HashMap::from([("a".to_owned(), value.into())]);
    let prepared = store.prepare_root("things", &meta(), &root);
    store
        .write(move |txn| txn.insert_prepared(prepared, None))
        .await
        .expect("create commits")
}

/// Node `a` holding `count` new documents, half made by puts and half from
/// a root, and an empty node `b` to copy them to: more documents than one
/// snapshot page holds.
async fn source_with_documents(count: i64) -> (Node, Node) {
    let a = node().await;
    let b = node().await;
    for n in 0..count {
        if n % 2 == 0 {
            create(&a.store, n).await;
        } else {
            create_from_root(&a.store, n).await;
        }
    }
    (a, b)
}

/// A copy of several pages: each page is written while the next one is
/// fetched and prepared. Writes made on the peer meanwhile arrive by the
/// feed afterwards.
#[tokio::test]
async fn first_sync_over_several_pages() {
    let (a, b) = source_with_documents(2_600).await;
    add_peer(&b.store, "n0").await;
    let sync = replicator(&b.store, &a.store, 0);
    let first = sync.pull(Duration::ZERO).await.expect("first page");
    assert_eq!(first.changes, 1_000, "{first:?}");
    let late = create(&a.store, 7_777).await;
    let round = sync.round(100).await.expect("round");
    // Two more pages (the late document among them, its id being the
    // newest), the empty page that ends the copy, then the feed, which
    // brings the late change again as a duplicate.
    assert_eq!(round.pulled.requests, 4, "{round:?}");
    assert_eq!(round.pulled.applied, 1_601, "{round:?}");
    assert_eq!(docs(&a.store).await, docs(&b.store).await);
    assert_eq!(value(&b.store, late, "a").await, Some(7_777));
    for id in doc_ids(&a.store).await {
        assert_eq!(
            value(&a.store, id, "a").await,
            value(&b.store, id, "a").await
        );
    }
}

/// A round with no time to spare takes one step each way and says it is
/// not done; the rounds after it finish the copy.
#[tokio::test]
async fn a_round_out_of_time_stops_after_one_step_each_way() {
    let (a, b) = source_with_documents(2_100).await;
    create(&b.store, 1).await;
    add_peer(&b.store, "n0").await;
    let sync = replicator(&b.store, &a.store, 0);
    let round = sync
        .round_within(100, Some(Duration::ZERO))
        .await
        .expect("round");
    assert_eq!(round.pulled.requests, 1, "{round:?}");
    assert_eq!(round.pulled.changes, 1_000, "{round:?}");
    assert!(!round.pulled.caught_up, "{round:?}");
    assert_eq!(round.pushed.requests, 1, "{round:?}");
    let mut rounds = 1;
    loop {
        let round = sync
            .round_within(100, Some(Duration::ZERO))
            .await
            .expect("round");
        rounds += 1;
        if round.pulled.caught_up && round.pushed.caught_up {
            break;
        }
        assert!(rounds < 10, "no end to the copy: {round:?}");
    }
    assert_eq!(docs(&a.store).await, docs(&b.store).await);
}

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

async fn doc_ids(store: &Store) -> Vec<DocId> {
    docs(store)
        .await
        .keys()
        .filter_map(|id| id.parse().ok())
        .collect()
}

/// Random creates, edits (often of one field on several nodes at once) and
/// partial syncs over random links, then rounds until quiet: every store
/// ends with the same documents at the same heads, nothing held, and every
/// created document everywhere.
async fn simulate(seed: u64) {
    let mut rng = Rng(seed);
    let n = 2 + rng.below(3);
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(node().await);
    }
    // A random spanning tree, plus a few extra links.
    let mut links: BTreeSet<(usize, usize)> = (1..n).map(|i| (i, rng.below(i))).collect();
    for _ in 0..rng.below(3) {
        let (x, y) = (rng.below(n), rng.below(n));
        if x != y {
            links.insert((x.max(y), x.min(y)));
        }
    }
    for &(x, y) in &links {
        add_peer(&nodes[x].store, &format!("n{y}")).await;
    }
    let links: Vec<_> = links.into_iter().collect();
    let mut created = Vec::new();
    for _ in 0..25 {
        let at = rng.below(n);
        match rng.below(10) {
            0..=2 => created.push(create(&nodes[at].store, rng.below(100) as i64).await),
            3..=6 => {
                let known = doc_ids(&nodes[at].store).await;
                if !known.is_empty() {
                    let id = known[rng.below(known.len())];
                    let field = ["a", "b", "c"][rng.below(3)];
                    edit(&nodes[at].store, id, field, rng.below(1000) as i64).await;
                }
            }
            _ => {
                let (x, y) = links[rng.below(links.len())];
                let sync = replicator(&nodes[x].store, &nodes[y].store, y);
                let steps = 1 + rng.below(2);
                if rng.below(2) == 0 {
                    sync.round(steps).await.expect("partial round");
                } else {
                    sync.push().await.expect("push");
                }
            }
        }
    }
    let mut converged = false;
    for _ in 0..(2 * n + 2) {
        for &(x, y) in &links {
            replicator(&nodes[x].store, &nodes[y].store, y)
                .round(1000)
                .await
                .expect("round");
        }
        let first = docs(&nodes[0].store).await;
        let mut same = true;
        for other in &nodes[1..] {
            same &= docs(&other.store).await == first;
        }
        if same {
            converged = true;
            break;
        }
    }
    assert!(converged, "seed {seed}: stores did not converge");
    let all = docs(&nodes[0].store).await;
    for id in &created {
        assert!(all.contains_key(&id.to_string()), "seed {seed}: {id} lost");
    }
    for node in &nodes {
        assert_eq!(
            held(&node.store).await,
            0,
            "seed {seed}: changes still held"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_simulations_converge() {
    let seeds: Vec<u64> = match std::env::var("CRM_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("CRM_SIM_SEED is a number")],
        Err(_) => {
            let count = std::env::var("CRM_SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(100);
            (1..=count).collect()
        }
    };
    for seed in seeds {
        simulate(seed).await;
    }
}

/// A snapshot page that carries one document id twice, as two kinds (a
/// peer that is broken or hostile), is refused whole: the second copy
/// would otherwise be applied as changes to the first.
#[tokio::test]
async fn a_snapshot_page_with_a_document_twice_as_two_kinds_is_refused() {
    let a = node().await;
    let b = node().await;
    // A document of one change whose root names `kind`.
    let payload = |kind: &str| {
        let mut doc = automerge::Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "kind", kind).expect("put");
        tx.put(ROOT, "a", 1).expect("put");
        tx.commit();
        doc.save()
    };
    let id = DocId::new();
    let entries = vec![
        Entry {
            seq: 1,
            doc: id,
            kind: "things".into(),
            payload: payload("things"),
        },
        Entry {
            seq: 2,
            doc: id,
            kind: "others".into(),
            payload: payload("others"),
        },
    ];
    let kinds: KindSet = ["things".to_owned(), "others".to_owned()].into();
    let actor = b.store.sender().actor();
    let prepared = crm_sync::prepare_snapshots(&NoProjection, &actor, entries, &kinds)
        .expect("each copy is a good document");
    let sender = a.store.sender();
    let refused = b
        .store
        .write(move |txn| txn.receive_snapshots(sender, prepared))
        .await;
    assert!(
        matches!(refused, Err(ReceiveError::KindMismatch { index: 1, .. })),
        "{refused:?}"
    );
    assert!(docs(&b.store).await.is_empty(), "nothing applied");
}
