//! How a record lives in its Automerge document: one root key per field
//! (money adds `<field>__currency`), `Text` objects for long text, maps of
//! `member -> true` for sets, `created_at` and `deleted` beside them.
//! Reading works at the current state or at any past heads (for history).

use std::collections::{BTreeSet, HashMap};

use automerge::transaction::{Transactable, Transaction};
use automerge::{
    hydrate, Automerge, AutomergeError, ChangeHash, ObjId, ObjType, ReadDoc, ScalarValue,
    TextEncoding, Value, ROOT,
};
use chrono::{DateTime, NaiveDate};
use crm_schema::{FieldDef, FieldType, KindDef};
use crm_sync::{node_of_actor, DocId};

use super::value::FieldValue;

pub const CREATED_AT: &str = "created_at";
pub const DELETED: &str = "deleted";

/// The state to read: the current one, or the one at some heads.
#[derive(Clone, Copy)]
pub enum At<'a> {
    Now,
    Heads(&'a [ChangeHash]),
}

fn get<'d>(doc: &'d Automerge, obj: &ObjId, prop: &str, at: At<'_>) -> Option<(Value<'d>, ObjId)> {
    let found = match at {
        At::Now => doc.get(obj, prop),
        At::Heads(heads) => doc.get_at(obj, prop, heads),
    };
    found.ok().flatten()
}

fn currency_key(field: &FieldDef) -> String {
    format!("{}__currency", field.name)
}

fn date_to_ms(date: NaiveDate) -> i64 {
    date.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis())
        .unwrap_or_default()
}

/// A new record's whole root map: `created_at`, `deleted`, every assigned
/// field, and an empty container for each unassigned text or set field (so
/// that later edits on several nodes merge inside one object instead of
/// making rival objects). Handed to Automerge in one batch: a `put` per
/// field splices every column of the op set once per op, which made
/// building a 16-field client three times slower.
pub fn new_root<'a>(
    kind: &KindDef,
    now_ms: i64,
    assigned: impl IntoIterator<Item = (&'a FieldDef, &'a FieldValue)>,
) -> HashMap<String, hydrate::Value> {
    let mut root = HashMap::with_capacity(kind.fields.len() + 3);
    root.insert(CREATED_AT.to_owned(), ScalarValue::Timestamp(now_ms).into());
    root.insert(DELETED.to_owned(), ScalarValue::Boolean(false).into());
    for field in &kind.fields {
        let empty = match field.ty {
            FieldType::Text => hydrate::Value::text(TextEncoding::platform_default(), ""),
            FieldType::Set => hydrate::Value::map(),
            _ => continue,
        };
        root.insert(field.name.clone(), empty);
    }
    for (field, value) in assigned {
        let hydrated = match (field.ty, value) {
            (FieldType::Text, FieldValue::Text(s) | FieldValue::Str(s)) => {
                hydrate::Value::text(TextEncoding::platform_default(), s)
            }
            (FieldType::Set, FieldValue::Set(members)) => hydrate::Value::Map(
                members
                    .iter()
                    .map(|m| (m.clone(), ScalarValue::Boolean(true).into()))
                    .collect::<HashMap<String, hydrate::Value>>()
                    .into(),
            ),
            (FieldType::Text | FieldType::Set, _) => continue,
            (_, value) => {
                let Some((scalar, currency)) = scalar_of(value) else {
                    continue;
                };
                if let Some(currency) = currency {
                    root.insert(
                        currency_key(field),
                        ScalarValue::Str(currency.into()).into(),
                    );
                }
                scalar.into()
            }
        };
        root.insert(field.name.clone(), hydrated);
    }
    root
}

