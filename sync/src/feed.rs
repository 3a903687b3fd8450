//! Reading the change feed and the document table for a peer: feed pages and
//! snapshot pages, as frames. Range scans of `changes` and `docs` only; no
//! document is loaded.

use std::collections::{BTreeSet, HashMap};

use rusqlite::{params, Connection};

use crate::frame::{Entry, Frame, FrameType, Sender};
use crate::{DocId, DocScope, StoreError};

/// A feed page holds at most this many payload bytes (plus one change).
const PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The kinds a node knows, in a stable order.
pub type KindSet = BTreeSet<String>;

/// What a peer asks of the feed.
#[derive(Debug, Clone)]
pub struct FeedQuery {
    /// Changes with a seq above this one.
    pub since: i64,
    /// Feed rows scanned at most (changes sent are fewer when filtered).
    pub limit: usize,
    /// The requester: changes it wrote or sent here are skipped.
    pub requester: Option<Sender>,
    /// The kinds the requester knows; `None` means all.
    pub kinds: Option<KindSet>,
}

/// The last seq of the feed (0 when empty).
pub fn latest_seq(conn: &Connection) -> Result<i64, StoreError> {
    Ok(
        conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM changes", [], |r| {
            r.get(0)
        })?,
    )
}

fn doc_id(raw: &str) -> Result<DocId, StoreError> {
    raw.parse().map_err(|_| StoreError::Corrupt {
        id: raw.to_owned(),
        message: "document id does not parse".into(),
    })
}

/// Asks `scope` once per document of a page.
struct ScopeMemo<'s> {
    scope: Option<&'s dyn DocScope>,
    seen: HashMap<DocId, bool>,
}

impl<'s> ScopeMemo<'s> {
    fn new(scope: Option<&'s dyn DocScope>) -> Self {
        ScopeMemo {
            scope,
            seen: HashMap::new(),
        }
    }

    fn admits(&mut self, conn: &Connection, doc: DocId, kind: &str) -> Result<bool, StoreError> {
        let Some(scope) = self.scope else {
            return Ok(true);
        };
        if let Some(&known) = self.seen.get(&doc) {
            return Ok(known);
        }
        let admitted = scope.admits(conn, &doc, kind)?;
        self.seen.insert(doc, admitted);
        Ok(admitted)
    }
}

/// One page of the feed for `query`, sent by `me` who knows `my_kinds`, of
/// the documents inside `scope` (all without one). `through` is the last
/// seq scanned, so a requester whose every change was filtered out still
/// advances.
pub fn read_feed(
    conn: &Connection,
    me: Sender,
    my_kinds: &KindSet,
    query: &FeedQuery,
    scope: Option<&dyn DocScope>,
) -> Result<Frame, StoreError> {
    let mut scope = ScopeMemo::new(scope);
    let latest = latest_seq(conn)?;
    let skip = query.requester.map(|s| s.to_bytes().to_vec());
    let mut stmt = conn.prepare_cached(
        "SELECT seq, doc_id, kind, actor, origin, bytes FROM changes
         WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let mut rows = stmt.query(params![query.since, query.limit.max(1) as i64])?;
    let mut through = query.since;
    let mut bytes = 0;
    let mut entries = Vec::new();
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        through = seq;
        let kind: String = row.get(2)?;
        let actor: Option<Vec<u8>> = row.get(3)?;
        let origin: Option<Vec<u8>> = row.get(4)?;
        let theirs = skip.is_some() && (actor == skip || origin == skip);
        let wanted = query.kinds.as_ref().is_none_or(|k| k.contains(&kind));
        if theirs || !wanted {
            continue;
        }
        let doc = doc_id(&row.get::<_, String>(1)?)?;
        if !scope.admits(conn, doc, &kind)? {
            continue;
        }
        let payload: Vec<u8> = row.get(5)?;
        bytes += payload.len();
        entries.push(Entry {
            seq,
            doc,
            kind,
            payload,
        });
        if bytes >= PAGE_BYTES {
            break;
        }
    }
    Ok(Frame {
        frame_type: FrameType::Changes,
        sender: me,
        kinds: my_kinds.clone(),
        through,
        latest: latest.max(through),
        entries,
    })
}

