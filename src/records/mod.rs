//! The CRM's records: every kind declared in `schema/`, kept as documents in
//! the store. This is the domain layer the API calls: it checks input,
//! applies it through the store's single write path and answers reads from
//! the projection tables. It knows nothing of HTTP.

mod authors;
mod checks;
pub mod conflicts;
pub mod csv_io;
mod directory;
pub mod document;
pub mod history;
/// Public so that the fuzz targets (`fuzz/`) can check bodies without HTTP.
pub mod input;
pub mod invalid;
pub mod password;
pub mod projection;
pub mod query;
pub mod scope;
pub mod search;
pub mod search_upkeep;
mod unique;
pub mod value;
pub mod view;

use std::sync::Arc;

use crm_schema::{KindDef, Schema};
use crm_sync::{ChangeMeta, DocId, Store, StoreError, WriteTxn};
use rusqlite::{params, OptionalExtension};
use serde_json::{Map, Value as Json};

pub use conflicts::{ConflictedPage, ConflictedRecord};
pub use directory::{NODES, NODE_ID, NODE_NAME};
pub use history::HistoryEntry;
pub use input::FieldError;
pub use invalid::{ErrorCode, Invalid};
pub use query::Page;
pub use search::SearchHit;

use authors::Authors;
use document::{read_deleted, read_field, write_field, At};
use input::{check_rules, parse_body, Assignments, Mode};
use value::FieldValue;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("there is no collection {0}")]
    UnknownCollection(String),
    #[error("{0}")]
    InvalidId(String),
    #[error("no {collection} record has id {id}")]
    NotFound { collection: String, id: String },
    #[error("{collection} record {id} was deleted; restore it to use it again")]
    Gone { collection: String, id: String },
    #[error("the record has changed since the version given in If-Match")]
    VersionMismatch,
    #[error("the record does not pass validation")]
    Invalid(Vec<FieldError>),
    #[error("another {collection} record has {field} {value:?}")]
    Duplicate {
        collection: String,
        field: String,
        value: String,
    },
    #[error("{count} rows do not pass validation; nothing was imported")]
    ImportRejected {
        rejected: Vec<csv_io::RowError>,
        count: u64,
    },
    #[error("{0}")]
    BadQuery(String),
    #[error("{0} records are written by the nodes themselves, not through the API")]
    SystemKind(String),
    #[error("internal: {0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for RecordError {
    fn from(e: rusqlite::Error) -> Self {
        RecordError::Store(StoreError::from(e))
    }
}

/// A record as JSON plus its ETag.
pub struct Versioned {
    pub record: Json,
    pub etag: String,
}

impl Versioned {
    fn from_json(record: Json) -> Versioned {
        let etag = view::etag_of_version(&record["version"]);
        Versioned { record, etag }
    }
}

/// A new record: its id, and its JSON text as rendered for the projection
/// (the API sends it as it is: parsing it to write it out again was a
/// thirtieth of the node's CPU per create).
pub struct Created {
    pub id: String,
    pub text: VersionedText,
}

/// A record as JSON text, ready to be sent, plus its ETag. A record read
/// for the API alone is served as the projection stored it: parsing it into
/// a value only to write the same bytes out again took about a tenth of
/// the node's CPU during GET by id (BENCHMARKS.md, fifteenth round).
pub struct VersionedText {
    pub json: String,
    pub etag: String,
}

/// What a stored record's text must be looked into for, skipping the rest
/// without building it.
#[derive(serde::Deserialize)]
struct StoredHead {
    version: Vec<String>,
    /// Present only when some field is in conflict: its entries then get
    /// their users' names, which are not stored (`authors`).
    #[serde(default)]
    conflicts: Option<serde::de::IgnoredAny>,
}

/// The kind whose records are the API's users (see `auth`): history
/// resolves change authors against it.
pub const USERS: &str = "users";

/// Who is writing, for the change's metadata: a user's record id.
#[derive(Debug, Clone)]
pub struct Author(pub String);

impl Author {
    /// The node itself, for what it writes before any user exists (the
    /// first admin user).
    pub fn system() -> Author {
        Author("system".to_owned())
    }

