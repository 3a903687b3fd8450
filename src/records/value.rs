//! Field values: parsed and checked from JSON input, shown back as JSON, and
//! turned into the column values that lists filter and sort on.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use crm_schema::{Check, DefaultValue, FieldDef, FieldType};
use rusqlite::types::Value as SqlValue;
use serde_json::{json, Value as Json};

use super::invalid::{ErrorCode, Invalid};
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
pub fn parse_input(field: &FieldDef, input: &Json) -> Result<Option<FieldValue>, Invalid> {
    if input.is_null() {
        return Ok(None);
    }
    let max_len = field.max_len.unwrap_or(DEFAULT_MAX_LEN);
    let not_string = || Invalid::new(ErrorCode::String, "must be a string");
    let too_long = || {
        Invalid::limited(
            ErrorCode::TooLong,
            max_len,
            format!("must be at most {max_len} characters"),
        )
    };
    let text = |json: &Json| -> Result<Option<String>, Invalid> {
        let s = json.as_str().ok_or_else(not_string)?;
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        if s.chars().count() > max_len {
            return Err(too_long());
        }
        if s.chars().any(char::is_control) {
            return Err(Invalid::new(
                ErrorCode::ControlCharacters,
                "must be one line without control characters",
            ));
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
            let s = input.as_str().ok_or_else(not_string)?;
            if s.chars().count() > max_len {
                return Err(too_long());
            }
            if s.chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
            {
                return Err(Invalid::new(
                    ErrorCode::ControlCharacters,
                    "must not contain control characters",
                ));
            }
            if s.trim().is_empty() {
                return Ok(None);
            }
            FieldValue::Text(s.to_owned())
        }
        FieldType::Email => match text(input)? {
            None => return Ok(None),
            Some(s) if checks::is_valid_email(&s) => FieldValue::Str(s),
            Some(_) => {
                return Err(Invalid::new(
                    ErrorCode::Email,
                    "is not a valid e-mail address",
                ))
            }
        },
        FieldType::Phone => match text(input)? {
            None => return Ok(None),
            Some(s) if checks::normalize_phone(&s).is_some() => FieldValue::Str(s),
            Some(_) => {
                return Err(Invalid::new(
                    ErrorCode::Phone,
                    "is not a valid phone number",
                ))
            }
        },
        FieldType::Enum => {
            let s = input.as_str().ok_or_else(not_string)?;
            if !field.values.iter().any(|v| v == s) {
                return Err(Invalid::new(
                    ErrorCode::Choice,
                    format!("must be one of: {}", field.values.join(", ")),
                ));
            }
            FieldValue::Str(s.to_owned())
        }
        FieldType::Reference => {
            let reference = |message: String| Invalid::new(ErrorCode::Reference, message);
            let s = input
                .as_str()
                .ok_or_else(|| reference("must be a record id (string)".to_owned()))?;
            s.parse::<crm_sync::DocId>()
                .map_err(|e| reference(e.to_string()))?;
            FieldValue::Str(s.to_owned())
        }
        FieldType::Integer => {
            let n = input
                .as_i64()
                .ok_or_else(|| Invalid::new(ErrorCode::Integer, "must be an integer"))?;
            if let Some(min) = field.min.filter(|min| n < *min) {
                return Err(Invalid::out_of_range(
                    ErrorCode::TooSmall,
                    min,
                    format!("must be at least {min}"),
                ));
            }
            if let Some(max) = field.max.filter(|max| n > *max) {
                return Err(Invalid::out_of_range(
                    ErrorCode::TooLarge,
                    max,
                    format!("must be at most {max}"),
                ));
            }
            FieldValue::Int(n)
        }
        FieldType::Bool => FieldValue::Bool(
            input
                .as_bool()
                .ok_or_else(|| Invalid::new(ErrorCode::Bool, "must be true or false"))?,
        ),
        FieldType::Date => FieldValue::Date(parse_date(input.as_str().ok_or_else(bad_date)?)?),
        FieldType::Datetime => {
            FieldValue::DateTime(parse_datetime(input.as_str().ok_or_else(bad_datetime)?)?)
        }
        FieldType::Money => parse_money(input)?,
        FieldType::Password => {
            let s = input.as_str().ok_or_else(not_string)?;
            let length = s.chars().count();
            if length < password::MIN_LEN {
                return Err(Invalid::limited(
                    ErrorCode::TooShort,
                    password::MIN_LEN,
                    format!("must be at least {} characters", password::MIN_LEN),
                ));
            }
            if length > max_len {
                return Err(too_long());
            }
            FieldValue::Str(password::hash(s).map_err(|e| {
                tracing::error!(error = %e, "hashing a password failed");
                Invalid::new(ErrorCode::Internal, e.to_string())
            })?)
        }
        FieldType::Set => {
            let not_set = || Invalid::new(ErrorCode::Set, "must be an array of strings");
            let items = input.as_array().ok_or_else(not_set)?;
            if items.len() > MAX_SET_MEMBERS {
                return Err(Invalid::limited(
                    ErrorCode::TooMany,
                    MAX_SET_MEMBERS,
                    format!("must have at most {MAX_SET_MEMBERS} members"),
                ));
            }
            let mut set = BTreeSet::new();
            for item in items {
                let member = match text(item) {
                    Err(Invalid {
                        code: ErrorCode::String,
                        ..
                    }) => None,
                    other => other?,
                };
                match member {
                    Some(s) => set.insert(s),
                    None => {
                        return Err(Invalid::new(
                            ErrorCode::SetMember,
                            "members must be non-empty strings",
                        ))
                    }
                };
            }
            FieldValue::Set(set)
        }
    };
    Ok(Some(value))
}

