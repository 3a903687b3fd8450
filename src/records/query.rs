//! List queries: the query-string syntax (filters, sort, cursor, limit,
//! field selection) turned into one keyset-paginated SQL statement over a
//! kind's projection table.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use crm_schema::{FieldDef, FieldType, KindDef};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Connection};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::projection::{column, set_table, table};
use super::value::{filter_operand, parse_datetime};
use super::view::META_KEYS;
use super::RecordError;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 200;
const DEFAULT_SORT: &str = "-updated_at";

/// Comparison operators a filter parameter may carry after a dot.
pub const RANGE_OPS: &[(&str, &str)] = &[("gt", ">"), ("gte", ">="), ("lt", "<"), ("lte", "<=")];

/// A column that lists can filter and sort on.
enum Target<'k> {
    Field(&'k FieldDef),
    /// created_at / updated_at, stored as integer milliseconds.
    Meta(&'static str),
}

impl Target<'_> {
    fn column(&self) -> String {
        match self {
            Target::Field(f) => column(f),
            Target::Meta(name) => (*name).to_owned(),
        }
    }

    fn operand(&self, raw: &str, prefix: bool) -> Result<SqlValue, String> {
        match self {
            Target::Field(f) => filter_operand(f, raw, prefix),
            Target::Meta(_) => Ok(SqlValue::Integer(
                parse_datetime(raw).map_err(|e| e.message)?,
            )),
        }
    }

    fn is_ordered(&self) -> bool {
        match self {
            Target::Field(f) => f.ty.is_ordered(),
            Target::Meta(_) => true,
        }
    }
}

fn target<'k>(kind: &'k KindDef, name: &str) -> Option<Target<'k>> {
    match name {
        "created_at" => Some(Target::Meta("created_at")),
        "updated_at" => Some(Target::Meta("updated_at")),
        _ => kind.field(name).filter(|f| f.indexed).map(Target::Field),
    }
}

/// One page of a list.
pub struct Page {
    pub items: Vec<Box<RawValue>>,
    pub next_cursor: Option<String>,
    /// Which items hold conflicting values (indexes into `items`): their
    /// authors are named before the page is served.
    pub conflicted: Vec<usize>,
}

impl Page {
    /// The page's records as JSON values.
    pub fn records(&self) -> Vec<serde_json::Value> {
        self.items
            .iter()
            .filter_map(|raw| serde_json::from_str(raw.get()).ok())
            .collect()
    }
}

/// Where the previous page ended, bound to the sort it was made for.
#[derive(Serialize, Deserialize)]
struct Cursor {
    sort: String,
    value: serde_json::Value,
    /// The tie-break of a sort on a field (absent for meta sorts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    updated_at: Option<i64>,
    /// The last row's local key: the last tie-break, as every index ends
    /// with it. A cursor is only good on the node that issued it.
    rid: i64,
}

/// Equality filters' matches are counted up to this many: enough to tell a
/// filter worth reading first from one that matches a large share of the
/// kind, at a bounded cost (an index-only count).
const COUNT_CAP: usize = 20_000;

/// How long a filter's count is trusted.
const COUNT_KEPT_FOR: Duration = Duration::from_secs(30);
/// Counts remembered at most (all are dropped when full).
const COUNTS_KEPT: usize = 4_096;

/// Equality filters' capped counts, remembered for a while. They only
/// choose between two plans, so a count some seconds old chooses as well
/// as a fresh one, and counting was over half the cost of a page filtered
/// on city, manager and stage at 100,000 clients.
#[derive(Default)]
pub struct FilterCounts {
    seen: Mutex<HashMap<(String, String), (Instant, usize)>>,
}

impl FilterCounts {
    fn count(&self, conn: &Connection, sql: &str, value: &SqlValue) -> Result<usize, RecordError> {
        let key = (sql.to_owned(), format!("{value:?}"));
        let now = Instant::now();
        if let Ok(seen) = self.seen.lock() {
            if let Some((at, count)) = seen.get(&key) {
                if now.duration_since(*at) < COUNT_KEPT_FOR {
                    return Ok(*count);
                }
            }
        }
        let count: usize = conn.prepare_cached(sql)?.query_row([value], |r| r.get(0))?;
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= COUNTS_KEPT {
                seen.clear();
            }
            seen.insert(key, (now, count));
        }
        Ok(count)
    }
}