    fn meta(&self) -> ChangeMeta {
        ChangeMeta {
            author: self.0.clone(),
            time_ms: crate::clock::now_ms(),
        }
    }
}

/// The record service; cheap to clone.
#[derive(Clone)]
pub struct Records {
    store: Store,
    schema: Arc<Schema>,
    /// Renders new records' rows outside the writer.
    projector: Arc<projection::RecordProjector>,
    /// How many slow creates (a password to hash, a long text to encode)
    /// run at once on the blocking pool: one per core. Thirty-two
    /// concurrent creates on as many blocking threads only took turns on
    /// two cores, and the writer waited its turn among them.
    slow_creates: Arc<tokio::sync::Semaphore>,
    /// List filters' recent match counts (see `query::FilterCounts`).
    filter_counts: Arc<query::FilterCounts>,
}

/// Documents prepared and rendered per batch of an import. Small, so that
/// the writer starts soon after the file is read (a batch of 500 kept it
/// waiting about 50 ms of each 10,000-row import).
const IMPORT_BATCH: usize = 100;

/// Batches prepared ahead of the writer at most.
const IMPORT_BATCHES_AHEAD: usize = 20;

/// One imported row, ready for the writer: `index` is its place in the file.
struct PreparedRow {
    index: usize,
    assignments: Assignments,
    doc: crm_sync::PreparedDoc,
    rows: projection::RecordRows,
}

/// What an import worker hands the writer for one batch of rows.
enum ImportBatch {
    /// Every row passed its checks and is ready to store.
    Ready(Vec<PreparedRow>),
    /// Rows that did not pass (the batch's others are not prepared).
    Rejected(csv_io::Rejections),
    /// Preparing a document failed: the import stops.
    Failed(RecordError),
}

impl Records {
    pub fn new(
        store: Store,
        schema: Arc<Schema>,
        projector: Arc<projection::RecordProjector>,
    ) -> Records {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Records {
            store,
            schema,
            projector,
            slow_creates: Arc::new(tokio::sync::Semaphore::new(cores)),
            filter_counts: Arc::default(),
        }
    }

    /// Builds a new record's document and renders its rows, on the calling
    /// thread: the writer then only stores them.
    fn prepare_record(
        &self,
        kind: &KindDef,
        meta: &ChangeMeta,
        assignments: &Assignments,
    ) -> Result<(crm_sync::PreparedDoc, projection::RecordRows), RecordError> {
        let assigned = assignments
            .iter()
            .filter_map(|(index, value)| Some((&kind.fields[*index], value.as_ref()?)));
        let root = document::new_root(kind, meta.time_ms, assigned);
        let prepared = self.store.prepare_root(&kind.collection, meta, &root);
        let record =
            document::read_new_root(kind, prepared.id(), &root, prepared.hash(), meta.time_ms);
        let rows = self.projector.rows_of(kind, &record).ok_or_else(|| {
            RecordError::Internal(format!("kind {} has no projection", kind.collection))
        })?;
        Ok((prepared, rows))
    }