fn bad_date() -> Invalid {
    Invalid::new(ErrorCode::Date, "must be a date YYYY-MM-DD")
}

fn bad_datetime() -> Invalid {
    Invalid::new(
        ErrorCode::Datetime,
        "must be an RFC 3339 date-time, e.g. 2026-01-31T09:30:00Z",
    )
}

pub fn parse_date(s: &str) -> Result<NaiveDate, Invalid> {
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| bad_date())?;
    // Only the form a date is shown in: chrono also reads signed years, so
    // "-999-01-01" would be stored, shown as "-0999-01-01" and then refused
    // when a client sends the record back.
    if s.len() != 10 || date.format("%Y-%m-%d").to_string() != s {
        return Err(bad_date());
    }
    Ok(date)
}

pub fn parse_datetime(s: &str) -> Result<i64, Invalid> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        // An instant is shown in UTC, and an offset can move one at the edge
        // of year 0 or 9999 to a year RFC 3339 cannot write: it would be
        // stored and then refused when a client sends the record back.
        .filter(|t| (0..=9999).contains(&t.to_utc().year()))
        .map(|t| t.timestamp_millis())
        .ok_or_else(bad_datetime)
}

fn parse_money(input: &Json) -> Result<FieldValue, Invalid> {
    let shape = || {
        Invalid::new(
            ErrorCode::Money,
            "must be {\"minor\": integer, \"currency\": \"RUB\"}",
        )
    };
    let object = input.as_object().ok_or_else(shape)?;
    if object.keys().any(|k| k != "minor" && k != "currency") {
        return Err(shape());
    }
    let minor = object
        .get("minor")
        .and_then(Json::as_i64)
        .ok_or_else(shape)?;
    let currency = object
        .get("currency")
        .and_then(Json::as_str)
        .ok_or_else(shape)?;
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(Invalid::new(
            ErrorCode::Currency,
            "currency must be an ISO 4217 code such as RUB",
        ));
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
        FieldType::Date => SqlValue::Text(
            parse_date(raw)
                .map_err(|e| e.message)?
                .format("%Y-%m-%d")
                .to_string(),
        ),
        FieldType::Datetime => SqlValue::Integer(parse_datetime(raw).map_err(|e| e.message)?),
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

    /// A declaration, an input, and the expected outcome (`Err(code)`:
    /// refused by the rule `code`).
    type Case = (&'static str, Json, Result<Option<FieldValue>, ErrorCode>);

    #[test]
    fn input_table() {
        let cases: &[Case] = &[
            (
                "type = \"string\"\nmax_len = 3",
                json!("abc"),
                Ok(Some(FieldValue::Str("abc".into()))),
            ),
            (
                "type = \"string\"\nmax_len = 3",
                json!("abcd"),
                Err(ErrorCode::TooLong),
            ),
            ("type = \"string\"", json!("  "), Ok(None)),
            ("type = \"string\"", json!(5), Err(ErrorCode::String)),
            (
                "type = \"string\"",
                json!("a\u{0}b"),
                Err(ErrorCode::ControlCharacters),
            ),
            (
                "type = \"string\"\ncheck = \"inn\"",
                json!("7707083893"),
                Ok(Some(FieldValue::Str("7707083893".into()))),
            ),
            (
                "type = \"string\"\ncheck = \"inn\"",
                json!("7707083890"),
                Err(ErrorCode::InnChecksum),
            ),
            ("type = \"integer\"", json!(7), Ok(Some(FieldValue::Int(7)))),
            ("type = \"integer\"", json!(7.5), Err(ErrorCode::Integer)),
            ("type = \"integer\"", json!("7"), Err(ErrorCode::Integer)),
            (
                "type = \"integer\"\nmin = 0\nmax = 100",
                json!(0),
                Ok(Some(FieldValue::Int(0))),
            ),
            (
                "type = \"integer\"\nmin = 0\nmax = 100",
                json!(100),
                Ok(Some(FieldValue::Int(100))),
            ),
            (
                "type = \"integer\"\nmin = 0\nmax = 100",
                json!(-1),
                Err(ErrorCode::TooSmall),
            ),
            (
                "type = \"integer\"\nmin = 0\nmax = 100",
                json!(101),
                Err(ErrorCode::TooLarge),
            ),
            (
                "type = \"bool\"",
                json!(true),
                Ok(Some(FieldValue::Bool(true))),
            ),
            (
                "type = \"enum\"\nvalues = [\"a\"]",
                json!("b"),
                Err(ErrorCode::Choice),
            ),
            ("type = \"date\"", json!("2026-02-30"), Err(ErrorCode::Date)),
            // Signed years read by chrono but not shown the same way.
            ("type = \"date\"", json!("-999-01-01"), Err(ErrorCode::Date)),
            ("type = \"date\"", json!("+999-01-01"), Err(ErrorCode::Date)),
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
                Err(ErrorCode::Datetime),
            ),
            (
                "type = \"datetime\"",
                json!("9999-12-31T23:30:00-01:00"),
                Err(ErrorCode::Datetime),
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
                Err(ErrorCode::Currency),
            ),
            (
                "type = \"money\"",
                json!({"minor": 150}),
                Err(ErrorCode::Money),
            ),
            (
                "type = \"set\"",
                json!(["b", "a", "b"]),
                Ok(Some(FieldValue::Set(
                    ["a".to_owned(), "b".to_owned()].into(),
                ))),
            ),
            ("type = \"set\"", json!(["a", 1]), Err(ErrorCode::SetMember)),
            ("type = \"email\"", json!("x@y"), Err(ErrorCode::Email)),
            (
                "type = \"phone\"",
                json!("+7 912 345-67-89"),
                Ok(Some(FieldValue::Str("+7 912 345-67-89".into()))),
            ),
            ("type = \"phone\"", json!("123"), Err(ErrorCode::Phone)),
            (
                "type = \"reference\"\nto = \"t\"",
                json!("nope"),
                Err(ErrorCode::Reference),
            ),
            (
                "type = \"text\"",
                json!("line one\nline two"),
                Ok(Some(FieldValue::Text("line one\nline two".into()))),
            ),
            ("type = \"string\"", Json::Null, Ok(None)),
            ("type = \"bool\"", json!("yes"), Err(ErrorCode::Bool)),
            ("type = \"set\"", json!("a"), Err(ErrorCode::Set)),
            ("type = \"set\"", json!([""]), Err(ErrorCode::SetMember)),
            (
                "type = \"set\"",
                Json::Array((0..101).map(|i| json!(i.to_string())).collect()),
                Err(ErrorCode::TooMany),
            ),
            (
                "type = \"text\"",
                json!("a\u{7}"),
                Err(ErrorCode::ControlCharacters),
            ),
            (
                "type = \"password\"",
                json!("short"),
                Err(ErrorCode::TooShort),
            ),
            (
                "type = \"string\"\ncheck = \"inn\"",
                json!("12345"),
                Err(ErrorCode::InnLength),
            ),
            ("type = \"date\"", json!(20260101), Err(ErrorCode::Date)),
        ];
        for (decl, input, expected) in cases {
            let got = parse_input(&field(decl), input).map_err(|e| e.code);
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
