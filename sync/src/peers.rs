//! The peers this node syncs with, and their checkpoints. Checkpoint updates
//! take the write transaction's connection, so that a batch and the position
//! it moves to commit together.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

use crate::feed::KindSet;
use crate::frame::Sender;
use crate::{DocId, StoreError};

/// A configured peer with its checkpoints.
#[derive(Debug, Clone, Serialize)]
pub struct Peer {
    pub name: String,
    pub url: String,
    /// The secret this node presents to the peer.
    #[serde(skip)]
    pub token: String,
    /// The peer's node id and epoch as last seen.
    #[serde(skip)]
    pub remote: Option<Sender>,
    pub remote_name: Option<String>,
    /// Our kinds and theirs at the last exchange, `ours|theirs`.
    #[serde(skip)]
    pub kinds: String,
    /// The last seq of the peer's feed applied here; -1 until a first sync
    /// has copied the peer's documents.
    pub pull_since: i64,
    /// Our last seq the peer has taken.
    pub push_acked: i64,
    /// The peer's latest seq when we last read its feed.
    pub remote_latest: i64,
    /// Set while a first sync copies documents: the peer's feed position
    /// when the copy began, and the last document copied.
    pub snapshot_at: Option<i64>,
    #[serde(skip)]
    pub snapshot_after: Option<DocId>,
    pub last_success: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
}

impl Peer {
    /// Whether the next pull copies documents (first sync) rather than
    /// reading the feed.
    pub fn copying(&self) -> bool {
        self.pull_since < 0
    }

    /// The kinds the peer said it knows, at the last exchange.
    pub fn their_kinds(&self) -> KindSet {
        self.kinds
            .split_once('|')
            .map(|(_, theirs)| {
                theirs
                    .split(',')
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `ours|theirs`: stored with the checkpoints, so that when either side
/// learns a kind both feeds are read again for it.
pub fn kinds_fingerprint(ours: &KindSet, theirs: &KindSet) -> String {
    let join = |k: &KindSet| k.iter().map(String::as_str).collect::<Vec<_>>().join(",");
    format!("{}|{}", join(ours), join(theirs))
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("a peer named `{0}` exists already")]
    Exists(String),
    #[error("no peer named `{0}`")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for PeerError {
    fn from(e: rusqlite::Error) -> Self {
        PeerError::Store(StoreError::from(e))
    }
}

const COLUMNS: &str = "name, url, token, remote_actor, remote_name, kinds, pull_since, push_acked,
    remote_latest, snapshot_at, snapshot_after, last_success, last_error, last_error_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Peer> {
    let remote: Option<Vec<u8>> = r.get(3)?;
    let after: Option<String> = r.get(10)?;
    Ok(Peer {
        name: r.get(0)?,
        url: r.get(1)?,
        token: r.get(2)?,
        remote: remote.as_deref().and_then(Sender::from_bytes),
        remote_name: r.get(4)?,
        kinds: r.get(5)?,
        pull_since: r.get(6)?,
        push_acked: r.get(7)?,
        remote_latest: r.get(8)?,
        snapshot_at: r.get(9)?,
        snapshot_after: after.and_then(|a| a.parse().ok()),
        last_success: r.get(11)?,
        last_error: r.get(12)?,
        last_error_at: r.get(13)?,
    })
}

pub fn add(
    conn: &Connection,
    name: &str,
    url: &str,
    token: &str,
    now_ms: i64,
) -> Result<(), PeerError> {
    let inserted = conn.execute(
        "INSERT INTO peers (name, url, token, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO NOTHING",
        params![name, url, token, now_ms],
    )?;
    if inserted == 0 {
        return Err(PeerError::Exists(name.to_owned()));
    }
    Ok(())
}

pub fn remove(conn: &Connection, name: &str) -> Result<(), PeerError> {
    if conn.execute("DELETE FROM peers WHERE name = ?1", params![name])? == 0 {
        return Err(PeerError::NotFound(name.to_owned()));
    }
    Ok(())
}

pub fn list(conn: &Connection) -> Result<Vec<Peer>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM peers ORDER BY name"))?;
    let peers = stmt.query_map([], from_row)?.collect::<Result<_, _>>()?;
    Ok(peers)
}

pub fn get(conn: &Connection, name: &str) -> Result<Option<Peer>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM peers WHERE name = ?1"))?
        .query_row(params![name], from_row)
        .optional()?)
}

/// The peer is another node, or the same node restored from a backup, or
/// one side learned new kinds: both feeds are read again from the start.
pub fn reset(
    conn: &Connection,
    name: &str,
    remote: Sender,
    remote_name: Option<&str>,
    kinds: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE peers SET remote_actor = ?2, remote_name = ?3, kinds = ?4,
         push_acked = 0, remote_latest = 0, pull_since = -1, snapshot_at = NULL, snapshot_after = NULL
         WHERE name = ?1",
        params![name, remote.to_bytes().as_slice(), remote_name, kinds],
    )?;
    Ok(())
}

// Every checkpoint update names the peer identity (`remote`) the exchange
// was with: an exchange that raced with a reset (the peer was restored)
// must not move the fresh checkpoints.

/// A feed page from the peer was applied up to `through`.
pub fn advance_pull(
    conn: &Connection,
    name: &str,
    remote: Sender,
    through: i64,
    latest: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE peers SET pull_since = MAX(pull_since, ?2), remote_latest = ?3
         WHERE name = ?1 AND remote_actor = ?4 AND pull_since >= 0",
    )?
    .execute(params![name, through, latest, remote.to_bytes().as_slice()])?;
    Ok(())
}

/// A snapshot page was applied: remember where the copy stands. `after`
/// `None` means the copy is complete and the feed is followed from `at`.
pub fn advance_snapshot(
    conn: &Connection,
    name: &str,
    remote: Sender,
    at: i64,
    after: Option<DocId>,
) -> Result<(), StoreError> {
    let remote = remote.to_bytes();
    match after {
        Some(after) => conn.execute(
            "UPDATE peers SET snapshot_at = ?2, snapshot_after = ?3, remote_latest = MAX(remote_latest, ?2)
             WHERE name = ?1 AND remote_actor = ?4 AND pull_since < 0",
            params![name, at, after.to_string(), remote.as_slice()],
        )?,
        None => conn.execute(
            "UPDATE peers SET snapshot_at = NULL, snapshot_after = NULL, pull_since = ?2,
             remote_latest = MAX(remote_latest, ?2) WHERE name = ?1 AND remote_actor = ?3 AND pull_since < 0",
            params![name, at, remote.as_slice()],
        )?,
    };
    Ok(())
}

/// The peer took our changes up to `through`.
pub fn advance_push(
    conn: &Connection,
    name: &str,
    remote: Sender,
    through: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE peers SET push_acked = MAX(push_acked, ?2) WHERE name = ?1 AND remote_actor = ?3",
    )?
    .execute(params![name, through, remote.to_bytes().as_slice()])?;
    Ok(())
}

pub fn record_outcome(
    conn: &Connection,
    name: &str,
    now_ms: i64,
    error: Option<&str>,
) -> Result<(), StoreError> {
    match error {
        None => conn.execute(
            "UPDATE peers SET last_success = ?2, last_error = NULL WHERE name = ?1",
            params![name, now_ms],
        )?,
        Some(message) => conn.execute(
            "UPDATE peers SET last_error = ?2, last_error_at = ?3 WHERE name = ?1",
            params![name, message, now_ms],
        )?,
    };
    Ok(())
}