    /// Checks the rows of one import batch (`rows` of `file`) and prepares
    /// their documents, unless this or another batch had a row rejected:
    /// then only the checks run.
    fn import_batch(
        &self,
        kind: &KindDef,
        meta: &ChangeMeta,
        file: &csv_io::CsvRows,
        rows: std::ops::Range<usize>,
        rejected: &std::sync::atomic::AtomicBool,
    ) -> ImportBatch {
        use std::sync::atomic::Ordering;
        let mut rejections = csv_io::Rejections::default();
        let mut ready = Vec::with_capacity(rows.len());
        for index in rows {
            let assignments = match input::check_new(kind, &file.body(kind, index)) {
                Ok(assignments) => assignments,
                Err(errors) => {
                    rejected.store(true, Ordering::Relaxed);
                    rejections.add(index, errors);
                    continue;
                }
            };
            if rejected.load(Ordering::Relaxed) {
                continue;
            }
            match self.prepare_record(kind, meta, &assignments) {
                Ok((doc, rows)) => ready.push(PreparedRow {
                    index,
                    assignments,
                    doc,
                    rows,
                }),
                Err(e) => return ImportBatch::Failed(e),
            }
        }
        if rejections.is_empty() && !rejected.load(Ordering::Relaxed) {
            ImportBatch::Ready(ready)
        } else {
            ImportBatch::Rejected(rejections)
        }
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub fn shared_schema(&self) -> Arc<Schema> {
        self.schema.clone()
    }

    pub fn identity(&self) -> &crm_sync::NodeIdentity {
        self.store.identity()
    }

    pub fn kind_exists(&self, collection: &str) -> Result<(), RecordError> {
        self.kind(collection).map(|_| ())
    }

    fn kind(&self, collection: &str) -> Result<Arc<KindDef>, RecordError> {
        self.schema
            .shared_kind(collection)
            .cloned()
            .ok_or_else(|| RecordError::UnknownCollection(collection.to_owned()))
    }

    fn parse_id(id: &str) -> Result<DocId, RecordError> {
        id.parse()
            .map_err(|e: crm_sync::InvalidDocId| RecordError::InvalidId(e.to_string()))
    }

    pub async fn create(
        &self,
        collection: &str,
        body: Map<String, Json>,
        author: &Author,
    ) -> Result<Created, RecordError> {
        let kind = self.writable_kind(collection)?;
        self.insert(kind, body, author).await
    }

    /// Creates a record of any kind, system kinds too.
    async fn insert(
        &self,
        kind: Arc<KindDef>,
        body: Map<String, Json>,
        author: &Author,
    ) -> Result<Created, RecordError> {
        let meta = author.meta();
        let records = self.clone();
        let prepare_kind = kind.clone();
        let slow = sets_secret(&kind, &body) || has_long_text(&body);
        // Checks, first change and rows in one go, so that the phone-number
        // memo serves the check and the rows.
        let prepare = move || {
            let kind = &prepare_kind;
            let assignments = input::check_new(kind, &body).map_err(RecordError::Invalid)?;
            let (prepared, rows) = records.prepare_record(kind, &meta, &assignments)?;
            Ok::<_, RecordError>((assignments, prepared, rows))
        };
        // With no document to build that is about a tenth of a millisecond
        // for a usual record, and it runs on the request's task: a hop to
        // the blocking pool and back cost more than it spared the runtime
        // (creates/s +6-10%, BENCHMARKS.md, sixth round). Hashing a password
        // takes far longer, and a long text costs an op per character: those
        // do not belong on the runtime.
        let (assignments, prepared, rows) = if slow {
            let permit = self
                .slow_creates
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| RecordError::Internal(e.to_string()))?;
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                prepare()
            })
            .await
            .map_err(|e| RecordError::Internal(e.to_string()))??
        } else {
            prepare()?
        };
        let created = Created {
            id: prepared.id().to_string(),
            text: VersionedText {
                json: rows.json.clone(),
                etag: view::etag_of_heads(&[prepared.hash().to_string()]),
            },
        };
        let schema = self.schema.clone();
        self.store
            .write(move |txn| {
                check_references(txn, &schema, &kind, &assignments)?;
                unique::check(txn, &kind, None, |name| {
                    assigned(&kind, &assignments, name).flatten()
                })?;
                txn.insert_prepared(prepared, Some(Box::new(rows)))?;
                Ok::<_, RecordError>(())
            })
            .await?;
        Ok(created)
    }

    pub async fn get(&self, collection: &str, id: &str) -> Result<Versioned, RecordError> {
        let kind = self.kind(collection)?;
        let id = Self::parse_id(id)?;
        self.store
            .read_by_key(|conn| served(conn, &self.schema, stored_json(conn, &kind, &id)?))
            .await
            .map(Versioned::from_json)
    }

    /// The record as [`Records::get`] answers it, as JSON text.
    pub async fn get_text(&self, collection: &str, id: &str) -> Result<VersionedText, RecordError> {
        let kind = self.kind(collection)?;
        let id = Self::parse_id(id)?;
        self.store
            .read_by_key(|conn| {
                let (text, deleted) = stored_text(conn, &kind, &id)?;
                if deleted {
                    return Err(gone(&kind, &id));
                }
                let head: StoredHead = serde_json::from_str(&text)
                    .map_err(|e| RecordError::Internal(format!("stored record JSON: {e}")))?;
                let json = match head.conflicts {
                    None => text,
                    Some(_) => served(conn, &self.schema, parse_stored(&text)?)?.to_string(),
                };
                Ok(VersionedText {
                    json,
                    etag: view::etag_of_heads(&head.version),
                })
            })
            .await
    }

    /// The record as stored, deleted or not.
    pub async fn get_any(&self, collection: &str, id: &str) -> Result<Json, RecordError> {
        let kind = self.kind(collection)?;
        let id = Self::parse_id(id)?;
        let schema = self.schema.clone();
        self.store
            .read(move |conn| served(conn, &schema, stored_json_any(conn, &kind, &id)?))
            .await
    }

    pub async fn update(
        &self,
        collection: &str,
        id: &str,
        patch: Map<String, Json>,
        if_match: Option<String>,
        author: &Author,
    ) -> Result<Versioned, RecordError> {
        let kind = self.writable_kind(collection)?;
        self.change(kind, id, patch, if_match, author).await
    }

    /// Changes a record of any kind, system kinds too.
    async fn change(
        &self,
        kind: Arc<KindDef>,
        id: &str,
        patch: Map<String, Json>,
        if_match: Option<String>,
        author: &Author,
    ) -> Result<Versioned, RecordError> {
        let id = Self::parse_id(id)?;
        let assignments = parse_off_runtime(&kind, patch, Mode::Patch).await?;
        let meta = author.meta();
        let schema = self.schema.clone();
        self.store
            .write(move |txn| {
                let current = live_doc(txn, &kind, &id)?;
                if let Some(expected) = &if_match {
                    let mut heads = current.get_heads();
                    heads.sort();
                    let etag = view::etag_of_version(&view::version(&heads));
                    if expected.trim() != "*" && expected.split(',').all(|e| e.trim() != etag) {
                        return Err(RecordError::VersionMismatch);
                    }
                }
                let resulting: Vec<Option<FieldValue>> = kind
                    .fields
                    .iter()
                    .map(|f| match assigned(&kind, &assignments, &f.name) {
                        Some(v) => v.cloned(),
                        None => read_field(current, f, At::Now),
                    })
                    .collect();
                let value_of = value_in(&kind, &resulting);
                let errors = check_rules(&kind, value_of);
                if !errors.is_empty() {
                    return Err(RecordError::Invalid(errors));
                }
                check_references(txn, &schema, &kind, &assignments)?;
                unique::check(txn, &kind, Some(&id), value_of)?;
                txn.edit(&id, &meta, |tx| write_assignments(tx, &kind, &assignments))?;
                served(txn.conn(), &schema, stored_json(txn.conn(), &kind, &id)?)
            })
            .await
            .map(Versioned::from_json)
    }

    /// Soft delete: the record leaves lists and search; its document stays
    /// and replicates the flag.
    pub async fn delete(
        &self,
        collection: &str,
        id: &str,
        author: &Author,
    ) -> Result<(), RecordError> {
        self.set_deleted(collection, id, true, author)
            .await
            .map(|_| ())
    }

    pub async fn restore(
        &self,
        collection: &str,
        id: &str,
        author: &Author,
    ) -> Result<Versioned, RecordError> {
        self.set_deleted(collection, id, false, author).await
    }

    async fn set_deleted(
        &self,
        collection: &str,
        id: &str,
        deleted: bool,
        author: &Author,
    ) -> Result<Versioned, RecordError> {
        let kind = self.writable_kind(collection)?;
        let id = Self::parse_id(id)?;
        let meta = author.meta();
        let schema = self.schema.clone();
        self.store
            .write(move |txn| {
                let is_deleted = match txn.doc(&id)? {
                    Some((doc_kind, doc)) if doc_kind == kind.collection => {
                        read_deleted(doc, At::Now)
                    }
                    _ => return Err(not_found(&kind, &id)),
                };
                if deleted && is_deleted {
                    return Err(gone(&kind, &id));
                }
                // A restored record takes its unique values back: they must
                // still be free.
                let restoring = is_deleted && !deleted;
                if restoring && kind.fields.iter().any(|f| f.unique) {
                    let values: Vec<Option<FieldValue>> = match txn.doc(&id)? {
                        Some((_, doc)) => kind
                            .fields
                            .iter()
                            .map(|f| read_field(doc, f, At::Now))
                            .collect(),
                        None => return Err(not_found(&kind, &id)),
                    };
                    unique::check(txn, &kind, Some(&id), value_in(&kind, &values))?;
                }
                if is_deleted != deleted {
                    txn.edit(&id, &meta, |tx| {
                        use automerge::transaction::Transactable;
                        tx.put(automerge::ROOT, document::DELETED, deleted)
                            .map_err(StoreError::from)
                    })?;
                }
                served(
                    txn.conn(),
                    &schema,
                    stored_json_any(txn.conn(), &kind, &id)?,
                )
            })
            .await
            .map(Versioned::from_json)
    }

    pub async fn list(
        &self,
        collection: &str,
        params: Vec<(String, String)>,
    ) -> Result<Page, RecordError> {
        let kind = self.kind(collection)?;
        let schema = self.schema.clone();
        let known = self.filter_counts.clone();
        self.store
            .read(move |conn| {
                let mut page = query::list(conn, &kind, &params, &known)?;
                let mut authors = Authors::new(conn, schema.kind(USERS));
                for &i in &page.conflicted {
                    let mut record = parse_stored(page.items[i].get())?;
                    authors.name_conflicts(&mut record)?;
                    page.items[i] = serde_json::value::to_raw_value(&record)
                        .map_err(|e| RecordError::Internal(format!("record JSON: {e}")))?;
                }
                Ok(page)
            })
            .await
    }

    /// The live records of every kind whose fields have conflicting
    /// values, most recently changed first, a page of `limit` after
    /// `cursor` (the `next_cursor` of the page before).
    pub async fn conflicted(
        &self,
        cursor: Option<String>,
        limit: usize,
    ) -> Result<ConflictedPage, RecordError> {
        let schema = self.schema.clone();
        self.store
            .read(move |conn| conflicts::page(conn, &schema, cursor.as_deref(), limit))
            .await
    }

    pub async fn history(
        &self,
        collection: &str,
        id: &str,
    ) -> Result<Vec<HistoryEntry>, RecordError> {
        let kind = self.kind(collection)?;
        let id = Self::parse_id(id)?;
        let schema = self.schema.clone();
        self.store
            .read(move |conn| match crm_sync::load_doc(conn, &id)? {
                Some((doc_kind, doc)) if doc_kind == kind.collection => {
                    let mut entries = history::history(&doc, &kind);
                    let mut authors = Authors::new(conn, schema.kind(USERS));
                    history::name_authors(&mut authors, &mut entries)?;
                    Ok(entries)
                }
                _ => Err(not_found(&kind, &id)),
            })
            .await
    }

    /// The stored value of a secret field (a password hash), for checks
    /// that stay inside the node; `None` when unset or not a record of
    /// `collection`.
    pub async fn secret(
        &self,
        collection: &str,
        id: &str,
        field: &str,
    ) -> Result<Option<String>, RecordError> {
        let kind = self.kind(collection)?;
        let id = Self::parse_id(id)?;
        let Some(field) = kind.field(field).filter(|f| f.is_secret()).cloned() else {
            return Err(RecordError::Internal(format!(
                "{field} is not a secret field of {collection}"
            )));
        };
        self.store
            .read(move |conn| match crm_sync::load_doc(conn, &id)? {
                Some((doc_kind, doc)) if doc_kind == kind.collection => {
                    Ok(match read_field(&doc, &field, At::Now) {
                        Some(FieldValue::Str(hash)) => Some(hash),
                        _ => None,
                    })
                }
                _ => Ok(None),
            })
            .await
    }

    pub async fn search(
        &self,
        q: String,
        kind: Option<String>,
        limit: usize,
    ) -> Result<Vec<SearchHit>, RecordError> {
        if let Some(kind) = &kind {
            self.kind(kind)?;
        }
        self.store
            .read(move |conn| search::search(conn, &q, kind.as_deref(), limit))
            .await
    }
}

