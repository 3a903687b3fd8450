//! Field values: parsed and checked from JSON input, shown back as JSON, and
//! turned into the column values that lists filter and sort on.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use crm_schema::{Check, DefaultValue, FieldDef, FieldType};
use rusqlite::types::Value as SqlValue;
use serde_json::{json, Value as Json};

use super::{checks, password};

/// Most members a set field may hold.
const MAX_SET_MEMBERS: usize = 100;
/// Longest string accepted where the schema gives no `max_len`.
const DEFAULT_MAX_LEN: usize = 1000;

/// A field's value once checked against its declaration.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// string, email, phone (as entered), enum, reference.
    Str(String),
    Text(String),
    Int(i64),
    Bool(bool),
    Date(NaiveDate),
    /// Milliseconds since the Unix epoch.
    DateTime(i64),
    Money {
        minor: i64,
        currency: String,
    },
    Set(BTreeSet<String>),
}

/// Parses the JSON given for `field`. `Ok(None)` means "no value" (JSON
/// `null`, or an empty string for string-like fields).
pub fn parse_input(field: &FieldDef, input: &Json) -> Result<Option<FieldValue>, String> {
    if input.is_null() {
        return Ok(None);
    }
    let max_len = field.max_len.unwrap_or(DEFAULT_MAX_LEN);
    let text = |json: &Json| -> Result<Option<String>, String> {
        let s = json.as_str().ok_or("must be a string")?;
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        if s.chars().count() > max_len {
            return Err(format!("must be at most {max_len} characters"));
        }
        if s.chars().any(char::is_control) {
            return Err("must be one line without control characters".into());
        }
        Ok(Some(s.to_owned()))
    };
    let value = match field.ty {
        FieldType::String => match text(input)? {
            None => return Ok(None),
            Some(s) => {
                if field.check == Some(Check::Inn) {
                    checks::check_inn(&s)?;
                }
                FieldValue::Str(s)
            }
        },
        FieldType::Text => {
            let s = input.as_str().ok_or("must be a string")?;
            if s.chars().count() > max_len {
                return Err(format!("must be at most {max_len} characters"));
            }
            if s.chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
            {
                return Err("must not contain control characters".into());
            }
            if s.trim().is_empty() {
                return Ok(None);
            }
            FieldValue::Text(s.to_owned())
        }
        FieldType::Email => match text(input)? {
            None => return Ok(None),
            Some(s) if checks::is_valid_email(&s) => FieldValue::Str(s),
            Some(_) => return Err("is not a valid e-mail address".into()),
        },
        FieldType::Phone => match text(input)? {
            None => return Ok(None),
            Some(s) if checks::normalize_phone(&s).is_some() => FieldValue::Str(s),
            Some(_) => return Err("is not a valid phone number".into()),
        },
        FieldType::Enum => {
            let s = input.as_str().ok_or("must be a string")?;
            if !field.values.iter().any(|v| v == s) {
                return Err(format!("must be one of: {}", field.values.join(", ")));
            }
            FieldValue::Str(s.to_owned())
        }
        FieldType::Reference => {
            let s = input.as_str().ok_or("must be a record id (string)")?;
            s.parse::<crm_sync::DocId>().map_err(|e| e.to_string())?;
            FieldValue::Str(s.to_owned())
        }
        FieldType::Integer => FieldValue::Int(input.as_i64().ok_or("must be an integer")?),
        FieldType::Bool => FieldValue::Bool(input.as_bool().ok_or("must be true or false")?),
        FieldType::Date => {
            FieldValue::Date(parse_date(input.as_str().ok_or("must be a date string")?)?)
        }
        FieldType::Datetime => FieldValue::DateTime(parse_datetime(
            input.as_str().ok_or("must be a date-time string")?,
        )?),
        FieldType::Money => parse_money(input)?,
        FieldType::Password => {
            let s = input.as_str().ok_or("must be a string")?;
            let length = s.chars().count();
            if length < password::MIN_LEN {
                return Err(format!("must be at least {} characters", password::MIN_LEN));
            }
            if length > max_len {
                return Err(format!("must be at most {max_len} characters"));
            }
            FieldValue::Str(password::hash(s).map_err(|e| e.to_string())?)
        }
        FieldType::Set => {
            let items = input.as_array().ok_or("must be an array of strings")?;
            if items.len() > MAX_SET_MEMBERS {
                return Err(format!("must have at most {MAX_SET_MEMBERS} members"));
            }
            let mut set = BTreeSet::new();
            for item in items {
                match text(item)? {
                    Some(s) => set.insert(s),
                    None => return Err("members must be non-empty strings".into()),
                };
            }
            FieldValue::Set(set)
        }
    };
    Ok(Some(value))
}

pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| "must be a date YYYY-MM-DD".to_owned())?;
    // Only the form a date is shown in: chrono also reads signed years, so
    // "-999-01-01" would be stored, shown as "-0999-01-01" and then refused
    // when a client sends the record back.
    if s.len() != 10 || date.format("%Y-%m-%d").to_string() != s {
        return Err("must be a date YYYY-MM-DD".into());
    }
    Ok(date)
}

