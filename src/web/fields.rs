//! Record fields on a page, driven by the kind's declaration: a labelled
//! control per field (with its validation message next to it, in the
//! page's language), a value as text for reading, and a submitted form
//! turned into the JSON body or merge patch the domain layer takes (and a
//! record created from one). Dates are typed as text in the page's
//! language (`i18n/dates.rs`), not in the browser's date picker.

use crm_schema::{FieldDef, FieldType, KindDef};
use maud::{html, Markup};
use serde_json::{Map, Value as Json};

use super::error::WebError;
use super::i18n::{dates, Lang};
use super::session::{Ctx, WebForm};
use crate::access;
use crate::api::AppState;
use crate::records::{Created, FieldError, RecordError};

/// Whether a person edits the field on a page: references are set by the
/// page itself (a contact's client), secrets only on their own forms.
pub fn editable(field: &FieldDef) -> bool {
    field.ty != FieldType::Reference && !field.is_secret()
}

/// A stored value as a form control's text.
fn as_input(value: &Json) -> String {
    match value {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        Json::Array(items) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// A stored value as the language shows it.
pub fn display(lang: Lang, kind: &KindDef, field: &FieldDef, value: &Json) -> String {
    match (field.ty, value) {
        (_, Json::Null) => lang.t("app.none").to_owned(),
        (FieldType::Enum, Json::String(v)) => lang.value(&kind.collection, &field.name, v),
        (FieldType::Date, Json::String(v)) => lang.date(v),
        (FieldType::Datetime, Json::String(v)) => lang.datetime(v),
        (FieldType::Integer, Json::Number(n)) => {
            n.as_i64().map_or(n.to_string(), |n| lang.number(n))
        }
        (FieldType::Bool, Json::Bool(b)) => {
            lang.t(if *b { "app.yes" } else { "app.no" }).to_owned()
        }
        (FieldType::Money, Json::Object(m)) => {
            let minor = m.get("minor").and_then(Json::as_i64).unwrap_or_default();
            let currency = m.get("currency").and_then(Json::as_str).unwrap_or_default();
            let cents = minor.unsigned_abs() % 100;
            let point = if lang == Lang::Ru { "," } else { "." };
            // The sign goes on its own: -0.50 has no whole units to carry it.
            let sign = if minor < 0 { "-" } else { "" };
            let units = i64::try_from(minor.unsigned_abs() / 100).unwrap_or(i64::MAX);
            format!("{sign}{}{point}{cents:02} {currency}", lang.number(units))
        }
        (_, Json::Array(items)) if items.is_empty() => lang.t("app.none").to_owned(),
        _ => as_input(value),
    }
}

/// A field's id on the page: `f-<name>`, or `<prefix>-<name>` for a second
/// form of another kind on the same page.
fn control_id(prefix: &str, field: &FieldDef) -> String {
    format!("{prefix}-{}", field.name)
}

/// The labelled control of one field, its validation message below it.
pub fn control(
    lang: Lang,
    kind: &KindDef,
    field: &FieldDef,
    value: &Json,
    errors: &[FieldError],
    prefix: &str,
) -> Markup {
    let id = control_id(prefix, field);
    let error_id = format!("{id}-error");
    let error = errors.iter().find(|e| e.field == field.name);
    let invalid = error.map(|_| "true");
    let described = error.map(|_| error_id.as_str());
    let text = match field.ty {
        FieldType::Date => dates::date_input(lang, &as_input(value)),
        FieldType::Datetime => dates::datetime_input(lang, &as_input(value)),
        _ => as_input(value),
    };
    let placeholder = match field.ty {
        FieldType::Date => Some(lang.t("app.date_placeholder")),
        FieldType::Datetime => Some(lang.t("app.datetime_placeholder")),
        _ => None,
    };
    let label = lang.field(&kind.collection, &field.name);
    html! {
        div.field.wide[field.ty == FieldType::Text] {
            label for=(id) {
                (label)
                @if field.required { span.required aria-hidden="true" { " *" } }
            }
            @match field.ty {
                FieldType::Enum => {
                    select #(id) name=(field.name) aria-invalid=[invalid] aria-describedby=[described] {
                        option value="" { (lang.t("app.none")) }
                        @for v in &field.values {
                            option value=(v) selected[text == *v] { (lang.value(&kind.collection, &field.name, v)) }
                        }
                    }
                }
                FieldType::Bool => {
                    select #(id) name=(field.name) aria-invalid=[invalid] aria-describedby=[described] {
                        option value="true" selected[text == "true"] { (lang.t("app.yes")) }
                        option value="false" selected[text == "false"] { (lang.t("app.no")) }
                    }
                }
                FieldType::Text => {
                    textarea #(id) name=(field.name) rows="3" aria-invalid=[invalid] aria-describedby=[described] { (text) }
                }
                _ => {
                    input #(id) name=(field.name) type=(input_type(field.ty)) value=(text)
                        min=[field.min] max=[field.max] placeholder=[placeholder] autocomplete=[placeholder.map(|_| "off")]
                        required[field.required] aria-invalid=[invalid] aria-describedby=[described];
                }
            }
            @if let Some(error) = error {
                p.field-error #(error_id) { (lang.invalid(error)) }
            }
        }
    }
}

