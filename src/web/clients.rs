//! The clients list (search by name, filters, sort, cursor pages) and the
//! quick registration of a new client.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use crm_schema::KindDef;
use maud::{html, Markup};
use serde_json::{Map, Value as Json};

use super::error::WebError;
use super::fields::{self, control, display};
use super::layout::{csrf_field, head, page};
use super::session::{Ctx, WebForm};
use crate::access;
use crate::api::AppState;
use crate::records::{FieldError, RecordError};

pub const CLIENTS: &str = "clients";
const PAGE_SIZE: &str = "25";
/// Filters offered above the list: choices for enums, text for the rest.
const FILTERS: &[&str] = &["stage", "importance", "city", "region", "manager", "tags"];
/// The list's columns after the name.
const COLUMNS: &[&str] = &["city", "stage", "importance", "manager", "phone"];
/// Sort choices: the list query's `sort` value and its label.
const SORTS: &[(&str, &str)] = &[
    ("-updated_at", "clients.sort_updated_desc"),
    ("name", "clients.sort_name"),
    ("city", "clients.sort_city"),
    ("-created_at", "clients.sort_created_desc"),
];
/// The fields of the quick registration form.
const QUICK: &[&str] = &["name", "client_type", "tax_id", "phone", "email", "city"];

/// The list's query string as the page takes it: `q` (name prefix), the
/// filters, `sort` and `cursor`.
struct ListQuery {
    pairs: Vec<(String, String)>,
}

impl ListQuery {
    fn parse(raw: Option<String>) -> ListQuery {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
        ListQuery { pairs }
    }

    fn get(&self, key: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map_or("", |(_, v)| v.as_str())
    }

    /// The domain layer's list parameters.
    fn params(&self) -> Vec<(String, String)> {
        let mut params = vec![
            ("limit".to_owned(), PAGE_SIZE.to_owned()),
            ("fields".to_owned(), format!("name,{}", COLUMNS.join(","))),
        ];
        let q = self.get("q").trim();
        if !q.is_empty() {
            params.push(("name.prefix".to_owned(), q.to_owned()));
        }
        for key in FILTERS.iter().chain(&["sort", "cursor"]) {
            let value = self.get(key).trim();
            if !value.is_empty() {
                params.push(((*key).to_owned(), value.to_owned()));
            }
        }
        params
    }

