//! Replication scopes in CRM terms: a peer token may limit a laptop to some
//! kinds and to the records whose fields match a filter (`manager =
//! ivanov`, `region = north`). The store asks [`PeerScope`] (a
//! `crm_sync::DocScope`) about each document; the answer comes from the
//! projection tables, so no document is loaded to serve a scoped feed.
//!
//! A record is inside the scope when:
//! - its kind is one of the scope's kinds (all kinds when none are named);
//! - each filter field has one of the accepted values, read on the record
//!   itself or, for a kind without that field, on the record its reference
//!   points to (a contact person follows its client);
//! - or a record inside the scope by its own fields references it (a deal's
//!   client comes with the deal).
//!
//! System kinds (the directory of nodes) are inside every scope, whole.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crm_schema::{FieldDef, FieldType, KindDef, Schema};
use crm_sync::automerge::Automerge;
use crm_sync::{DocId, DocScope, StoreError};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Connection};
use serde::{Deserialize, Serialize};

use super::document::{read_field, At};
use super::projection::{column, table};
use super::value::{column_value, filter_operand, FieldValue};

/// A scope as a token stores it (JSON) and the CLI writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeSpec {
    /// The kinds the peer may see; `None`: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kinds: Option<BTreeSet<String>>,
    /// Field → accepted values: a record matches when every field has one
    /// of its values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub filter: BTreeMap<String, Vec<String>>,
    /// Kinds the peer receives whole, unfiltered (`users`, so that reps can
    /// log in on their laptop).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub whole: BTreeSet<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScopeError {
    #[error("the stored scope does not parse: {0}")]
    Unreadable(String),
    #[error("scope: unknown kind `{0}`")]
    UnknownKind(String),
    #[error("scope filter `{0}` needs at least one value")]
    NoValues(String),
    #[error("scope filter `{field}`: {kind} has no such indexed field, nor a reference to a kind that has it")]
    NotFilterable { field: String, kind: String },
    #[error("scope filter `{field}`: `{value}` {message}")]
    BadValue {
        field: String,
        value: String,
        message: String,
    },
    #[error("scope filter `{0}` is not `field=value`")]
    NotAPair(String),
}

impl ScopeSpec {
    /// From the command line: `--kinds clients,contacts` and
    /// `--filter manager=ivanov` (repeatable; values of one field add up).
    pub fn from_args(
        kinds: Option<&str>,
        filters: &[String],
        whole: Option<&str>,
    ) -> Result<ScopeSpec, ScopeError> {
        let list = |k: &str| -> BTreeSet<String> {
            k.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let whole = whole.map(list).unwrap_or_default();
        let kinds = kinds.map(|k| list(k).union(&whole).cloned().collect());
        let mut filter: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for pair in filters {
            let (field, value) = pair
                .split_once('=')
                .ok_or_else(|| ScopeError::NotAPair(pair.clone()))?;
            filter
                .entry(field.trim().to_owned())
                .or_default()
                .push(value.trim().to_owned());
        }
        Ok(ScopeSpec {
            kinds,
            filter,
            whole,
        })
    }

    pub fn is_everything(&self) -> bool {
        self.kinds.is_none() && self.filter.is_empty()
    }

    fn filters(&self, kind: &str) -> bool {
        !self.filter.is_empty() && !self.whole.contains(kind)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    pub fn from_json(text: &str) -> Result<ScopeSpec, ScopeError> {
        serde_json::from_str(text).map_err(|e| ScopeError::Unreadable(e.to_string()))
    }
}

/// Where a kind reads one filter field.
enum Source<'s> {
    Own(&'s FieldDef),
    /// Through the reference `via` to `target`'s field.
    Referenced {
        via: &'s FieldDef,
        target: &'s KindDef,
        field: &'s FieldDef,
    },
}

/// One filter field with its accepted values, as the projection stores
/// them.
struct Condition<'s> {
    source: Source<'s>,
    values: Vec<SqlValue>,
}

/// How one kind decides.
struct KindRule {
    /// `SELECT EXISTS(...)` with `?1` the document id, then `values`.
    sql: String,
    values: Vec<SqlValue>,
}

/// A scope checked against the schema, ready to answer per document.
pub struct PeerScope {
    schema: Arc<Schema>,
    spec: ScopeSpec,
    /// Per kind inside the scope; a kind absent here is outside.
    rules: BTreeMap<String, Option<KindRule>>,
}

fn in_list(column: &str, values: &[SqlValue], first: usize) -> String {
    let marks: Vec<String> = (0..values.len())
        .map(|i| format!("?{}", first + i))
        .collect();
    format!("{column} IN ({})", marks.join(", "))
}

impl PeerScope {
    pub fn new(schema: Arc<Schema>, spec: ScopeSpec) -> Result<PeerScope, ScopeError> {
        if let Some(unknown) = spec.whole.iter().find(|k| schema.kind(k).is_none()) {
            return Err(ScopeError::UnknownKind(unknown.clone()));
        }
        let kinds: Vec<&KindDef> = match &spec.kinds {
            Some(names) => names
                .iter()
                .map(|n| {
                    schema
                        .kind(n)
                        .ok_or_else(|| ScopeError::UnknownKind(n.clone()))
                })
                .collect::<Result<_, _>>()?,
            None => schema.kinds().iter().map(|k| &**k).collect(),
        };
        // System kinds (the directory of nodes) hold no customer data and
        // every node needs them: every scope takes them whole.
        let kinds: Vec<&KindDef> = kinds.into_iter().filter(|k| !k.system).collect();
        let mut conditions: BTreeMap<String, Vec<Condition<'_>>> = BTreeMap::new();
        for kind in kinds.iter().filter(|k| spec.filters(&k.collection)) {
            let mut list = Vec::new();
            for (name, raw_values) in &spec.filter {
                if raw_values.is_empty() {
                    return Err(ScopeError::NoValues(name.clone()));
                }
                let source =
                    source_of(&schema, kind, name).ok_or_else(|| ScopeError::NotFilterable {
                        field: name.clone(),
                        kind: kind.collection.clone(),
                    })?;
                let field = match &source {
                    Source::Own(f) | Source::Referenced { field: f, .. } => *f,
                };
                let values = raw_values
                    .iter()
                    .map(|raw| {
                        filter_operand(field, raw, false).map_err(|message| ScopeError::BadValue {
                            field: name.clone(),
                            value: raw.clone(),
                            message,
                        })
                    })
                    .collect::<Result<_, _>>()?;
                list.push(Condition { source, values });
            }
            conditions.insert(kind.collection.clone(), list);
        }
        let rules = kinds
            .iter()
            .map(|kind| {
                let rule = spec
                    .filters(&kind.collection)
                    .then(|| kind_rule(kind, &kinds, &conditions));
                (kind.collection.clone(), rule)
            })
            .chain(
                schema
                    .kinds()
                    .iter()
                    .filter(|k| k.system)
                    .map(|k| (k.collection.clone(), None)),
            )
            .collect();
        Ok(PeerScope {
            schema: schema.clone(),
            spec,
            rules,
        })
    }