fn input_type(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Email => "email",
        FieldType::Phone => "tel",
        FieldType::Integer => "number",
        FieldType::Password => "password",
        _ => "text",
    }
}

/// What was typed for `field`, as its JSON value; `Null` when empty. A
/// value that does not parse goes through as text, so that the domain
/// layer's message says what is wrong. Dates are read as `lang` writes
/// them.
pub fn parse(lang: Lang, field: &FieldDef, raw: &str) -> Json {
    // Browsers send a textarea's line breaks as CRLF.
    let raw = raw.replace("\r\n", "\n");
    let raw = raw.trim();
    if raw.is_empty() {
        return match field.ty {
            FieldType::Set => Json::Array(Vec::new()),
            _ => Json::Null,
        };
    }
    match field.ty {
        FieldType::Set => Json::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Json::String(s.to_owned()))
                .collect(),
        ),
        FieldType::Integer => raw
            .parse::<i64>()
            .map_or_else(|_| Json::String(raw.to_owned()), Json::from),
        FieldType::Bool => match raw {
            "true" => Json::Bool(true),
            "false" => Json::Bool(false),
            other => Json::String(other.to_owned()),
        },
        FieldType::Date => {
            Json::String(dates::parse_date(lang, raw).unwrap_or_else(|| raw.to_owned()))
        }
        FieldType::Datetime => {
            Json::String(dates::parse_datetime(lang, raw).unwrap_or_else(|| raw.to_owned()))
        }
        _ => Json::String(raw.to_owned()),
    }
}

/// A new record's body from a form: the kind's editable fields that were
/// filled in.
pub fn body(lang: Lang, kind: &KindDef, form: &WebForm) -> Map<String, Json> {
    let mut body = Map::new();
    for field in kind.fields.iter().filter(|f| editable(f)) {
        if let Some((_, raw)) = form.0.iter().find(|(k, _)| *k == field.name) {
            match parse(lang, field, raw) {
                Json::Null => {}
                Json::Array(a) if a.is_empty() => {}
                value => {
                    body.insert(field.name.clone(), value);
                }
            }
        }
    }
    body
}

/// Creates a record of `collection` from a submitted form as the signed-in
/// user: their role is checked and their ownership filled in, as the API
/// does; `extra` holds what the page itself sets. The outer error fails
/// the page; the inner one is the domain's answer, for the form to show.
pub async fn create(
    state: &AppState,
    ctx: &Ctx,
    collection: &str,
    form: &WebForm,
    extra: Map<String, Json>,
) -> Result<Result<Created, RecordError>, WebError> {
    let user = ctx.user()?;
    access::create(user, collection)?;
    let kind = state.records.kind_def(collection)?;
    let mut body = body(ctx.lang, &kind, form);
    body.extend(extra);
    access::fill_owner(user, &kind, &mut body);
    Ok(state.records.create(collection, body, &user.author()).await)
}

/// A merge patch from an edit form: only the fields whose value differs
/// from `current`, so that an unchanged field is not written (and cannot
/// conflict with another office's edit).
pub fn patch(lang: Lang, kind: &KindDef, form: &WebForm, current: &Json) -> Map<String, Json> {
    let mut patch = Map::new();
    for field in kind.fields.iter().filter(|f| editable(f)) {
        if let Some((_, raw)) = form.0.iter().find(|(k, _)| *k == field.name) {
            let value = parse(lang, field, raw);
            let before = &current[&field.name];
            let same = match (&value, before) {
                (Json::Array(a), Json::Null) => a.is_empty(),
                _ => value == *before,
            };
            if !same {
                patch.insert(field.name.clone(), value);
            }
        }
    }
    patch
}

