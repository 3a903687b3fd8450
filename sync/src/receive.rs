//! Applying what a peer sent: batches of changes and snapshot pages. A batch
//! is checked whole before anything is applied, then applied inside the
//! caller's write job, so that a bad batch changes nothing.
//!
//! A change whose dependencies are not here yet is held in `held_changes`
//! and applied as soon as they arrive; it is never dropped.

use std::collections::HashMap;

use automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc, ROOT};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::cache::LoadedDoc;
use crate::feed::KindSet;
use crate::first_change::{self, DecodedRoot};
use crate::frame::{Entry, Sender};
use crate::projector::{DocRef, NewDocRef, Projector, Rendered};
use crate::writer::{project, WriteTxn};
use crate::{stored_doc, DocId, DocScope, StoreError};

/// What a received batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Changes applied now (including held ones released by this batch).
    pub applied: u64,
    /// Changes this node already had.
    pub duplicates: u64,
    /// Changes held because their dependencies are missing.
    pub held: u64,
    /// Held changes from earlier batches applied now.
    pub released: u64,
    /// Documents that changed.
    pub documents: u64,
    /// Changes refused because their document is outside the sender's
    /// scope; the rest of the batch applied.
    #[serde(default)]
    pub rejected: u64,
}

impl ApplyReport {
    pub fn add(&mut self, other: ApplyReport) {
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        self.held += other.held;
        self.released += other.released;
        self.documents += other.documents;
        self.rejected += other.rejected;
    }
}

/// Why a batch was refused. Nothing of a refused batch is applied.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error("entry {index}: the change does not decode: {message}")]
    Undecodable { index: usize, message: String },
    #[error("entry {index}: kind `{kind}` is not known to this node")]
    UnknownKind { index: usize, kind: String },
    #[error("entry {index}: document {doc} is a `{stored}` here, not a `{stated}`")]
    KindMismatch {
        index: usize,
        doc: DocId,
        stored: String,
        stated: String,
    },
    #[error("document {doc}: {message}")]
    Rejected { doc: DocId, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReceiveError {
    /// Whether the sender is at fault (the batch is bad) rather than this
    /// node (its database failed).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, ReceiveError::Store(_))
    }
}

/// A document of a snapshot page, checked, read and rendered off the
/// writer by [`prepare_snapshots`].
pub struct PreparedSnapshot {
    entry: Entry,
    heads: Vec<ChangeHash>,
    changes: SnapshotChanges,
    rows: Box<dyn Rendered>,
}

/// The changes a received snapshot brings to the feed.
enum SnapshotChanges {
    /// The payload is the document's one change, exactly: kept as the
    /// change's bytes, with the hash and actor read once. Parsing it as a
    /// change a second time cost 7% of a first sync.
    Sole {
        hash: ChangeHash,
        actor: ActorId,
    },
    Decoded(Vec<Change>),
}

/// Checks and loads every document of a snapshot page and renders its rows,
/// on as many threads as there are cores. Refuses the page whole when one
/// document is bad.
pub fn prepare_snapshots(
    projector: &dyn Projector,
    actor: &ActorId,
    entries: Vec<Entry>,
    kinds: &KindSet,
) -> Result<Vec<PreparedSnapshot>, ReceiveError> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per_thread = entries.len().div_ceil(threads).max(1);
    let mut chunks: Vec<Vec<(usize, Entry)>> = Vec::new();
    for (index, entry) in entries.into_iter().enumerate() {
        if index % per_thread == 0 {
            chunks.push(Vec::with_capacity(per_thread));
        }
        if let Some(chunk) = chunks.last_mut() {
            chunk.push((index, entry));
        }
    }
    let prepared: Vec<Result<Vec<PreparedSnapshot>, ReceiveError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|(index, entry)| {
                            prepare_snapshot(projector, actor, index, entry, kinds)
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(ReceiveError::Store(StoreError::TaskFailed(
                        "a snapshot thread panicked".into(),
                    )))
                })
            })
            .collect()
    });
    let mut out = Vec::new();
    for chunk in prepared {
        out.extend(chunk?);
    }
    Ok(out)
}