    pub fn spec(&self) -> &ScopeSpec {
        &self.spec
    }
}

/// Where `kind` reads filter field `name`: its own indexed column, or the
/// column of the kind one of its references points to.
fn source_of<'s>(schema: &'s Schema, kind: &'s KindDef, name: &str) -> Option<Source<'s>> {
    let filterable = |f: &&FieldDef| f.indexed && f.ty != FieldType::Set;
    if let Some(own) = kind.field(name).filter(filterable) {
        return Some(Source::Own(own));
    }
    kind.fields
        .iter()
        .filter(|f| f.ty == FieldType::Reference)
        .find_map(|via| {
            let target = schema.kind(via.to.as_deref()?)?;
            let field = target.field(name).filter(filterable)?;
            via.indexed
                .then_some(Source::Referenced { via, target, field })
        })
}

/// The test of `kind`: its own conditions, or being referenced by a record
/// of another scoped kind that meets its conditions on its own fields.
fn kind_rule(
    kind: &KindDef,
    kinds: &[&KindDef],
    conditions: &BTreeMap<String, Vec<Condition<'_>>>,
) -> KindRule {
    let mut values = Vec::new();
    let t = table(kind);
    let mut joins = String::new();
    let mut wheres = vec!["k.id = ?1".to_owned()];
    for (n, condition) in conditions
        .get(&kind.collection)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let col = match &condition.source {
            Source::Own(f) => format!("k.{}", column(f)),
            Source::Referenced { via, target, field } => {
                joins.push_str(&format!(
                    " JOIN {} r{n} ON r{n}.id = k.{}",
                    table(target),
                    column(via)
                ));
                format!("r{n}.{}", column(field))
            }
        };
        wheres.push(in_list(&col, &condition.values, values.len() + 2));
        values.extend(condition.values.iter().cloned());
    }
    let mut sql = format!(
        "SELECT EXISTS(SELECT 1 FROM {t} k{joins} WHERE {})",
        wheres.join(" AND ")
    );
    // Records of other kinds, inside by their own fields, that reference
    // this kind bring it along.
    for other in kinds.iter().filter(|o| o.collection != kind.collection) {
        let Some(own) = conditions.get(&other.collection) else {
            continue;
        };
        if !own.iter().all(|c| matches!(c.source, Source::Own(_))) {
            continue;
        }
        for via in other
            .fields
            .iter()
            .filter(|f| f.ty == FieldType::Reference && f.indexed)
            .filter(|f| f.to.as_deref() == Some(kind.collection.as_str()))
        {
            let mut inner = vec![format!("o.{} = ?1", column(via))];
            for condition in own {
                if let Source::Own(f) = condition.source {
                    inner.push(in_list(
                        &format!("o.{}", column(f)),
                        &condition.values,
                        values.len() + 2,
                    ));
                    values.extend(condition.values.iter().cloned());
                }
            }
            sql.push_str(&format!(
                " OR EXISTS(SELECT 1 FROM {} o WHERE {})",
                table(other),
                inner.join(" AND ")
            ));
        }
    }
    KindRule { sql, values }
}