impl Records {
    /// Imports every row of `csv` as a new record of `collection`, or none:
    /// every row is checked, and all are written in one transaction only
    /// when all pass. With `dry_run` only the checks run. Returns the
    /// number of rows.
    pub async fn import_csv(
        &self,
        collection: &str,
        csv: bytes::Bytes,
        map: csv_io::ColumnMap,
        dry_run: bool,
        author: &Author,
    ) -> Result<u64, RecordError> {
        let kind = self.writable_kind(collection)?;
        let started = std::time::Instant::now();
        if dry_run {
            let rows = tokio::task::spawn_blocking(move || csv_io::parse_rows(&kind, &csv, &map))
                .await
                .map_err(|e| RecordError::Internal(e.to_string()))??;
            return Ok(rows.len() as u64);
        }
        let read_kind = kind.clone();
        let file =
            tokio::task::spawn_blocking(move || csv_io::CsvRows::read(&read_kind, &csv, &map))
                .await
                .map_err(|e| RecordError::Internal(e.to_string()))??;
        let count = file.len() as u64;
        tracing::info!(kind = %kind.collection, rows = count, ms = started.elapsed().as_millis() as u64, "import: file read");
        let meta = author.meta();
        // Rows are checked and their documents prepared in parallel
        // batches (a row's checks and its document on one thread, so the
        // phone-number memo serves both), and stored by one write job as
        // they come: one transaction, so all or nothing, while only a few
        // batches are in memory at once. Once a row fails, the workers only
        // check the rest, so the report covers the whole file.
        let (batches, received) =
            std::sync::mpsc::sync_channel::<ImportBatch>(IMPORT_BATCHES_AHEAD);
        let records = self.clone();
        let prepare_kind = kind.clone();
        let producer = tokio::task::spawn_blocking(move || {
            let file = file;
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
            let rejected = std::sync::atomic::AtomicBool::new(false);
            std::thread::scope(|scope| {
                for worker in 0..threads {
                    let batches = batches.clone();
                    let (records, kind, meta, file, rejected) =
                        (&records, &prepare_kind, &meta, &file, &rejected);
                    scope.spawn(move || {
                        let starts = (0..file.len()).step_by(IMPORT_BATCH);
                        for first in starts.skip(worker).step_by(threads) {
                            let rows = first..(first + IMPORT_BATCH).min(file.len());
                            let batch = records.import_batch(kind, meta, file, rows, rejected);
                            let failed = matches!(batch, ImportBatch::Failed(_));
                            // The writer stopped (a row failed a write-time
                            // check, or storage failed): stop too.
                            if batches.send(batch).is_err() || failed {
                                return;
                            }
                        }
                    });
                }
            });
        });
        let schema = self.schema.clone();
        let written = self
            .store
            .write(move |txn| {
                let mut done = 0u64;
                let mut rejections = csv_io::Rejections::default();
                for batch in received {
                    let rows = match batch {
                        ImportBatch::Ready(rows) => rows,
                        ImportBatch::Rejected(more) => {
                            rejections.append(more);
                            continue;
                        }
                        ImportBatch::Failed(e) => return Err(e),
                    };
                    if !rejections.is_empty() {
                        continue;
                    }
                    for row in rows {
                        done += 1;
                        let assignments = &row.assignments;
                        check_references(txn, &schema, &kind, assignments)
                            .and_then(|()| {
                                unique::check(txn, &kind, None, |name| {
                                    assigned(&kind, assignments, name).flatten()
                                })
                            })
                            .map_err(|e| csv_io::reject_row(row.index, e))?;
                        txn.insert_prepared(row.doc, Some(Box::new(row.rows)))?;
                        if done.is_multiple_of(1000) {
                            txn.flush_deferred()?;
                        }
                        if done.is_multiple_of(10_000) {
                            tracing::info!(kind = %kind.collection, rows = done, of = count, "import: rows written");
                        }
                    }
                }
                rejections.into_result()?;
                Ok::<_, RecordError>(done)
            })
            .await;
        producer
            .await
            .map_err(|e| RecordError::Internal(e.to_string()))?;
        let written = written?;
        // A large import changes what the query planner should know.
        self.store.write(|txn| txn.optimize()).await?;
        // Imports have no time limit: the caller waits for the optimize.
        search_upkeep::after_bulk(&self.store, None).await;
        if written != count {
            return Err(RecordError::Internal(format!(
                "import prepared {written} of {count} rows"
            )));
        }
        tracing::info!(kind = %collection, rows = count, ms = started.elapsed().as_millis() as u64, "import done");
        Ok(count)
    }