fn prepare_snapshot(
    projector: &dyn Projector,
    actor: &ActorId,
    index: usize,
    entry: Entry,
    kinds: &KindSet,
) -> Result<PreparedSnapshot, ReceiveError> {
    if !kinds.contains(&entry.kind) {
        return Err(ReceiveError::UnknownKind {
            index,
            kind: entry.kind,
        });
    }
    let unrendered = |e: crate::ProjectError| {
        ReceiveError::Store(StoreError::Projection {
            id: entry.doc.to_string(),
            message: e.to_string(),
        })
    };
    if let Some((change, decoded)) = first_change_of(&entry.payload) {
        if decoded.kind == entry.kind {
            let hash = change.hash();
            let rows = projector
                .render_new(&NewDocRef {
                    id: entry.doc,
                    kind: &entry.kind,
                    root: &decoded.root,
                    hash,
                    time_ms: decoded.meta.time_ms,
                    bytes: &entry.payload,
                })
                .map_err(unrendered)?;
            return Ok(PreparedSnapshot {
                heads: vec![hash],
                changes: SnapshotChanges::Sole {
                    hash,
                    actor: change.actor_id().clone(),
                },
                entry,
                rows,
            });
        }
    }
    let undecodable = |message: String| ReceiveError::Undecodable { index, message };
    let doc = Automerge::load(&entry.payload)
        .map_err(|e| undecodable(e.to_string()))?
        .with_actor(actor.clone());
    if !doc.get_missing_deps(&[]).is_empty() {
        return Err(undecodable("the document lacks some of its changes".into()));
    }
    if root_kind(&doc).as_deref() != Some(entry.kind.as_str()) {
        return Err(undecodable(format!(
            "the document is not a `{}`",
            entry.kind
        )));
    }
    let changes = sole_change(&entry.payload, &doc)
        .unwrap_or_else(|| SnapshotChanges::Decoded(doc.get_changes(&[])));
    let doc_ref = DocRef {
        id: entry.doc,
        kind: &entry.kind,
        doc: &doc,
    };
    let rows = projector.render(&doc_ref).map_err(unrendered)?;
    Ok(PreparedSnapshot {
        heads: doc.get_heads(),
        entry,
        changes,
        rows,
    })
}

/// The payload as a document's first change that reads back whole as the
/// root it put ([`first_change::decode`]: how creates and imports make
/// documents), with that root. Such a document is rendered from its root:
/// loading it was three fifths of preparing a first sync's page.
fn first_change_of(payload: &[u8]) -> Option<(Change, DecodedRoot)> {
    let change = Change::try_from(payload).ok()?;
    if !is_one_change_chunk(payload, &change.hash()) {
        return None;
    }
    let decoded = first_change::decode(&change)?;
    Some((change, decoded))
}

/// The document's one change when the payload is exactly that change's
/// bytes (how a document of a single change travels). Cheaper than
/// [`Automerge::get_changes`], which encodes every change again from the
/// loaded document, and than parsing the payload again.
fn sole_change(payload: &[u8], doc: &Automerge) -> Option<SnapshotChanges> {
    let heads = doc.get_heads();
    let [hash] = heads.as_slice() else {
        return None;
    };
    let meta = doc.get_change_meta_by_hash(hash)?;
    // No dependencies and the only head: the document is this change alone,
    // and the payload, one change chunk with this change's checksum, is it.
    (meta.deps.is_empty() && is_one_change_chunk(payload, hash)).then(|| SnapshotChanges::Sole {
        hash: *hash,
        actor: meta.actor.into_owned(),
    })
}

/// Whether `bytes` is one whole uncompressed change chunk of Automerge's
/// storage format whose checksum is `hash`'s: the magic bytes, the hash's
/// first four bytes, chunk type 1, the LEB128 length of the rest, the rest.
fn is_one_change_chunk(bytes: &[u8], hash: &ChangeHash) -> bool {
    const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
    const CHANGE_CHUNK: u8 = 1;
    let (Some(magic), Some(checksum), Some(&chunk_type), Some(mut rest)) = (
        bytes.get(..4),
        bytes.get(4..8),
        bytes.get(8),
        bytes.get(9..),
    ) else {
        return false;
    };
    if magic != MAGIC || checksum != &hash.0[..4] || chunk_type != CHANGE_CHUNK {
        return false;
    }
    leb128::read::unsigned(&mut rest).is_ok_and(|len| len == rest.len() as u64)
}

