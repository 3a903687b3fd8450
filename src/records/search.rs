//! Full-text search over every kind's searchable fields.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::RecordError;

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;
/// Words of a query beyond this are ignored.
const MAX_TERMS: usize = 16;
/// Matches ranked at most: when a query matches more records, the ones
/// stored here most recently are ranked. Ranking reads every match it
/// ranks, so this bounds a query's cost on a million records; a query that
/// broad is refined by the user anyway.
const RANKED_MATCHES: i64 = 2000;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchHit {
    /// The collection the record belongs to.
    pub kind: String,
    pub id: String,
    /// The record's title (e.g. a client's name).
    pub title: String,
}

/// Turns what a user typed into an FTS5 query: every word must match, as a
/// prefix. Words are quoted, so FTS5 operators in the input mean nothing.
pub fn match_expression(q: &str) -> Option<String> {
    let terms: Vec<String> = q
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(MAX_TERMS)
        .map(|w| format!("\"{w}\"*"))
        .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

pub fn search(
    conn: &Connection,
    q: &str,
    kind: Option<&str>,
    limit: usize,
) -> Result<Vec<SearchHit>, RecordError> {
    let expr = match_expression(q).ok_or_else(|| {
        RecordError::BadQuery("q must contain at least one letter or digit".into())
    })?;
    // Walking matches newest first stops after RANKED_MATCHES of them.
    let floor: i64 = conn
        .prepare_cached(
            "SELECT rowid FROM search_index
             WHERE search_index MATCH ?1 AND (?2 IS NULL OR kind = ?2)
             ORDER BY rowid DESC LIMIT 1 OFFSET ?3",
        )?
        .query_row(params![expr, kind, RANKED_MATCHES - 1], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let mut stmt = conn.prepare_cached(
        "SELECT kind, doc_id, title FROM search_index
         WHERE search_index MATCH ?1 AND (?2 IS NULL OR kind = ?2) AND rowid >= ?4
         ORDER BY bm25(search_index, 10.0, 1.0), doc_id LIMIT ?3",
    )?;
    let hits = stmt
        .query_map(params![expr, kind, limit as i64, floor], |r| {
            Ok(SearchHit {
                kind: r.get(0)?,
                id: r.get(1)?,
                title: r.get(2)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_becomes_quoted_prefix_terms() {
        assert_eq!(
            match_expression("ООО Ромаш").as_deref(),
            Some("\"ООО\"* \"Ромаш\"*")
        );
        assert_eq!(
            match_expression("a OR b\" NEAR(").as_deref(),
            Some("\"a\"* \"OR\"* \"b\"* \"NEAR\"*")
        );
        assert_eq!(match_expression(" -- "), None);
    }
}