/// The scalar a field value is stored as, with the currency that goes
/// beside a money amount; `None` for sets.
fn scalar_of(value: &FieldValue) -> Option<(ScalarValue, Option<&str>)> {
    Some(match value {
        FieldValue::Str(s) | FieldValue::Text(s) => (ScalarValue::Str(s.as_str().into()), None),
        FieldValue::Int(i) => (ScalarValue::Int(*i), None),
        FieldValue::Bool(b) => (ScalarValue::Boolean(*b), None),
        FieldValue::Date(d) => (ScalarValue::Timestamp(date_to_ms(*d)), None),
        FieldValue::DateTime(ms) => (ScalarValue::Timestamp(*ms), None),
        FieldValue::Money { minor, currency } => {
            (ScalarValue::Int(*minor), Some(currency.as_str()))
        }
        FieldValue::Set(_) => return None,
    })
}

/// Writes `value` (or clears the field) in the document. Writing a field
/// supersedes every concurrent value it had, which is how a conflict is
/// resolved.
pub fn write_field(
    tx: &mut Transaction<'_>,
    field: &FieldDef,
    value: Option<&FieldValue>,
) -> Result<(), AutomergeError> {
    let name = field.name.as_str();
    match (field.ty, value) {
        (FieldType::Text, value) => {
            let text = match value {
                Some(FieldValue::Text(s)) => s.as_str(),
                _ => "",
            };
            let existing = match tx.get_all(ROOT, name)?.as_slice() {
                [(Value::Object(ObjType::Text), id)] => Some(id.clone()),
                _ => None,
            };
            let id = match existing {
                Some(id) => id,
                None => tx.put_object(ROOT, name, ObjType::Text)?,
            };
            tx.update_text(&id, text)?;
        }
        (FieldType::Set, value) => {
            let wanted = match value {
                Some(FieldValue::Set(set)) => set.clone(),
                _ => BTreeSet::new(),
            };
            let id = match tx.get(ROOT, name)? {
                Some((Value::Object(ObjType::Map), id)) => id,
                _ => tx.put_object(ROOT, name, ObjType::Map)?,
            };
            let present: Vec<String> = tx.keys(&id).collect();
            for member in present.iter().filter(|m| !wanted.contains(*m)) {
                tx.delete(&id, member.as_str())?;
            }
            for member in wanted.iter().filter(|m| !present.contains(m)) {
                tx.put(&id, member.as_str(), true)?;
            }
        }
        (_, None) => {
            delete_if_present(tx, name)?;
            if field.ty == FieldType::Money {
                delete_if_present(tx, &currency_key(field))?;
            }
        }
        (_, Some(value)) => {
            let Some((scalar, currency)) = scalar_of(value) else {
                return Ok(());
            };
            if let Some(currency) = currency {
                put_superseding(tx, &currency_key(field), ScalarValue::Str(currency.into()))?;
            }
            put_superseding(tx, name, scalar)?;
        }
    }
    Ok(())
}

fn delete_if_present(tx: &mut Transaction<'_>, key: &str) -> Result<(), AutomergeError> {
    if !tx.get_all(ROOT, key)?.is_empty() {
        tx.delete(ROOT, key)?;
    }
    Ok(())
}

/// Puts a scalar so that it supersedes all concurrent values, even when the
/// chosen value equals the current winner (a plain put of an equal value is
/// dropped as a no-op, which would leave the conflict standing).
fn put_superseding(
    tx: &mut Transaction<'_>,
    key: &str,
    value: ScalarValue,
) -> Result<(), AutomergeError> {
    if tx.get_all(ROOT, key)?.len() > 1 {
        tx.delete(ROOT, key)?;
    }
    tx.put(ROOT, key, value)
}

/// Reads one field.
pub fn read_field(doc: &Automerge, field: &FieldDef, at: At<'_>) -> Option<FieldValue> {
    let (value, id) = get(doc, &ROOT, &field.name, at)?;
    field_value(doc, field, value, &id, at, || {
        money_currency(doc, field, at)
    })
}

