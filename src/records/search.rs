//! Full-text search over every kind's searchable fields.

use rusqlite::{params, Connection};
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
/// Index pages merged per record indexed. FTS5's own merging is off (the
/// node's migration 3): it merged in bursts inside one commit. About two
/// pages a record kept up with a minute of creates at 1,000,000 clients
/// (no crisis merge); four leave room for records with more text
/// (BENCHMARKS.md, tenth round).
const MERGE_PAGES_PER_RECORD: usize = 4;

/// Merges up to a few pages of the full-text index's segments for `added`
/// records just indexed, from any level that holds 16 segments, so that
/// merging keeps pace with indexing in shares of every transaction that
/// indexes.
pub fn merge_step(conn: &Connection, added: usize) -> rusqlite::Result<()> {
    if added == 0 {
        return Ok(());
    }
    let pages = i64::try_from(added.saturating_mul(MERGE_PAGES_PER_RECORD)).unwrap_or(i64::MAX);
    merge(conn, pages)
}

/// FTS5's `merge` command: writes about `pages` pages of merged segments.
/// A positive count continues a merge in progress first, else merges a
/// level of 16 segments (`usermerge`); a negative one puts every segment
/// on one level and starts merging them into one (`search_upkeep`).
pub fn merge(conn: &Connection, pages: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO search_index(search_index, rank) VALUES ('merge', ?1)")?
        .execute(params![pages])?;
    Ok(())
}

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
    // One statement, so that FTS5 gathers the matches once: the newest
    // RANKED_MATCHES of them with their scores; the score of the limit-th
    // best; then the matches scoring that well or better (those tied with
    // it included) ordered by score and id. The id breaks ties so that
    // converged nodes answer the same page, and is read for those only:
    // reading it for every ranked match was a third of a search at a
    // million records (BENCHMARKS.md, fifteenth round).
    let mut stmt = conn.prepare_cached(
        "WITH ranked AS MATERIALIZED (
             SELECT rowid AS rid, bm25(search_index, 10.0, 1.0) AS score FROM search_index
              WHERE search_index MATCH ?1 AND (?2 IS NULL OR kind = ?2)
              ORDER BY rowid DESC LIMIT ?4),
         cut AS (SELECT score FROM ranked ORDER BY score LIMIT 1 OFFSET ?3 - 1)
         SELECT hit.kind, hit.doc_id, hit.title
           FROM ranked JOIN search_index AS hit ON hit.rowid = ranked.rid
          WHERE ranked.score <= coalesce((SELECT score FROM cut), ranked.score)
          ORDER BY ranked.score, hit.doc_id LIMIT ?3",
    )?;
    let hits = stmt
        .query_map(params![expr, kind, limit as i64, RANKED_MATCHES], |r| {
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
    use super::fixtures::{indexed_database, insert_client, segments};
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

    /// The ranking as two plain steps: every match (of `kind`) among the
    /// newest RANKED_MATCHES scored, then sorted by score and id.
    fn ranked_by_hand(conn: &Connection, q: &str, kind: Option<&str>, limit: usize) -> Vec<String> {
        let expr = match_expression(q).expect("a query");
        let mut scored: Vec<(f64, String)> = conn
            .prepare(
                "SELECT bm25(search_index, 10.0, 1.0), doc_id FROM search_index
                  WHERE search_index MATCH ?1 AND (?3 IS NULL OR kind = ?3)
                  ORDER BY rowid DESC LIMIT ?2",
            )
            .expect("prepared")
            .query_map(params![expr, RANKED_MATCHES, kind], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("queried")
            .collect::<Result<_, _>>()
            .expect("read");
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        scored.into_iter().take(limit).map(|(_, id)| id).collect()
    }

    /// Ties (equal titles and bodies score the same) are broken by id
    /// whatever order the records were stored in, and only the newest
    /// RANKED_MATCHES matches (of the kind asked for) are ranked.
    #[test]
    fn search_ranks_the_newest_matches_by_score_then_id() {
        let conn = indexed_database();
        // Every fifth record a contact: more clients match than are ranked,
        // fewer contacts.
        let matches = RANKED_MATCHES + 600;
        conn.execute_batch("BEGIN").expect("begin");
        for rowid in 1..=matches {
            // Ids in an order unrelated to the rowids; a third of the
            // records name the word in the title, the rest in the body
            // only, with bodies of three lengths.
            let id = format!("id{:05}", (rowid * 7_919) % 100_003);
            let (title, body) = match rowid % 3 {
                0 => ("Ромашка".to_owned(), "склад".to_owned()),
                1 => ("Вектор".to_owned(), "ромашка".to_owned()),
                _ => (
                    "Вектор".to_owned(),
                    "ромашка склад опт".repeat((rowid % 4) as usize + 1),
                ),
            };
            let kind = if rowid % 5 == 0 {
                "contacts"
            } else {
                "clients"
            };
            conn.execute(
                "INSERT INTO search_index (rowid, title, body, kind, doc_id) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![rowid, title, body, kind, id],
            )
            .expect("indexed");
        }
        conn.execute_batch("COMMIT").expect("commit");
        for kind in [None, Some("clients"), Some("contacts")] {
            for (q, limit) in [
                ("ромаш", 20),
                ("ромаш", 1),
                ("ромашка склад", 100),
                ("Вектор", 7),
            ] {
                let found: Vec<String> = search(&conn, q, kind, limit)
                    .expect("searched")
                    .into_iter()
                    .map(|hit| hit.id)
                    .collect();
                let by_hand = ranked_by_hand(&conn, q, kind, limit);
                assert_eq!(found, by_hand, "{q} {kind:?} limit {limit}");
                assert_eq!(found.len(), limit, "{q} {kind:?}");
            }
        }
        assert!(search(&conn, "нетакого", None, 20)
            .expect("searched")
            .is_empty());
        assert!(search(&conn, "ромаш", Some("deals"), 20)
            .expect("searched")
            .is_empty());
    }

    /// Indexes one record with `words` distinct words in a transaction of
    /// its own, as a small group commit does, with or without the merge
    /// step.
    fn index_one(conn: &Connection, rowid: i64, words: usize, merge: bool) {
        let body: Vec<String> = (0..words).map(|w| format!("w{rowid}x{w}")).collect();
        conn.execute_batch("BEGIN").expect("begin");
        insert_client(conn, rowid, &body.join(" "));
        if merge {
            merge_step(conn, 1).expect("merge step");
        }
        conn.execute_batch("COMMIT").expect("commit");
    }

    /// FTS5 merges nothing inside a commit by itself (it did so in bursts),
    /// and the merge step after each group keeps the levels at 16 segments.
    #[test]
    fn segments_are_merged_in_small_shares_by_the_merge_step() {
        // Each of these segments has several leaf pages: FTS5's own merging
        // would have run after the first 64 leaves.
        let unmerged = indexed_database();
        for rowid in 1..=40 {
            index_one(&unmerged, rowid, 600, false);
        }
        assert_eq!(segments(&unmerged), 40, "FTS5 merged by itself");

        let merged = indexed_database();
        let mut most = 0;
        for rowid in 1..=200 {
            index_one(&merged, rowid, 3, true);
            most = most.max(segments(&merged));
        }
        assert!(most <= 32, "{most} segments with the merge step");
        let found: i64 = merged
            .query_row(
                "SELECT count(*) FROM search_index WHERE search_index MATCH '\"Ромашка\"*'",
                [],
                |row| row.get(0),
            )
            .expect("searched");
        assert_eq!(found, 200);
    }
}

/// Databases with the search index, for the tests of this module and of
/// `search_upkeep`.
#[cfg(test)]
pub(crate) mod fixtures {
    use rusqlite::{params, Connection};

    pub fn indexed_database() -> Connection {
        let conn = Connection::open_in_memory().expect("in-memory database");
        for migration in crm_schema::MIGRATIONS {
            conn.execute_batch(migration.sql)
                .unwrap_or_else(|e| panic!("migration {}: {e}", migration.name));
        }
        conn
    }

    /// Adds the search row of client `rowid`, titled "ООО Ромашка <rowid>".
    pub fn insert_client(conn: &Connection, rowid: i64, body: &str) {
        conn.execute(
            "INSERT INTO search_index (rowid, title, body, kind, doc_id) VALUES (?1, ?2, ?3, 'clients', ?4)",
            params![rowid, format!("ООО Ромашка {rowid}"), body, format!("c{rowid}")],
        )
        .expect("indexed");
    }

    /// Segments of the index, as FTS5 indexes them.
    pub fn segments(conn: &Connection) -> i64 {
        conn.query_row(
            "SELECT count(DISTINCT segid) FROM search_index_idx",
            [],
            |row| row.get(0),
        )
        .expect("segments counted")
    }
}