pub fn parse_datetime(s: &str) -> Result<i64, String> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        // An instant is shown in UTC, and an offset can move one at the edge
        // of year 0 or 9999 to a year RFC 3339 cannot write: it would be
        // stored and then refused when a client sends the record back.
        .filter(|t| (0..=9999).contains(&t.to_utc().year()))
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| "must be an RFC 3339 date-time, e.g. 2026-01-31T09:30:00Z".to_owned())
}

fn parse_money(input: &Json) -> Result<FieldValue, String> {
    const SHAPE: &str = "must be {\"minor\": integer, \"currency\": \"RUB\"}";
    let object = input.as_object().ok_or(SHAPE)?;
    if object.keys().any(|k| k != "minor" && k != "currency") {
        return Err(SHAPE.into());
    }
    let minor = object.get("minor").and_then(Json::as_i64).ok_or(SHAPE)?;
    let currency = object.get("currency").and_then(Json::as_str).ok_or(SHAPE)?;
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
        return Err("currency must be an ISO 4217 code such as RUB".into());
    }
    Ok(FieldValue::Money {
        minor,
        currency: currency.to_owned(),
    })
}

/// The value a field takes at creation when none is given.
pub fn default_value(field: &FieldDef) -> Option<FieldValue> {
    Some(match field.default.as_ref()? {
        DefaultValue::Bool(b) => FieldValue::Bool(*b),
        DefaultValue::Integer(i) => FieldValue::Int(*i),
        DefaultValue::String(s) => FieldValue::Str(s.clone()),
    })
}