/// A field's value from its winning root entry; `currency` is asked only
/// for money.
fn field_value(
    doc: &Automerge,
    field: &FieldDef,
    value: Value<'_>,
    id: &ObjId,
    at: At<'_>,
    currency: impl FnOnce() -> Option<String>,
) -> Option<FieldValue> {
    match value {
        Value::Object(ObjType::Text) => {
            let text = match at {
                At::Now => doc.text(id),
                At::Heads(heads) => doc.text_at(id, heads),
            }
            .ok()?;
            text_field(text)
        }
        Value::Object(ObjType::Map) => set_field(match at {
            At::Now => doc.keys(id).collect(),
            At::Heads(heads) => doc.keys_at(id, heads).collect(),
        }),
        Value::Object(_) => None,
        Value::Scalar(scalar) => scalar_to_field(field, &scalar, currency()),
    }
}

/// A text field's value: an empty text is an unset field.
fn text_field(text: String) -> Option<FieldValue> {
    (!text.is_empty()).then_some(FieldValue::Text(text))
}

/// A set field's value from its map's keys: an empty set is an unset field.
fn set_field(members: BTreeSet<String>) -> Option<FieldValue> {
    (!members.is_empty()).then_some(FieldValue::Set(members))
}

/// The current root map, read in one pass: looking each field up on its
/// own seeks through the document once per field, which made reading a
/// record back for its rows a tenth of an import.
struct RootNow {
    /// Sorted by key, as the document iterates them.
    entries: Vec<(String, Value<'static>, ObjId, bool)>,
}

impl RootNow {
    fn read(doc: &Automerge) -> RootNow {
        RootNow {
            entries: doc
                .map_range(ROOT, ..)
                .map(|item| {
                    let id = item.id();
                    (
                        item.key.into_owned(),
                        item.value.into_value(),
                        id,
                        item.conflict,
                    )
                })
                .collect(),
        }
    }

    fn get(&self, key: &str) -> Option<&(String, Value<'static>, ObjId, bool)> {
        self.entries
            .binary_search_by(|(k, ..)| k.as_str().cmp(key))
            .ok()
            .map(|i| &self.entries[i])
    }

    fn field(&self, doc: &Automerge, field: &FieldDef) -> Option<FieldValue> {
        let (_, value, id, _) = self.get(&field.name)?;
        field_value(doc, field, value.clone(), id, At::Now, || {
            match self.get(&currency_key(field)) {
                Some((_, Value::Scalar(c), ..)) => c.as_str().map(str::to_owned),
                _ => None,
            }
        })
    }