struct Incoming {
    change: Change,
    origin: Option<Sender>,
    held_before: bool,
}

impl WriteTxn<'_> {
    /// Applies a batch of changes sent by `origin`. Changes already here are
    /// skipped; changes with missing dependencies are held.
    pub fn receive_changes(
        &mut self,
        origin: Sender,
        entries: Vec<Entry>,
        kinds: &KindSet,
        scope: Option<&dyn DocScope>,
    ) -> Result<ApplyReport, ReceiveError> {
        let mut by_doc: Vec<(DocId, String, Vec<Change>)> = Vec::new();
        let mut slot: HashMap<DocId, usize> = HashMap::new();
        for (index, entry) in entries.into_iter().enumerate() {
            if !kinds.contains(&entry.kind) {
                return Err(ReceiveError::UnknownKind {
                    index,
                    kind: entry.kind,
                });
            }
            let change =
                Change::from_bytes(entry.payload).map_err(|e| ReceiveError::Undecodable {
                    index,
                    message: e.to_string(),
                })?;
            let i = match slot.get(&entry.doc) {
                Some(&i) => i,
                None => {
                    self.check_stored_kind(index, &entry.doc, &entry.kind)?;
                    by_doc.push((entry.doc, entry.kind.clone(), Vec::new()));
                    slot.insert(entry.doc, by_doc.len() - 1);
                    by_doc.len() - 1
                }
            };
            if by_doc[i].1 != entry.kind {
                return Err(ReceiveError::KindMismatch {
                    index,
                    doc: entry.doc,
                    stored: by_doc[i].1.clone(),
                    stated: entry.kind,
                });
            }
            by_doc[i].2.push(change);
        }
        let mut report = ApplyReport::default();
        for (doc, kind, changes) in by_doc {
            if let Some(scope) = scope {
                if !self.in_scope(scope, &doc, &kind, &changes)? {
                    tracing::warn!(%doc, kind, changes = changes.len(), origin = %origin.node, "refused changes to a document outside the sender's scope");
                    report.rejected += changes.len() as u64;
                    continue;
                }
            }
            report.add(self.receive_doc_changes(doc, &kind, changes, Some(origin))?);
        }
        Ok(report)
    }

    /// Whether a scoped sender may change `doc`: a document stored here
    /// must be inside its scope as it stands here; a new one, as the
    /// sender's changes make it.
    fn in_scope(
        &mut self,
        scope: &dyn DocScope,
        doc: &DocId,
        kind: &str,
        changes: &[Change],
    ) -> Result<bool, StoreError> {
        if self.doc(doc)?.is_some() {
            return scope.admits(self.conn, doc, kind);
        }
        let mut candidate = Automerge::new();
        candidate.apply_changes(changes.iter().cloned())?;
        scope.admits_new(self.conn, kind, &candidate)
    }

    /// Applies a page of compacted documents sent by `origin` (first sync),
    /// checked and decoded by [`prepare_snapshots`]. A document new here is
    /// stored as sent; one that exists here receives the changes it lacks.
    pub fn receive_snapshots(
        &mut self,
        origin: Sender,
        prepared: Vec<PreparedSnapshot>,
    ) -> Result<ApplyReport, ReceiveError> {
        let mut stored = Vec::with_capacity(prepared.len());
        let mut in_page: HashMap<DocId, &str> = HashMap::with_capacity(prepared.len());
        for (index, p) in prepared.iter().enumerate() {
            let here = self.check_stored_kind(index, &p.entry.doc, &p.entry.kind)?;
            // A document twice in one page is stored by its first copy,
            // and both copies must be of one kind.
            let earlier = in_page.insert(p.entry.doc, &p.entry.kind);
            if let Some(first) = earlier.filter(|first| *first != p.entry.kind) {
                return Err(ReceiveError::KindMismatch {
                    index,
                    doc: p.entry.doc,
                    stored: first.to_owned(),
                    stated: p.entry.kind.clone(),
                });
            }
            stored.push(here || earlier.is_some());
        }
        let mut report = ApplyReport::default();
        for ((index, p), stored) in prepared.into_iter().enumerate().zip(stored) {
            if stored {
                let changes = match p.changes {
                    SnapshotChanges::Decoded(changes) => changes,
                    SnapshotChanges::Sole { .. } => {
                        vec![Change::from_bytes(p.entry.payload.clone()).map_err(|e| {
                            ReceiveError::Undecodable {
                                index,
                                message: e.to_string(),
                            }
                        })?]
                    }
                };
                report.add(self.receive_doc_changes(
                    p.entry.doc,
                    &p.entry.kind,
                    changes,
                    Some(origin),
                )?);
            } else {
                report.add(self.store_new_snapshot(p, origin)?);
            }
        }
        Ok(report)
    }

    /// Whether document `id` is stored here; an error when it is, as
    /// another kind than the sender says.
    fn check_stored_kind(
        &mut self,
        index: usize,
        id: &DocId,
        kind: &str,
    ) -> Result<bool, ReceiveError> {
        let stored: Option<String> = self
            .conn
            .prepare_cached("SELECT kind FROM docs WHERE id = ?1")
            .map_err(StoreError::from)?
            .query_row(params![id.to_string()], |r| r.get(0))
            .optional()
            .map_err(StoreError::from)?;
        match stored {
            Some(stored) if stored != kind => Err(ReceiveError::KindMismatch {
                index,
                doc: *id,
                stored,
                stated: kind.to_owned(),
            }),
            stored => Ok(stored.is_some()),
        }
    }

    fn store_new_snapshot(
        &mut self,
        prepared: PreparedSnapshot,
        origin: Sender,
    ) -> Result<ApplyReport, ReceiveError> {
        let PreparedSnapshot {
            entry,
            heads,
            changes,
            rows,
        } = prepared;
        let id = entry.doc;
        self.touched.push(id);
        let rid = stored_doc::insert_saved(self.conn, &id, &entry.kind, &entry.payload, &heads)?;
        let mut report = ApplyReport {
            documents: 1,
            ..ApplyReport::default()
        };
        let feed: Vec<stored_doc::FeedChange<'_>> = match &changes {
            SnapshotChanges::Sole { hash, actor } => vec![stored_doc::FeedChange {
                hash: *hash,
                bytes: &entry.payload,
                actor,
            }],
            SnapshotChanges::Decoded(changes) => changes.iter().map(Into::into).collect(),
        };
        for change in feed {
            if stored_doc::append_to_feed(self.conn, &id, &entry.kind, change, Some(origin))? {
                report.applied += 1;
            } else {
                report.duplicates += 1;
            }
        }
        crate::writer::fed_kind(&mut self.fed, &entry.kind);
        let deferred = crate::writer::store_rows(rows, self.conn, &id, rid, true)?;
        self.deferred.push((rid, deferred));
        // Not cached: a first sync copies many documents nobody edits yet.
        // Changes held for this document before its copy arrived are either
        // in the copy now or can follow it.
        let held = take_held(self.conn, &id)?;
        if !held.is_empty() {
            report.add(self.apply_pool(id, &entry.kind, held)?);
        }
        Ok(report)
    }

    fn receive_doc_changes(
        &mut self,
        id: DocId,
        kind: &str,
        changes: Vec<Change>,
        origin: Option<Sender>,
    ) -> Result<ApplyReport, ReceiveError> {
        let mut report = ApplyReport::default();
        let mut fresh = Vec::new();
        for change in changes {
            let hash = change.hash();
            if in_feed(self.conn, &id, &hash)? || is_held(self.conn, &id, &hash)? {
                report.duplicates += 1;
            } else if !fresh.iter().any(|c: &Incoming| c.change.hash() == hash) {
                fresh.push(Incoming {
                    change,
                    origin,
                    held_before: false,
                });
            } else {
                report.duplicates += 1;
            }
        }
        if fresh.is_empty() {
            return Ok(report);
        }
        fresh.extend(take_held(self.conn, &id)?);
        report.add(self.apply_pool(id, kind, fresh)?);
        Ok(report)
    }

    /// Applies every change of `pool` whose dependencies are present, over
    /// and over until none is left that can be, then holds the rest.
    fn apply_pool(
        &mut self,
        id: DocId,
        kind: &str,
        mut pool: Vec<Incoming>,
    ) -> Result<ApplyReport, ReceiveError> {
        self.touched.push(id);
        let actor = self.identity.actor();
        let existing = self.doc(&id)?.is_some();
        let mut fresh_doc = (!existing).then(|| Automerge::new().with_actor(actor));
        let mut applied: Vec<Incoming> = Vec::new();
        {
            let doc: &mut Automerge = match fresh_doc.as_mut() {
                Some(doc) => doc,
                None => {
                    &mut self
                        .cache
                        .get_mut(&id)
                        .ok_or_else(|| StoreError::NoSuchDoc(id.to_string()))?
                        .doc
                }
            };
            // Received changes come in feed (causal) order, so one pass
            // usually applies them all; another pass runs only while the
            // previous one made progress.
            loop {
                let mut progress = false;
                let mut waiting = Vec::new();
                for item in pool.drain(..) {
                    if !deps_present(doc, &item.change) {
                        waiting.push(item);
                        continue;
                    }
                    if item.change.deps().is_empty() && !doc.get_heads().is_empty() {
                        return Err(ReceiveError::Rejected {
                            doc: id,
                            message: "a second first change for an existing document".into(),
                        });
                    }
                    doc.apply_changes([item.change.clone()]).map_err(|e| {
                        ReceiveError::Rejected {
                            doc: id,
                            message: e.to_string(),
                        }
                    })?;
                    applied.push(item);
                    progress = true;
                }
                pool = waiting;
                if !progress || pool.is_empty() {
                    break;
                }
            }
        }
        let mut report = ApplyReport::default();
        for item in &pool {
            hold(self.conn, &id, kind, item)?;
            if !item.held_before {
                report.held += 1;
            }
        }
        if applied.is_empty() {
            return Ok(report);
        }
        // `applied` is in the order of application, hence causal: the feed
        // stays causal.
        report.documents = 1;
        for item in &applied {
            report.applied += 1;
            if item.held_before {
                report.released += 1;
            }
        }
        let changes: Vec<&Change> = applied.iter().map(|i| &i.change).collect();
        let new = fresh_doc.is_some();
        let (rid, doc) = if let Some(doc) = fresh_doc {
            if root_kind(&doc).as_deref() != Some(kind) {
                return Err(ReceiveError::Rejected {
                    doc: id,
                    message: format!("the document's first change does not make a `{kind}`"),
                });
            }
            let rid = stored_doc::insert(self.conn, &id, kind, &doc)?;
            self.cache.insert(
                id,
                LoadedDoc {
                    rid,
                    kind: kind.to_owned(),
                    doc,
                    tail_changes: 0,
                },
            );
            let loaded = self
                .cache
                .get_mut(&id)
                .ok_or_else(|| StoreError::NoSuchDoc(id.to_string()))?;
            (rid, &loaded.doc)
        } else {
            let loaded = self
                .cache
                .get_mut(&id)
                .ok_or_else(|| StoreError::NoSuchDoc(id.to_string()))?;
            loaded.tail_changes = stored_doc::append_changes(
                self.conn,
                loaded.rid,
                &loaded.doc,
                &changes,
                loaded.tail_changes,
            )?;
            (loaded.rid, &loaded.doc)
        };
        for item in &applied {
            stored_doc::append_to_feed(self.conn, &id, kind, (&item.change).into(), item.origin)?;
        }
        crate::writer::fed_kind(&mut self.fed, kind);
        let doc_ref = crate::DocRef { id, kind, doc };
        let deferred = project(self.projector, self.conn, &doc_ref, rid, new)?;
        self.deferred.push((rid, deferred));
        Ok(report)
    }
}

