//! List queries: the query-string syntax (filters, sort, cursor, limit,
//! field selection) turned into one keyset-paginated SQL statement over a
//! kind's projection table.

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
            Target::Meta(_) => Ok(SqlValue::Integer(parse_datetime(raw)?)),
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
    id: String,
}

/// An equality filter that matches fewer rows than this is read through its
/// own index and its matches sorted, instead of walking the sort's index.
const NARROW_FILTER: usize = 2000;

struct Plan {
    sql: String,
    /// The same query reading a filter's index first, then sorting.
    filter_first_sql: String,
    /// One query per equality filter counting its matches up to
    /// [`NARROW_FILTER`], with its operand.
    narrowing: Vec<(String, SqlValue)>,
    args: Vec<SqlValue>,
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
                            format!("SELECT count(*) FROM (SELECT 1 FROM {st} WHERE value = ? LIMIT {NARROW_FILTER})"),
                            value.clone(),
                        ));
                        args.push(value);
                    }
                    ("eq", _) => {
                        conds.push(format!("{col} = ?"));
                        let value = operand(false)?;
                        narrowing.push((
                            format!("SELECT count(*) FROM (SELECT 1 FROM {t} WHERE deleted = 0 AND {col} = ? LIMIT {NARROW_FILTER})"),
                            value.clone(),
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
        // NULLs sort first ascending and last descending in SQLite.
        let cond = match (&value, descending) {
            (SqlValue::Null, false) => {
                format!("(({sort_col} IS NULL AND id > ?) OR {sort_col} IS NOT NULL)")
            }
            (SqlValue::Null, true) => format!("({sort_col} IS NULL AND id < ?)"),
            (_, false) => format!("({sort_col} > ? OR ({sort_col} = ? AND id > ?))"),
            (_, true) => {
                format!("({sort_col} < ? OR ({sort_col} = ? AND id < ?) OR {sort_col} IS NULL)")
            }
        };
        conds.push(cond);
        if value != SqlValue::Null {
            args.push(value.clone());
            args.push(value);
        }
        args.push(SqlValue::Text(cursor.id));
    }
    let select = |order_prefix: &str| {
        format!(
            "SELECT record, {sort_col}, id FROM {t} WHERE {} ORDER BY {order_prefix}{sort_col} {dir}, {order_prefix}id {dir} LIMIT {}",
            conds.join(" AND "),
            limit + 1
        )
    };
    // A unary + keeps the planner from using the sort column's index.
    Ok(Plan {
        sql: select(""),
        filter_first_sql: select("+"),
        narrowing,
        args,
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

/// Runs a list query on a read connection.
pub fn list(
    conn: &Connection,
    kind: &KindDef,
    params: &[(String, String)],
) -> Result<Page, RecordError> {
    let plan = plan(kind, params)?;
    // Walking the sort's index finds a page at once when the filters match
    // many rows, but crawls when they match few: then read the filter's
    // index and sort its matches. A capped count tells which.
    let mut narrow = false;
    for (count_sql, value) in &plan.narrowing {
        let count: usize = conn
            .prepare_cached(count_sql)?
            .query_row([value], |r| r.get(0))?;
        if count < NARROW_FILTER {
            narrow = true;
            break;
        }
    }
    let sql = if narrow {
        &plan.filter_first_sql
    } else {
        &plan.sql
    };
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params_from_iter(plan.args))?;
    let mut items = Vec::with_capacity(plan.limit);
    let mut last = None;
    let mut more = false;
    while let Some(row) = rows.next()? {
        if items.len() == plan.limit {
            more = true;
            break;
        }
        last = Some((sql_to_json(row.get(1)?), row.get::<_, String>(2)?));
        items.push(select_fields(row.get(0)?, plan.fields.as_deref())?);
    }
    let next_cursor = match last {
        Some((value, id)) if more => {
            let cursor = Cursor {
                sort: plan.sort.clone(),
                value,
                id,
            };
            serde_json::to_vec(&cursor)
                .ok()
                .map(|b| URL_SAFE_NO_PAD.encode(b))
        }
        _ => None,
    };
    Ok(Page { items, next_cursor })
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
