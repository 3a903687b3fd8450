//! The store at its size limit: writes fail with `StorageProblem::Full`
//! (a real `SQLITE_FULL` from SQLite, through `max_database_bytes`), the
//! writer goes on, a failed group leaves nothing in the document cache, reads
//! work, the database stays intact, and a larger limit lets writes through.

use std::sync::Arc;

use automerge::transaction::Transactable;
use automerge::{ReadDoc, ROOT};
use crm_sync::{
    ChangeMeta, Deferred, DocId, DocRef, NoProjection, ProjectError, Projector, Rendered,
    StorageProblem, Store, StoreConfig, StoreError,
};
use rusqlite::{params, Connection};

const QUOTA: u64 = 512 * 1024;
/// Bounds the filling loop: the quota is reached long before.
const MAX_ROUNDS: usize = 2_000;

fn open(dir: &tempfile::TempDir, quota: u64) -> Store {
    open_with(dir, quota, Arc::new(NoProjection))
}

fn open_with(dir: &tempfile::TempDir, quota: u64, projector: Arc<dyn Projector>) -> Store {
    let config = StoreConfig {
        path: dir.path().join("store.sqlite3"),
        cache_capacity: 64,
        readers: 2,
        node_name: Some("full".into()),
        max_database_bytes: Some(quota),
    };
    Store::open(&config, "test", &[], projector).expect("store opens")
}

/// A projection whose rows are large (like a full-text index), written
/// both in the job and deferred to the end of the group: the quota is hit
/// inside the projector.
struct Bulky;

impl Projector for Bulky {
    fn render(&self, _: &DocRef<'_>) -> Result<Box<dyn Rendered>, ProjectError> {
        Ok(Box::new(Bulky))
    }
}

impl Rendered for Bulky {
    fn store(
        self: Box<Self>,
        conn: &Connection,
        rid: i64,
        _: bool,
    ) -> Result<Deferred, ProjectError> {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS rows_now (rid INTEGER PRIMARY KEY, b BLOB);
             CREATE TABLE IF NOT EXISTS rows_later (rid INTEGER PRIMARY KEY, b BLOB)",
        )?;
        conn.execute(
            "INSERT OR REPLACE INTO rows_now VALUES (?1, randomblob(6000))",
            params![rid],
        )?;
        Ok(Deferred {
            remove: None,
            add: Some(Box::new(move |conn: &Connection| {
                conn.execute(
                    "INSERT OR REPLACE INTO rows_later VALUES (?1, randomblob(6000))",
                    params![rid],
                )?;
                Ok(())
            })),
        })
    }
}

fn meta() -> ChangeMeta {
    ChangeMeta {
        author: "tester".into(),
        time_ms: 1,
    }
}

/// Text that does not compress, so that every write takes its space.
fn noise(seed: usize, len: usize) -> String {
    let mut x = seed as u64 ^ 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect()
}

async fn put(store: &Store, id: DocId, value: String) -> Result<(), StoreError> {
    store
        .write(move |txn| {
            txn.edit(&id, &meta(), |tx| {
                tx.put(ROOT, "v", value).map_err(StoreError::from)
            })
            .map(|_| ())
        })
        .await
}

async fn value_of(store: &Store, id: DocId) -> Option<String> {
    store
        .write(move |txn| {
            let value = txn.doc(&id)?.and_then(|(_, doc)| {
                doc.get(ROOT, "v")
                    .ok()
                    .flatten()
                    .and_then(|(v, _)| v.into_string().ok())
            });
            Ok::<_, StoreError>(value)
        })
        .await
        .expect("reading a document through the writer")
}

/// The filling loop met the quota, and the error says so.
fn assert_full(error: Option<StoreError>, what: &str) {
    let error = error.unwrap_or_else(|| panic!("{what}: the quota was never reached"));
    assert_eq!(
        error.storage_problem(),
        Some(StorageProblem::Full),
        "{what}: not reported as a full disk: {error}"
    );
}

fn integrity(dir: &tempfile::TempDir) -> String {
    let conn = rusqlite::Connection::open_with_flags(
        dir.path().join("store.sqlite3"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open read-only");
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_refuses_writes_cleanly_and_takes_them_again_with_room() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&dir, QUOTA);
    let id = store
        .write(|txn| {
            txn.create("things", &meta(), |tx| {
                tx.put(ROOT, "v", "first").map_err(StoreError::from)
            })
        })
        .await
        .expect("the first create fits");
    let mut acknowledged = "first".to_owned();

    // Fill: concurrent edits of one document (cached in the writer) and
    // creates of others, so that groups fail with documents in the cache.
    let mut full = None;
    for round in 0..MAX_ROUNDS {
        let edit = put(&store, id, noise(round, 2_000));
        let extra = {
            let store = store.clone();
            let value = noise(round + 1_000_000, 2_000);
            tokio::spawn(async move {
                store
                    .write(move |txn| {
                        txn.create("things", &meta(), |tx| {
                            tx.put(ROOT, "v", value).map_err(StoreError::from)
                        })
                    })
                    .await
            })
        };
        let edited = edit.await;
        let created = extra.await.expect("the create task runs");
        match edited {
            Ok(()) => acknowledged = noise(round, 2_000),
            Err(e) => {
                full = Some(e);
                let _ = created;
                break;
            }
        }
        if let Err(e) = created {
            full = Some(e);
            break;
        }
    }
    assert_full(full, "an edit or create at the quota");

    // The writer lives on, the failed edit left nothing in the cached
    // document, and reads go on.
    for _ in 0..3 {
        let again = put(&store, id, noise(9_999_999, 50_000)).await;
        assert!(
            matches!(&again, Err(e) if e.storage_problem() == Some(StorageProblem::Full)),
            "a write beyond the quota: {again:?}"
        );
        assert_eq!(value_of(&store, id).await.as_deref(), Some(&*acknowledged));
    }
    let count: i64 = store
        .read(|conn| {
            Ok::<_, StoreError>(conn.query_row("SELECT count(*) FROM docs", [], |r| r.get(0))?)
        })
        .await
        .expect("reads work at the quota");
    assert!(count > 1);
    store.close().await;
    assert_eq!(integrity(&dir), "ok");

    // More room: the same write goes through.
    let store = open(&dir, 4 * QUOTA);
    assert_eq!(value_of(&store, id).await.as_deref(), Some(&*acknowledged));
    put(&store, id, "after".into())
        .await
        .expect("a write fits under the larger quota");
    assert_eq!(value_of(&store, id).await.as_deref(), Some("after"));
    store.close().await;
    assert_eq!(integrity(&dir), "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_that_hits_the_quota_is_a_storage_failure_not_a_bug() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_with(&dir, QUOTA, Arc::new(Bulky));
    let mut refused = None;
    for n in 0..MAX_ROUNDS {
        let mut writes = Vec::new();
        for k in 0..4 {
            let store = store.clone();
            writes.push(tokio::spawn(async move {
                store
                    .write(move |txn| {
                        txn.create("things", &meta(), |tx| {
                            tx.put(ROOT, "n", (n * 4 + k) as i64)
                                .map_err(StoreError::from)
                        })
                    })
                    .await
            }));
        }
        for write in writes {
            if let Err(e) = write.await.expect("the write task runs") {
                refused.get_or_insert(e);
            }
        }
        if refused.is_some() {
            break;
        }
    }
    assert_full(refused, "a projection at the quota");
    store.close().await;
    assert_eq!(integrity(&dir), "ok");
}
