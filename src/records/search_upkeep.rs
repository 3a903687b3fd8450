//! The full-text index's upkeep after bulk writes (an import, a first sync,
//! a peer's backlog, a projection rebuild): an `optimize` (one segment)
//! when the index's layout calls for it.
//!
//! Why: a bulk write leaves large segments on low levels of the index.
//! Ordinary writes then fill those levels with small segments, and the
//! merge that follows rewrites the bulk data, carried by the merge steps of
//! the next writes: at 1,000,000 clients 74,000 pages, some 20,000 creates
//! after an import, at three times a create's cost (BENCHMARKS.md,
//! thirteenth round). An optimize right after the bulk write costs about
//! the same once, in steps between which other writes go on.
//!
//! The decision reads the index's layout (FTS5's structure record) instead
//! of counting what bulk writes added, so that every kind of bulk write,
//! local or received, is judged the same way, however it was split into
//! transactions or requests.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crm_sync::{Store, StoreError};

use super::search::merge;
use rusqlite::{Connection, OptionalExtension};

/// The rowid of FTS5's structure record in `search_index_data`.
const STRUCTURE_ROWID: i64 = 10;
/// Follows the 4-byte cookie in a structure record of FTS5's second
/// format, whose segments carry five more varints.
const STRUCTURE_V2: [u8; 4] = [0xff, 0x00, 0x00, 0x01];

/// One segment (b-tree) of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub level: usize,
    pub pages: u64,
}

/// The segments of the full-text index, as FTS5's structure record lists
/// them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexShape {
    pub segments: Vec<Segment>,
    /// A merge is in progress on some level.
    pub merging: bool,
}

impl IndexShape {
    /// The index's layout now, or `None` when it has no structure record
    /// yet or one this version cannot decode (then nothing is optimized).
    pub fn read(conn: &Connection) -> rusqlite::Result<Option<IndexShape>> {
        let record: Option<Vec<u8>> = conn
            .prepare_cached("SELECT block FROM search_index_data WHERE id = ?1")?
            .query_row([STRUCTURE_ROWID], |row| row.get(0))
            .optional()?;
        let Some(record) = record else {
            return Ok(None);
        };
        let shape = IndexShape::decode(&record);
        if shape.is_none() {
            tracing::warn!(
                bytes = record.len(),
                "the full-text index's structure record does not decode; no optimize"
            );
        }
        Ok(shape)
    }

    /// Decodes a structure record: a cookie, then varints for the levels,
    /// the segments and a write counter, then per level its merge state and
    /// segments (id, first page, last page, and in the second format five
    /// more).
    fn decode(record: &[u8]) -> Option<IndexShape> {
        let mut at = 4;
        let v2 = record.get(4..8) == Some(&STRUCTURE_V2[..]);
        if v2 {
            at = 8;
        }
        let mut next = || -> Option<u64> {
            let (value, len) = sqlite_varint(record.get(at..)?)?;
            at += len;
            Some(value)
        };
        let levels = next()?;
        let total_segments = next()?;
        let _write_counter = next()?;
        let mut segments = Vec::new();
        let mut merging = false;
        for level in 0..usize::try_from(levels).ok()? {
            merging |= next()? > 0;
            let count = next()?;
            for _ in 0..count {
                let _id = next()?;
                let first = next()?;
                let last = next()?;
                if v2 {
                    for _ in 0..5 {
                        next()?;
                    }
                }
                let pages = last.checked_sub(first)?.checked_add(1)?;
                segments.push(Segment { level, pages });
            }
        }
        (segments.len() as u64 == total_segments).then_some(IndexShape { segments, merging })
    }

    pub fn pages(&self) -> u64 {
        self.segments.iter().map(|s| s.pages).sum()
    }

    pub fn largest(&self) -> u64 {
        self.segments.iter().map(|s| s.pages).max().unwrap_or(0)
    }
}

