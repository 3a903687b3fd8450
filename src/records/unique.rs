//! Unique fields (`unique = true` in a kind file): checked on the writer,
//! in the transaction that writes the record, against the projection. The
//! check is local: two offices may still each create a record with the
//! same value, and replication then holds both.

use crm_schema::KindDef;
use crm_sync::{DocId, WriteTxn};
use rusqlite::params;

use super::value::{self, FieldValue};
use super::{projection, RecordError};

/// Unique fields: no other live, active record of the kind may hold the
/// value the written record would have. `value_of` gives the resulting
/// values; `this` is the record being changed, if it exists already.
pub(super) fn check<'v>(
    txn: &WriteTxn<'_>,
    kind: &KindDef,
    this: Option<&DocId>,
    value_of: impl Fn(&str) -> Option<&'v FieldValue>,
) -> Result<(), RecordError> {
    let active = kind.active_field.as_deref();
    // An inactive record holds no unique value.
    if active.is_some_and(|name| matches!(value_of(name), Some(FieldValue::Bool(false)))) {
        return Ok(());
    }
    let this = this.map(DocId::to_string).unwrap_or_default();
    for field in kind.fields.iter().filter(|f| f.unique) {
        let Some(value) = value_of(&field.name) else {
            continue;
        };
        let active_filter = active
            .and_then(|name| kind.field(name))
            .map(|f| format!(" AND {} IS NOT 0", projection::column(f)))
            .unwrap_or_default();
        let taken: bool = txn.conn().query_row(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM {} WHERE deleted = 0 AND {} = ?1 AND id <> ?2{active_filter})",
                projection::table(kind),
                projection::column(field),
            ),
            params![value::column_value(field, value), this],
            |r| r.get(0),
        )?;
        if taken {
            return Err(RecordError::Duplicate {
                collection: kind.collection.clone(),
                field: field.name.clone(),
                value: value.to_json().as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    Ok(())
}
