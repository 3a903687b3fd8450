//! Why a value is refused: a stable code per rule, which programs can
//! branch on and the web pages translate, the number the rule names (a
//! length, a count) when it names one, and an English sentence for people
//! reading the API's answers.

use serde::Serialize;

/// The rule a value broke. The codes are part of the API (`errors[].code`
/// of a 422): add new ones, never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body names something that is not a field of the kind.
    UnknownField,
    /// The body sets a key the node maintains (`id`, `created_at`, ...).
    ReadOnly,
    /// A required field is absent, null or blank.
    Required,
    /// Not a JSON string where text is expected.
    String,
    /// Longer than the field allows (`limit`: characters).
    TooLong,
    /// Shorter than the field needs (`limit`: characters; a password).
    TooShort,
    /// Control characters, or a line break in one-line text.
    ControlCharacters,
    /// An INN holds something else than digits.
    InnDigits,
    /// An INN has neither 10 nor 12 digits.
    InnLength,
    /// An INN's check digits do not match.
    InnChecksum,
    /// The INN's length does not fit the client's type (`limit`: the
    /// digits it should have).
    InnClientType,
    Email,
    Phone,
    /// Not one of the enum's values.
    Choice,
    /// Not a record id.
    Reference,
    /// No record of the target kind has the id.
    ReferenceMissing,
    /// The referenced record is deleted.
    ReferenceDeleted,
    /// Not a whole number.
    Integer,
    /// A number below the field's `min` (`limit`).
    TooSmall,
    /// A number above the field's `max` (`limit`).
    TooLarge,
    /// Not true or false.
    Bool,
    /// Not a calendar date (`YYYY-MM-DD` in the API).
    Date,
    /// Not an instant (RFC 3339 in the API).
    Datetime,
    /// Not `{"minor": integer, "currency": "RUB"}`.
    Money,
    /// Not an ISO 4217 currency code.
    Currency,
    /// Not an array of strings.
    Set,
    /// A member of a set is empty or not a string.
    SetMember,
    /// More members than a set holds (`limit`).
    TooMany,
    /// Another active record holds the value already.
    Unique,
    /// The node failed while checking (logged); not the value's fault.
    Internal,
}

impl ErrorCode {
    /// Every code, for the checks that each has its translations.
    pub const ALL: &[ErrorCode] = &[
        ErrorCode::UnknownField,
        ErrorCode::ReadOnly,
        ErrorCode::Required,
        ErrorCode::String,
        ErrorCode::TooLong,
        ErrorCode::TooShort,
        ErrorCode::ControlCharacters,
        ErrorCode::InnDigits,
        ErrorCode::InnLength,
        ErrorCode::InnChecksum,
        ErrorCode::InnClientType,
        ErrorCode::Email,
        ErrorCode::Phone,
        ErrorCode::Choice,
        ErrorCode::Reference,
        ErrorCode::ReferenceMissing,
        ErrorCode::ReferenceDeleted,
        ErrorCode::Integer,
        ErrorCode::TooSmall,
        ErrorCode::TooLarge,
        ErrorCode::Bool,
        ErrorCode::Date,
        ErrorCode::Datetime,
        ErrorCode::Money,
        ErrorCode::Currency,
        ErrorCode::Set,
        ErrorCode::SetMember,
        ErrorCode::TooMany,
        ErrorCode::Unique,
        ErrorCode::Internal,
    ];

    /// The code as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::UnknownField => "unknown_field",
            ErrorCode::ReadOnly => "read_only",
            ErrorCode::Required => "required",
            ErrorCode::String => "string",
            ErrorCode::TooLong => "too_long",
            ErrorCode::TooShort => "too_short",
            ErrorCode::ControlCharacters => "control_characters",
            ErrorCode::InnDigits => "inn_digits",
            ErrorCode::InnLength => "inn_length",
            ErrorCode::InnChecksum => "inn_checksum",
            ErrorCode::InnClientType => "inn_client_type",
            ErrorCode::Email => "email",
            ErrorCode::Phone => "phone",
            ErrorCode::Choice => "choice",
            ErrorCode::Reference => "reference",
            ErrorCode::ReferenceMissing => "reference_missing",
            ErrorCode::ReferenceDeleted => "reference_deleted",
            ErrorCode::Integer => "integer",
            ErrorCode::TooSmall => "too_small",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::Bool => "bool",
            ErrorCode::Date => "date",
            ErrorCode::Datetime => "datetime",
            ErrorCode::Money => "money",
            ErrorCode::Currency => "currency",
            ErrorCode::Set => "set",
            ErrorCode::SetMember => "set_member",
            ErrorCode::TooMany => "too_many",
            ErrorCode::Unique => "unique",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A refused value: its rule, the rule's number if any, and the English
/// sentence (which reads after the field's name: "email is not a valid
/// e-mail address").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: ErrorCode,
    pub limit: Option<i64>,
    pub message: String,
}

impl Invalid {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Invalid {
        Invalid {
            code,
            limit: None,
            message: message.into(),
        }
    }

    /// A refusal whose rule names a number (a length, a count).
    pub fn limited(code: ErrorCode, limit: usize, message: impl Into<String>) -> Invalid {
        Invalid {
            code,
            limit: Some(i64::try_from(limit).unwrap_or(i64::MAX)),
            message: message.into(),
        }
    }

    /// A number outside the field's range; `limit` is the end it passed.
    pub fn out_of_range(code: ErrorCode, limit: i64, message: impl Into<String>) -> Invalid {
        Invalid {
            code,
            limit: Some(limit),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_and_serializes_as_written() {
        let mut seen = std::collections::BTreeSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code:?} twice");
            assert_eq!(
                serde_json::to_value(code).ok(),
                Some(serde_json::Value::String(code.as_str().to_owned()))
            );
        }
        assert_eq!(seen.len(), 30);
    }
}