struct Plan {
    sql: String,
    /// Where in `sql` an `INDEXED BY` clause goes (just after the table).
    index_at: usize,
    /// The same query reading a filter's index first, then sorting.
    filter_first_sql: String,
    /// One query per equality filter counting its matches up to
    /// [`COUNT_CAP`], with its operand and, for a field's column, the
    /// field's index.
    narrowing: Vec<(String, SqlValue, Option<String>)>,
    /// Counts the kind's rows (an upper bound: the largest row id).
    rows_sql: String,
    /// Sorted on `updated_at` with an equality filter on a field: that
    /// field's index yields its matches in order, which beats reading
    /// them all first whatever their number.
    filter_index_in_order: bool,
    args: Vec<SqlValue>,
    /// Sorted on a field (ties by `updated_at`, `rid`) rather than on
    /// `created_at`/`updated_at` (ties by `rid`).
    by_field: bool,
    sort: String,
    limit: usize,
    fields: Option<Vec<String>>,
}

fn bad(message: impl Into<String>) -> RecordError {
    RecordError::BadQuery(message.into())
}

fn plan(kind: &KindDef, params: &[(String, String)]) -> Result<Plan, RecordError> {
    let t = table(kind);
    let mut conds = vec!["deleted = 0".to_owned()];
    let mut args: Vec<SqlValue> = Vec::new();
    let mut sort = DEFAULT_SORT.to_owned();
    let mut limit = DEFAULT_LIMIT;
    let mut cursor = None;
    let mut fields = None;
    let mut narrowing = Vec::new();
    let mut field_equality = false;
    for (key, raw) in params {
        match key.as_str() {
            "sort" => sort = raw.clone(),
            "limit" => {
                limit = raw
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "limit must be a whole number from 1 to {MAX_LIMIT}"
                        ))
                    })?;
            }
            // Empty values mean "not given", as forms send them.
            "cursor" | "fields" if raw.is_empty() => {}
            "cursor" => cursor = Some(raw.clone()),
            "fields" => {
                let names: Vec<String> = raw.split(',').map(str::to_owned).collect();
                if let Some(unknown) = names
                    .iter()
                    .find(|n| kind.field(n).is_none() && !META_KEYS.contains(&n.as_str()))
                {
                    return Err(bad(format!(
                        "fields: {unknown} is not a field of {}",
                        kind.collection
                    )));
                }
                fields = Some(names);
            }
            _ => {
                let (name, op) = key.split_once('.').unwrap_or((key, "eq"));
                let target = target(kind, name).ok_or_else(|| {
                    bad(format!(
                        "{name} is not an indexed field of {}: it cannot be filtered",
                        kind.collection
                    ))
                })?;
                let col = target.column();
                let operand = |prefix| {
                    target
                        .operand(raw, prefix)
                        .map_err(|m| bad(format!("{key}: {m}")))
                };
                match (op, &target) {
                    ("eq", Target::Field(f)) if f.ty == FieldType::Set => {
                        let st = set_table(kind, f);
                        conds.push(format!("rid IN (SELECT rid FROM {st} WHERE value = ?)"));
                        let value = operand(false)?;
                        narrowing.push((
                            format!("SELECT count(*) FROM (SELECT 1 FROM {st} WHERE value = ? LIMIT {COUNT_CAP})"),
                            value.clone(),
                            None,
                        ));
                        args.push(value);
                    }
                    ("eq", _) => {
                        field_equality |= matches!(target, Target::Field(_));
                        conds.push(format!("{col} = ?"));
                        let value = operand(false)?;
                        let index =
                            matches!(target, Target::Field(_)).then(|| format!("{t}_{col}"));
                        narrowing.push((
                            format!("SELECT count(*) FROM (SELECT 1 FROM {t} WHERE deleted = 0 AND {col} = ? LIMIT {COUNT_CAP})"),
                            value.clone(),
                            index,
                        ));
                        args.push(value);
                    }
                    ("prefix", Target::Field(f)) if f.ty.is_textual() => {
                        // A range keeps the index usable, unlike LIKE.
                        let SqlValue::Text(start) = operand(true)? else {
                            return Err(bad(format!("{key}: not a text value")));
                        };
                        conds.push(format!("{col} >= ? AND {col} < ?"));
                        args.push(SqlValue::Text(start.clone()));
                        args.push(SqlValue::Text(format!("{start}\u{10FFFF}")));
                    }
                    (op, _) if target.is_ordered() => {
                        let sql_op = RANGE_OPS
                            .iter()
                            .find(|(name, _)| *name == op)
                            .map(|(_, sql)| *sql)
                            .ok_or_else(|| bad(format!("{key}: unknown operator {op}")))?;
                        conds.push(format!("{col} {sql_op} ?"));
                        args.push(operand(false)?);
                    }
                    _ => {
                        return Err(bad(format!(
                            "{key}: operator {op} does not apply to {name}"
                        )))
                    }
                }
            }
        }
    }
    let (descending, sort_name) = match sort.strip_prefix('-') {
        Some(name) => (true, name),
        None => (false, sort.as_str()),
    };
    let sort_target = target(kind, sort_name)
        .filter(|t| !matches!(t, Target::Field(f) if f.ty == FieldType::Set))
        .ok_or_else(|| {
            bad(format!(
                "sort: {sort_name} is not an indexed field of {}",
                kind.collection
            ))
        })?;
    let sort_col = sort_target.column();
    let dir = if descending { "DESC" } else { "ASC" };
    if let Some(raw) = cursor {
        let cursor: Cursor = URL_SAFE_NO_PAD
            .decode(raw.as_bytes())
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| bad("cursor is not one this node issued"))?;
        if cursor.sort != sort {
            return Err(bad("cursor belongs to another sort order"));
        }
        let value =
            json_to_sql(&cursor.value).ok_or_else(|| bad("cursor is not one this node issued"))?;
        // Rows equal on the sort column are ordered by `updated_at` then
        // `rid` for a field sort (its index ends so), by `rid` otherwise.
        let op = if descending { "<" } else { ">" };
        let (ties, tie_values) = match (&sort_target, cursor.updated_at) {
            (Target::Field(_), Some(at)) => (
                "updated_at, rid",
                vec![SqlValue::Integer(at), SqlValue::Integer(cursor.rid)],
            ),
            (Target::Meta(_), None) => ("rid", vec![SqlValue::Integer(cursor.rid)]),
            _ => return Err(bad("cursor is not one this node issued")),
        };
        let marks = vec!["?"; 1 + tie_values.len()].join(", ");
        // A row value (`(col, ties) > (...)`) gives the index a range to
        // start from; the same condition spelt with OR made SQLite read the
        // index from its start on every page: 76 ms for a page 900,000
        // rows deep at 1,000,000 clients, against 0.2 ms. NULLs sort first
        // ascending and last descending in SQLite, and a row value with a
        // NULL compares to nothing, so the cursor's NULL cases and the
        // descending field sorts (whose NULLs come after every value) keep
        // the spelt-out form.
        let spelt = || {
            let after_ties = match tie_values.len() {
                2 => format!("(updated_at {op} ? OR (updated_at = ? AND rid {op} ?))"),
                _ => format!("rid {op} ?"),
            };
            let spelt_args = match tie_values.as_slice() {
                [at, rid] => vec![at.clone(), at.clone(), rid.clone()],
                other => other.to_vec(),
            };
            (after_ties, spelt_args)
        };
        let nullable = matches!(sort_target, Target::Field(_));
        let (cond, cond_args) = match (&value, descending) {
            (SqlValue::Null, false) => {
                let (after_ties, tie_args) = spelt();
                (
                    format!("(({sort_col} IS NULL AND {after_ties}) OR {sort_col} IS NOT NULL)"),
                    tie_args,
                )
            }
            (SqlValue::Null, true) => {
                let (after_ties, tie_args) = spelt();
                (format!("({sort_col} IS NULL AND {after_ties})"), tie_args)
            }
            (_, true) if nullable => {
                let (after_ties, tie_args) = spelt();
                let mut cond_args = vec![value.clone(), value.clone()];
                cond_args.extend(tie_args);
                (
                    format!(
                        "({sort_col} < ? OR ({sort_col} = ? AND {after_ties}) OR {sort_col} IS NULL)"
                    ),
                    cond_args,
                )
            }
            _ => {
                let mut cond_args = vec![value.clone()];
                cond_args.extend(tie_values.iter().cloned());
                (format!("({sort_col}, {ties}) {op} ({marks})"), cond_args)
            }
        };
        conds.push(cond);
        args.extend(cond_args);
    }
    let by_field = matches!(sort_target, Target::Field(_));
    let from = format!("SELECT record, {sort_col}, updated_at, rid, conflicted FROM {t}");
    let select = |p: &str| {
        let ties = if by_field {
            format!("{p}updated_at {dir}, {p}rid {dir}")
        } else {
            format!("{p}rid {dir}")
        };
        format!(
            "{from} WHERE {} ORDER BY {p}{sort_col} {dir}, {ties} LIMIT {}",
            conds.join(" AND "),
            limit + 1
        )
    };
    // A unary + keeps the planner from using the sort column's index.
    Ok(Plan {
        sql: select(""),
        index_at: from.len(),
        filter_first_sql: select("+"),
        narrowing,
        rows_sql: format!("SELECT coalesce(max(rid), 0) FROM {t}"),
        filter_index_in_order: field_equality && sort_name == "updated_at",
        args,
        by_field,
        sort,
        limit,
        fields,
    })
}

