//! The records of every kind whose fields hold conflicting values, most
//! recently changed first, in keyset pages. Each kind's table finds its
//! few conflicted records by a partial index (see `projection`); a page
//! reads at most a page from each kind and merges them.

use crm_schema::Schema;
use rusqlite::params;
use serde_json::Value as Json;

use super::authors::Authors;
use super::{parse_stored, projection, RecordError, USERS};

/// One conflicted record and its kind.
#[derive(Debug, Clone)]
pub struct ConflictedRecord {
    pub collection: String,
    /// The record as served, its conflicts' authors named.
    pub record: Json,
}

#[derive(Debug, Clone)]
pub struct ConflictedPage {
    pub items: Vec<ConflictedRecord>,
    /// Pass back for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// Where a page ended: the order is `updated_at` descending, then kind
/// and local row descending (ties are rare, but must not repeat or skip).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    updated_at: i64,
    kind: String,
    rid: i64,
}

impl Position {
    fn encode(&self) -> String {
        format!("{}.{}.{}", self.updated_at, self.kind, self.rid)
    }

    fn decode(text: &str, schema: &Schema) -> Result<Position, RecordError> {
        let bad = || RecordError::BadQuery("the cursor is not one this node made".to_owned());
        let mut parts = text.split('.');
        let (Some(updated_at), Some(kind), Some(rid), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        if schema.kind(kind).is_none() {
            return Err(bad());
        }
        Ok(Position {
            updated_at: updated_at.parse().map_err(|_| bad())?,
            kind: kind.to_owned(),
            rid: rid.parse().map_err(|_| bad())?,
        })
    }
}

/// A page of `limit` conflicted records after `cursor`.
pub fn page(
    conn: &rusqlite::Connection,
    schema: &Schema,
    cursor: Option<&str>,
    limit: usize,
) -> Result<ConflictedPage, RecordError> {
    let after = cursor.map(|c| Position::decode(c, schema)).transpose()?;
    let mut found: Vec<(Position, String)> = Vec::new();
    for kind in schema.kinds() {
        let table = projection::table(kind);
        // Which rows of this kind come after the cursor, given that the
        // kind itself is constant here.
        let (condition, updated_at, rid) = match &after {
            None => ("", i64::MAX, i64::MAX),
            Some(at) if kind.collection > at.kind => {
                ("AND updated_at < ?1", at.updated_at, i64::MAX)
            }
            Some(at) if kind.collection == at.kind => (
                "AND (updated_at < ?1 OR (updated_at = ?1 AND rid < ?2))",
                at.updated_at,
                at.rid,
            ),
            Some(at) => ("AND updated_at <= ?1", at.updated_at, i64::MAX),
        };
        let sql = format!(
            "SELECT rid, updated_at, record FROM {table} \
             WHERE conflicted = 1 AND deleted = 0 {condition} \
             ORDER BY updated_at DESC, rid DESC LIMIT ?3"
        );
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(params![updated_at, rid, limit as i64 + 1], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (rid, updated_at, record) = row?;
            let position = Position {
                updated_at,
                kind: kind.collection.clone(),
                rid,
            };
            found.push((position, record));
        }
    }
    found.sort_by(|(a, _), (b, _)| {
        (b.updated_at, &b.kind, b.rid).cmp(&(a.updated_at, &a.kind, a.rid))
    });
    let more = found.len() > limit;
    found.truncate(limit);
    let next_cursor = more
        .then(|| found.last().map(|(position, _)| position.encode()))
        .flatten();
    let mut authors = Authors::new(conn, schema.kind(USERS));
    let mut items = Vec::with_capacity(found.len());
    for (position, text) in found {
        let mut record = parse_stored(&text)?;
        authors.name_conflicts(&mut record)?;
        items.push(ConflictedRecord {
            collection: position.kind,
            record,
        });
    }
    Ok(ConflictedPage { items, next_cursor })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        let schema = Schema::builtin().expect("the built-in schema loads");
        let at = Position {
            updated_at: 1_767_225_600_000,
            kind: "contacts".into(),
            rid: 42,
        };
        assert_eq!(Position::decode(&at.encode(), &schema).ok(), Some(at));
        for bad in ["", "1.clients", "1.nope.2", "x.clients.2", "1.clients.2.3"] {
            assert!(Position::decode(bad, &schema).is_err(), "{bad}");
        }
    }
}