pub fn format_datetime(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl FieldValue {
    pub fn to_json(&self) -> Json {
        match self {
            FieldValue::Str(s) | FieldValue::Text(s) => Json::String(s.clone()),
            FieldValue::Int(i) => json!(i),
            FieldValue::Bool(b) => json!(b),
            FieldValue::Date(d) => Json::String(d.format("%Y-%m-%d").to_string()),
            FieldValue::DateTime(ms) => Json::String(format_datetime(*ms)),
            FieldValue::Money { minor, currency } => json!({"minor": minor, "currency": currency}),
            FieldValue::Set(set) => json!(set),
        }
    }

    /// Words this value adds to the full-text index.
    pub fn search_text(&self, field: &FieldDef) -> String {
        match (self, field.ty) {
            (FieldValue::Str(s), FieldType::Phone) => {
                format!("{s} {}", checks::normalize_phone(s).unwrap_or_default())
            }
            (FieldValue::Str(s) | FieldValue::Text(s), _) => s.clone(),
            (FieldValue::Set(set), _) => set.iter().cloned().collect::<Vec<_>>().join(" "),
            (other, _) => other.to_json().to_string(),
        }
    }
}

/// The column value that filters and sorts compare: case-folded strings,
/// normalized phones, dates as ISO text, instants and money as integers.
pub fn column_value(field: &FieldDef, value: &FieldValue) -> SqlValue {
    match (value, field.ty) {
        (FieldValue::Str(s), FieldType::Phone) => {
            SqlValue::Text(checks::normalize_phone(s).unwrap_or_else(|| checks::phone_digits(s)))
        }
        (FieldValue::Str(s), FieldType::Enum | FieldType::Reference) => SqlValue::Text(s.clone()),
        (FieldValue::Str(s) | FieldValue::Text(s), _) => SqlValue::Text(s.to_lowercase()),
        (FieldValue::Int(i), _) | (FieldValue::DateTime(i), _) => SqlValue::Integer(*i),
        (FieldValue::Money { minor, .. }, _) => SqlValue::Integer(*minor),
        (FieldValue::Bool(b), _) => SqlValue::Integer(i64::from(*b)),
        (FieldValue::Date(d), _) => SqlValue::Text(d.format("%Y-%m-%d").to_string()),
        (FieldValue::Set(_), _) => SqlValue::Null,
    }
}

/// Parses a filter operand from a query string into the column's terms.
pub fn filter_operand(field: &FieldDef, raw: &str, prefix: bool) -> Result<SqlValue, String> {
    Ok(match field.ty {
        FieldType::Phone if prefix => SqlValue::Text(checks::phone_digits(raw)),
        FieldType::Phone => {
            SqlValue::Text(checks::normalize_phone(raw).ok_or("is not a valid phone number")?)
        }
        FieldType::String | FieldType::Email | FieldType::Text | FieldType::Set => {
            SqlValue::Text(raw.to_lowercase())
        }
        FieldType::Enum if prefix => SqlValue::Text(raw.to_owned()),
        FieldType::Enum => {
            if !field.values.iter().any(|v| v == raw) {
                return Err(format!("must be one of: {}", field.values.join(", ")));
            }
            SqlValue::Text(raw.to_owned())
        }
        FieldType::Reference => {
            raw.parse::<crm_sync::DocId>().map_err(|e| e.to_string())?;
            SqlValue::Text(raw.to_owned())
        }
        FieldType::Integer | FieldType::Money => {
            SqlValue::Integer(raw.parse().map_err(|_| "must be an integer".to_owned())?)
        }
        FieldType::Bool => match raw {
            "true" => SqlValue::Integer(1),
            "false" => SqlValue::Integer(0),
            _ => return Err("must be true or false".into()),
        },
        FieldType::Date => SqlValue::Text(parse_date(raw)?.format("%Y-%m-%d").to_string()),
        FieldType::Datetime => SqlValue::Integer(parse_datetime(raw)?),
        FieldType::Password => return Err("cannot be filtered on".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(toml_text: &str) -> FieldDef {
        let kind: crm_schema::KindDef = toml::from_str(&format!(
            "collection = \"t\"\nlabel = \"T\"\ntitle = [\"f\"]\n[[fields]]\nname = \"f\"\n{toml_text}"
        ))
        .expect("test field parses");
        kind.fields[0].clone()
    }

    /// A declaration, an input, and the expected outcome (`Err(())`: refused).
    type Case = (&'static str, Json, Result<Option<FieldValue>, ()>);

    #[test]
    fn input_table() {
        let cases: &[Case] = &[
            (
                "type = \"string\"\nmax_len = 3",
                json!("abc"),
                Ok(Some(FieldValue::Str("abc".into()))),
            ),
            ("type = \"string\"\nmax_len = 3", json!("abcd"), Err(())),
            ("type = \"string\"", json!("  "), Ok(None)),
            ("type = \"string\"", json!(5), Err(())),
            ("type = \"string\"", json!("a\u{0}b"), Err(())),
            (
                "type = \"string\"\ncheck = \"inn\"",
                json!("7707083893"),
                Ok(Some(FieldValue::Str("7707083893".into()))),
            ),
            (
                "type = \"string\"\ncheck = \"inn\"",
                json!("7707083890"),
                Err(()),
            ),
            ("type = \"integer\"", json!(7), Ok(Some(FieldValue::Int(7)))),
            ("type = \"integer\"", json!(7.5), Err(())),
            ("type = \"integer\"", json!("7"), Err(())),
            (
                "type = \"bool\"",
                json!(true),
                Ok(Some(FieldValue::Bool(true))),
            ),
            ("type = \"enum\"\nvalues = [\"a\"]", json!("b"), Err(())),
            ("type = \"date\"", json!("2026-02-30"), Err(())),
            // Signed years read by chrono but not shown the same way.
            ("type = \"date\"", json!("-999-01-01"), Err(())),
            ("type = \"date\"", json!("+999-01-01"), Err(())),
            (
                "type = \"date\"",
                json!("2026-02-28"),
                Ok(NaiveDate::from_ymd_opt(2026, 2, 28).map(FieldValue::Date)),
            ),
            (
                "type = \"datetime\"",
                json!("2026-01-01T00:00:00Z"),
                Ok(Some(FieldValue::DateTime(1_767_225_600_000))),
            ),
            // Offsets that move the instant out of years 0000..=9999 in UTC.
            (
                "type = \"datetime\"",
                json!("0000-01-01T00:30:00+01:00"),
                Err(()),
            ),
            (
                "type = \"datetime\"",
                json!("9999-12-31T23:30:00-01:00"),
                Err(()),
            ),
            (
                "type = \"money\"",
                json!({"minor": 150, "currency": "RUB"}),
                Ok(Some(FieldValue::Money {
                    minor: 150,
                    currency: "RUB".into(),
                })),
            ),
            (
                "type = \"money\"",
                json!({"minor": 150, "currency": "rub"}),
                Err(()),
            ),
            ("type = \"money\"", json!({"minor": 150}), Err(())),
            (
                "type = \"set\"",
                json!(["b", "a", "b"]),
                Ok(Some(FieldValue::Set(
                    ["a".to_owned(), "b".to_owned()].into(),
                ))),
            ),
            ("type = \"set\"", json!(["a", 1]), Err(())),
            ("type = \"email\"", json!("x@y"), Err(())),
            (
                "type = \"phone\"",
                json!("+7 912 345-67-89"),
                Ok(Some(FieldValue::Str("+7 912 345-67-89".into()))),
            ),
            ("type = \"phone\"", json!("123"), Err(())),
            ("type = \"reference\"\nto = \"t\"", json!("nope"), Err(())),
            (
                "type = \"text\"",
                json!("line one\nline two"),
                Ok(Some(FieldValue::Text("line one\nline two".into()))),
            ),
            ("type = \"string\"", Json::Null, Ok(None)),
        ];
        for (decl, input, expected) in cases {
            let got = parse_input(&field(decl), input).map_err(|_| ());
            assert_eq!(&got, expected, "{decl} <- {input}");
        }
    }

    #[test]
    fn columns_fold_case_and_normalize_phones() {
        let phone = field("type = \"phone\"");
        assert_eq!(
            column_value(&phone, &FieldValue::Str("8 (912) 345-67-89".into())),
            SqlValue::Text("79123456789".into())
        );
        let name = field("type = \"string\"");
        assert_eq!(
            column_value(&name, &FieldValue::Str("ООО Ромашка".into())),
            SqlValue::Text("ооо ромашка".into())
        );
    }
}