    /// This query on another page (`None`: the first).
    fn with_cursor(&self, cursor: Option<&str>) -> String {
        let mut pairs: Vec<(&str, &str)> = self
            .pairs
            .iter()
            .filter(|(k, v)| k != "cursor" && !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.extend(cursor.map(|c| ("cursor", c)));
        format!(
            "/clients?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    }
}

pub async fn list(
    State(state): State<AppState>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    access::read(ctx.user()?)?;
    let kind = state.records.kind_def(CLIENTS)?;
    let query = ListQuery::parse(raw);
    let (items, next, problem) = match state.records.list(CLIENTS, query.params()).await {
        Ok(page) => {
            let items: Vec<Json> = page.records();
            (items, page.next_cursor, None)
        }
        Err(RecordError::BadQuery(why)) => (Vec::new(), None, Some(why)),
        Err(e) => return Err(e.into()),
    };
    let body = html! {
        div.page-head {
            h1 { (ctx.t("clients.title")) }
            @if access::create(ctx.user()?, CLIENTS).is_ok() {
                a.button.primary href="/clients/new" { (ctx.t("nav.new_client")) }
            }
        }
        (filters(&ctx, &kind, &query))
        @if let Some(why) = problem {
            p.notice.error role="alert" { (ctx.t("app.bad_query")) " " (why) }
        }
        @if items.is_empty() {
            p.empty { (ctx.t("clients.empty")) }
        } @else {
            table.list #clients {
                (head(std::iter::once(&"name").chain(COLUMNS).map(|c| ctx.lang.field(CLIENTS, c))))
                tbody {
                    @for item in &items {
                        tr {
                            td { a href={ "/clients/" (item["id"].as_str().unwrap_or_default()) } {
                                (item["name"].as_str().unwrap_or_default())
                            } }
                            @for column in COLUMNS {
                                td { @if let Some(field) = kind.field(column) {
                                    (display(ctx.lang, &kind, field, &item[*column]))
                                } }
                            }
                        }
                    }
                }
            }
        }
        nav.pages aria-label=(ctx.t("clients.next_page")) {
            @if !query.get("cursor").is_empty() {
                a href=(query.with_cursor(None)) { (ctx.t("clients.first_page")) }
            }
            @if let Some(next) = next {
                a #next-page href=(query.with_cursor(Some(&next))) { (ctx.t("clients.next_page")) " →" }
            }
        }
    };
    Ok(page(&ctx, ctx.t("clients.title"), body).into_response())
}

fn filters(ctx: &Ctx, kind: &KindDef, query: &ListQuery) -> Markup {
    html! {
        form.filters method="get" action="/clients" aria-label=(ctx.t("clients.filters")) {
            div.field {
                label for="q" { (ctx.t("clients.name_starts")) }
                input #q type="search" name="q" value=(query.get("q"));
            }
            @for name in FILTERS {
                @if let Some(field) = kind.field(name) {
                    div.field {
                        label for={ "filter-" (name) } { (ctx.lang.field(CLIENTS, name)) }
                        @if field.values.is_empty() {
                            input id={ "filter-" (name) } name=(name) value=(query.get(name));
                        } @else {
                            select id={ "filter-" (name) } name=(name) {
                                option value="" { (ctx.t("clients.any")) }
                                @for v in &field.values {
                                    option value=(v) selected[query.get(name) == v] { (ctx.lang.value(CLIENTS, name, v)) }
                                }
                            }
                        }
                    }
                }
            }
            div.field {
                label for="sort" { (ctx.t("clients.sort")) }
                select #sort name="sort" {
                    @for (value, label) in SORTS {
                        option value=(value) selected[query.get("sort") == *value] { (ctx.t(label)) }
                    }
                }
            }
            div.actions {
                button.primary type="submit" { (ctx.t("clients.apply")) }
                a.button href="/clients" { (ctx.t("clients.reset")) }
            }
        }
    }
}

fn quick_form(ctx: &Ctx, kind: &KindDef, values: &Json, errors: &[FieldError]) -> Markup {
    let body = html! {
        h1 { (ctx.t("clients.new_title")) }
        @if !errors.is_empty() {
            p.notice.error role="alert" { (ctx.t("app.fix_errors")) }
        }
        form.card-form method="post" action="/clients" novalidate {
            (csrf_field(ctx))
            div.grid {
                @for name in QUICK {
                    @if let Some(field) = kind.field(name) {
                        (control(ctx.lang, kind, field, &values[*name], errors, "f"))
                    }
                }
            }
            div.actions {
                button.primary #register type="submit" { (ctx.t("clients.create")) }
                a.button href="/clients" { (ctx.t("app.cancel")) }
            }
        }
    };
    page(ctx, ctx.t("clients.new_title"), body)
}

pub async fn new_form(State(state): State<AppState>, ctx: Ctx) -> Result<Response, WebError> {
    access::create(ctx.user()?, CLIENTS)?;
    let kind = state.records.kind_def(CLIENTS)?;
    Ok(quick_form(&ctx, &kind, &Json::Null, &[]).into_response())
}

pub async fn create(
    State(state): State<AppState>,
    ctx: Ctx,
    form: WebForm,
) -> Result<Response, WebError> {
    let kind = state.records.kind_def(CLIENTS)?;
    match fields::create(&state, &ctx, CLIENTS, &form, Map::new()).await? {
        Ok(created) => Ok(Redirect::to(&format!(
            "/clients/{}",
            created.record["id"].as_str().unwrap_or_default()
        ))
        .into_response()),
        Err(RecordError::Invalid(errors)) => {
            let values = fields::echo(&kind, &form, &Json::Object(Map::new()));
            Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                quick_form(&ctx, &kind, &values, &errors),
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}