/// What the form sent, as a record-shaped value to show again after a
/// refused save.
pub fn echo(kind: &KindDef, form: &WebForm, current: &Json) -> Json {
    let mut record = current.clone();
    if let Json::Object(map) = &mut record {
        for field in kind.fields.iter().filter(|f| editable(f)) {
            if let Some((_, raw)) = form.0.iter().find(|(k, _)| *k == field.name) {
                map.insert(field.name.clone(), Json::String(raw.clone()));
            }
        }
    }
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients() -> KindDef {
        crm_schema::Schema::builtin()
            .expect("the built-in schema loads")
            .kind("clients")
            .cloned()
            .expect("clients are built in")
    }

    #[test]
    fn money_shows_its_sign_grouping_and_decimal_mark_per_language() {
        let amount: FieldDef =
            toml::from_str("name = \"amount\"\ntype = \"money\"").expect("a money field");
        let kind = clients();
        let shown = |lang, minor: i64| {
            display(
                lang,
                &kind,
                &amount,
                &serde_json::json!({"minor": minor, "currency": "RUB"}),
            )
        };
        assert_eq!(
            shown(Lang::Ru, 123_456_789),
            "1\u{202f}234\u{202f}567,89 RUB"
        );
        assert_eq!(shown(Lang::En, 123_456_789), "1,234,567.89 RUB");
        assert_eq!(shown(Lang::Ru, -50), "-0,50 RUB");
        assert_eq!(shown(Lang::En, -1_050), "-10.50 RUB");
        assert_eq!(shown(Lang::En, 7), "0.07 RUB");
    }

    fn form(pairs: &[(&str, &str)]) -> WebForm {
        WebForm(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn a_patch_holds_only_changed_fields() {
        let current = serde_json::json!({"name": "Romashka", "city": "Kazan", "tags": ["vip"], "notes": null});
        let sent = form(&[
            ("name", "Romashka"),
            ("city", " Omsk "),
            ("tags", "vip, new"),
            ("notes", ""),
            ("region", ""),
        ]);
        let patch = patch(Lang::Ru, &clients(), &sent, &current);
        assert_eq!(
            Json::Object(patch),
            serde_json::json!({"city": "Omsk", "tags": ["vip", "new"]})
        );
    }

    #[test]
    fn cleared_fields_become_null_and_empty_ones_are_left_out_of_a_body() {
        let current = serde_json::json!({"city": "Kazan", "tags": ["a"]});
        let sent = form(&[("city", ""), ("tags", "")]);
        assert_eq!(
            Json::Object(patch(Lang::En, &clients(), &sent, &current)),
            serde_json::json!({"city": null, "tags": []})
        );
        let created = body(
            Lang::Ru,
            &clients(),
            &form(&[("name", "X"), ("city", ""), ("notes", "a\r\nb")]),
        );
        assert_eq!(
            Json::Object(created),
            serde_json::json!({"name": "X", "notes": "a\nb"})
        );
    }

    #[test]
    fn dates_are_read_as_the_page_writes_them() {
        let contacts = crm_schema::Schema::builtin()
            .expect("the built-in schema loads")
            .kind("contacts")
            .cloned()
            .expect("contacts are built in");
        let current = serde_json::json!({"birthday": "1980-05-01"});
        // Unchanged in the page's own form: nothing to write.
        let same = form(&[("birthday", "01.05.1980")]);
        assert!(patch(Lang::Ru, &contacts, &same, &current).is_empty());
        let same = form(&[("birthday", "1980-05-01")]);
        assert!(patch(Lang::En, &contacts, &same, &current).is_empty());
        let moved = form(&[("birthday", "02.05.1980")]);
        assert_eq!(
            Json::Object(patch(Lang::Ru, &contacts, &moved, &current)),
            serde_json::json!({"birthday": "1980-05-02"})
        );
        // Not a date: sent on as typed, for the domain layer to refuse.
        let bad = form(&[("birthday", "31.02.1980")]);
        assert_eq!(
            Json::Object(patch(Lang::Ru, &contacts, &bad, &current)),
            serde_json::json!({"birthday": "31.02.1980"})
        );
        let field = contacts.field("birthday").expect("birthday");
        let shown =
            control(Lang::Ru, &contacts, field, &current["birthday"], &[], "f").into_string();
        assert!(shown.contains(r#"type="text""#), "{shown}");
        assert!(shown.contains(r#"value="01.05.1980""#), "{shown}");
        assert!(shown.contains(r#"placeholder="ДД.ММ.ГГГГ""#), "{shown}");
    }
}
