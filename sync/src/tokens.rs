//! Access tokens: the secrets peers present to reach this node's `/sync/v1`.
//! A secret is 256 random bits shown once; only its SHA-256 digest is
//! stored, which is safe for high-entropy secrets and cheap to check on
//! every request.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::StoreError;

const PREFIX: &str = "crmt_";

#[derive(Debug, Clone, Serialize)]
pub struct TokenInfo {
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    /// What the peer may see and change, as the node wrote it; `None`:
    /// everything.
    pub scope: Option<String>,
}

/// An active token a request presented.
#[derive(Debug, Clone)]
pub struct Grant {
    pub name: String,
    pub scope: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("an active token named `{0}` exists already; revoke it first")]
    Exists(String),
    #[error("no active token named `{0}`")]
    NotFound(String),
    #[error("no secure random source: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for TokenError {
    fn from(e: rusqlite::Error) -> Self {
        TokenError::Store(StoreError::from(e))
    }
}

/// The SHA-256 digest of a secret, as stored in place of it.
pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A new secret: `prefix` then 256 random bits in hex. Other secrets of
/// the node (login sessions) are made the same way.
pub fn new_secret(prefix: &str) -> Result<String, TokenError> {
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(format!("{prefix}{}", hex::encode(random)))
}

/// Issues a token named `name` limited to `scope` (opaque here) and returns
/// its secret (shown once). A revoked token's name may be reused.
pub fn create(
    conn: &Connection,
    name: &str,
    scope: Option<&str>,
    now_ms: i64,
) -> Result<String, TokenError> {
    let secret = new_secret(PREFIX)?;
    let stored = conn.execute(
        "INSERT INTO access_tokens (name, digest, created_at, scope) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET digest = excluded.digest,
             created_at = excluded.created_at, revoked_at = NULL, scope = excluded.scope
         WHERE access_tokens.revoked_at IS NOT NULL",
        params![name, digest(&secret), now_ms, scope],
    )?;
    if stored == 0 {
        return Err(TokenError::Exists(name.to_owned()));
    }
    Ok(secret)
}

pub fn list(conn: &Connection) -> Result<Vec<TokenInfo>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, created_at, revoked_at, scope FROM access_tokens ORDER BY name",
    )?;
    let tokens = stmt
        .query_map([], |r| {
            Ok(TokenInfo {
                name: r.get(0)?,
                created_at: r.get(1)?,
                revoked_at: r.get(2)?,
                scope: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(tokens)
}

/// Revokes at once: the next request with the secret is refused.
pub fn revoke(conn: &Connection, name: &str, now_ms: i64) -> Result<(), TokenError> {
    let changed = conn.execute(
        "UPDATE access_tokens SET revoked_at = ?2 WHERE name = ?1 AND revoked_at IS NULL",
        params![name, now_ms],
    )?;
    if changed == 0 {
        return Err(TokenError::NotFound(name.to_owned()));
    }
    Ok(())
}

/// The active token whose secret this is.
pub fn verify(conn: &Connection, secret: &str) -> Result<Option<Grant>, StoreError> {
    if !secret.starts_with(PREFIX) {
        return Ok(None);
    }
    Ok(conn
        .prepare_cached(
            "SELECT name, scope FROM access_tokens WHERE digest = ?1 AND revoked_at IS NULL",
        )?
        .query_row(params![digest(secret)], |r| {
            Ok(Grant {
                name: r.get(0)?,
                scope: r.get(1)?,
            })
        })
        .optional()?)
}
