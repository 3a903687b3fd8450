//! The query tables derived from documents: one table per kind (`p_<kind>`)
//! with a column per indexed field and the record's JSON as served, a side
//! table per set field, and rows in the shared full-text index. Everything
//! here can be dropped and rebuilt from the documents.

use std::collections::HashMap;
use std::sync::Arc;

use crm_schema::{FieldDef, FieldType, KindDef, Schema};
use crm_sync::{
    Deferred, DeferredWrite, DocRef, NewDocRef, ProjectError, Projector, Rendered, StoreError,
    WriteTxn,
};
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use super::document::{read_new_root, read_record, RecordView};
use super::value::{column_value, FieldValue};
use super::view;

pub fn table(kind: &KindDef) -> String {
    format!("p_{}", kind.collection)
}

pub fn set_table(kind: &KindDef, field: &FieldDef) -> String {
    format!("p_{}__{}", kind.collection, field.name)
}

/// The column a field filters and sorts on.
pub fn column(field: &FieldDef) -> String {
    format!("f_{}", field.name)
}

/// Fields with a column of their own in the kind table.
pub fn column_fields(kind: &KindDef) -> impl Iterator<Item = &FieldDef> {
    kind.fields
        .iter()
        .filter(|f| f.indexed && f.ty != FieldType::Set)
}

/// Fields kept in a side table of members.
pub fn set_fields(kind: &KindDef) -> impl Iterator<Item = &FieldDef> {
    kind.fields
        .iter()
        .filter(|f| f.indexed && f.ty == FieldType::Set)
}

/// What the stored record JSON holds beyond the fields; bumped when that
/// changes, which rebuilds every projection once at start-up.
const RECORD_JSON_SHAPE: &str = "record JSON 2: conflicting values carry their user";

/// The DDL of a kind's projection; also its fingerprint: when it changes,
/// the projection is rebuilt.
pub fn ddl(kind: &KindDef) -> String {
    let t = table(kind);
    let mut columns = vec![
        "rid INTEGER PRIMARY KEY".to_owned(),
        "id TEXT NOT NULL UNIQUE".to_owned(),
        "deleted INTEGER NOT NULL".to_owned(),
        "created_at INTEGER NOT NULL".to_owned(),
        "updated_at INTEGER NOT NULL".to_owned(),
        "conflicted INTEGER NOT NULL".to_owned(),
        "record TEXT NOT NULL".to_owned(),
    ];
    columns.extend(column_fields(kind).map(|f| format!("{} {}", column(f), sql_type(f))));
    // The first line names the shape of the served JSON, so that a change
    // of it (conflicting values naming their user) rebuilds the rows too.
    let mut sql = format!(
        "-- {RECORD_JSON_SHAPE}\nCREATE TABLE {t} (\n    {}\n);\n",
        columns.join(",\n    ")
    );
    // Every index ends, implicitly, with the row's `rid`, which breaks ties
    // in lists (see `query`). Naming `id` there instead cost 37 bytes per
    // entry in each of a kind's indexes: at 1,000,000 clients 600 MB more
    // and a fifth more pages written per create (BENCHMARKS.md, twelfth
    // round).
    for col in ["created_at", "updated_at"] {
        sql.push_str(&format!(
            "CREATE INDEX {t}_{col} ON {t} (deleted, {col});\n"
        ));
    }
    // A field's index ends with the default sort's key: an equality filter
    // then yields its matches newest first, so a list filtered on several
    // fields walks the narrowest of them in order instead of sorting all
    // its matches. Sorts on the field break ties the same way.
    for col in column_fields(kind).map(column) {
        sql.push_str(&format!(
            "CREATE INDEX {t}_{col} ON {t} (deleted, {col}, updated_at);\n"
        ));
    }
    // Few records are in conflict at a time: a partial index finds them.
    sql.push_str(&format!(
        "CREATE INDEX {t}_conflicted ON {t} (updated_at) WHERE conflicted = 1 AND deleted = 0;\n"
    ));
    for field in set_fields(kind) {
        let st = set_table(kind, field);
        sql.push_str(&format!(
            "CREATE TABLE {st} (value TEXT NOT NULL, rid INTEGER NOT NULL, PRIMARY KEY (value, rid)) WITHOUT ROWID;\n\
             CREATE INDEX {st}_rid ON {st} (rid);\n"
        ));
    }
    sql
}