fn json_to_sql(value: &serde_json::Value) -> Option<SqlValue> {
    Some(match value {
        serde_json::Value::Null => SqlValue::Null,
        serde_json::Value::String(s) => SqlValue::Text(s.clone()),
        serde_json::Value::Number(n) => SqlValue::Integer(n.as_i64()?),
        _ => return None,
    })
}

fn sql_to_json(value: SqlValue) -> serde_json::Value {
    match value {
        SqlValue::Integer(i) => i.into(),
        SqlValue::Text(s) => s.into(),
        _ => serde_json::Value::Null,
    }
}

/// Whether to read the narrowest equality filter's matches and sort them,
/// rather than walk the sort's index until a page of rows passes every
/// filter. The walk finds a page at once when the filters together match
/// many rows, and crawls through most of the kind when they match few,
/// even if each filter alone matches thousands (city, manager and stage
/// together). The filters are taken as independent: the walk is expected
/// to visit `(limit + 1) / selectivity` rows, the filter-first read as
/// many as its narrowest filter matches.
fn reads_filter_first(
    conn: &Connection,
    plan: &Plan,
    known: &FilterCounts,
) -> Result<bool, RecordError> {
    if plan.narrowing.is_empty() || plan.filter_index_in_order {
        return Ok(false);
    }
    let mut counts = Vec::with_capacity(plan.narrowing.len());
    for (count_sql, value, _) in &plan.narrowing {
        counts.push(known.count(conn, count_sql, value)?);
    }
    let narrowest = counts.iter().copied().min().unwrap_or(usize::MAX);
    if narrowest >= COUNT_CAP {
        return Ok(false);
    }
    // The kind's size only matters once some filter is narrow.
    let rows: i64 = conn
        .prepare_cached(&plan.rows_sql)?
        .query_row([], |r| r.get(0))?;
    let rows = rows.max(1) as f64;
    let selectivity: f64 = counts
        .iter()
        .map(|&count| (count as f64 / rows).min(1.0))
        .product();
    let walk = (plan.limit + 1) as f64 / selectivity.max(f64::MIN_POSITIVE);
    Ok(narrowest as f64 <= walk)
}