/// SQLite's varint: big-endian groups of 7 bits, the high bit set on every
/// byte but the last; a ninth byte carries 8 bits. Returns the value and
/// its length.
fn sqlite_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().enumerate().take(9) {
        if i == 8 {
            return Some(((value << 8) | u64::from(byte), 9));
        }
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// When an index is due for an optimize after a bulk write.
struct OptimizePolicy {
    /// Smaller indexes are left to the merge step: what a bulk write
    /// leaves there is rewritten in well under a second.
    from_pages: u64,
    /// The share (numerator, denominator) of the largest segment that the
    /// pages outside it must reach. Each optimize rewrites the whole index,
    /// so this bounds its cost per record bulk-written: with ½, the index
    /// has grown by half since it was last one segment.
    rest_share: (u64, u64),
    /// How many pages each optimize step writes (`after_bulk`).
    steps: StepSizing,
}

/// The size of an optimize's steps. Each step holds the writer, and every
/// other write waits for the step in progress, so a step should last about
/// `target`. What a page costs varies too much to fix a count: 100 µs in
/// one run, 600 µs at the end of a 1,000,000-record first sync (a step of
/// 500 pages then held the writer 300 ms, and each one-change sync round
/// waited for one: BENCHMARKS.md, fifteenth round). So each step is sized
/// from how long the last one took.
#[derive(Debug, Clone, Copy)]
struct StepSizing {
    /// Pages of the first step (FTS5 writes at least this many: it ends a
    /// step at the end of a term).
    first: i64,
    least: i64,
    most: i64,
    target: Duration,
}

impl StepSizing {
    /// The pages of the step after one of `pages` pages that took `took`
    /// (waiting for its turn included: a busy writer gets smaller steps).
    /// It moves halfway towards the count that would have taken `target`,
    /// so that one odd step does not swing the next.
    fn next(&self, pages: i64, took: Duration) -> i64 {
        let scaled = pages as f64 * self.target.as_secs_f64() / took.as_secs_f64().max(1e-4);
        (((pages as f64 + scaled) / 2.0) as i64).clamp(self.least, self.most)
    }
}

const OPTIMIZE_POLICY: OptimizePolicy = OptimizePolicy {
    // About 200,000 clients (1,000,000 took 73,600 pages).
    from_pages: 15_000,
    rest_share: (1, 2),
    steps: StepSizing {
        first: 200,
        least: 50,
        most: 2_000,
        target: Duration::from_millis(50),
    },
};

impl OptimizePolicy {
    fn due(&self, shape: &IndexShape) -> bool {
        let (pages, largest) = (shape.pages(), shape.largest());
        let (num, den) = self.rest_share;
        pages >= self.from_pages && (pages - largest).saturating_mul(den) >= largest * num
    }
}

/// The index's layout when it is due for an optimize.
fn due_shape(conn: &Connection, policy: &OptimizePolicy) -> rusqlite::Result<Option<IndexShape>> {
    Ok(IndexShape::read(conn)?.filter(|shape| policy.due(shape)))
}

/// Runs the upkeep after a bulk write, from a caller that must answer by
/// `answer_by` (an on-demand sync round) or not at all (`None`: an import,
/// a background worker). Failures are logged: the bulk write itself is
/// done.
///
/// The optimize runs in steps, one write job each, so that other writes
/// wait for one step at most, never for the whole rewrite: a one-shot
/// optimize of 74,000 pages held the writer 8.5 s in one run and 146 s in
/// another, on a node that had just written gigabytes (BENCHMARKS.md,
/// fourteenth round). A caller that must answer gets its answer by
/// `answer_by`; the steps left go on in the background.
pub async fn after_bulk(store: &Store, answer_by: Option<Instant>) {
    after_bulk_with(store, answer_by, Pace::default(), &OPTIMIZE_POLICY).await;
}

/// [`after_bulk`], its steps paced by `pace` from the start.
async fn after_bulk_with(
    store: &Store,
    answer_by: Option<Instant>,
    pace: Pace,
    policy: &'static OptimizePolicy,
) {
    let started = store
        .write(move |txn| start_optimize(txn.conn(), policy).map_err(StoreError::from))
        .await;
    let shape = match started {
        Ok(Some(shape)) => shape,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "starting the full-text optimize failed");
            return;
        }
    };
    tracing::info!(
        pages = shape.pages(),
        segments = shape.segments.len(),
        "full-text optimize started after bulk writes"
    );
    let steps = tokio::spawn(finish_optimize(
        store.clone(),
        shape.pages(),
        policy.steps,
        pace.clone(),
        "full-text index optimized after bulk writes",
    ));
    match answer_by {
        None => {
            let _ = steps.await;
        }
        Some(by) => {
            if tokio::time::timeout_at(by.into(), steps).await.is_err() {
                pace.go_background();
                tracing::info!(
                    "full-text optimize goes on in the background: the caller must answer"
                );
            }
        }
    }
}

