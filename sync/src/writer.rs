//! The single writer: a thread that owns the write connection and the
//! document cache, and commits queued jobs in groups. A committed group goes
//! to [`crate::wal_sync`], which answers its jobs once the WAL is synced, so
//! one fsync covers many acknowledged writes and the writer does not wait
//! for it.

use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Instant;

use automerge::transaction::{CommitOptions, Transaction};
use automerge::{Automerge, ChangeHash};
use rusqlite::{params, Connection};
use tokio::sync::{mpsc, oneshot};

use crate::cache::{DocCache, LoadedDoc};
use crate::checkpointer::Checkpointer;
use crate::prepared::PreparedDoc;
use crate::projector::{Deferred, DocRef, Projector, Rendered};
use crate::wal_sync::{Committed, WalSyncer};
use crate::{stored_doc, DocId, NodeIdentity, StoreError};

/// Jobs committed together at most; bounds the latency one group adds.
const MAX_GROUP: usize = 256;
/// A group that ran this long held a large job (an import, a reprojection)
/// whose dirty pages grew the page cache past its size; see
/// [`Writer::shrink_cache`].
const LARGE_GROUP: std::time::Duration = std::time::Duration::from_millis(100);
/// Jobs waiting for the writer at most; senders wait beyond that.
const QUEUE_DEPTH: usize = 4096;

/// Who made a change and when: stored in the change itself, so that history
/// shows it on every node.
#[derive(Debug, Clone)]
pub struct ChangeMeta {
    /// The writing user's id.
    pub author: String,
    /// Wall-clock time of the change, milliseconds since the Unix epoch.
    pub time_ms: i64,
}

impl ChangeMeta {
    pub(crate) fn options(&self) -> CommitOptions {
        CommitOptions::default()
            .with_message(self.author.clone())
            .with_time(self.time_ms)
    }
}

/// What a job sees: the open transaction, through which every document
/// change passes so that change, feed entry and projection commit together.
pub struct WriteTxn<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) cache: &'a mut DocCache,
    pub(crate) identity: &'a NodeIdentity,
    pub(crate) projector: &'a dyn Projector,
    pub(crate) touched: Vec<DocId>,
    /// The kinds of the documents whose changes this job added to the feed
    /// (long-polling peers are woken, kind caches notice).
    pub(crate) fed: Vec<String>,
    /// Projection writes put off to the end of the group, by document rid.
    pub(crate) deferred: Vec<(i64, Deferred)>,
}

impl<'a> WriteTxn<'a> {
    /// The write connection, for reads that must see this transaction
    /// (e.g. checking that a referenced record exists).
    pub fn conn(&self) -> &Connection {
        self.conn
    }

    pub fn identity(&self) -> &NodeIdentity {
        self.identity
    }