/// The index to read when several equality-filtered fields' indexes would
/// each yield the matches in `updated_at` order: the narrowest one by
/// count. SQLite picks by its statistics, which do not know the operands:
/// with `city`, `manager` and `stage` it read `stage=lost` (20,000 of
/// 100,000 clients) rather than `city=Казань` (10,000), 2.9 ms against
/// 1.2 ms.
fn narrowest_index<'p>(
    conn: &Connection,
    plan: &'p Plan,
    known: &FilterCounts,
) -> Result<Option<&'p str>, RecordError> {
    let candidates: Vec<_> = plan
        .narrowing
        .iter()
        .filter_map(|(sql, value, index)| Some((sql, value, index.as_deref()?)))
        .collect();
    if !plan.filter_index_in_order || candidates.len() < 2 {
        return Ok(None);
    }
    let mut narrowest: Option<(usize, &str)> = None;
    for (sql, value, index) in candidates {
        let count = known.count(conn, sql, value)?;
        if narrowest.is_none_or(|(fewest, _)| count < fewest) {
            narrowest = Some((count, index));
        }
    }
    Ok(narrowest.map(|(_, index)| index))
}

/// Runs a list query on a read connection.
pub fn list(
    conn: &Connection,
    kind: &KindDef,
    params: &[(String, String)],
    known: &FilterCounts,
) -> Result<Page, RecordError> {
    let plan = plan(kind, params)?;
    let sql: Cow<'_, str> = match narrowest_index(conn, &plan, known)? {
        Some(index) => {
            let (select, rest) = plan.sql.split_at(plan.index_at);
            format!("{select} INDEXED BY {index}{rest}").into()
        }
        None if reads_filter_first(conn, &plan, known)? => plan.filter_first_sql.as_str().into(),
        None => plan.sql.as_str().into(),
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(plan.args))?;
    let mut items = Vec::with_capacity(plan.limit);
    let mut conflicted = Vec::new();
    let mut last = None;
    let mut more = false;
    while let Some(row) = rows.next()? {
        if items.len() == plan.limit {
            more = true;
            break;
        }
        last = Some((
            sql_to_json(row.get(1)?),
            row.get::<_, i64>(2)?,
            row.get::<_, i64>(3)?,
        ));
        if row.get::<_, bool>(4)? {
            conflicted.push(items.len());
        }
        items.push(select_fields(row.get(0)?, plan.fields.as_deref())?);
    }
    let next_cursor = match last {
        Some((value, updated_at, rid)) if more => {
            let cursor = Cursor {
                sort: plan.sort.clone(),
                value,
                updated_at: plan.by_field.then_some(updated_at),
                rid,
            };
            serde_json::to_vec(&cursor)
                .ok()
                .map(|b| URL_SAFE_NO_PAD.encode(b))
        }
        _ => None,
    };
    Ok(Page {
        items,
        next_cursor,
        conflicted,
    })
}