fn sql_type(field: &FieldDef) -> &'static str {
    match field.ty {
        FieldType::Integer | FieldType::Money | FieldType::Bool | FieldType::Datetime => "INTEGER",
        _ => "TEXT",
    }
}

/// Field names and types as stored with the fingerprint: a later start that
/// drops or retypes one of them is refused.
fn field_list(kind: &KindDef) -> String {
    kind.fields
        .iter()
        .map(|f| format!("{}:{}", f.name, f.ty.name()))
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "kind {kind}: field {field} ({was}) is gone or retyped in this version's schema. \
         Removing or retyping a field would hide data that other nodes still replicate; \
         add a new field instead, or run the version that declared it"
    )]
    Destructive {
        kind: String,
        field: String,
        was: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for SetupError {
    fn from(e: rusqlite::Error) -> Self {
        SetupError::Store(StoreError::from(e))
    }
}

/// Brings every kind's projection in line with the schema: creates missing
/// tables, rebuilds those whose shape changed (logging progress), refuses
/// destructive schema changes. Runs on the writer before serving.
pub fn prepare(txn: &mut WriteTxn<'_>, schema: &Schema) -> Result<(), SetupError> {
    for kind in schema.kinds() {
        let stored: Option<(String, String)> = txn
            .conn()
            .query_row(
                "SELECT fields, projection FROM kind_fingerprints WHERE kind = ?1",
                params![kind.collection],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let ddl = ddl(kind);
        let fields = field_list(kind);
        if let Some((old_fields, _)) = &stored {
            let now: Vec<&str> = fields.split(',').collect();
            if let Some(gone) = old_fields.split(',').find(|f| !now.contains(f)) {
                let (field, was) = gone.split_once(':').unwrap_or((gone, "?"));
                return Err(SetupError::Destructive {
                    kind: kind.collection.clone(),
                    field: field.to_owned(),
                    was: was.to_owned(),
                });
            }
        }
        // The served JSON holds every field and the search index every
        // searchable one: a change of either rebuilds, not only a change of
        // the table's columns.
        if stored
            .as_ref()
            .is_some_and(|(old_fields, old_ddl)| *old_ddl == ddl && *old_fields == fields)
        {
            continue;
        }
        rebuild(txn, kind, &ddl, stored.is_some())?;
        txn.conn().execute(
            "INSERT INTO kind_fingerprints (kind, fields, projection) VALUES (?1, ?2, ?3)
             ON CONFLICT (kind) DO UPDATE SET fields = excluded.fields, projection = excluded.projection",
            params![kind.collection, fields, ddl],
        )?;
    }
    // A rebuild indexed every record of its kinds again, a bulk write: the
    // start-up's upkeep (`search_upkeep::resume`) optimizes the index in
    // steps while the node serves, when its layout is due.
    Ok(())
}

fn rebuild(
    txn: &mut WriteTxn<'_>,
    kind: &KindDef,
    ddl: &str,
    existed: bool,
) -> Result<(), SetupError> {
    let conn = txn.conn();
    if existed {
        let mut stmt = conn.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND (name = ?1 OR name LIKE ?1 || '\\_\\_%' ESCAPE '\\')",
        )?;
        let tables = stmt
            .query_map(params![table(kind)], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        for t in tables {
            conn.execute_batch(&format!("DROP TABLE {t}"))?;
        }
        conn.execute(
            "DELETE FROM search_index WHERE kind = ?1",
            params![kind.collection],
        )?;
    }
    conn.execute_batch(ddl)?;
    let kind_name = kind.collection.clone();
    let total = txn.reproject_kind(&kind.collection, |done| {
        if done % 10_000 == 0 {
            tracing::info!(kind = %kind_name, done, "rebuilding projection");
        }
    })?;
    tracing::info!(kind = %kind.collection, records = total, "projection ready");
    Ok(())
}

/// The node's [`Projector`]: keeps the kind tables and the search index in
/// step with every document change.
pub struct RecordProjector {
    schema: Arc<Schema>,
    /// Statements of each kind, built once: projection runs on every write.
    statements: HashMap<String, Arc<KindStatements>>,
}

/// The SQL that refreshes one kind's rows, and which fields feed it.
struct KindStatements {
    /// For a record just inserted: a plain INSERT, which (unlike a
    /// REPLACE) needs no statement journal, whose release costs more the
    /// larger the transaction.
    insert: String,
    upsert: String,
    /// Indexes (into the kind's fields) of the fields with a column, in
    /// the upsert's column order.
    columns: Vec<usize>,
    /// Indexed set fields: (field index, delete members, insert a member).
    sets: Vec<(usize, String, String)>,
}

impl KindStatements {
    fn new(kind: &KindDef) -> KindStatements {
        let columns: Vec<usize> = kind
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.indexed && f.ty != FieldType::Set)
            .map(|(i, _)| i)
            .collect();
        let mut names: Vec<String> = META_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
        names.extend(columns.iter().map(|&i| column(&kind.fields[i])));
        let placeholders = (1..=names.len())
            .map(|i| format!("?{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let upsert = format!(
            "INSERT OR REPLACE INTO {} ({}) VALUES ({placeholders})",
            table(kind),
            names.join(", ")
        );
        let insert = format!(
            "INSERT INTO {} ({}) VALUES ({placeholders})",
            table(kind),
            names.join(", ")
        );
        let sets = kind
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.indexed && f.ty == FieldType::Set)
            .map(|(i, f)| {
                let st = set_table(kind, f);
                (
                    i,
                    format!("DELETE FROM {st} WHERE rid = ?1"),
                    format!("INSERT OR IGNORE INTO {st} (value, rid) VALUES (?1, ?2)"),
                )
            })
            .collect();
        KindStatements {
            insert,
            upsert,
            columns,
            sets,
        }
    }
}

/// Columns every kind table starts with, in the upsert's order.
const META_COLUMNS: &[&str] = &[
    "rid",
    "id",
    "deleted",
    "created_at",
    "updated_at",
    "conflicted",
    "record",
];

impl RecordProjector {
    pub fn new(schema: Arc<Schema>) -> RecordProjector {
        let statements = schema
            .kinds()
            .iter()
            .map(|k| (k.collection.clone(), Arc::new(KindStatements::new(k))))
            .collect();
        RecordProjector { schema, statements }
    }
}

impl RecordProjector {
    /// The rows of a record, built from its document (on any thread).
    pub fn render_rows(&self, doc: &DocRef<'_>) -> Option<RecordRows> {
        // A kind this version does not know is kept and relayed, just not
        // listed.
        let kind = self.schema.kind(doc.kind)?;
        self.rows_of(kind, &read_record(doc.doc, kind, doc.id))
    }

    /// The rows of `record`, a record of `kind` as its document holds it:
    /// read from the document, or, for a new one, from the root it was made
    /// of (`document::read_new_root`).
    pub fn rows_of(&self, kind: &KindDef, record: &RecordView) -> Option<RecordRows> {
        let statements = self.statements.get(&kind.collection)?.clone();
        let json = view::to_json(kind, record).to_string();
        let columns = statements
            .columns
            .iter()
            .map(|&i| {
                record.values[i]
                    .as_ref()
                    .map_or(rusqlite::types::Value::Null, |v| {
                        column_value(&kind.fields[i], v)
                    })
            })
            .collect();
        let sets = statements
            .sets
            .iter()
            .map(|(i, _, _)| match &record.values[*i] {
                Some(FieldValue::Set(members)) => {
                    members.iter().map(|m| m.to_lowercase()).collect()
                }
                _ => Vec::new(),
            })
            .collect();
        // A system kind (the directory of nodes) is not what people search.
        let search = (!record.deleted && !kind.system).then(|| search_text(kind, record));
        Some(RecordRows {
            statements,
            kind: kind.collection.clone(),
            id: record.id.to_string(),
            deleted: record.deleted,
            created_at: record.created_at,
            updated_at: record.updated_at,
            conflicted: !record.conflicts.is_empty(),
            json,
            columns,
            sets,
            search,
        })
    }
}

/// A record's rows: its projection row (with the JSON as served), its set
/// members and its search text.
pub struct RecordRows {
    statements: Arc<KindStatements>,
    kind: String,
    id: String,
    deleted: bool,
    created_at: i64,
    updated_at: i64,
    conflicted: bool,
    /// The record as the API serves it.
    pub json: String,
    columns: Vec<rusqlite::types::Value>,
    /// Members of each indexed set field, in `statements.sets` order.
    sets: Vec<Vec<String>>,
    /// Title and body, unless deleted.
    search: Option<(String, String)>,
}

impl Rendered for RecordRows {
    fn store(
        self: Box<Self>,
        conn: &Connection,
        rid: i64,
        new: bool,
    ) -> Result<Deferred, ProjectError> {
        let mut values: Vec<rusqlite::types::Value> = vec![
            rid.into(),
            self.id.clone().into(),
            i64::from(self.deleted).into(),
            self.created_at.into(),
            self.updated_at.into(),
            i64::from(self.conflicted).into(),
            self.json.into(),
        ];
        values.extend(self.columns);
        let row = if new {
            &self.statements.insert
        } else {
            &self.statements.upsert
        };
        conn.prepare_cached(row)?
            .execute(params_from_iter(values))?;
        for ((_, delete, insert), members) in self.statements.sets.iter().zip(&self.sets) {
            if !new {
                conn.prepare_cached(delete)?.execute(params![rid])?;
            }
            let mut insert = conn.prepare_cached(insert)?;
            for member in members {
                insert.execute(params![member, rid])?;
            }
        }
        // The full-text index is written at the end of the transaction,
        // where its writes are buffered together (see `Deferred`).
        let remove: Option<DeferredWrite> = (!new).then(|| {
            Box::new(move |conn: &Connection| {
                conn.prepare_cached("DELETE FROM search_index WHERE rowid = ?1")?
                    .execute(params![rid])?;
                Ok(())
            }) as DeferredWrite
        });
        let (kind, id) = (self.kind, self.id);
        let add = self.search.map(|(title, body)| {
            Box::new(move |conn: &Connection| {
                conn.prepare_cached(
                    "INSERT INTO search_index (rowid, title, body, kind, doc_id) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![rid, title, body, kind, id])?;
                Ok(())
            }) as DeferredWrite
        });
        Ok(Deferred { remove, add })
    }
}

impl Projector for RecordProjector {
    fn render(&self, doc: &DocRef<'_>) -> Result<Box<dyn Rendered>, ProjectError> {
        Ok(rendered(self.render_rows(doc)))
    }

    /// Reads the record straight from the root, as a create does
    /// (`read_new_root` is tested equal to reading the document).
    fn render_new(&self, new: &NewDocRef<'_>) -> Result<Box<dyn Rendered>, ProjectError> {
        let rows = self.schema.kind(new.kind).and_then(|kind| {
            let record = read_new_root(kind, new.id, new.root, new.hash, new.time_ms);
            self.rows_of(kind, &record)
        });
        Ok(rendered(rows))
    }

    fn after_deferred(&self, conn: &Connection, added: usize) -> Result<(), ProjectError> {
        Ok(super::search::merge_step(conn, added)?)
    }
}

/// Rows to store; a kind this node does not know stores nothing.
fn rendered(rows: Option<RecordRows>) -> Box<dyn Rendered> {
    match rows {
        Some(rows) => Box::new(rows),
        None => Box::new(crm_sync::NoProjection),
    }
}

/// The record's title (its title fields joined) and the rest of its
/// searchable text.
pub fn search_text(kind: &KindDef, record: &super::document::RecordView) -> (String, String) {
    let text_of = |name: &str| {
        kind.fields
            .iter()
            .position(|f| f.name == name)
            .and_then(|i| {
                record.values[i]
                    .as_ref()
                    .map(|v| v.search_text(&kind.fields[i]))
            })
    };
    let title = kind
        .title
        .iter()
        .filter_map(|name| text_of(name))
        .collect::<Vec<_>>()
        .join(" ");
    let body = kind
        .searchable_fields()
        .filter(|f| !kind.title.contains(&f.name))
        .filter_map(|f| text_of(&f.name))
        .collect::<Vec<_>>()
        .join("\n");
    (title, body)
}
