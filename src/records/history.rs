//! A record's history: each change with its time, node and user, and the
//! fields it changed from what to what (as seen by the change's author).

use automerge::Automerge;
use crm_schema::KindDef;
use crm_sync::node_of_actor;
use serde::Serialize;
use serde_json::Value as Json;

use super::authors::Authors;
use super::document::{read_deleted, read_field, At, DELETED};
use super::value::format_datetime;
use super::RecordError;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    /// The change's hash.
    pub change: String,
    /// When it was made (the writing node's clock), RFC 3339.
    pub at: String,
    /// The node that made it.
    pub node: Option<String>,
    /// The id of the user who made it.
    pub user: Option<String>,
    /// That user's login, when the user's record is known here.
    pub login: Option<String>,
    /// That user's display name, when known here.
    pub display_name: Option<String>,
    pub fields: Vec<FieldChange>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FieldChange {
    pub field: String,
    /// The value before (any JSON value, shaped as the field's values are).
    pub from: Json,
    /// The value after.
    pub to: Json,
    /// True when the field is secret (a password): it changed, but its
    /// values are not shown (`from` and `to` are null).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<bool>,
}

/// Oldest first, in causal order.
pub fn history(doc: &Automerge, kind: &KindDef) -> Vec<HistoryEntry> {
    doc.get_changes_meta(&[])
        .into_iter()
        .map(|meta| {
            let before = &meta.deps[..];
            let after = &[meta.hash][..];
            let mut fields = Vec::new();
            for field in &kind.fields {
                let from = read_field(doc, field, At::Heads(before));
                let to = read_field(doc, field, At::Heads(after));
                if from == to {
                    continue;
                }
                fields.push(if field.is_secret() {
                    FieldChange {
                        field: field.name.clone(),
                        from: Json::Null,
                        to: Json::Null,
                        secret: Some(true),
                    }
                } else {
                    FieldChange {
                        field: field.name.clone(),
                        from: from.map_or(Json::Null, |v| v.to_json()),
                        to: to.map_or(Json::Null, |v| v.to_json()),
                        secret: None,
                    }
                });
            }
            let (was, is) = (
                read_deleted(doc, At::Heads(before)),
                read_deleted(doc, At::Heads(after)),
            );
            if was != is && !meta.deps.is_empty() {
                fields.push(FieldChange {
                    field: DELETED.into(),
                    from: was.into(),
                    to: is.into(),
                    secret: None,
                });
            }
            HistoryEntry {
                change: meta.hash.to_string(),
                at: format_datetime(meta.timestamp),
                node: node_of_actor(&meta.actor).map(|n| n.to_string()),
                user: meta.message.map(|m| m.into_owned()),
                login: None,
                display_name: None,
                fields,
            }
        })
        .collect()
}

/// Fills in each history entry's login and display name from the users'
/// records as they are now.
pub(super) fn name_authors(
    authors: &mut Authors<'_>,
    entries: &mut [HistoryEntry],
) -> Result<(), RecordError> {
    for entry in entries {
        let Some(user) = &entry.user else { continue };
        let names = authors.names(user)?;
        entry.login = names.login;
        entry.display_name = names.display_name;
    }
    Ok(())
}