fn deps_present(doc: &Automerge, change: &Change) -> bool {
    change
        .deps()
        .iter()
        .all(|d| doc.get_change_meta_by_hash(d).is_some())
}

fn root_kind(doc: &Automerge) -> Option<String> {
    match doc.get(ROOT, "kind").ok()?? {
        (automerge::Value::Scalar(s), _) => match s.as_ref() {
            automerge::ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

fn in_feed(conn: &Connection, id: &DocId, hash: &ChangeHash) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM changes WHERE doc_id = ?1 AND hash = ?2")?
        .query_row(params![id.to_string(), hash.0.as_slice()], |_| Ok(()))
        .optional()?
        .is_some())
}

fn is_held(conn: &Connection, id: &DocId, hash: &ChangeHash) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM held_changes WHERE doc_id = ?1 AND hash = ?2")?
        .query_row(params![id.to_string(), hash.0.as_slice()], |_| Ok(()))
        .optional()?
        .is_some())
}

fn hold(conn: &Connection, id: &DocId, kind: &str, item: &Incoming) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO held_changes (doc_id, hash, kind, bytes, origin, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
    )?
    .execute(params![
        id.to_string(),
        item.change.hash().0.as_slice(),
        kind,
        item.change.raw_bytes(),
        item.origin.map(|o| o.to_bytes().to_vec()),
        now_ms(),
    ])?;
    Ok(())
}