    /// A page of the live records of `collection` in storage order, as
    /// served, after the record with local key `after` (0: from the start).
    /// Returns the records and the key to continue after.
    pub async fn export_page(
        &self,
        collection: &str,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<Json>, i64), RecordError> {
        let kind = self.kind(collection)?;
        self.store
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT rid, record FROM {} WHERE deleted = 0 AND rid > ?1 ORDER BY rid LIMIT ?2",
                    projection::table(&kind)
                ))?;
                let mut rows = stmt.query(params![after, limit as i64])?;
                let mut records = Vec::new();
                let mut last = after;
                while let Some(row) = rows.next()? {
                    last = row.get(0)?;
                    let text: String = row.get(1)?;
                    records.push(parse_stored(&text)?);
                }
                Ok((records, last))
            })
            .await
    }

    pub fn kind_def(&self, collection: &str) -> Result<Arc<KindDef>, RecordError> {
        self.kind(collection)
    }

    /// A kind people may write: not a system kind.
    fn writable_kind(&self, collection: &str) -> Result<Arc<KindDef>, RecordError> {
        let kind = self.kind(collection)?;
        if kind.system {
            return Err(RecordError::SystemKind(kind.collection.clone()));
        }
        Ok(kind)
    }
}

/// Whether `body` sets a secret field, whose value is hashed (slow: it
/// belongs on the blocking pool).
fn sets_secret(kind: &KindDef, body: &Map<String, Json>) -> bool {
    kind.fields
        .iter()
        .any(|f| f.is_secret() && body.contains_key(&f.name))
}