    fn in_conflict(&self, key: &str) -> bool {
        self.get(key).is_some_and(|(.., conflict)| *conflict)
    }
}

/// The currency beside a money amount; `None` for other types.
fn money_currency(doc: &Automerge, field: &FieldDef, at: At<'_>) -> Option<String> {
    if field.ty != FieldType::Money {
        return None;
    }
    match get(doc, &ROOT, &currency_key(field), at) {
        Some((Value::Scalar(c), _)) => c.as_str().map(str::to_owned),
        _ => None,
    }
}

fn scalar_to_field(
    field: &FieldDef,
    scalar: &ScalarValue,
    currency: Option<String>,
) -> Option<FieldValue> {
    Some(match (field.ty, scalar) {
        (
            FieldType::String
            | FieldType::Email
            | FieldType::Phone
            | FieldType::Enum
            | FieldType::Reference
            | FieldType::Password,
            ScalarValue::Str(s),
        ) => FieldValue::Str(s.to_string()),
        (FieldType::Integer, ScalarValue::Int(i)) => FieldValue::Int(*i),
        (FieldType::Money, ScalarValue::Int(i)) => FieldValue::Money {
            minor: *i,
            currency: currency?,
        },
        (FieldType::Bool, ScalarValue::Boolean(b)) => FieldValue::Bool(*b),
        (FieldType::Date, ScalarValue::Timestamp(ms)) => {
            FieldValue::Date(DateTime::from_timestamp_millis(*ms)?.date_naive())
        }
        (FieldType::Datetime, ScalarValue::Timestamp(ms)) => FieldValue::DateTime(*ms),
        _ => return None,
    })
}

pub fn read_deleted(doc: &Automerge, at: At<'_>) -> bool {
    matches!(
        get(doc, &ROOT, DELETED, at),
        Some((Value::Scalar(s), _)) if matches!(s.as_ref(), ScalarValue::Boolean(true))
    )
}

/// One of several concurrent values of a field, with who wrote it where
/// and when (all read from the change that wrote it).
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictValue {
    pub value: serde_json::Value,
    pub node: Option<crm_sync::NodeId>,
    pub at_ms: i64,
    /// The writing user's id: the change's message (see `Author`).
    pub user: Option<String>,
}

/// Fields that hold several concurrent values. Text and set fields merge
/// member by member and so are never in conflict here.
fn conflicts(doc: &Automerge, kind: &KindDef, root: &RootNow) -> Vec<(String, Vec<ConflictValue>)> {
    let mut found = Vec::new();
    for field in kind.shown_fields() {
        if matches!(field.ty, FieldType::Text | FieldType::Set) || !root.in_conflict(&field.name) {
            continue;
        }
        let Ok(values) = doc.get_all(ROOT, field.name.as_str()) else {
            continue;
        };
        if values.len() < 2 {
            continue;
        }
        let entries = values
            .into_iter()
            .map(|(value, opid)| {
                let value = match value {
                    Value::Scalar(s) => {
                        scalar_to_field(field, &s, money_currency(doc, field, At::Now))
                            .map(|v| v.to_json())
                            .unwrap_or(serde_json::Value::Null)
                    }
                    Value::Object(_) => serde_json::Value::Null,
                };
                let meta = doc
                    .hash_for_opid(&opid)
                    .and_then(|hash| doc.get_change_meta_by_hash(&hash));
                ConflictValue {
                    value,
                    node: meta.as_ref().and_then(|m| node_of_actor(&m.actor)),
                    at_ms: meta.as_ref().map(|m| m.timestamp).unwrap_or_default(),
                    user: meta.and_then(|m| m.message).map(|m| m.into_owned()),
                }
            })
            .collect();
        found.push((field.name.clone(), entries));
    }
    found
}

/// When the record last changed: the latest time among the changes at its
/// heads. Derived from the document alone, so every node agrees.
pub fn updated_at(doc: &Automerge) -> i64 {
    doc.get_heads()
        .iter()
        .filter_map(|h| doc.get_change_meta_by_hash(h))
        .map(|m| m.timestamp)
        .max()
        .unwrap_or_default()
}

/// A record as read from its document.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordView {
    pub id: DocId,
    /// Aligned with the kind's fields.
    pub values: Vec<Option<FieldValue>>,
    pub created_at: i64,
    pub updated_at: i64,
    pub heads: Vec<ChangeHash>,
    pub deleted: bool,
    pub conflicts: Vec<(String, Vec<ConflictValue>)>,
}

pub fn read_record(doc: &Automerge, kind: &KindDef, id: DocId) -> RecordView {
    let mut heads = doc.get_heads();
    heads.sort();
    let root = RootNow::read(doc);
    let created_at = match root.get(CREATED_AT) {
        Some((_, Value::Scalar(s), ..)) => match s.as_ref() {
            ScalarValue::Timestamp(ms) => *ms,
            _ => 0,
        },
        _ => 0,
    };
    let deleted = matches!(
        root.get(DELETED),
        Some((_, Value::Scalar(s), ..)) if matches!(s.as_ref(), ScalarValue::Boolean(true))
    );
    RecordView {
        id,
        values: kind.fields.iter().map(|f| root.field(doc, f)).collect(),
        created_at,
        updated_at: updated_at(doc),
        heads,
        deleted,
        conflicts: conflicts(doc, kind, &root),
    }
}

