//! The store on its own: group commit, a failing job rolled back alone, the
//! document tail surviving a reopen, projections called in the transaction.

use std::sync::Arc;

use automerge::transaction::Transactable;
use automerge::{ReadDoc, ROOT};
use crm_sync::{
    ChangeMeta, DocRef, ProjectError, Projector, Rendered, Store, StoreConfig, StoreError,
};
use rusqlite::{params, Connection};

/// Counts projections in a table of its own, so a test can see that the
/// projection rolled back with its job.
struct CountingProjector;

impl Projector for CountingProjector {
    fn render(&self, doc: &DocRef<'_>) -> Result<Box<dyn Rendered>, ProjectError> {
        Ok(Box::new(Count(doc.id.to_string())))
    }
}

struct Count(String);

impl Rendered for Count {
    fn store(
        self: Box<Self>,
        conn: &Connection,
        rid: i64,
        _: bool,
    ) -> Result<crm_sync::Deferred, ProjectError> {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS projected (id TEXT PRIMARY KEY, n INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS latest (rid INTEGER PRIMARY KEY)",
        )?;
        conn.execute(
            "INSERT INTO projected (id, n) VALUES (?1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1",
            params![self.0],
        )?;
        // Like a full-text row: removed, then added once per document.
        Ok(crm_sync::Deferred {
            remove: Some(Box::new(move |conn: &Connection| {
                conn.execute("DELETE FROM latest WHERE rid = ?1", params![rid])?;
                Ok(())
            })),
            add: Some(Box::new(move |conn: &Connection| {
                conn.execute("INSERT INTO latest (rid) VALUES (?1)", params![rid])?;
                Ok(())
            })),
        })
    }
}

fn open(dir: &tempfile::TempDir) -> Store {
    let config = StoreConfig {
        path: dir.path().join("store.sqlite3"),
        cache_capacity: 4,
        readers: 2,
        node_name: Some("test".into()),
        max_database_bytes: None,
    };
    Store::open(&config, "test", &[], Arc::new(CountingProjector)).expect("store opens")
}

fn meta(time_ms: i64) -> ChangeMeta {
    ChangeMeta {
        author: "tester".into(),
        time_ms,
    }
}

#[derive(Debug)]
enum TestError {
    Store(#[expect(dead_code, reason = "shown by Debug when a test fails")] StoreError),
    Refused,
}

impl From<StoreError> for TestError {
    fn from(e: StoreError) -> Self {
        TestError::Store(e)
    }
}

/// A job that edits `id` (setting `n` to 999) and then fails.
async fn edit_then_fail(store: &Store, id: crm_sync::DocId) {
    let refused = store
        .write(move |txn| {
            txn.edit(&id, &meta(100), |tx| {
                tx.put(ROOT, "n", 999).map_err(StoreError::from)?;
                Ok::<_, TestError>(())
            })?;
            Err::<(), _>(TestError::Refused)
        })
        .await;
    assert!(matches!(refused, Err(TestError::Refused)));
}

#[tokio::test]
async fn concurrent_writes_commit_and_a_failing_job_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&dir);
    let mut tasks = Vec::new();
    for n in 0..50i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .write(move |txn| {
                    txn.create("things", &meta(n), |tx| {
                        tx.put(ROOT, "n", n).map_err(StoreError::from)?;
                        Ok::<_, TestError>(())
                    })
                })
                .await
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.expect("task runs").expect("write commits"));
    }
    let first = ids[0];
    // A job that edits a document and then fails leaves no trace, in the
    // database or in the cached document.
    edit_then_fail(&store, first).await;
    let value = store
        .write(move |txn| {
            let (_, doc) = txn.doc(&first)?.ok_or(TestError::Refused)?;
            Ok::<_, TestError>(
                doc.get(ROOT, "n")
                    .ok()
                    .flatten()
                    .map(|(v, _)| v.to_string()),
            )
        })
        .await
        .expect("read through writer");
    assert_eq!(value.as_deref(), Some("0"));
    let (feed, projected): (i64, i64) = store
        .read(|conn| {
            let feed = conn.query_row("SELECT count(*) FROM changes", [], |r| r.get(0))?;
            let projected = conn.query_row("SELECT sum(n) FROM projected", [], |r| r.get(0))?;
            Ok::<_, StoreError>((feed, projected))
        })
        .await
        .expect("reads");
    assert_eq!(feed, 50, "one feed entry per committed change");
    assert_eq!(projected, 50, "the failed job's projection rolled back");
    store.close().await;
}

