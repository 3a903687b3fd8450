//! The record as the API shows it: JSON with every declared field, metadata,
//! the version (heads) and any conflicts; and the ETag derived from heads.

use automerge::ChangeHash;
use crm_schema::{FieldType, KindDef};
use serde_json::{json, Map, Value as Json};

use super::document::RecordView;
use super::value::format_datetime;

/// Keys every record carries besides its fields.
pub const META_KEYS: &[&str] = &["id", "created_at", "updated_at", "version", "conflicts"];

pub fn to_json(kind: &KindDef, record: &RecordView) -> Json {
    let mut out = Map::new();
    out.insert("id".into(), Json::String(record.id.to_string()));
    for (field, value) in kind.fields.iter().zip(&record.values) {
        // A secret stays in the document; it never leaves through the API.
        if field.is_secret() {
            continue;
        }
        let shown = match (value, field.ty) {
            (Some(v), _) => v.to_json(),
            (None, FieldType::Set) => json!([]),
            (None, _) => Json::Null,
        };
        out.insert(field.name.clone(), shown);
    }
    out.insert(
        "created_at".into(),
        Json::String(format_datetime(record.created_at)),
    );
    out.insert(
        "updated_at".into(),
        Json::String(format_datetime(record.updated_at)),
    );
    out.insert("version".into(), version(&record.heads));
    if !record.conflicts.is_empty() {
        let conflicts: Map<String, Json> = record
            .conflicts
            .iter()
            .map(|(field, values)| {
                let values = values
                    .iter()
                    .map(|v| {
                        // The user's names are not the document's: they are
                        // filled in from the users' records when read
                        // (`authors`), so the stored JSON stays a function
                        // of the document.
                        json!({
                            "value": v.value,
                            "node": v.node.map(|n| n.to_string()),
                            "at": format_datetime(v.at_ms),
                            "user": v.user,
                            "login": null,
                            "display_name": null,
                        })
                    })
                    .collect();
                (field.clone(), Json::Array(values))
            })
            .collect();
        out.insert("conflicts".into(), Json::Object(conflicts));
    }
    Json::Object(out)
}

pub fn version(heads: &[ChangeHash]) -> Json {
    Json::Array(heads.iter().map(|h| Json::String(h.to_string())).collect())
}

/// The strong ETag of a record version: its sorted heads.
pub fn etag_of_version(version: &Json) -> String {
    let heads: Vec<&str> = version
        .as_array()
        .map(|a| a.iter().filter_map(Json::as_str).collect())
        .unwrap_or_default();
    etag_of_heads(&heads)
}

/// The ETag of a version given as its heads' strings.
pub fn etag_of_heads<S: AsRef<str>>(heads: &[S]) -> String {
    let joined: Vec<&str> = heads.iter().map(AsRef::as_ref).collect();
    format!("\"{}\"", joined.join("."))
}