/// A new record as its document reads, from the `root` ([`new_root`]) its
/// one change put and that change's `hash` and `time_ms`: the document is
/// never built for a create or an import (`crm_sync::Store::prepare_root`),
/// and reading it back was a tenth of an import. Values go through the
/// same conversions as [`read_record`]'s; the tests hold the two readings
/// equal.
pub fn read_new_root(
    kind: &KindDef,
    id: DocId,
    root: &HashMap<String, hydrate::Value>,
    hash: ChangeHash,
    time_ms: i64,
) -> RecordView {
    let created_at = match root.get(CREATED_AT) {
        Some(hydrate::Value::Scalar(ScalarValue::Timestamp(ms))) => *ms,
        _ => 0,
    };
    let deleted = matches!(
        root.get(DELETED),
        Some(hydrate::Value::Scalar(ScalarValue::Boolean(true)))
    );
    let currency = |field: &FieldDef| match root.get(&currency_key(field)) {
        Some(hydrate::Value::Scalar(ScalarValue::Str(c))) => Some(c.to_string()),
        _ => None,
    };
    let values = kind
        .fields
        .iter()
        .map(|field| match root.get(&field.name)? {
            hydrate::Value::Text(text) => text_field(text.to_string()),
            hydrate::Value::Map(map) => set_field(map.iter().map(|(m, _)| m.clone()).collect()),
            hydrate::Value::List(_) => None,
            hydrate::Value::Scalar(scalar) => {
                let currency = (field.ty == FieldType::Money)
                    .then(|| currency(field))
                    .flatten();
                scalar_to_field(field, scalar, currency)
            }
        })
        .collect();
    RecordView {
        id,
        values,
        created_at,
        updated_at: time_ms,
        heads: vec![hash],
        deleted,
        conflicts: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_schema::Schema;

    fn clients() -> KindDef {
        Schema::builtin()
            .ok()
            .and_then(|s| s.kind("clients").cloned())
            .expect("clients kind is built in")
    }

    fn write(
        doc: &mut Automerge,
        kind: &KindDef,
        name: &str,
        value: Option<FieldValue>,
        time: i64,
    ) {
        let field = kind.field(name).expect("field exists").clone();
        let mut tx = doc.transaction();
        write_field(&mut tx, &field, value.as_ref()).expect("write succeeds");
        // The author is named after the time, as `Author` does with ids.
        tx.commit_with(
            automerge::transaction::CommitOptions::default()
                .with_time(time)
                .with_message(format!("user-{time}")),
        );
    }

    /// A new record with no field set, made at time 1.
    fn init(doc: &mut Automerge, kind: &KindDef) {
        let mut tx = doc.transaction();
        tx.init_root_from_hydrate(&new_root(kind, 1, []).into())
            .expect("new root");
        tx.commit_with(automerge::transaction::CommitOptions::default().with_time(1));
    }

    fn actor(n: u8) -> automerge::ActorId {
        crm_sync::NodeIdentity {
            node_id: crm_sync::NodeId(uuid::Uuid::from_bytes([n; 16])),
            epoch: crm_sync::Epoch(1),
            name: String::new(),
        }
        .actor()
    }

    #[test]
    fn forks_editing_one_field_conflict_and_a_write_resolves() {
        let kind = clients();
        let mut a = Automerge::new().with_actor(actor(1));
        init(&mut a, &kind);
        write(
            &mut a,
            &kind,
            "city",
            Some(FieldValue::Str("Moscow".into())),
            10,
        );
        let mut b = a.fork().with_actor(actor(2));
        write(
            &mut a,
            &kind,
            "city",
            Some(FieldValue::Str("Kazan".into())),
            20,
        );
        write(
            &mut b,
            &kind,
            "city",
            Some(FieldValue::Str("Omsk".into())),
            30,
        );
        write(
            &mut b,
            &kind,
            "region",
            Some(FieldValue::Str("Siberia".into())),
            31,
        );
        a.merge(&mut b).expect("merge");
        b.merge(&mut a).expect("merge");

        let view_a = read_record(&a, &kind, DocId::new());
        let view_b = read_record(&b, &kind, DocId::new());
        assert_eq!(view_a.heads, view_b.heads);
        assert_eq!(view_a.conflicts, view_b.conflicts);
        let (field, values) = &view_a.conflicts[0];
        assert_eq!(field, "city");
        let mut seen: Vec<_> = values
            .iter()
            .map(|v| (v.value.clone(), v.node, v.at_ms, v.user.clone()))
            .collect();
        seen.sort_by_key(|s| s.2);
        assert_eq!(seen[0].0, "Kazan");
        assert_eq!(seen[0].1, node_of_actor(&actor(1)));
        assert_eq!(seen[0].3.as_deref(), Some("user-20"));
        assert_eq!(seen[1].0, "Omsk");
        assert_eq!(seen[1].1, node_of_actor(&actor(2)));
        assert_eq!(seen[1].3.as_deref(), Some("user-30"));
        assert_eq!(view_a.conflicts.len(), 1, "different fields merge silently");

        // The API shape: conflicts: {field: [{value, node, at, user,
        // login, display_name}, ...]}; the names are filled in when read.
        let json = super::super::view::to_json(&kind, &view_a);
        let shown = json["conflicts"]["city"]
            .as_array()
            .expect("city conflicts listed");
        assert_eq!(shown.len(), 2);
        for entry in shown {
            assert!(["Kazan", "Omsk"].contains(&entry["value"].as_str().unwrap_or_default()));
            assert!(entry["node"].as_str().is_some_and(|n| n.len() == 36));
            assert!(entry["at"]
                .as_str()
                .is_some_and(|t| t.starts_with("1970-01-01T00:00:00.0")));
            assert!(entry["user"]
                .as_str()
                .is_some_and(|u| u.starts_with("user-")));
            assert_eq!(entry["login"], serde_json::Value::Null);
            assert_eq!(entry["display_name"], serde_json::Value::Null);
        }
        assert_eq!(json["region"], "Siberia");
        assert!(json["city"] == "Kazan" || json["city"] == "Omsk");

        // Choosing the value that already wins still clears the conflict.
        let winner = read_field(&a, kind.field("city").expect("city"), At::Now);
        write(&mut a, &kind, "city", winner.clone(), 40);
        assert!(read_record(&a, &kind, DocId::new()).conflicts.is_empty());
        b.merge(&mut a).expect("merge");
        assert!(read_record(&b, &kind, DocId::new()).conflicts.is_empty());
        assert_eq!(
            read_field(&b, kind.field("city").expect("city"), At::Now),
            winner
        );
    }

    #[test]
    fn money_conflicts_show_the_currency() {
        let kind: KindDef = toml::from_str(
            "collection = \"deals\"\nlabel = \"Deal\"\ntitle = [\"amount\"]\n\
             [[fields]]\nname = \"amount\"\ntype = \"money\"",
        )
        .expect("kind parses");
        let rub = |minor| {
            Some(FieldValue::Money {
                minor,
                currency: "RUB".into(),
            })
        };
        let mut a = Automerge::new().with_actor(actor(1));
        write(&mut a, &kind, "amount", rub(100), 1);
        let mut b = a.fork().with_actor(actor(2));
        write(&mut a, &kind, "amount", rub(200), 2);
        write(&mut b, &kind, "amount", rub(300), 3);
        a.merge(&mut b).expect("merge");
        let found = read_record(&a, &kind, DocId::new()).conflicts;
        let values: Vec<_> = found[0]
            .1
            .iter()
            .map(|v| v.value["currency"].clone())
            .collect();
        assert_eq!(values, vec!["RUB", "RUB"]);
    }

    #[test]
    fn fields_round_trip_and_read_at_past_heads() {
        let kind = clients();
        let mut doc = Automerge::new().with_actor(actor(1));
        init(&mut doc, &kind);
        let before = doc.get_heads();
        let tags = FieldValue::Set(["vip".to_owned(), "key".to_owned()].into());
        write(&mut doc, &kind, "tags", Some(tags.clone()), 2);
        write(
            &mut doc,
            &kind,
            "notes",
            Some(FieldValue::Text("hello".into())),
            3,
        );
        let tags_field = kind.field("tags").expect("tags");
        assert_eq!(read_field(&doc, tags_field, At::Now), Some(tags));
        assert_eq!(read_field(&doc, tags_field, At::Heads(&before)), None);
        write(&mut doc, &kind, "notes", None, 4);
        assert_eq!(
            read_field(&doc, kind.field("notes").expect("notes"), At::Now),
            None
        );
        assert_eq!(updated_at(&doc), 4);
        let view = read_record(&doc, &kind, DocId::new());
        assert_eq!(view.created_at, 1);
        // The one-pass read agrees with reading field by field.
        let one_by_one: Vec<_> = kind
            .fields
            .iter()
            .map(|f| read_field(&doc, f, At::Now))
            .collect();
        assert_eq!(view.values, one_by_one);
    }

    #[test]
    fn a_new_root_reads_back_as_its_values_and_merges_edits() {
        let kind = clients();
        let field = |name: &str| kind.field(name).expect("field exists");
        let tags = FieldValue::Set(["vip".to_owned()].into());
        let name = FieldValue::Str("ООО «Ромашка»".into());
        let notes = FieldValue::Text("first".into());
        let assigned = [
            (field("name"), &name),
            (field("tags"), &tags),
            (field("notes"), &notes),
        ];
        let mut a = Automerge::new().with_actor(actor(1));
        let mut tx = a.transaction();
        tx.init_root_from_hydrate(&new_root(&kind, 5, assigned).into())
            .expect("new root");
        tx.commit_with(automerge::transaction::CommitOptions::default().with_time(5));
        let view = read_record(&a, &kind, DocId::new());
        assert_eq!(view.created_at, 5);
        assert!(!view.deleted);
        for (field, value) in assigned {
            assert_eq!(read_field(&a, field, At::Now).as_ref(), Some(value));
        }
        assert_eq!(read_field(&a, field("city"), At::Now), None);
        // The containers are shared: concurrent edits merge inside them.
        let mut b = a.fork().with_actor(actor(2));
        write(
            &mut a,
            &kind,
            "tags",
            Some(FieldValue::Set(["vip".to_owned(), "a".to_owned()].into())),
            6,
        );
        write(
            &mut b,
            &kind,
            "tags",
            Some(FieldValue::Set(["vip".to_owned(), "b".to_owned()].into())),
            7,
        );
        write(
            &mut b,
            &kind,
            "city",
            Some(FieldValue::Str("Пермь".into())),
            7,
        );
        a.merge(&mut b).expect("merge");
        let merged = ["a", "b", "vip"].map(str::to_owned).into();
        assert_eq!(
            read_field(&a, field("tags"), At::Now),
            Some(FieldValue::Set(merged))
        );
        assert_eq!(
            read_field(&a, field("city"), At::Now),
            Some(FieldValue::Str("Пермь".into()))
        );
        assert!(read_record(&a, &kind, DocId::new()).conflicts.is_empty());
    }

    /// A value of the field's type; `variant` picks another one.
    fn sample(field: &FieldDef, variant: usize) -> FieldValue {
        let word = ["Ромашка", "north", ""][variant % 3];
        match field.ty {
            FieldType::Text if variant == 1 => FieldValue::Str(format!("as a string {word}")),
            FieldType::Text => FieldValue::Text(format!("Звонить\nпосле 10 🙂 {word}")),
            FieldType::Integer => FieldValue::Int(-7 + variant as i64),
            FieldType::Money => FieldValue::Money {
                minor: 12_345 * variant as i64,
                currency: ["RUB", "USD", "EUR"][variant % 3].into(),
            },
            FieldType::Bool => FieldValue::Bool(variant.is_multiple_of(2)),
            FieldType::Date => FieldValue::Date(
                NaiveDate::from_ymd_opt(2026, 11, 1 + variant as u32).expect("a date"),
            ),
            FieldType::Datetime => FieldValue::DateTime(1_764_000_000_000 + variant as i64),
            FieldType::Set => FieldValue::Set(
                ["vip", "опт", word]
                    .iter()
                    .take(variant + 1)
                    .map(|m| m.to_string())
                    .collect(),
            ),
            _ => FieldValue::Str(format!("{} {word}", field.name)),
        }
    }

    /// A value of another shape than `field`'s type stores, as a peer of
    /// another version (or a broken one) could send: each shape in turn.
    fn odd_value(field: &FieldDef, shape: usize) -> hydrate::Value {
        let text = |s: &str| hydrate::Value::text(automerge::TextEncoding::platform_default(), s);
        match (shape + field.name.len()) % 8 {
            0 => hydrate::Value::from(42i64),
            1 => hydrate::Value::from("строка"),
            2 => text(""),
            3 => text("текст"),
            4 => hydrate::Value::List(vec![hydrate::Value::from("x")].into()),
            5 => hydrate::Value::Map(
                HashMap::from([("m".to_owned(), hydrate::Value::from(3i64))]).into(),
            ),
            6 => hydrate::Value::Scalar(ScalarValue::Timestamp(i64::MAX)),
            _ => hydrate::Value::Scalar(ScalarValue::Boolean(true)),
        }
    }

    /// What a document received from a peer holds need not be what this
    /// version writes; reading its root must still agree with reading the
    /// document, since a first sync reads one-change documents from their
    /// root and a rebuild reads them loaded.
    #[test]
    fn any_root_reads_the_same_from_itself_as_from_its_document() {
        let schema = Schema::builtin().expect("built-in schema");
        for kind in schema.kinds() {
            for shape in 0..8 {
                let mut root: HashMap<String, hydrate::Value> = kind
                    .fields
                    .iter()
                    .map(|f| (f.name.clone(), odd_value(f, shape)))
                    .collect();
                root.insert(CREATED_AT.to_owned(), odd_value(&kind.fields[0], shape + 1));
                root.insert(DELETED.to_owned(), odd_value(&kind.fields[0], shape + 2));
                for field in kind.fields.iter().filter(|f| f.ty == FieldType::Money) {
                    root.insert(currency_key(field), odd_value(field, shape + 3));
                }
                let mut doc = Automerge::new().with_actor(actor(1));
                let mut tx = doc.transaction();
                tx.init_root_from_hydrate(&root.clone().into())
                    .expect("new root");
                let (hash, _) =
                    tx.commit_with(automerge::transaction::CommitOptions::default().with_time(5));
                let id = DocId::new();
                assert_eq!(
                    read_new_root(kind, id, &root, hash.expect("a change"), 5),
                    read_record(&doc, kind, id),
                    "{} shape {shape}",
                    kind.collection
                );
            }
        }
    }

    #[test]
    fn a_new_record_reads_the_same_from_its_root_as_from_its_document() {
        let schema = Schema::builtin().expect("built-in schema");
        for kind in schema.kinds() {
            for variant in 0..4 {
                // Variant 3 assigns nothing: empty containers only.
                let values: Vec<_> = kind
                    .fields
                    .iter()
                    .filter(|_| variant < 3)
                    .map(|f| (f, sample(f, variant)))
                    .collect();
                let root = new_root(
                    kind,
                    1_000 + variant as i64,
                    values.iter().map(|(f, v)| (*f, v)),
                );
                let time = 2_000 + variant as i64;
                let mut doc = Automerge::new().with_actor(actor(1));
                let mut tx = doc.transaction();
                tx.init_root_from_hydrate(&root.clone().into())
                    .expect("new root");
                let (hash, _) = tx
                    .commit_with(automerge::transaction::CommitOptions::default().with_time(time));
                let id = DocId::new();
                let from_root = read_new_root(kind, id, &root, hash.expect("a change"), time);
                assert_eq!(
                    from_root,
                    read_record(&doc, kind, id),
                    "{} variant {variant}",
                    kind.collection
                );
                let assigned = from_root.values.iter().filter(|v| v.is_some()).count();
                assert!(variant == 3 || assigned > 0, "{}", kind.collection);
            }
        }
    }
}