#[tokio::test]
async fn edits_survive_reopen_through_tail_and_compaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&dir);
    let id = store
        .write(|txn| {
            txn.create("things", &meta(1), |tx| {
                tx.put(ROOT, "n", 0).map_err(StoreError::from)?;
                Ok::<_, StoreError>(())
            })
        })
        .await
        .expect("create");
    // More edits than the tail holds, so the row is compacted on the way.
    for n in 1..=100i64 {
        let changed = store
            .write(move |txn| {
                txn.edit(&id, &meta(n + 1), |tx| {
                    tx.put(ROOT, "n", n).map_err(StoreError::from)?;
                    Ok::<_, StoreError>(())
                })
            })
            .await
            .expect("edit");
        assert!(changed.is_some());
    }
    let unchanged = store
        .write(move |txn| {
            txn.edit(&id, &meta(500), |tx| {
                tx.put(ROOT, "n", 100).map_err(StoreError::from)
            })
        })
        .await
        .expect("no-op edit");
    assert!(unchanged.is_none(), "an identical value makes no change");
    store.close().await;

    let store = open(&dir);
    let (kind, value, changes) = store
        .read(move |conn| {
            let (kind, doc) =
                crm_sync::load_doc(conn, &id)?.ok_or(StoreError::NoSuchDoc(id.to_string()))?;
            let value = doc
                .get(ROOT, "n")
                .ok()
                .flatten()
                .map(|(v, _)| v.to_string());
            Ok::<_, StoreError>((kind, value, doc.get_changes(&[]).len()))
        })
        .await
        .expect("load");
    assert_eq!(kind, "things");
    assert_eq!(value.as_deref(), Some("100"));
    assert_eq!(changes, 101);
    store.close().await;
}

#[tokio::test]
async fn a_document_changed_twice_in_one_transaction_keeps_one_deferred_row() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&dir);
    let id = store
        .write(|txn| {
            let id = txn.create("things", &meta(1), |tx| {
                tx.put(ROOT, "n", 1).map_err(StoreError::from)?;
                Ok::<_, StoreError>(())
            })?;
            for n in 2..4 {
                txn.edit(&id, &meta(n), |tx| {
                    tx.put(ROOT, "n", n).map_err(StoreError::from)?;
                    Ok::<_, StoreError>(())
                })?;
            }
            Ok::<_, StoreError>(id)
        })
        .await
        .expect("one job creates and edits twice");
    let rows: i64 = store
        .read(|conn| {
            Ok::<_, StoreError>(conn.query_row("SELECT count(*) FROM latest", [], |r| r.get(0))?)
        })
        .await
        .expect("read");
    assert_eq!(rows, 1, "document {id}");
}