/// Whether an optimize's steps run for a caller that waits for them, one
/// after the other, or in the background, with a pause as long as the last
/// step after each. In the background nobody waits for the optimize, but
/// every other write and sync does wait for what it holds: the writer for
/// a step, the disk (and so each commit's WAL sync) for the hundreds of
/// megabytes it rewrites. Back to back, the optimize at the end of a
/// 1,000,000-record first sync took sync rounds from 5 ms to 116–240 ms
/// while it lasted (BENCHMARKS.md, fifteenth round).
#[derive(Clone, Default)]
struct Pace(Arc<AtomicBool>);

impl Pace {
    fn background() -> Pace {
        let pace = Pace::default();
        pace.go_background();
        pace
    }

    fn go_background(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// The pause after a step that took `took`.
    fn after_step(&self, took: Duration) -> Option<Duration> {
        self.0.load(Ordering::Relaxed).then_some(took)
    }
}

/// Optimizes (or merges left in progress) running in this process: a node
/// has one index, so one count serves it.
static OPTIMIZING: AtomicUsize = AtomicUsize::new(0);

/// Whether the full-text index is being optimized now (`/healthz` says
/// so): until it is done, every write may wait for one of its steps, and a
/// step cannot end inside a term, so some last seconds on a large index.
pub fn optimizing() -> bool {
    OPTIMIZING.load(Ordering::Relaxed) > 0
}

/// Counts an optimize as running while it lives.
struct Running;

impl Running {
    fn start() -> Running {
        OPTIMIZING.fetch_add(1, Ordering::Relaxed);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        OPTIMIZING.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The upkeep at start-up, in the background while the node serves:
/// finishes a merge that a stop interrupted (an optimize's steps, say), so
/// that the next writes' merge steps do not carry it, then optimizes if
/// the layout is due: after such a stop (a finished merge can leave the
/// rest of the index in many segments), or after a projection rebuild,
/// which indexed every record of its kinds again.
pub async fn resume(store: Store) {
    resume_with(&store, &OPTIMIZE_POLICY).await;
}

async fn resume_with(store: &Store, policy: &'static OptimizePolicy) {
    let shape = store
        .read(|conn| IndexShape::read(conn).map_err(StoreError::from))
        .await;
    match shape {
        Ok(Some(shape)) if shape.merging => {
            tracing::info!(
                pages = shape.pages(),
                "finishing a full-text merge left in progress"
            );
            finish_optimize(
                store.clone(),
                shape.pages(),
                policy.steps,
                Pace::background(),
                "full-text merge left in progress finished",
            )
            .await;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "reading the full-text index's layout failed"),
    }
    after_bulk_with(store, None, Pace::background(), policy).await;
}

/// Starts an optimize if the index is due: FTS5's `merge` with a negative
/// page count puts every segment on one level and begins merging them
/// into one. Returns the layout it started from.
fn start_optimize(
    conn: &Connection,
    policy: &OptimizePolicy,
) -> rusqlite::Result<Option<IndexShape>> {
    let Some(shape) = due_shape(conn, policy)? else {
        return Ok(None);
    };
    merge(conn, -policy.steps.first)?;
    Ok(Some(shape))
}

/// Continues the merge an optimize started, a step per write job, until
/// no merge is left in progress (a positive `merge` continues a merge in
/// progress before it starts another).
async fn finish_optimize(
    store: Store,
    pages: u64,
    sizing: StepSizing,
    pace: Pace,
    done: &'static str,
) {
    let _running = Running::start();
    let began = Instant::now();
    let about = pages / sizing.least.unsigned_abs().max(1) + 1;
    // Each step writes at least `least` pages (FTS5 ends it at the end of a
    // term), so this many steps would write the index several times over:
    // a bound only a merge that never ends reaches.
    let most_steps = 4 * about + 100;
    let mut steps = 1;
    let mut step_pages = sizing.first;
    loop {
        let step_began = Instant::now();
        let step = store
            .write(move |txn| {
                merge(txn.conn(), step_pages)?;
                IndexShape::read(txn.conn()).map_err(StoreError::from)
            })
            .await;
        match step {
            Ok(Some(shape)) if shape.merging && steps < most_steps => {
                steps += 1;
                let took = step_began.elapsed();
                step_pages = sizing.next(step_pages, took);
                if let Some(pause) = pace.after_step(took) {
                    tokio::time::sleep(pause).await;
                }
                if steps % 50 == 0 {
                    tracing::info!(steps, step_pages, "full-text optimize: merging");
                }
            }
            Ok(shape) => {
                tracing::info!(
                    pages,
                    steps,
                    segments = shape.map_or(0, |s| s.segments.len()),
                    took_ms = began.elapsed().as_millis() as u64,
                    "{done}"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    steps,
                    "a full-text optimize step failed; later writes' merge steps carry on"
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::search::fixtures::{indexed_database, insert_client, segments};

    /// Indexes `rows` in one transaction of their own, as a bulk write's
    /// pages do, without any merging. Each record has enough distinct words
    /// to fill a few pages of the index.
    fn index_group(conn: &Connection, rows: std::ops::RangeInclusive<i64>) {
        conn.execute_batch("BEGIN").expect("begin");
        insert_records(conn, rows);
        conn.execute_batch("COMMIT").expect("commit");
    }

    fn insert_records(conn: &Connection, rows: std::ops::RangeInclusive<i64>) {
        for rowid in rows {
            let body: Vec<String> = (0..800).map(|w| format!("w{rowid}x{w}")).collect();
            insert_client(conn, rowid, &body.join(" "));
        }
    }

    #[test]
    fn varints_decode_as_sqlite_writes_them() {
        assert_eq!(sqlite_varint(&[0x05]), Some((5, 1)));
        assert_eq!(sqlite_varint(&[0x81, 0x00]), Some((128, 2)));
        assert_eq!(sqlite_varint(&[0x82, 0xbf, 0x7f]), Some((40_959, 3)));
        assert_eq!(sqlite_varint(&[0xff; 9]), Some((u64::MAX, 9)));
        assert_eq!(sqlite_varint(&[0x81]), None, "cut short");
        assert_eq!(sqlite_varint(&[]), None);
    }

    /// The decoded layout agrees with the segments FTS5 indexes, and every
    /// cut of the record fails to decode instead of decoding wrong.
    #[test]
    fn the_structure_record_decodes_to_the_index_segments() {
        let conn = indexed_database();
        let empty = IndexShape::read(&conn).expect("read");
        assert!(
            empty.as_ref().is_none_or(|shape| shape.segments.is_empty()),
            "{empty:?}"
        );
        for group in 0..5 {
            index_group(&conn, group * 10 + 1..=group * 10 + 10);
        }
        let shape = IndexShape::read(&conn).expect("read").expect("decoded");
        assert_eq!(shape.segments.len() as i64, segments(&conn));
        assert_eq!(shape.segments.len(), 5);
        assert!(shape.segments.iter().all(|s| s.level == 0 && s.pages >= 1));
        let leaf_pages: i64 = conn
            .query_row(
                // Leaf pages: rowids of height 0 and no doclist index.
                "SELECT count(*) FROM search_index_data WHERE id >= (1 << 37) AND (id >> 31) & 63 = 0",
                [],
                |row| row.get(0),
            )
            .expect("pages counted");
        assert_eq!(shape.pages() as i64, leaf_pages);

        let record: Vec<u8> = conn
            .query_row(
                "SELECT block FROM search_index_data WHERE id = 10",
                [],
                |row| row.get(0),
            )
            .expect("the structure record");
        for len in 0..record.len() {
            assert_eq!(IndexShape::decode(&record[..len]), None, "cut at {len}");
        }
    }

    /// Bulk writes leave an index that is optimized once the pages outside
    /// its largest segment reach half of it, from the policy's size on.
    #[test]
    fn bulk_writes_optimize_the_index_when_its_layout_is_due() {
        let conn = indexed_database();
        let policy = OptimizePolicy {
            from_pages: 12,
            rest_share: (1, 2),
            steps: StepSizing::fixed(1),
        };
        // What the stepped optimize ends with, in one statement.
        let optimize = |conn: &Connection| {
            let due = due_shape(conn, &policy).expect("layout read").is_some();
            if due {
                conn.execute_batch("INSERT INTO search_index(search_index) VALUES ('optimize')")
                    .expect("optimized");
            }
            due
        };
        index_group(&conn, 1..=1);
        index_group(&conn, 2..=2);
        assert!(!optimize(&conn), "below the policy's size");
        assert_eq!(segments(&conn), 2);

        let mut rowid = 3;
        while IndexShape::read(&conn)
            .expect("read")
            .expect("decoded")
            .pages()
            < 12
        {
            index_group(&conn, rowid..=rowid);
            rowid += 1;
        }
        assert!(optimize(&conn));
        assert_eq!(segments(&conn), 1, "optimized");
        let optimized = IndexShape::read(&conn).expect("read").expect("decoded");

        // Small segments beside the optimized one: due only once they
        // reach half of its pages.
        while {
            let shape = IndexShape::read(&conn).expect("read").expect("decoded");
            (shape.pages() - shape.largest()) * 2 < optimized.pages()
        } {
            assert!(!optimize(&conn), "not due at {rowid}");
            index_group(&conn, rowid..=rowid);
            rowid += 1;
        }
        assert!(segments(&conn) > 1);
        assert!(optimize(&conn), "due at {rowid}");
        assert_eq!(segments(&conn), 1);
        assert!(!optimize(&conn), "one segment is never due");

        let found = crate::records::search::search(&conn, "Ромашка", None, 100).expect("searched");
        assert_eq!(found.len() as i64, rowid - 1);
    }

    /// Steps of one page: an optimize takes many of them.
    static SMALL: OptimizePolicy = OptimizePolicy {
        from_pages: 12,
        rest_share: (1, 2),
        steps: StepSizing::fixed(1),
    };

    impl StepSizing {
        const fn fixed(pages: i64) -> StepSizing {
            StepSizing {
                first: pages,
                least: pages,
                most: pages,
                target: Duration::from_millis(50),
            }
        }
    }

    /// A running optimize is counted while it lives (other tests may run
    /// optimizes meanwhile, so only this one's share is relied on).
    #[test]
    fn a_running_optimize_is_counted_until_it_ends() {
        let running = Running::start();
        assert!(optimizing());
        drop(running);
    }

    /// Steps pause only once nobody waits for them.
    #[test]
    fn background_steps_pause_as_long_as_they_took() {
        let took = Duration::from_millis(40);
        let pace = Pace::default();
        assert_eq!(pace.after_step(took), None);
        let handle = pace.clone();
        handle.go_background();
        assert_eq!(pace.after_step(took), Some(took), "shared with its clones");
        assert_eq!(Pace::background().after_step(took), Some(took));
    }

    /// Steps grow on a fast writer and shrink on a slow or busy one, within
    /// their bounds, towards steps of the target's length.
    #[test]
    fn optimize_steps_are_sized_from_the_last_one() {
        let sizing = OPTIMIZE_POLICY.steps;
        let ms = Duration::from_millis;
        // 500 pages in 300 ms: 83 would have taken 50 ms; halfway there.
        assert_eq!(sizing.next(500, ms(300)), 291);
        assert_eq!(sizing.next(200, ms(50)), 200, "on target: unchanged");
        assert_eq!(sizing.next(200, ms(10)), 600);
        assert_eq!(sizing.next(2_000, ms(1)), 2_000, "at most `most`");
        assert_eq!(sizing.next(50, ms(5_000)), 50, "at least `least`");
        assert_eq!(sizing.next(100, Duration::ZERO), 2_000, "no time: the most");
        // From a step that took a second, a few steps reach the target.
        let mut pages = 1_000;
        for _ in 0..8 {
            let took = ms(u64::try_from(pages).expect("positive"));
            pages = sizing.next(pages, took);
        }
        assert!((50..=55).contains(&pages), "{pages} pages at 1 ms a page");
    }

    /// Writes the records `rows` through the store, one write job each.
    async fn write_separately(store: &Store, rows: std::ops::RangeInclusive<i64>) {
        for rowid in rows {
            store
                .write(move |txn| {
                    insert_records(txn.conn(), rowid..=rowid);
                    Ok::<_, StoreError>(())
                })
                .await
                .expect("written");
        }
    }

    async fn store_segments(store: &Store) -> i64 {
        store
            .read(|conn| Ok::<_, StoreError>(segments(conn)))
            .await
            .expect("read")
    }

    /// The upkeep after a bulk write optimizes on the writer in steps of
    /// one page each here, to the end, and a caller that must answer before
    /// it could finish gets its answer while the steps go on in the
    /// background.
    #[tokio::test]
    async fn after_a_bulk_write_the_optimize_runs_now_or_in_the_background() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = small_store(&dir).await;
        write_separately(&store, 1..=8).await;
        let before = store_segments(&store).await;
        assert!(before > 1);
        after_bulk_with(&store, None, Pace::default(), &SMALL).await;
        assert_eq!(
            store_segments(&store).await,
            1,
            "optimized before answering"
        );
        let shape = store
            .read(|conn| IndexShape::read(conn).map_err(StoreError::from))
            .await
            .expect("read")
            .expect("decoded");
        assert!(!shape.merging, "{shape:?}");

        write_separately(&store, 9..=16).await;
        assert!(store_segments(&store).await > 1);
        after_bulk_with(&store, Some(Instant::now()), Pace::default(), &SMALL).await;
        let mut waited = 0;
        while store_segments(&store).await > 1 {
            assert!(waited < 500, "the background optimize never ran");
            tokio::time::sleep(Duration::from_millis(10)).await;
            waited += 1;
        }
        store.close().await;
    }

    async fn small_store(dir: &tempfile::TempDir) -> Store {
        let config = crm_sync::StoreConfig {
            path: dir.path().join("node.db"),
            cache_capacity: 16,
            readers: 2,
            node_name: None,
            max_database_bytes: None,
        };
        Store::open(
            &config,
            "crm",
            &crate::node::node_migrations(),
            std::sync::Arc::new(crm_sync::NoProjection),
        )
        .expect("store opened")
    }

    async fn merging(store: &Store) -> bool {
        store
            .read(|conn| IndexShape::read(conn).map_err(StoreError::from))
            .await
            .expect("read")
            .is_some_and(|shape| shape.merging)
    }

    /// At start-up an optimize that a stop interrupted is finished, and an
    /// index left due (as a rebuild leaves it) is optimized.
    #[tokio::test]
    async fn start_up_finishes_an_interrupted_optimize_and_optimizes_a_due_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = small_store(&dir).await;
        write_separately(&store, 1..=8).await;
        store
            .write(|txn| start_optimize(txn.conn(), &SMALL).map_err(StoreError::from))
            .await
            .expect("started")
            .expect("due");
        assert!(merging(&store).await, "stopped after the first step");
        resume_with(&store, &SMALL).await;
        assert!(!merging(&store).await);
        assert_eq!(store_segments(&store).await, 1);

        // Due, with no merge in progress.
        write_separately(&store, 9..=16).await;
        assert!(store_segments(&store).await > 1);
        assert!(!merging(&store).await);
        resume_with(&store, &SMALL).await;
        assert_eq!(store_segments(&store).await, 1);
        store.close().await;
    }
}
