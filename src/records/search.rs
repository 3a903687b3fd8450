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
/// Index pages merged per record indexed. FTS5's own merging is off (the
/// node's migration 3): it merged in bursts inside one commit. About two
/// pages a record kept up with a minute of creates at 1,000,000 clients
/// (no crisis merge); four leave room for records with more text
/// (BENCHMARKS.md, tenth round).
const MERGE_PAGES_PER_RECORD: usize = 4;

/// When the node optimizes the full-text index (merges it into one
/// segment) after bulk writes: see migration 4 for why.
struct OptimizePolicy {
    /// A transaction that indexes at least this many records is a bulk
    /// write.
    bulk_records: usize,
    /// Smaller indexes are left to the merge step: what a bulk write
    /// leaves there is rewritten in well under a second.
    from_records: i64,
    /// The share of the index (numerator, denominator) that bulk writes
    /// must have indexed since the last optimize. Each optimize rewrites
    /// the whole index, so this bounds its cost per record bulk-written:
    /// with ½, the index has grown by half since the last one.
    share: (i64, i64),
}

const OPTIMIZE_POLICY: OptimizePolicy = OptimizePolicy {
    // Imports. A first sync's pages stay below on purpose: an optimize of
    // a million records there took long enough, on a machine busy loading
    // the next pages, to push an on-demand sync round past its time limit
    // (BENCHMARKS.md, thirteenth round).
    bulk_records: 5000,
    from_records: 200_000,
    share: (1, 2),
};

const _: () = assert!(OPTIMIZE_POLICY.bulk_records > crm_sync::replicate::PAGE);

/// The full-text index's upkeep after a transaction indexed `added`
/// records: an optimize when bulk writes have made it due, the merge step
/// otherwise.
pub fn upkeep(conn: &Connection, added: usize) -> rusqlite::Result<()> {
    upkeep_with(conn, added, &OPTIMIZE_POLICY)
}

fn upkeep_with(conn: &Connection, added: usize, policy: &OptimizePolicy) -> rusqlite::Result<()> {
    if added >= policy.bulk_records {
        if let Some(records) = optimize_due(conn, added, policy)? {
            let began = std::time::Instant::now();
            conn.prepare_cached("INSERT INTO search_index(search_index) VALUES ('optimize')")?
                .execute([])?;
            tracing::info!(
                records,
                took_ms = began.elapsed().as_millis() as u64,
                "full-text index optimized after bulk writes"
            );
            return Ok(());
        }
    }
    merge_step(conn, added)
}

/// Counts the `added` records of a bulk write; when the index is due for
/// an optimize, records it as done and answers how many records it holds.
fn optimize_due(
    conn: &Connection,
    added: usize,
    policy: &OptimizePolicy,
) -> rusqlite::Result<Option<i64>> {
    let added = i64::try_from(added).unwrap_or(i64::MAX);
    let counted: Option<(i64, i64)> = conn
        .prepare_cached(
            "UPDATE search_upkeep SET bulk_records = bulk_records + ?1 WHERE id = 1
             RETURNING optimized_records, bulk_records",
        )?
        .query_row(params![added], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let Some((optimized, bulk)) = counted else {
        return Ok(None);
    };
    let (num, den) = policy.share;
    if bulk.saturating_mul(den) < optimized.saturating_mul(num) {
        return Ok(None);
    }
    let records: i64 = conn
        .prepare_cached("SELECT count(*) FROM search_index_docsize")?
        .query_row([], |row| row.get(0))?;
    if records < policy.from_records {
        return Ok(None);
    }
    conn.prepare_cached(
        "UPDATE search_upkeep SET optimized_records = ?1, bulk_records = 0 WHERE id = 1",
    )?
    .execute(params![records])?;
    Ok(Some(records))
}

/// Merges up to a few pages of the full-text index's segments for `added`
/// records just indexed, from any level that holds 16 segments, so that
/// merging keeps pace with indexing in shares of every transaction that
/// indexes.
pub fn merge_step(conn: &Connection, added: usize) -> rusqlite::Result<()> {
    if added == 0 {
        return Ok(());
    }
    let pages = i64::try_from(added.saturating_mul(MERGE_PAGES_PER_RECORD)).unwrap_or(i64::MAX);
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

    fn indexed_database() -> Connection {
        let conn = Connection::open_in_memory().expect("in-memory database");
        for migration in crm_schema::MIGRATIONS {
            conn.execute_batch(migration.sql)
                .unwrap_or_else(|e| panic!("migration {}: {e}", migration.name));
        }
        conn
    }

    /// Adds the search row of client `rowid`, titled "ООО Ромашка <rowid>".
    fn insert_client(conn: &Connection, rowid: i64, body: &str) {
        conn.execute(
            "INSERT INTO search_index (rowid, title, body, kind, doc_id) VALUES (?1, ?2, ?3, 'clients', ?4)",
            params![rowid, format!("ООО Ромашка {rowid}"), body, format!("c{rowid}")],
        )
        .expect("indexed");
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

    /// Indexes the records `rows` in one transaction, with the upkeep.
    fn index_group(
        conn: &Connection,
        rows: std::ops::RangeInclusive<i64>,
        policy: &OptimizePolicy,
    ) {
        conn.execute_batch("BEGIN").expect("begin");
        let added = rows.clone().count();
        for rowid in rows {
            insert_client(conn, rowid, "w");
        }
        upkeep_with(conn, added, policy).expect("upkeep");
        conn.execute_batch("COMMIT").expect("commit");
    }

    fn upkeep_counts(conn: &Connection) -> (i64, i64) {
        conn.query_row(
            "SELECT optimized_records, bulk_records FROM search_upkeep",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("the upkeep row")
    }

    /// Small transactions only merge; bulk ones are counted, and the index
    /// becomes one segment when they reach the share, once it is large
    /// enough.
    #[test]
    fn bulk_writes_optimize_the_index_once_they_reach_its_share() {
        let conn = indexed_database();
        let policy = OptimizePolicy {
            bulk_records: 10,
            from_records: 40,
            share: (1, 2),
        };
        for rowid in 1..=20 {
            index_group(&conn, rowid..=rowid, &policy);
        }
        assert_eq!(upkeep_counts(&conn), (0, 0), "small writes are not counted");
        assert!(segments(&conn) > 1);

        // Due (10 >= 0), but 30 records are below the policy's 40.
        index_group(&conn, 21..=30, &policy);
        assert_eq!(upkeep_counts(&conn), (0, 10));
        assert!(segments(&conn) > 1);

        index_group(&conn, 31..=40, &policy);
        assert_eq!(upkeep_counts(&conn), (40, 0));
        assert_eq!(segments(&conn), 1, "optimized");

        // 10 is below half of 40; 20 is not.
        index_group(&conn, 41..=50, &policy);
        assert_eq!(upkeep_counts(&conn), (40, 10));
        assert!(segments(&conn) > 1);
        index_group(&conn, 51..=60, &policy);
        assert_eq!(upkeep_counts(&conn), (60, 0));
        assert_eq!(segments(&conn), 1);

        let found = search(&conn, "Ромашка", None, MAX_LIMIT).expect("searched");
        assert_eq!(found.len(), 60);
    }

    fn segments(conn: &Connection) -> i64 {
        conn.query_row(
            "SELECT count(DISTINCT segid) FROM search_index_idx",
            [],
            |row| row.get(0),
        )
        .expect("segments counted")
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