/// A document made from a whole root in one batch stores, loads back from
/// its saved bytes, takes edits, and merges with a concurrent edit on a
/// copy, like one made put by put.
#[tokio::test]
async fn a_document_prepared_from_a_root_loads_edits_and_merges() {
    use automerge::{hydrate, ObjType, ScalarValue, TextEncoding};
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&dir);
    let mut root = std::collections::HashMap::new();
    root.insert("n".to_owned(), hydrate::Value::from(1i64));
    root.insert("a".to_owned(), ScalarValue::Str("first key".into()).into());
    root.insert(
        "notes".to_owned(),
        hydrate::Value::text(TextEncoding::platform_default(), "hello"),
    );
    let prepared = store.prepare_root("things", &meta(1), &root);
    let id = prepared.id();
    store
        .write(move |txn| txn.insert_prepared(prepared, None))
        .await
        .expect("insert");
    store
        .write(move |txn| {
            txn.edit(&id, &meta(2), |tx| {
                tx.put(ROOT, "n", 2).map_err(StoreError::from)?;
                let (_, notes) = tx
                    .get(ROOT, "notes")?
                    .ok_or(StoreError::NoSuchDoc(id.to_string()))?;
                tx.splice_text(&notes, 5, 0, " world")
                    .map_err(StoreError::from)
            })
        })
        .await
        .expect("edit");
    let (kind, mut doc) = store
        .read(move |conn| {
            crm_sync::load_doc(conn, &id)?.ok_or(StoreError::NoSuchDoc(id.to_string()))
        })
        .await
        .expect("load");
    assert_eq!(kind, "things");
    let mut copy = doc.fork();
    let (_, notes) = copy.get(ROOT, "notes").ok().flatten().expect("notes");
    let mut tx = copy.transaction();
    tx.splice_text(&notes, 0, 0, "Oh, ").expect("splice");
    tx.commit();
    doc.merge(&mut copy).expect("merge");
    let text = doc.text(&notes).expect("text");
    assert_eq!(text, "Oh, hello world");
    assert!(matches!(
        doc.get(ROOT, "notes").ok().flatten(),
        Some((automerge::Value::Object(ObjType::Text), _))
    ));
    let keys: Vec<String> = doc.keys(ROOT).collect();
    assert_eq!(keys, ["a", "kind", "n", "notes"]);
    assert_eq!(
        doc.get(ROOT, "n")
            .ok()
            .flatten()
            .map(|(v, _)| v.to_string())
            .as_deref(),
        Some("2")
    );
    store.close().await;
}

/// The database file's own page count (header bytes 28..32), which only a
/// checkpoint updates while the WAL holds newer pages.
fn pages_in_main_file(path: &std::path::Path) -> u32 {
    let bytes = std::fs::read(path).expect("database file");
    u32::from_be_bytes([bytes[28], bytes[29], bytes[30], bytes[31]])
}

/// The WAL is copied back by the checkpoint thread while the store runs,
/// long before the writer's own backstop (thousands of pages) is reached.
#[tokio::test]
async fn the_wal_is_checkpointed_in_the_background() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&dir);
    let path = dir.path().join("store.sqlite3");
    let before = pages_in_main_file(&path);
    for n in 0..200i64 {
        store
            .write(move |txn| {
                txn.create("things", &meta(n), |tx| {
                    tx.put(ROOT, "text", "x".repeat(2_000).as_str())
                        .map_err(StoreError::from)
                })
            })
            .await
            .expect("create");
    }
    let mut after = pages_in_main_file(&path);
    for _ in 0..50 {
        if after > before + 50 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        after = pages_in_main_file(&path);
    }
    assert!(
        after > before + 50,
        "the main file still has {after} pages (had {before})"
    );
    store.close().await;
}

#[tokio::test]
async fn a_kinds_feed_position_moves_only_with_its_committed_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&dir);
    assert_eq!(store.kind_seq("people"), 0, "nothing changed yet");
    let create = |store: &Store, kind: &'static str| {
        let store = store.clone();
        async move {
            store
                .write(move |txn| {
                    txn.create(kind, &meta(1), |tx| {
                        tx.put(ROOT, "n", 1).map_err(StoreError::from)?;
                        Ok::<_, TestError>(())
                    })
                })
                .await
                .expect("create commits")
        }
    };
    let person = create(&store, "people").await;
    let after_person = store.kind_seq("people");
    assert_eq!(after_person, *store.latest_seq().borrow());
    create(&store, "things").await;
    assert_eq!(
        store.kind_seq("people"),
        after_person,
        "another kind's change leaves it"
    );
    assert!(store.kind_seq("things") > after_person);
    // A job that edits and then fails is rolled back: nothing moves.
    edit_then_fail(&store, person).await;
    assert_eq!(store.kind_seq("people"), after_person);
    store
        .write(move |txn| {
            txn.edit(&person, &meta(3), |tx| {
                tx.put(ROOT, "n", 3).map_err(StoreError::from)?;
                Ok::<_, TestError>(())
            })
        })
        .await
        .expect("edit commits");
    assert_eq!(store.kind_seq("people"), *store.latest_seq().borrow());
    assert!(store.kind_seq("people") > store.kind_seq("things"));
    store.close().await;
}
