//! How a document lives in the `docs` table (snapshot plus change tail) and
//! how its changes enter the feed.

use automerge::{ActorId, Automerge, Change, ChangeHash};
use rusqlite::{params, Connection, OptionalExtension};

use crate::frame::Sender;
use crate::{DocId, StoreError};

/// A tail longer than this is folded into a new snapshot.
const COMPACT_AFTER_CHANGES: i64 = 64;

pub(crate) struct StoredRow {
    pub rid: i64,
    pub kind: String,
    pub doc: Automerge,
    pub tail_changes: i64,
}

/// Loads a document as stored, writing with `actor` from now on. Works on any
/// connection (the writer's or a reader's).
pub(crate) fn load_row(
    conn: &Connection,
    id: &DocId,
    actor: ActorId,
) -> Result<Option<StoredRow>, StoreError> {
    let row = conn
        .query_row(
            "SELECT rid, kind, snapshot, tail, tail_changes FROM docs WHERE id = ?1",
            params![id.to_string()],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((rid, kind, snapshot, tail, tail_changes)) = row else {
        return Ok(None);
    };
    let corrupt = |e: automerge::AutomergeError| StoreError::Corrupt {
        id: id.to_string(),
        message: e.to_string(),
    };
    let mut doc = Automerge::load(&snapshot).map_err(corrupt)?;
    if !tail.is_empty() {
        doc.load_incremental(&tail).map_err(corrupt)?;
    }
    Ok(Some(StoredRow {
        rid,
        kind,
        doc: doc.with_actor(actor),
        tail_changes,
    }))
}

/// Loads a document for reading (history), with a throwaway actor since
/// nothing is written through it. Returns the kind too.
pub fn load_doc(conn: &Connection, id: &DocId) -> Result<Option<(String, Automerge)>, StoreError> {
    Ok(load_row(conn, id, ActorId::random())?.map(|row| (row.kind, row.doc)))
}

fn heads_blob(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

/// Stores a new document (its first change already made) and returns its rid.
pub(crate) fn insert(
    conn: &Connection,
    id: &DocId,
    kind: &str,
    doc: &Automerge,
) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO docs (id, kind, snapshot, heads) VALUES (?1, ?2, ?3, ?4)",
        params![
            id.to_string(),
            kind,
            doc.save(),
            heads_blob(&doc.get_heads())
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Stores a document received whole (a snapshot page): `saved` is kept as
/// sent, which loads as `doc`.
pub(crate) fn insert_saved(
    conn: &Connection,
    id: &DocId,
    kind: &str,
    saved: &[u8],
    heads: &[ChangeHash],
) -> Result<i64, StoreError> {
    conn.prepare_cached("INSERT INTO docs (id, kind, snapshot, heads) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![id.to_string(), kind, saved, heads_blob(heads)])?;
    Ok(conn.last_insert_rowid())
}

/// Records `changes` (already applied to `doc`) of a stored document:
/// appends them to the row's tail, or compacts the row when the tail grows
/// long. Returns the new tail length.
pub(crate) fn append_changes(
    conn: &Connection,
    rid: i64,
    doc: &Automerge,
    changes: &[&Change],
    tail_changes: i64,
) -> Result<i64, StoreError> {
    let heads = heads_blob(&doc.get_heads());
    let added = changes.len() as i64;
    if tail_changes + added >= COMPACT_AFTER_CHANGES {
        conn.prepare_cached(
            "UPDATE docs SET snapshot = ?2, tail = x'', tail_changes = 0, heads = ?3 WHERE rid = ?1",
        )?
        .execute(params![rid, doc.save(), heads])?;
        Ok(0)
    } else {
        let bytes: Vec<u8> = changes
            .iter()
            .flat_map(|c| c.raw_bytes().iter().copied())
            .collect();
        conn.prepare_cached(
            "UPDATE docs SET tail = CAST(tail || ?2 AS BLOB), tail_changes = tail_changes + ?4, heads = ?3
             WHERE rid = ?1",
        )?
        .execute(params![rid, bytes, heads, added])?;
        Ok(tail_changes + added)
    }
}

/// A change as the feed stores it: what a parsed [`Change`] gives, or what
/// a received snapshot of one change already holds without parsing it.
pub(crate) struct FeedChange<'a> {
    pub hash: ChangeHash,
    /// The change's uncompressed bytes.
    pub bytes: &'a [u8],
    pub actor: &'a ActorId,
}

impl<'a> From<&'a Change> for FeedChange<'a> {
    fn from(change: &'a Change) -> FeedChange<'a> {
        FeedChange {
            hash: change.hash(),
            bytes: change.raw_bytes(),
            actor: change.actor_id(),
        }
    }
}

/// Gives `change` of document `id` the next seq in the feed, with the node
/// that sent it here (`None` when made here). Returns false when the feed
/// already holds it (received twice).
pub(crate) fn append_to_feed(
    conn: &Connection,
    id: &DocId,
    kind: &str,
    change: FeedChange<'_>,
    origin: Option<Sender>,
) -> Result<bool, StoreError> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO changes (doc_id, hash, bytes, kind, actor, origin)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (doc_id, hash) DO NOTHING",
        )?
        .execute(params![
            id.to_string(),
            change.hash.0.as_slice(),
            change.bytes,
            kind,
            change.actor.to_bytes(),
            origin.map(|o| o.to_bytes().to_vec()),
        ])?;
    Ok(inserted == 1)
}