/// What a new node asks for while copying documents.
#[derive(Debug, Clone)]
pub struct SnapshotQuery {
    /// Documents with an id above this one.
    pub after: Option<DocId>,
    pub limit: usize,
    pub kinds: Option<KindSet>,
    /// Only these documents (those a peer holds changes of but lacks,
    /// e.g. a record that has just entered its scope); `after` is then
    /// ignored. Empty: every document.
    pub ids: Vec<DocId>,
}

/// Most documents a snapshot query may name.
pub const MAX_SNAPSHOT_IDS: usize = 100;

/// One page of compacted documents in id order. `through` is the feed
/// position read before the documents, so that following the feed from it
/// afterwards misses nothing.
pub fn read_snapshots(
    conn: &Connection,
    me: Sender,
    my_kinds: &KindSet,
    query: &SnapshotQuery,
    scope: Option<&dyn DocScope>,
) -> Result<Frame, StoreError> {
    let position = latest_seq(conn)?;
    let after = query.after.map(|d| d.to_string()).unwrap_or_default();
    let kinds = query
        .kinds
        .as_ref()
        .map(|k| serde_json::to_string(k).unwrap_or_else(|_| "[]".into()));
    let ids = (!query.ids.is_empty()).then(|| {
        serde_json::to_string(&query.ids.iter().map(DocId::to_string).collect::<Vec<_>>())
            .unwrap_or_else(|_| "[]".into())
    });
    // A scoped peer's page skips documents outside: scan until it is full.
    let scan = if scope.is_some() {
        -1
    } else {
        query.limit.max(1) as i64
    };
    let mut stmt = conn.prepare_cached(
        "SELECT id, kind, snapshot, tail FROM docs
         WHERE (CASE WHEN ?4 IS NULL THEN id > ?1 ELSE id IN (SELECT value FROM json_each(?4)) END)
           AND (?2 IS NULL OR kind IN (SELECT value FROM json_each(?2)))
         ORDER BY id LIMIT ?3",
    )?;
    let mut rows = stmt.query(params![after, kinds, scan, ids])?;
    let mut scope = ScopeMemo::new(scope);
    let mut entries = Vec::new();
    let mut bytes = 0;
    while let Some(row) = rows.next()? {
        if entries.len() >= query.limit.max(1) {
            break;
        }
        let doc = doc_id(&row.get::<_, String>(0)?)?;
        let kind: String = row.get(1)?;
        if !scope.admits(conn, doc, &kind)? {
            continue;
        }
        // A saved document followed by change chunks loads as one document.
        let mut payload: Vec<u8> = row.get(2)?;
        let tail: Vec<u8> = row.get(3)?;
        payload.extend_from_slice(&tail);
        bytes += payload.len();
        entries.push(Entry {
            seq: 0,
            doc,
            kind,
            payload,
        });
        if bytes >= PAGE_BYTES {
            break;
        }
    }
    Ok(Frame {
        frame_type: FrameType::Snapshots,
        sender: me,
        kinds: my_kinds.clone(),
        through: position,
        latest: position,
        entries,
    })
}

/// How many of our changes `peer` has not taken yet: feed rows after
/// `since` that it neither wrote nor sent us.
pub fn backlog_for(conn: &Connection, since: i64, peer: Option<Sender>) -> Result<i64, StoreError> {
    let skip = peer.map(|s| s.to_bytes().to_vec());
    Ok(conn.query_row(
        "SELECT count(*) FROM changes WHERE seq > ?1
         AND (?2 IS NULL OR ((actor IS NULL OR actor != ?2) AND (origin IS NULL OR origin != ?2)))",
        params![since, skip],
        |r| r.get(0),
    )?)
}