/// Bytes of one string value beyond which a create is prepared on the
/// blocking pool: a text field costs an op per character, and encoding
/// 2,000 characters takes about 0.4 ms (20,000, the longest note, 3 ms).
const LONG_TEXT_BYTES: usize = 2_000;

/// Whether a string value of `body` is longer than [`LONG_TEXT_BYTES`].
fn has_long_text(body: &Map<String, Json>) -> bool {
    body.values()
        .any(|v| matches!(v, Json::String(s) if s.len() > LONG_TEXT_BYTES))
}

/// Parses a body; hashing a password is slow, so a body that sets a
/// secret field is parsed on the blocking pool.
async fn parse_off_runtime(
    kind: &KindDef,
    body: Map<String, Json>,
    mode: Mode,
) -> Result<Assignments, RecordError> {
    if !sets_secret(kind, &body) {
        return parse_body(kind, &body, mode).map_err(RecordError::Invalid);
    }
    let kind = kind.clone();
    tokio::task::spawn_blocking(move || parse_body(&kind, &body, mode))
        .await
        .map_err(|e| RecordError::Internal(e.to_string()))?
        .map_err(RecordError::Invalid)
}

/// Looks up a field's value by name in `values`, which follow the kind's
/// fields.
fn value_in<'v>(
    kind: &'v KindDef,
    values: &'v [Option<FieldValue>],
) -> impl Fn(&str) -> Option<&'v FieldValue> + Copy + 'v {
    move |name| {
        kind.fields
            .iter()
            .position(|f| f.name == name)
            .and_then(|i| values[i].as_ref())
    }
}

