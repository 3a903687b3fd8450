//! Checking a create body or a merge patch against the kind's declaration,
//! collecting every problem so the user sees them all at once.

use crm_schema::{Check, KindDef};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use super::checks::check_inn;
use super::invalid::{ErrorCode, Invalid};
use super::value::{default_value, parse_input, FieldValue};
use super::view::META_KEYS;

/// One refused field of a body, as a 422 lists it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    /// The rule the value broke; stable, for programs and translations.
    pub code: ErrorCode,
    /// What is wrong, in English, after the field's name.
    pub message: String,
    /// The number the rule names (a length, a count), when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

impl FieldError {
    pub fn new(field: &str, invalid: Invalid) -> FieldError {
        FieldError {
            field: field.to_owned(),
            code: invalid.code,
            message: invalid.message,
            limit: invalid.limit,
        }
    }
}

/// Field values to write, by index into the kind's fields; `None` clears.
pub type Assignments = Vec<(usize, Option<FieldValue>)>;

/// Whether absent fields take their defaults and must meet `required`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Create,
    Patch,
}

/// Every member of `body` checked against `kind`'s fields: the values to
/// write, or every problem found (not only the first).
pub fn parse_body(
    kind: &KindDef,
    body: &Map<String, Json>,
    mode: Mode,
) -> Result<Assignments, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut assignments = Assignments::new();
    for (key, value) in body {
        let Some(index) = kind.fields.iter().position(|f| f.name == *key) else {
            let invalid = if META_KEYS.contains(&key.as_str()) {
                Invalid::new(ErrorCode::ReadOnly, "is read-only")
            } else {
                Invalid::new(
                    ErrorCode::UnknownField,
                    format!("is not a field of {}", kind.collection),
                )
            };
            errors.push(FieldError::new(key, invalid));
            continue;
        };
        let field = &kind.fields[index];
        match parse_input(field, value) {
            Ok(None) if field.required => errors.push(FieldError::new(key, required())),
            Ok(parsed) => assignments.push((index, parsed)),
            Err(invalid) => errors.push(FieldError::new(key, invalid)),
        }
    }
    if mode == Mode::Create {
        for (index, field) in kind.fields.iter().enumerate() {
            if body.contains_key(&field.name) {
                continue;
            }
            match default_value(field) {
                Some(value) => assignments.push((index, Some(value))),
                None if field.required => errors.push(FieldError::new(&field.name, required())),
                None => {}
            }
        }
    }
    if errors.is_empty() {
        Ok(assignments)
    } else {
        Err(errors)
    }
}

fn required() -> Invalid {
    Invalid::new(ErrorCode::Required, "is required")
}

/// Rules that tie fields together, checked on the record as it would be
/// after the write. `value_of` gives a field's resulting value.
pub fn check_rules<'v>(
    kind: &KindDef,
    value_of: impl Fn(&str) -> Option<&'v FieldValue>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for field in kind.fields.iter().filter(|f| f.check == Some(Check::Inn)) {
        let Some(FieldValue::Str(inn)) = value_of(&field.name) else {
            continue;
        };
        let Ok(inn_kind) = check_inn(inn) else {
            continue;
        };
        if let Some(FieldValue::Str(client_type)) = value_of("client_type") {
            if client_type != inn_kind.client_type() {
                let digits = if client_type == "company" { 10 } else { 12 };
                errors.push(FieldError::new(
                    &field.name,
                    Invalid::limited(
                        ErrorCode::InnClientType,
                        digits,
                        format!("a {client_type}'s INN has {digits} digits"),
                    ),
                ));
            }
        }
    }
    errors
}

/// A new record's body checked whole: its fields, then the kind's rules.
pub fn check_new(kind: &KindDef, body: &Map<String, Json>) -> Result<Assignments, Vec<FieldError>> {
    let assignments = parse_body(kind, body, Mode::Create)?;
    let errors = check_rules(kind, |name| {
        super::assigned(kind, &assignments, name).flatten()
    });
    if errors.is_empty() {
        Ok(assignments)
    } else {
        Err(errors)
    }
}