/// Removes and returns the changes held for `id`; those still not ready are
/// held again by the caller.
fn take_held(conn: &Connection, id: &DocId) -> Result<Vec<Incoming>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT hash, bytes, origin FROM held_changes WHERE doc_id = ?1")?;
    let rows = stmt
        .query_map(params![id.to_string()], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Option<Vec<u8>>>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    conn.prepare_cached("DELETE FROM held_changes WHERE doc_id = ?1")?
        .execute(params![id.to_string()])?;
    rows.into_iter()
        .map(|(_, bytes, origin)| {
            let change = Change::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
                id: id.to_string(),
                message: format!("held change: {e}"),
            })?;
            Ok(Incoming {
                change,
                origin: origin.as_deref().and_then(Sender::from_bytes),
                held_before: true,
            })
        })
        .collect()
}

/// Held changes: how many, and how many came from `origin` when given.
pub fn held_count(conn: &Connection, origin: Option<Sender>) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM held_changes WHERE ?1 IS NULL OR origin = ?1",
        params![origin.map(|o| o.to_bytes().to_vec())],
        |r| r.get(0),
    )?)
}

/// Documents this node holds changes of (received from `origin`) but does
/// not have: their changes wait for the whole document, which a scoped peer
/// sends only when asked (a record that entered the scope late).
pub fn missing_docs(
    conn: &Connection,
    origin: Sender,
    limit: usize,
) -> Result<Vec<DocId>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT doc_id FROM held_changes
         WHERE origin = ?1 AND doc_id NOT IN (SELECT id FROM docs) LIMIT ?2",
    )?;
    let ids = stmt
        .query_map(params![origin.to_bytes().to_vec(), limit as i64], |r| {
            r.get::<_, String>(0)
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ids.iter().filter_map(|id| id.parse().ok()).collect())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;

    use super::*;

    fn one_change_doc() -> (Automerge, Change) {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        tx.put(ROOT, "kind", "things").expect("put");
        tx.commit();
        let change = doc.get_last_local_change().expect("the change");
        (doc, change)
    }

    #[test]
    fn only_the_whole_change_chunk_with_its_hash_is_taken_as_the_change() {
        let (mut doc, change) = one_change_doc();
        let bytes = change.raw_bytes().to_vec();
        let hash = change.hash();
        assert!(is_one_change_chunk(&bytes, &hash));
        let loaded = Automerge::load(&bytes).expect("load");
        assert!(matches!(
            sole_change(&bytes, &loaded),
            Some(SnapshotChanges::Sole { hash: h, ref actor }) if h == hash && actor == change.actor_id()
        ));
        // A saved document of the same change, a payload cut short or with
        // a byte more, another hash: not the change's bytes.
        assert!(!is_one_change_chunk(&doc.save(), &hash));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(!is_one_change_chunk(&longer, &hash));
        assert!(!is_one_change_chunk(&bytes[..bytes.len() - 1], &hash));
        assert!(!is_one_change_chunk(&bytes[..6], &hash));
        assert!(!is_one_change_chunk(&bytes, &ChangeHash([7; 32])));
        // A document of two changes is not one change.
        let mut tx = doc.transaction();
        tx.put(ROOT, "more", 1).expect("put");
        tx.commit();
        let both = doc.save();
        let reloaded = Automerge::load(&both).expect("load");
        assert!(sole_change(&both, &reloaded).is_none());
    }

    /// Records which way each document was rendered, and what it read.
    #[derive(Default)]
    struct PathRecorder(std::sync::Mutex<Vec<(DocId, &'static str, Option<i64>)>>);

    impl PathRecorder {
        fn note(&self, id: DocId, path: &'static str, a: Option<i64>) {
            self.0.lock().expect("lock").push((id, path, a));
        }
    }

    impl Projector for PathRecorder {
        fn render(&self, doc: &DocRef<'_>) -> Result<Box<dyn Rendered>, crate::ProjectError> {
            let a = doc.doc.get(ROOT, "a")?.and_then(|(v, _)| v.as_i64());
            self.note(doc.id, "loaded", a);
            Ok(Box::new(crate::NoProjection))
        }

        fn render_new(
            &self,
            new: &NewDocRef<'_>,
        ) -> Result<Box<dyn Rendered>, crate::ProjectError> {
            let a = match new.root.get("a") {
                Some(automerge::hydrate::Value::Scalar(s)) => s.as_i64(),
                _ => None,
            };
            self.note(new.id, "root", a);
            Ok(Box::new(crate::NoProjection))
        }
    }

    #[test]
    fn a_first_change_as_creates_make_it_is_rendered_from_its_root() {
        let meta = crate::ChangeMeta {
            author: "tester".into(),
            time_ms: 1_700_000_000_000,
        };
        let actor = ActorId::random();
        let root = HashMap::from([("a".to_owned(), 7i64.into())]);
        let from_root = crate::first_change::encode(&actor, &meta, "things", &root);
        // The same value by separate puts: another change, loaded.
        let mut doc = Automerge::new().with_actor(actor.clone());
        let mut tx = doc.transaction();
        tx.put(ROOT, "kind", "things").expect("put");
        tx.put(ROOT, "a", 8).expect("put");
        tx.commit_with(meta.options());
        let by_puts = doc.get_last_local_change().expect("the change");
        let entry = |change: &Change| Entry {
            seq: 1,
            doc: DocId::new(),
            kind: "things".into(),
            payload: change.raw_bytes().to_vec(),
        };
        let (first, second) = (entry(&from_root), entry(&by_puts));
        let ids = (first.doc, second.doc);
        let recorder = PathRecorder::default();
        let kinds: KindSet = ["things".to_owned()].into();
        let prepared =
            prepare_snapshots(&recorder, &actor, vec![first, second], &kinds).expect("a good page");
        let mut paths = recorder.0.into_inner().expect("lock");
        paths.sort_by_key(|(_, path, _)| *path);
        assert_eq!(
            paths,
            [(ids.1, "loaded", Some(8)), (ids.0, "root", Some(7))]
        );
        for (p, change) in prepared.iter().zip([&from_root, &by_puts]) {
            assert_eq!(p.heads, [change.hash()]);
            assert!(matches!(
                &p.changes,
                SnapshotChanges::Sole { hash, actor: a } if *hash == change.hash() && a == &actor
            ));
        }
        // A first change of another kind than the page says is refused,
        // as before.
        let mut wrong = entry(&from_root);
        wrong.kind = "others".into();
        let kinds: KindSet = ["things".to_owned(), "others".to_owned()].into();
        assert!(matches!(
            prepare_snapshots(&PathRecorder::default(), &actor, vec![wrong], &kinds),
            Err(ReceiveError::Undecodable { .. })
        ));
    }
}