fn write_assignments(
    tx: &mut automerge::transaction::Transaction<'_>,
    kind: &KindDef,
    assignments: &Assignments,
) -> Result<(), RecordError> {
    for (index, value) in assignments {
        write_field(tx, &kind.fields[*index], value.as_ref()).map_err(StoreError::from)?;
    }
    Ok(())
}

/// The value an assignment list gives a field: `None` when the field is not
/// assigned, `Some(None)` when it is cleared.
fn assigned<'a>(
    kind: &KindDef,
    assignments: &'a Assignments,
    name: &str,
) -> Option<Option<&'a FieldValue>> {
    assignments
        .iter()
        .find(|(i, _)| kind.fields[*i].name == name)
        .map(|(_, v)| v.as_ref())
}

fn not_found(kind: &KindDef, id: &DocId) -> RecordError {
    RecordError::NotFound {
        collection: kind.collection.clone(),
        id: id.to_string(),
    }
}

fn gone(kind: &KindDef, id: &DocId) -> RecordError {
    RecordError::Gone {
        collection: kind.collection.clone(),
        id: id.to_string(),
    }
}

/// The live (not deleted) document of `id`, or the right error.
fn live_doc<'t>(
    txn: &'t mut WriteTxn<'_>,
    kind: &KindDef,
    id: &DocId,
) -> Result<&'t automerge::Automerge, RecordError> {
    match txn.doc(id)? {
        Some((doc_kind, doc)) if doc_kind == kind.collection => {
            if read_deleted(doc, At::Now) {
                Err(gone(kind, id))
            } else {
                Ok(doc)
            }
        }
        _ => Err(not_found(kind, id)),
    }
}