    /// Creates a document of `kind` whose first change is made by `build`.
    pub fn create<E>(
        &mut self,
        kind: &str,
        meta: &ChangeMeta,
        build: impl FnOnce(&mut Transaction<'_>) -> Result<(), E>,
    ) -> Result<DocId, E>
    where
        E: From<StoreError>,
    {
        let prepared = PreparedDoc::build(self.identity.actor(), kind, meta, build)?;
        Ok(self.insert_prepared(prepared, None)?)
    }

    /// Stores a document prepared outside the writer ([`crate::Store::prepare_root`]),
    /// with its rows when they were rendered there too.
    pub fn insert_prepared(
        &mut self,
        prepared: PreparedDoc,
        rendered: Option<Box<dyn Rendered>>,
    ) -> Result<DocId, StoreError> {
        let PreparedDoc {
            id,
            kind,
            doc,
            change,
        } = prepared;
        self.touched.push(id);
        // A document of one change is stored as that change's bytes, which
        // the feed needs anyway: `doc.save()` would encode the same ops a
        // second time (about 15% of an import). Uncompressed, as the feed
        // sends them: deflating a change of a few hundred bytes saves
        // little room and took a tenth of an import. Compaction writes a
        // real snapshot once the document has a tail. Its heads are that
        // change.
        let saved = change.raw_bytes();
        let rid = stored_doc::insert_saved(self.conn, &id, &kind, saved, &[change.hash()])?;
        stored_doc::append_to_feed(self.conn, &id, &kind, (&change).into(), None)?;
        fed_kind(&mut self.fed, &kind);
        let deferred = match (rendered, doc) {
            (Some(rows), _) => store_rows(rows, self.conn, &id, rid, true)?,
            (None, doc) => {
                let doc = match doc {
                    Some(doc) => doc,
                    None => Automerge::load(saved)?,
                };
                let doc_ref = DocRef {
                    id,
                    kind: &kind,
                    doc: &doc,
                };
                project(self.projector, self.conn, &doc_ref, rid, true)?
            }
        };
        self.deferred.push((rid, deferred));
        // Not cached: see `PreparedDoc::doc`.
        Ok(id)
    }

    /// Changes document `id` with `edit`. Returns the new change, or `None`
    /// when `edit` changed nothing (nothing is stored then).
    pub fn edit<E>(
        &mut self,
        id: &DocId,
        meta: &ChangeMeta,
        edit: impl FnOnce(&mut Transaction<'_>) -> Result<(), E>,
    ) -> Result<Option<ChangeHash>, E>
    where
        E: From<StoreError>,
    {
        self.touched.push(*id);
        let conn = self.conn;
        let projector = self.projector;
        let loaded = self.loaded(id)?;
        let mut tx = loaded.doc.transaction();
        if let Err(e) = edit(&mut tx) {
            tx.rollback();
            return Err(e);
        }
        let (hash, _) = tx.commit_with(meta.options());
        if hash.is_none() {
            return Ok(None);
        }
        let change = crate::prepared::committed_change(&loaded.doc, hash, id)?;
        loaded.tail_changes = stored_doc::append_changes(
            conn,
            loaded.rid,
            &loaded.doc,
            &[&change],
            loaded.tail_changes,
        )?;
        stored_doc::append_to_feed(conn, id, &loaded.kind, (&change).into(), None)?;
        let doc_ref = DocRef {
            id: *id,
            kind: &loaded.kind,
            doc: &loaded.doc,
        };
        let rid = loaded.rid;
        let deferred = project(projector, conn, &doc_ref, rid, false)?;
        let kind = loaded.kind.clone();
        self.deferred.push((rid, deferred));
        fed_kind(&mut self.fed, &kind);
        Ok(Some(change.hash()))
    }

    /// The current state of document `id` and its kind, if it exists.
    pub fn doc(&mut self, id: &DocId) -> Result<Option<(&str, &Automerge)>, StoreError> {
        match self.loaded(id) {
            Ok(loaded) => Ok(Some((loaded.kind.as_str(), &loaded.doc))),
            Err(StoreError::NoSuchDoc(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs this job's deferred projection writes now, so that a long job
    /// does not pile them up; they still roll back with the job.
    pub fn flush_deferred(&mut self) -> Result<(), StoreError> {
        run_deferred(
            self.conn,
            self.projector,
            std::mem::take(&mut self.deferred),
        )
    }

    /// Refreshes the query planner's statistics where they are stale, with
    /// a bounded sample so that it stays fast on large tables.
    pub fn optimize(&mut self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("PRAGMA analysis_limit = 2000; PRAGMA optimize = 0x10002;")?;
        Ok(())
    }

    /// Runs the projector again over every document of `kind`, whose rows
    /// must have been dropped (the projection's shape changed). Calls
    /// `progress` with the count so far.
    pub fn reproject_kind(
        &mut self,
        kind: &str,
        mut progress: impl FnMut(u64),
    ) -> Result<u64, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id FROM docs WHERE kind = ?1 ORDER BY rid")?;
        let ids = stmt
            .query_map(params![kind], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut done = 0;
        for raw in ids {
            let id: DocId = raw.parse().map_err(|_| StoreError::Corrupt {
                id: raw.clone(),
                message: "document id does not parse".into(),
            })?;
            let row = stored_doc::load_row(self.conn, &id, self.identity.actor())?
                .ok_or_else(|| StoreError::NoSuchDoc(raw.clone()))?;
            let doc_ref = DocRef {
                id,
                kind: &row.kind,
                doc: &row.doc,
            };
            let deferred = project(self.projector, self.conn, &doc_ref, row.rid, true)?;
            self.deferred.push((row.rid, deferred));
            done += 1;
            if done % 1000 == 0 {
                self.flush_deferred()?;
            }
            progress(done);
        }
        Ok(done)
    }

    fn loaded(&mut self, id: &DocId) -> Result<&mut LoadedDoc, StoreError> {
        if self.cache.get_mut(id).is_none() {
            let row = stored_doc::load_row(self.conn, id, self.identity.actor())?
                .ok_or_else(|| StoreError::NoSuchDoc(id.to_string()))?;
            self.cache.insert(
                *id,
                LoadedDoc {
                    rid: row.rid,
                    kind: row.kind,
                    doc: row.doc,
                    tail_changes: row.tail_changes,
                },
            );
        }
        self.cache
            .get_mut(id)
            .ok_or_else(|| StoreError::NoSuchDoc(id.to_string()))
    }
}

/// Runs deferred projection writes: every removal, then the additions, then
/// the projector's upkeep for them ([`Projector::after_deferred`]). A
/// document changed several times in one group (an edit and a received
/// change, say) keeps only its last addition: its last state.
fn run_deferred(
    conn: &Connection,
    projector: &dyn Projector,
    deferred: Vec<(i64, Deferred)>,
) -> Result<(), StoreError> {
    let failed = |e| projection_failed("(deferred)".into(), e);
    let last: std::collections::HashMap<i64, usize> = deferred
        .iter()
        .enumerate()
        .map(|(i, (rid, _))| (*rid, i))
        .collect();
    let mut adds = Vec::with_capacity(deferred.len());
    for (i, (rid, d)) in deferred.into_iter().enumerate() {
        if let Some(remove) = d.remove {
            remove(conn).map_err(failed)?;
        }
        if last.get(&rid) == Some(&i) {
            adds.extend(d.add);
        }
    }
    let added = adds.len();
    for add in adds {
        add(conn).map_err(failed)?;
    }
    projector.after_deferred(conn, added).map_err(failed)
}

/// Renders and stores the rows of a document; returns its deferred writes.
pub(crate) fn project(
    projector: &dyn Projector,
    conn: &Connection,
    doc: &DocRef<'_>,
    rid: i64,
    new: bool,
) -> Result<Deferred, StoreError> {
    let rows = projector
        .render(doc)
        .map_err(|e| projection_failed(doc.id.to_string(), e))?;
    store_rows(rows, conn, &doc.id, rid, new)
}

pub(crate) fn store_rows(
    rows: Box<dyn Rendered>,
    conn: &Connection,
    id: &DocId,
    rid: i64,
    new: bool,
) -> Result<Deferred, StoreError> {
    rows.store(conn, rid, new)
        .map_err(|e| projection_failed(id.to_string(), e))
}

/// A projection that failed because the storage refused its write (the
/// full-text index hit a full disk, say) is a storage failure, answered
/// "retry later"; any other failure is the projection's.
fn projection_failed(id: String, e: crate::ProjectError) -> StoreError {
    match e.downcast::<rusqlite::Error>() {
        Ok(sqlite) => match StoreError::from(*sqlite) {
            unavailable @ StoreError::Unavailable { .. } => unavailable,
            other => StoreError::Projection {
                id,
                message: other.to_string(),
            },
        },
        Err(e) => StoreError::Projection {
            id,
            message: e.to_string(),
        },
    }
}

/// Hands the job's result to its caller once the group's fate is known.
pub(crate) type Delivery = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

trait Job: Send {
    /// Runs the job; returns whether it succeeded and how to deliver.
    fn run(self: Box<Self>, txn: &mut WriteTxn<'_>) -> (bool, Delivery);
    /// The job could not run at all.
    fn fail(self: Box<Self>, error: StoreError);
}

struct TypedJob<F, T, E> {
    work: F,
    reply: oneshot::Sender<Result<T, E>>,
}

impl<F, T, E> Job for TypedJob<F, T, E>
where
    F: FnOnce(&mut WriteTxn<'_>) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    fn run(self: Box<Self>, txn: &mut WriteTxn<'_>) -> (bool, Delivery) {
        let result = (self.work)(txn);
        let reply = self.reply;
        let ok = result.is_ok();
        let delivery: Delivery = Box::new(move |commit| {
            let outcome = match commit {
                Ok(()) => result,
                Err(e) => Err(E::from(e)),
            };
            // The caller may have gone away (request cancelled); the write
            // stands regardless.
            let _ = reply.send(outcome);
        });
        (ok, delivery)
    }

    fn fail(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(E::from(error)));
    }
}

pub(crate) struct WriterHandle {
    sender: Mutex<Option<mpsc::Sender<Box<dyn Job>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl WriterHandle {
    pub async fn submit<T, E, F>(&self, work: F) -> Result<T, E>
    where
        F: FnOnce(&mut WriteTxn<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let sender = self
            .sender
            .lock()
            .map_err(|_| StoreError::Closed)?
            .clone()
            .ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Box::new(TypedJob { work, reply }))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub async fn close(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread {
            let joined = tokio::task::spawn_blocking(move || thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("the writer thread ended abnormally");
            }
        }
    }
}

pub(crate) fn spawn(
    conn: Connection,
    identity: NodeIdentity,
    cache_capacity: usize,
    projector: std::sync::Arc<dyn Projector>,
    syncer: WalSyncer,
    checkpointer: Checkpointer,
) -> Result<WriterHandle, StoreError> {
    let (sender, mut receiver) = mpsc::channel(QUEUE_DEPTH);
    let thread = std::thread::Builder::new()
        .name("crm-writer".into())
        .spawn(move || {
            let gate = checkpointer.gate();
            let mut cache = DocCache::new(cache_capacity);
            let mut writer = Writer {
                conn: &conn,
                identity: &identity,
                cache: &mut cache,
                projector: &*projector,
                syncer: &syncer,
            };
            while let Some(first) = receiver.blocking_recv() {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match receiver.try_recv() {
                        Ok(job) => group.push(job),
                        Err(_) => break,
                    }
                }
                gate.while_held(|| writer.commit_group(group));
            }
            // Every job answered, and the checkpoint thread stopped,
            // before the last checkpoint, which truncates the WAL.
            drop(syncer);
            drop(checkpointer);
            close(conn);
        })
        .map_err(|e| StoreError::TaskFailed(e.to_string()))?;
    Ok(WriterHandle {
        sender: Mutex::new(Some(sender)),
        thread: Mutex::new(Some(thread)),
    })
}

/// Every sender is gone: all queued jobs have run. Fold the WAL back so the
/// database file is complete on its own.
fn close(conn: Connection) {
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(error = %e, "final checkpoint failed");
    }
    if let Err((_, e)) = conn.close() {
        tracing::error!(error = %e, "closing the database failed");
    }
    tracing::info!("writer stopped");
}

/// Notes in `fed` (a [`WriteTxn`]'s) that a change to a document of `kind`
/// went into the feed.
pub(crate) fn fed_kind(fed: &mut Vec<String>, kind: &str) {
    if !fed.iter().any(|k| k == kind) {
        fed.push(kind.to_owned());
    }
}

/// What the writer thread owns while it runs.
struct Writer<'a> {
    conn: &'a Connection,
    identity: &'a NodeIdentity,
    cache: &'a mut DocCache,
    projector: &'a dyn Projector,
    /// Syncs each committed group, then publishes and answers it.
    syncer: &'a WalSyncer,
}

impl Writer<'_> {
    /// Gives back the pages a large transaction left in the page cache
    /// beyond its size ([`crate::database::bound_writer_cache`]). Nearly
    /// every commit walks all the pages the cache holds: a B-tree split
    /// parks a page at the locking page's number for a moment
    /// (`balance_nonroot`), and the commit then truncates the cache above
    /// the database's size by scanning its whole hash table
    /// (`pcache1TruncateUnsafe`: 16% of the writer during HTTP creates while
    /// the cache held 17,000 pages).
    fn shrink_cache(&self) {
        if let Err(e) = crate::database::bound_writer_cache(self.conn) {
            tracing::warn!(error = %e, "shrinking the page cache failed");
        }
    }

    fn commit_group(&mut self, group: Vec<Box<dyn Job>>) {
        let conn = self.conn;
        let began = Instant::now();
        let jobs = group.len();
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let e = StoreError::from(e);
            for job in group {
                job.fail(share(&e));
            }
            return;
        }
        let mut deliveries = Vec::with_capacity(group.len());
        let mut touched = Vec::new();
        let mut fed: Vec<String> = Vec::new();
        let mut deferred = Vec::new();
        let mut broken: Option<StoreError> = None;
        for job in group {
            if let Some(e) = &broken {
                job.fail(share(e));
                continue;
            }
            if let Err(e) = conn.execute_batch("SAVEPOINT job") {
                let e = StoreError::from(e);
                job.fail(share(&e));
                broken = Some(e);
                continue;
            }
            let mut txn = WriteTxn {
                conn,
                cache: &mut *self.cache,
                identity: self.identity,
                projector: self.projector,
                touched: Vec::new(),
                fed: Vec::new(),
                deferred: Vec::new(),
            };
            let (ok, delivery) = job.run(&mut txn);
            if ok {
                for kind in &txn.fed {
                    fed_kind(&mut fed, kind);
                }
                deferred.append(&mut txn.deferred);
            }
            let job_touched = txn.touched;
            let end = if conn.is_autocommit() {
                // SQLite rolled the whole transaction back on its own, as it
                // does after SQLITE_FULL or SQLITE_IOERR: the savepoints are
                // gone and so is every earlier job's work in this group.
                Err(rolled_back(conn))
            } else if ok {
                conn.execute_batch("RELEASE job").map_err(StoreError::from)
            } else {
                for id in &job_touched {
                    self.cache.evict(id);
                }
                conn.execute_batch("ROLLBACK TO job; RELEASE job")
                    .map_err(StoreError::from)
            };
            touched.extend(job_touched);
            deliveries.push(delivery);
            if let Err(e) = end {
                broken = Some(e);
            }
        }
        let mut committing = began;
        let outcome = match broken {
            Some(e) => Err(e),
            None => run_deferred(conn, self.projector, deferred).and_then(|()| {
                committing = Instant::now();
                conn.execute_batch("COMMIT").map_err(StoreError::from)
            }),
        };
        match outcome.map_err(|e| crate::storage::refine(conn, e)) {
            Ok(()) => {
                // COMMIT is timed apart from running the jobs: FTS5's
                // merges used to hide in it (BENCHMARKS.md, tenth round).
                tracing::trace!(
                    jobs,
                    run_us = committing.duration_since(began).as_micros(),
                    commit_us = committing.elapsed().as_micros(),
                    "group committed"
                );
                let seq = if fed.is_empty() {
                    None
                } else {
                    crate::feed::latest_seq(conn)
                        .inspect_err(
                            |e| tracing::warn!(error = %e, "reading the feed position failed"),
                        )
                        .ok()
                };
                self.syncer.submit(Committed {
                    deliveries,
                    fed,
                    seq,
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "group commit failed; rolling back");
                if !conn.is_autocommit() {
                    if let Err(rollback) = conn.execute_batch("ROLLBACK") {
                        tracing::error!(error = %rollback, "rollback failed");
                    }
                }
                // The documents these jobs changed in memory never reached
                // the database: drop them so the next use reloads the
                // committed state.
                for id in &touched {
                    self.cache.evict(id);
                }
                for deliver in deliveries {
                    deliver(Err(share(&e)));
                }
            }
        }
        if began.elapsed() >= LARGE_GROUP {
            self.shrink_cache();
        }
    }
}

/// The error a transaction that SQLite rolled back by itself is reported
/// with: the cause is no longer at hand, so the storage is examined.
fn rolled_back(conn: &Connection) -> StoreError {
    StoreError::Unavailable {
        problem: crate::storage::diagnose(conn),
        message: "SQLite rolled the transaction back after a storage error".into(),
    }
}

/// A failure of the whole group, as each job's caller sees it (errors are
/// not `Clone`; the storage problem, which decides "retry later", is kept).
fn share(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable { problem, message } => StoreError::Unavailable {
            problem: *problem,
            message: message.clone(),
        },
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(code, message)) => {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(*code, message.clone()))
        }
        other => StoreError::TaskFailed(format!("the group commit failed: {other}")),
    }
}