fn query_exists(conn: &Connection, sql: &str, args: Vec<SqlValue>) -> Result<bool, StoreError> {
    let found: bool = conn
        .prepare_cached(sql)?
        .query_row(params_from_iter(args), |r| r.get(0))?;
    Ok(found)
}

impl DocScope for PeerScope {
    fn admits(&self, conn: &Connection, doc: &DocId, kind: &str) -> Result<bool, StoreError> {
        match self.rules.get(kind) {
            None => Ok(false),
            Some(None) => Ok(true),
            Some(Some(rule)) => {
                let mut args = vec![SqlValue::Text(doc.to_string())];
                args.extend(rule.values.iter().cloned());
                query_exists(conn, &rule.sql, args)
            }
        }
    }

    fn admits_new(
        &self,
        conn: &Connection,
        kind: &str,
        doc: &Automerge,
    ) -> Result<bool, StoreError> {
        match self.rules.get(kind) {
            None => return Ok(false),
            Some(None) => return Ok(true),
            Some(Some(_)) => {}
        }
        let Some(def) = self.schema.kind(kind) else {
            return Ok(false);
        };
        for (name, raw_values) in &self.spec.filter {
            let admitted = match source_of(&self.schema, def, name) {
                None => false,
                Some(Source::Own(field)) => {
                    let wanted: Vec<SqlValue> = raw_values
                        .iter()
                        .filter_map(|raw| filter_operand(field, raw, false).ok())
                        .collect();
                    read_field(doc, field, At::Now)
                        .is_some_and(|v| wanted.contains(&column_value(field, &v)))
                }
                Some(Source::Referenced { via, target, field }) => {
                    let Some(FieldValue::Str(target_id)) = read_field(doc, via, At::Now) else {
                        return Ok(false);
                    };
                    let wanted: Vec<SqlValue> = raw_values
                        .iter()
                        .filter_map(|raw| filter_operand(field, raw, false).ok())
                        .collect();
                    let sql = format!(
                        "SELECT EXISTS(SELECT 1 FROM {} WHERE id = ?1 AND {})",
                        table(target),
                        in_list(&column(field), &wanted, 2)
                    );
                    let mut args = vec![SqlValue::Text(target_id)];
                    args.extend(wanted);
                    query_exists(conn, &sql, args)?
                }
            };
            if !admitted {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::builtin().expect("built-in schema"))
    }

    #[test]
    fn command_line_scopes_parse_and_check_against_the_schema() {
        let spec = ScopeSpec::from_args(
            Some("clients,contacts"),
            &["manager=ivanov".into(), "manager=petrov".into()],
            Some("users"),
        )
        .expect("parses");
        assert!(spec.kinds.as_ref().is_some_and(|k| k.contains("users")));
        assert_eq!(spec.filter["manager"], vec!["ivanov", "petrov"]);
        assert_eq!(ScopeSpec::from_json(&spec.to_json()), Ok(spec.clone()));
        assert!(PeerScope::new(schema(), spec).is_ok());
        // Contacts have no manager field but follow their client.
        let contacts_only =
            ScopeSpec::from_args(Some("contacts"), &["manager=ivanov".into()], None)
                .expect("parses");
        let contacts_only = PeerScope::new(schema(), contacts_only).expect("a valid scope");
        // The directory of nodes comes whole with any scope; users do not.
        assert!(matches!(contacts_only.rules.get("nodes"), Some(None)));
        assert!(!contacts_only.rules.contains_key("users"));
        for (kinds, filters, expected) in [
            (Some("clients,nope"), vec![], "unknown kind"),
            (None, vec!["manager".to_owned()], "is not `field=value`"),
            (None, vec!["notes=x".to_owned()], "no such indexed field"),
            // Users have no manager: they must be sent whole.
            (
                Some("users"),
                vec!["manager=x".to_owned()],
                "no such indexed field",
            ),
            (None, vec!["stage=flying".to_owned()], "must be one of"),
        ] {
            let error = ScopeSpec::from_args(kinds, &filters, None)
                .and_then(|spec| PeerScope::new(schema(), spec).map(|_| ()))
                .expect_err("refused");
            assert!(error.to_string().contains(expected), "{error}");
        }
    }
}