/// Every reference written must name a live record of its target kind.
fn check_references(
    txn: &WriteTxn<'_>,
    schema: &Schema,
    kind: &KindDef,
    assignments: &Assignments,
) -> Result<(), RecordError> {
    let mut errors = Vec::new();
    for (index, value) in assignments {
        let field = &kind.fields[*index];
        let (Some(target), Some(FieldValue::Str(target_id))) = (&field.to, value) else {
            continue;
        };
        let Some(target_kind) = schema.kind(target) else {
            continue;
        };
        let live: Option<i64> = txn
            .conn()
            .query_row(
                &format!(
                    "SELECT deleted FROM {} WHERE id = ?1",
                    projection::table(target_kind)
                ),
                params![target_id],
                |r| r.get(0),
            )
            .optional()?;
        match live {
            Some(0) => {}
            Some(_) => errors.push(FieldError::new(
                &field.name,
                Invalid::new(
                    ErrorCode::ReferenceDeleted,
                    format!("{target} record {target_id} is deleted"),
                ),
            )),
            None => errors.push(FieldError::new(
                &field.name,
                Invalid::new(
                    ErrorCode::ReferenceMissing,
                    format!("no {target} record has id {target_id}"),
                ),
            )),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(RecordError::Invalid(errors))
    }
}

/// A record as served: the authors of its conflicting values named.
fn served(
    conn: &rusqlite::Connection,
    schema: &Schema,
    mut record: Json,
) -> Result<Json, RecordError> {
    Authors::new(conn, schema.kind(USERS)).name_conflicts(&mut record)?;
    Ok(record)
}

/// A record's JSON as the projection stores it.
fn parse_stored(text: &str) -> Result<Json, RecordError> {
    serde_json::from_str(text)
        .map_err(|e| RecordError::Internal(format!("stored record JSON: {e}")))
}

/// The record as served, from the projection; deleted ones are gone.
fn stored_json(
    conn: &rusqlite::Connection,
    kind: &KindDef,
    id: &DocId,
) -> Result<Json, RecordError> {
    let (record, deleted) = stored_row(conn, kind, id)?;
    if deleted {
        return Err(gone(kind, id));
    }
    Ok(record)
}

fn stored_json_any(
    conn: &rusqlite::Connection,
    kind: &KindDef,
    id: &DocId,
) -> Result<Json, RecordError> {
    stored_row(conn, kind, id).map(|(record, _)| record)
}

pub(crate) fn stored_row(
    conn: &rusqlite::Connection,
    kind: &KindDef,
    id: &DocId,
) -> Result<(Json, bool), RecordError> {
    let (text, deleted) = stored_text(conn, kind, id)?;
    Ok((parse_stored(&text)?, deleted))
}

/// The projection's JSON text of a record, and whether it is deleted.
fn stored_text(
    conn: &rusqlite::Connection,
    kind: &KindDef,
    id: &DocId,
) -> Result<(String, bool), RecordError> {
    let row: Option<(String, bool)> = conn
        .prepare_cached(&format!(
            "SELECT record, deleted FROM {} WHERE id = ?1",
            projection::table(kind)
        ))?
        .query_row(params![id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    row.ok_or_else(|| not_found(kind, id))
}