fn select_fields(record: String, fields: Option<&[String]>) -> Result<Box<RawValue>, RecordError> {
    let corrupt = |e: serde_json::Error| RecordError::Internal(format!("stored record JSON: {e}"));
    let Some(fields) = fields else {
        return RawValue::from_string(record).map_err(corrupt);
    };
    let full: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&record).map_err(corrupt)?;
    let picked: serde_json::Map<String, serde_json::Value> = full
        .into_iter()
        .filter(|(k, _)| k == "id" || fields.contains(k))
        .collect();
    serde_json::value::to_raw_value(&picked).map_err(corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_filter_count_is_remembered_per_query_and_operand() {
        let conn = Connection::open_in_memory().expect("database");
        conn.execute_batch("CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('a'), ('a'), ('b');")
            .expect("table");
        let sql = "SELECT count(*) FROM t WHERE v = ?";
        let known = FilterCounts::default();
        let a = SqlValue::Text("a".into());
        assert_eq!(known.count(&conn, sql, &a).expect("count"), 2);
        conn.execute_batch("INSERT INTO t VALUES ('a'), ('b');")
            .expect("insert");
        // Remembered: the new row is not counted yet.
        assert_eq!(known.count(&conn, sql, &a).expect("count"), 2);
        // Another operand is counted afresh.
        let b = SqlValue::Text("b".into());
        assert_eq!(known.count(&conn, sql, &b).expect("count"), 2);
        assert_eq!(
            FilterCounts::default()
                .count(&conn, sql, &a)
                .expect("count"),
            3
        );
    }

    /// The built-in clients kind and an empty database with its projection.
    fn clients_projection() -> (KindDef, Connection) {
        let kind = crm_schema::Schema::builtin()
            .ok()
            .and_then(|s| s.kind("clients").cloned())
            .expect("clients kind is built in");
        let conn = Connection::open_in_memory().expect("database");
        conn.execute_batch(&super::super::projection::ddl(&kind))
            .expect("projection tables");
        (kind, conn)
    }

    /// SQLite's plan for a list query, one line per step.
    fn plan_steps(conn: &Connection, plan: &Plan) -> Vec<String> {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {}", plan.sql))
            .expect("explained")
            .query_map(params_from_iter(&plan.args), |r| r.get::<_, String>(3))
            .expect("plan rows")
            .collect::<Result<_, _>>()
            .expect("plan read")
    }

    /// Ties break on `rid`, which every index ends with implicitly: pages
    /// of every sort come from an index in order, never from a sort of all
    /// the matches. (Before, every index ended with the 36-byte `id`.)
    #[test]
    fn every_sort_reads_an_index_in_order() {
        let (kind, conn) = clients_projection();
        let ddl = super::super::projection::ddl(&kind);
        assert!(!ddl.contains(", id)"), "an index repeats the id: {ddl}");
        for sort in ["-updated_at", "created_at", "name", "-city"] {
            for filter in [None, Some(("city", "Казань"))] {
                let mut params = vec![("sort".to_owned(), sort.to_owned())];
                params.extend(filter.map(|(k, v)| (k.to_owned(), v.to_owned())));
                let plan = plan(&kind, &params).expect("plan");
                let steps = plan_steps(&conn, &plan);
                assert!(
                    steps.iter().all(|s| !s.contains("TEMP B-TREE")),
                    "sort={sort} {filter:?}: {steps:?}"
                );
            }
        }
    }

    /// A page after the first starts from a range of the sort's index, not
    /// from the index's start: except for a descending field sort, whose
    /// missing values come last (BENCHMARKS.md, fourteenth round).
    #[test]
    fn a_later_page_starts_from_a_range_of_the_sort_index() {
        let (kind, conn) = clients_projection();
        for (sort, value, updated_at, range) in [
            (
                "created_at",
                json!(1_700_000_000_000i64),
                None,
                Some("created_at>"),
            ),
            (
                "-updated_at",
                json!(1_700_000_000_000i64),
                None,
                Some("updated_at<"),
            ),
            (
                "name",
                json!("ромашка"),
                Some(1_700_000_000_000i64),
                Some("f_name,updated_at)>"),
            ),
            ("-city", json!("казань"), Some(1_700_000_000_000i64), None),
        ] {
            let cursor = Cursor {
                sort: sort.to_owned(),
                value,
                updated_at,
                rid: 900_000,
            };
            let cursor = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&cursor).expect("cursor"));
            let params = vec![
                ("sort".to_owned(), sort.to_owned()),
                ("cursor".to_owned(), cursor),
            ];
            let plan = plan(&kind, &params).expect("plan");
            let steps = plan_steps(&conn, &plan).join(" ");
            assert!(!steps.contains("TEMP B-TREE"), "sort={sort}: {steps}");
            if let Some(range) = range {
                assert!(steps.contains(range), "sort={sort}: {steps}");
            }
        }
    }

    /// With two filters sorted by `updated_at`, the narrower filter's index
    /// is read, whichever way round the filters come.
    #[test]
    fn the_narrowest_equality_filter_gives_the_index_read() {
        let (kind, conn) = clients_projection();
        let t = table(&kind);
        // 10 clients in Kazan, 3 of them lost; 30 lost clients in all.
        for n in 0..40 {
            let city = if n < 10 { "казань" } else { "пермь" };
            let stage = if (3..13).contains(&n) {
                "regular"
            } else {
                "lost"
            };
            conn.execute(
                &format!(
                    "INSERT INTO {t} (id, deleted, created_at, updated_at, conflicted, record, f_city, f_stage) \
                     VALUES (?1, 0, ?2, ?2, 0, '{{}}', ?3, ?4)"
                ),
                rusqlite::params![format!("c{n}"), n, city, stage],
            )
            .expect("row");
        }
        let known = FilterCounts::default();
        for params in [
            [("city", "Казань"), ("stage", "lost")],
            [("stage", "lost"), ("city", "Казань")],
        ] {
            let params: Vec<(String, String)> = params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            let plan = plan(&kind, &params).expect("plan");
            let index = narrowest_index(&conn, &plan, &known).expect("counts");
            assert_eq!(index, Some(format!("{t}_f_city").as_str()), "{params:?}");
            let page = list(&conn, &kind, &params, &known).expect("list");
            assert_eq!(page.items.len(), 3, "{params:?}");
        }
    }
}
