//! The replicated document store: Automerge documents in SQLite, the change
//! feed, the single writer with group commit, and the document cache.
//!
//! This crate knows documents, kinds (as opaque strings), changes and node
//! identities. It knows nothing about CRM records, fields or HTTP: what a
//! document means is the business of the [`Projector`] the node plugs in.

mod cache;
mod checkpointer;
mod database;
mod error;
pub mod feed;
mod first_change;
pub mod frame;
mod identity;
mod ids;
mod kind_seqs;
pub mod peers;
mod prepared;
mod projector;
mod receive;
pub mod replicate;
mod scope;
mod storage;
mod stored_doc;
pub mod tokens;
mod wal_sync;
mod writer;

pub use automerge;

pub use database::Migration;
pub use error::{StorageProblem, StoreError};
pub use identity::{bump_epoch, NodeIdentity};
pub use ids::{node_of_actor, DocId, Epoch, InvalidDocId, NodeId};
pub use prepared::PreparedDoc;
pub use projector::{
    Deferred, DeferredWrite, DocRef, NewDocRef, NoProjection, ProjectError, Projector, Rendered,
};
pub use receive::{held_count, prepare_snapshots, ApplyReport, PreparedSnapshot, ReceiveError};
pub use scope::DocScope;
pub use stored_doc::load_doc;
pub use writer::{ChangeMeta, WriteTxn};

use std::path::PathBuf;
use std::sync::Arc;

use rusqlite::Connection;

/// How long a frame for a peer waits for its sync (one fsync, normally a
/// millisecond) before the request fails as "retry later".
const DURABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The SQLite database file.
    pub path: PathBuf,
    /// Loaded documents kept by the writer (LRU).
    pub cache_capacity: usize,
    /// Read connections.
    pub readers: u32,
    /// Human name of this node; stored on every open when given, kept as
    /// stored otherwise (tools that open a node's database).
    pub node_name: Option<String>,
    /// The largest the database may grow, in bytes; a write beyond fails
    /// with [`StoreError::Unavailable`] ([`StorageProblem::Full`]), as on a
    /// full disk. `None`: as large as the disk allows.
    pub max_database_bytes: Option<u64>,
}

/// A handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    identity: NodeIdentity,
    writer: writer::WriterHandle,
    latest: tokio::sync::watch::Receiver<i64>,
    projector: Arc<dyn Projector>,
    readers: r2d2::Pool<r2d2_sqlite::SqliteConnectionManager>,
    /// One permit per reader connection, taken before a read's blocking
    /// thread starts: reads beyond the pool's size wait here, as tasks,
    /// instead of as threads parked on the pool (32 concurrent requests
    /// had made 50 threads contend for 2 cores).
    reading: Arc<tokio::sync::Semaphore>,
    kind_seqs: Arc<kind_seqs::KindSeqs>,
}

impl Store {
    /// Opens (or creates) the database, applies the store's migrations and
    /// then `migrations` (the caller's, under `scope`), loads or creates the
    /// node identity and starts the writer thread.
    pub fn open(
        config: &StoreConfig,
        scope: &str,
        migrations: &[Migration],
        projector: Arc<dyn Projector>,
    ) -> Result<Store, StoreError> {
        let mut conn = database::open_writer(&config.path)?;
        database::migrate(&mut conn, "store", database::STORE_MIGRATIONS)?;
        database::migrate(&mut conn, scope, migrations)?;
        let identity = identity::load_or_create(&conn, config.node_name.as_deref())?;
        if config.max_database_bytes.is_some() {
            storage::set_quota(&conn, config.max_database_bytes)?;
        }
        let readers = database::reader_pool(&config.path, config.readers)?;
        // What a process that died before its sync left in the WAL is made
        // durable before any of it is served as durable.
        let wal = wal_sync::open_wal(&config.path)?;
        wal.sync_data().map_err(|e| StoreError::Unavailable {
            problem: StorageProblem::Io,
            message: format!("syncing the WAL at start: {e}"),
        })?;
        database::leave_sync_to_wal_sync(&conn)?;
        let (latest_tx, latest) = tokio::sync::watch::channel(feed::latest_seq(&conn)?);
        let kind_seqs = Arc::new(kind_seqs::KindSeqs::default());
        let syncer = wal_sync::WalSyncer::spawn(
            move || wal.sync_data(),
            wal_sync::Published {
                latest: latest_tx,
                kind_seqs: kind_seqs.clone(),
            },
        )?;
        let writer = writer::spawn(
            conn,
            identity.clone(),
            config.cache_capacity,
            projector.clone(),
            syncer,
            checkpointer::Checkpointer::spawn(&config.path)?,
        )?;
        let reading = Arc::new(tokio::sync::Semaphore::new(config.readers.max(1) as usize));
        Ok(Store {
            inner: Arc::new(StoreInner {
                identity,
                writer,
                latest,
                projector,
                readers,
                reading,
                kind_seqs,
            }),
        })
    }

