//! The pages' languages: every string lives in `en.toml` / `ru.toml`
//! (embedded in the binary), looked up by key; dates and numbers are
//! formatted per language here (and typed per language, `dates.rs`);
//! validation failures are translated from their codes. The choice is kept
//! in the `crm_lang` cookie (see `web/mod.rs` for why a cookie and not the
//! user's record).

pub mod dates;

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, Utc};

use crate::records::FieldError;

/// The cookie that keeps a browser's language.
pub const LANG_COOKIE: &str = "crm_lang";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ru,
}

const EN_TOML: &str = include_str!("en.toml");
const RU_TOML: &str = include_str!("ru.toml");

static EN: LazyLock<HashMap<String, String>> = LazyLock::new(|| flatten(EN_TOML));
static RU: LazyLock<HashMap<String, String>> = LazyLock::new(|| flatten(RU_TOML));

/// `[a.b] c = "x"` becomes `a.b.c -> x`.
pub fn flatten(text: &str) -> HashMap<String, String> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut HashMap<String, String>) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(inner) => walk(&path, inner, out),
                toml::Value::String(s) => {
                    out.insert(path, s.clone());
                }
                _ => {}
            }
        }
    }
    // The files are part of the binary and checked by tests: a parse
    // failure is a build defect.
    let table: toml::Table = text.parse().expect("the embedded language files are TOML");
    let mut out = HashMap::new();
    walk("", &table, &mut out);
    out
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ru => "ru",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Ru,
            Lang::Ru => Lang::En,
        }
    }

    pub fn from_code(code: &str) -> Option<Lang> {
        match code {
            "en" => Some(Lang::En),
            "ru" => Some(Lang::Ru),
            _ => None,
        }
    }

    /// The cookie's choice, else the browser's first preference between
    /// the two, else Russian (the offices this is for).
    pub fn choose(cookie: Option<&str>, accept_language: Option<&str>) -> Lang {
        if let Some(lang) = cookie.and_then(Lang::from_code) {
            return lang;
        }
        accept_language
            .into_iter()
            .flat_map(|v| v.split(','))
            .filter_map(|part| part.split(';').next())
            .filter_map(|tag| Lang::from_code(tag.trim().get(..2)?))
            .next()
            .unwrap_or(Lang::Ru)
    }

    fn table(self) -> &'static HashMap<String, String> {
        match self {
            Lang::En => &EN,
            Lang::Ru => &RU,
        }
    }

    /// The string for `key`; a missing key shows as itself (tests check
    /// that none is missing).
    pub fn t(self, key: &str) -> &str {
        self.table().get(key).map_or(key, String::as_str)
    }

    /// A field's label.
    pub fn field(self, collection: &str, field: &str) -> String {
        self.owned(&format!("field.{collection}.{field}"), field)
    }

    /// A kind's name (a record of it); a kind from a kinds folder without
    /// a translation shows its collection.
    pub fn kind(self, collection: &str) -> String {
        self.owned(&format!("kind.{collection}"), collection)
    }

    /// A refused field's message: its code's sentence in this language,
    /// the rule's number put in for `{limit}`.
    pub fn invalid(self, error: &FieldError) -> String {
        let key = format!("invalid.{}", error.code.as_str());
        match self.table().get(&key) {
            Some(text) => match error.limit {
                Some(limit) => text.replace("{limit}", &limit.to_string()),
                None => text.clone(),
            },
            None => error.message.clone(),
        }
    }

    /// An enum value's label.
    pub fn value(self, collection: &str, field: &str, value: &str) -> String {
        self.owned(&format!("enum.{collection}.{field}.{value}"), value)
    }

    fn owned(self, key: &str, fallback: &str) -> String {
        self.table()
            .get(key)
            .cloned()
            .unwrap_or_else(|| fallback.to_owned())
    }

    /// An RFC 3339 time as the language writes it, in UTC (the page's
    /// script shows it in the browser's time zone).
    pub fn datetime(self, rfc3339: &str) -> String {
        let Ok(at) = DateTime::parse_from_rfc3339(rfc3339) else {
            return rfc3339.to_owned();
        };
        let at = at.with_timezone(&Utc);
        match self {
            Lang::En => at.format("%b %-d, %Y, %H:%M UTC").to_string(),
            Lang::Ru => at.format("%d.%m.%Y %H:%M UTC").to_string(),
        }
    }

    /// A `YYYY-MM-DD` date as the language writes it.
    pub fn date(self, iso: &str) -> String {
        let Ok(date) = NaiveDate::parse_from_str(iso, "%Y-%m-%d") else {
            return iso.to_owned();
        };
        match self {
            Lang::En => date.format("%b %-d, %Y").to_string(),
            Lang::Ru => date.format("%d.%m.%Y").to_string(),
        }
    }

    /// A whole number with the language's digit grouping.
    pub fn number(self, n: i64) -> String {
        let separator = match self {
            Lang::En => ",",
            // A narrow no-break space, as Russian typography groups digits.
            Lang::Ru => "\u{202f}",
        };
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push_str(separator);
            }
            out.push(c);
        }
        if n < 0 {
            out.insert(0, '-');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn both_languages_have_the_same_keys() {
        let en: BTreeSet<_> = EN.keys().collect();
        let ru: BTreeSet<_> = RU.keys().collect();
        let only_en: Vec<_> = en.difference(&ru).collect();
        let only_ru: Vec<_> = ru.difference(&en).collect();
        assert!(
            only_en.is_empty() && only_ru.is_empty(),
            "only in en.toml: {only_en:?}; only in ru.toml: {only_ru:?}"
        );
    }

    #[test]
    fn every_field_and_enum_value_has_a_label() {
        let schema = crm_schema::Schema::builtin().expect("the built-in schema loads");
        let mut missing = Vec::new();
        for kind in schema.kinds() {
            for field in &kind.fields {
                let key = format!("field.{}.{}", kind.collection, field.name);
                if !EN.contains_key(&key) {
                    missing.push(key);
                }
                for value in &field.values {
                    let key = format!("enum.{}.{}.{value}", kind.collection, field.name);
                    if !EN.contains_key(&key) {
                        missing.push(key);
                    }
                }
            }
        }
        assert!(missing.is_empty(), "no label for {missing:?}");
    }

    /// Every key written in the web module's code exists: any string
    /// literal that starts with a section of the language files and a dot.
    #[test]
    fn every_key_used_in_the_pages_exists() {
        let sections: BTreeSet<&str> = EN.keys().filter_map(|k| k.split('.').next()).collect();
        let is_key = |text: &str| {
            text.split_once('.').is_some_and(|(section, rest)| {
                sections.contains(section)
                    && !rest.is_empty()
                    && text
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
            })
        };
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/web");
        let mut missing = Vec::new();
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).expect("src/web is readable") {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let code = std::fs::read_to_string(&path).expect("a source file is readable");
            // Every other piece between quotes is a literal.
            for literal in code.split('"').skip(1).step_by(2).filter(|l| is_key(l)) {
                checked += 1;
                if !EN.contains_key(literal) {
                    missing.push(format!("{}: {literal}", path.display()));
                }
            }
        }
        assert!(
            checked > 100,
            "only {checked} keys found: is the scan broken?"
        );
        assert!(missing.is_empty(), "unknown keys: {missing:?}");
    }

    #[test]
    fn every_validation_code_is_translated() {
        use crate::records::{ErrorCode, FieldError, Invalid};
        for code in ErrorCode::ALL {
            for (lang, table) in [(Lang::En, &*EN), (Lang::Ru, &*RU)] {
                let key = format!("invalid.{}", code.as_str());
                assert!(table.contains_key(&key), "{key} in {}", lang.code());
                let error = FieldError::new("f", Invalid::limited(*code, 7, "english"));
                let text = lang.invalid(&error);
                assert!(!text.contains("{limit}"), "{key}: {text}");
                assert_ne!(text, "english", "{key}");
            }
        }
        let email = FieldError::new("email", Invalid::new(ErrorCode::Email, "x"));
        assert_eq!(Lang::Ru.invalid(&email), "Неверный адрес e-mail.");
        let long = FieldError::new("name", Invalid::limited(ErrorCode::TooLong, 300, "x"));
        assert_eq!(Lang::Ru.invalid(&long), "Не больше 300 символов.");
        assert_eq!(Lang::En.invalid(&long), "At most 300 characters.");
    }

    #[test]
    fn formats_per_language() {
        assert_eq!(Lang::Ru.number(1234567), "1\u{202f}234\u{202f}567");
        assert_eq!(Lang::En.number(-1234), "-1,234");
        assert_eq!(Lang::En.number(12), "12");
        assert_eq!(Lang::Ru.date("2026-05-01"), "01.05.2026");
        assert_eq!(Lang::En.date("2026-05-01"), "May 1, 2026");
        assert_eq!(
            Lang::Ru.datetime("2026-11-27T01:20:00.000Z"),
            "27.11.2026 01:20 UTC"
        );
        assert_eq!(
            Lang::En.datetime("2026-11-27T01:20:00.000Z"),
            "Nov 27, 2026, 01:20 UTC"
        );
    }

    #[test]
    fn chooses_the_cookie_then_the_browser() {
        assert_eq!(Lang::choose(Some("en"), Some("ru")), Lang::En);
        assert_eq!(Lang::choose(None, Some("de-DE,en-US;q=0.8")), Lang::En);
        assert_eq!(Lang::choose(Some("xx"), None), Lang::Ru);
    }
}
