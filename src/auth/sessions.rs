//! The node-local `sessions` table (migration 0002): one row per login,
//! keyed by the SHA-256 digest of its token. Never replicated: a session
//! is a login at this node. These functions run on the writer (writes) or a
//! read connection (lookups).

use rusqlite::{params, Connection, OptionalExtension};

/// What a session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A user's login through the API.
    Login,
    /// The running node's own session for its command-line tools
    /// (`DATA/serve.token`); dropped at every start and clean stop.
    Node,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Login => "login",
            Purpose::Node => "node",
        }
    }
}

pub fn insert(
    conn: &Connection,
    digest: &[u8],
    user_id: &str,
    purpose: Purpose,
    now_ms: i64,
    expires_at_ms: i64,
) -> rusqlite::Result<()> {
    // Expired sessions are swept whenever one is opened: the table stays
    // as small as the set of live logins.
    conn.execute(
        "DELETE FROM sessions WHERE expires_at <= ?1",
        params![now_ms],
    )?;
    conn.execute(
        "INSERT INTO sessions (digest, user_id, purpose, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![digest, user_id, purpose.as_str(), now_ms, expires_at_ms],
    )?;
    Ok(())
}

/// The user id and expiry (ms) of the unexpired session with this digest.
pub fn user_of(
    conn: &Connection,
    digest: &[u8],
    now_ms: i64,
) -> rusqlite::Result<Option<(String, i64)>> {
    conn.prepare_cached(
        "SELECT user_id, expires_at FROM sessions WHERE digest = ?1 AND expires_at > ?2",
    )?
    .query_row(params![digest, now_ms], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()
}

pub fn delete(conn: &Connection, digest: &[u8]) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM sessions WHERE digest = ?1", params![digest])
        .map(drop)
}

pub fn delete_purpose(conn: &Connection, purpose: Purpose) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM sessions WHERE purpose = ?1",
        params![purpose.as_str()],
    )
    .map(drop)
}