    pub fn identity(&self) -> &NodeIdentity {
        &self.inner.identity
    }

    /// This node in its current epoch, as it signs frames.
    pub fn sender(&self) -> frame::Sender {
        frame::Sender {
            node: self.inner.identity.node_id,
            epoch: self.inner.identity.epoch,
        }
    }

    /// The projector the writer uses, for rendering rows off the writer.
    pub fn projector(&self) -> &dyn Projector {
        &*self.inner.projector
    }

    /// The feed's last durable seq, updated after every commit that adds to
    /// it once that commit is on disk: long-polling readers wait on it.
    pub fn latest_seq(&self) -> tokio::sync::watch::Receiver<i64> {
        self.inner.latest.clone()
    }

    /// The feed's seq after the last commit that changed a document of
    /// `kind` since the store opened (0 if none has). It moves after the
    /// commit and before its writers hear back, so a value read before a
    /// read of the database is never newer than what that read saw.
    pub fn kind_seq(&self, kind: &str) -> i64 {
        self.inner.kind_seqs.get(kind)
    }

    /// Runs `job` on the writer thread inside the current group-commit
    /// transaction and returns its result once that transaction is durable.
    /// A job that fails is rolled back alone; the rest of its group commits.
    pub async fn write<T, E, F>(&self, job: F) -> Result<T, E>
    where
        F: FnOnce(&mut WriteTxn<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.inner.writer.submit(job).await
    }

    /// Runs `job` with a read connection on the blocking pool. Reads see the
    /// last committed state and never wait for the writer. A commit is
    /// visible a moment before it is durable (its writers hear back only
    /// after); what goes to a peer is read with [`Store::read_frame`].
    pub async fn read<T, E, F>(&self, job: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let pool = self.inner.readers.clone();
        let permit = self
            .inner
            .reading
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| E::from(StoreError::TaskFailed(e.to_string())))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let conn = pool.get().map_err(StoreError::from)?;
            job(&conn)
        })
        .await
        .map_err(|e| E::from(StoreError::TaskFailed(e.to_string())))?
    }

    /// Runs `job`, a read of a few pages found by key (a record by its id),
    /// with a read connection on the calling task's own thread. Handing a
    /// read that short to the blocking pool cost more than the read: about
    /// a third of the node's CPU serving records by id went to waking pool
    /// threads and waiting on their queue (BENCHMARKS.md, twelfth round).
    /// Anything that scans, sorts or may read many pages goes to
    /// [`Store::read`], so that no async worker is held for long.
    pub async fn read_by_key<T, E, F>(&self, job: F) -> Result<T, E>
    where
        F: FnOnce(&Connection) -> Result<T, E>,
        E: From<StoreError>,
    {
        let _permit = self
            .inner
            .reading
            .acquire()
            .await
            .map_err(|e| E::from(StoreError::TaskFailed(e.to_string())))?;
        // A permit per pooled connection: one is free, so `get` does not wait.
        let conn = self.inner.readers.get().map_err(StoreError::from)?;
        job(&conn)
    }

    /// Reads a frame for a peer with `job`, and returns it once everything
    /// it may hold is durable: the feed position read after it is
    /// published. A peer must never hold a change (nor a checkpoint past a
    /// seq) that a power cut could take back from this node.
    pub async fn read_frame<F>(&self, job: F) -> Result<frame::Frame, StoreError>
    where
        F: FnOnce(&Connection) -> Result<frame::Frame, StoreError> + Send + 'static,
    {
        let (frame, seen) = self
            .read(move |conn| {
                let frame = job(conn)?;
                // Read after the frame: at least every seq the frame saw.
                // Not `frame.latest`, which is the requester's `since`
                // when that is ahead of this feed (after a restore here).
                Ok::<_, StoreError>((frame, feed::latest_seq(conn)?))
            })
            .await?;
        wal_sync::durable_through(self.latest_seq(), seen, DURABLE_WAIT).await?;
        Ok(frame)
    }

    /// Changes the size limit (see [`StoreConfig::max_database_bytes`])
    /// while the store runs: a store at its limit takes writes again as soon
    /// as the limit is raised.
    pub async fn set_max_database_bytes(&self, bytes: Option<u64>) -> Result<(), StoreError> {
        self.write(move |txn| storage::set_quota(txn.conn, bytes))
            .await
    }

    /// Stops accepting writes, finishes the queued ones and closes the write
    /// connection. Later `write` calls fail with [`StoreError::Closed`].
    pub async fn close(&self) {
        self.inner.writer.close().await;
    }
}
