//! Lists of records: search by the start of the title field, filters,
//! sort and cursor pages, described per kind by a [`ListSpec`].

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use crm_schema::KindDef;
use maud::{html, Markup};
use serde_json::Value as Json;

use super::card::CardKind;
use super::error::WebError;
use super::fields::display;
use super::layout::{self, head};
use super::session::Ctx;
use crate::access;
use crate::api::AppState;
use crate::records::RecordError;

const PAGE_SIZE: &str = "25";

/// What a kind's list offers.
pub struct ListSpec {
    /// The kind listed; each row opens its card.
    pub collection: &'static str,
    /// The page's title (a key).
    pub title: &'static str,
    /// The field the search box matches the start of; the first column.
    pub search: &'static str,
    /// Filters offered above the list: choices for enums, text for the rest.
    pub filters: &'static [&'static str],
    /// The columns after the first.
    pub columns: &'static [&'static str],
    /// Sort choices: the list query's `sort` value and its label's key.
    pub sorts: &'static [(&'static str, &'static str)],
    /// The page that creates a record, and its link's label key.
    pub new: Option<(&'static str, &'static str)>,
}

/// The list's query string as the page takes it: `q` (the start of the
/// title field), the filters, `sort` and `cursor`.
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
    fn params(&self, spec: &ListSpec) -> Vec<(String, String)> {
        let mut params = vec![("limit".to_owned(), PAGE_SIZE.to_owned())];
        let q = self.get("q").trim();
        if !q.is_empty() {
            params.push((format!("{}.prefix", spec.search), q.to_owned()));
        }
        for key in spec.filters.iter().chain(&["sort", "cursor"]) {
            let value = self.get(key).trim();
            if !value.is_empty() {
                params.push(((*key).to_owned(), value.to_owned()));
            }
        }
        params
    }

    /// This query on another page (`None`: the first).
    fn with_cursor(&self, spec: &ListSpec, cursor: Option<&str>) -> String {
        let mut pairs: Vec<(&str, &str)> = self
            .pairs
            .iter()
            .filter(|(k, v)| k != "cursor" && !v.is_empty())
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.extend(cursor.map(|c| ("cursor", c)));
        format!(
            "/{}?{}",
            spec.collection,
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    }
}

/// The route that serves `spec`'s list page.
pub fn route(spec: &'static ListSpec) -> MethodRouter<AppState> {
    get(
        move |State(state): State<AppState>, ctx: Ctx, RawQuery(raw): RawQuery| async move {
            page(&state, &ctx, spec, raw).await
        },
    )
}

/// The page of a list.
pub async fn page(
    state: &AppState,
    ctx: &Ctx,
    spec: &ListSpec,
    raw: Option<String>,
) -> Result<Response, WebError> {
    access::read(ctx.user()?)?;
    let collection = spec.collection;
    let kind = state.records.kind_def(collection)?;
    let card = CardKind::of(collection);
    let query = ListQuery::parse(raw);
    let (items, next, problem) = match state.records.list(collection, query.params(spec)).await {
        Ok(page) => {
            let items: Vec<Json> = page.records();
            (items, page.next_cursor, None)
        }
        Err(RecordError::BadQuery(why)) => (Vec::new(), None, Some(why)),
        Err(e) => return Err(e.into()),
    };
    let body = html! {
        div.page-head {
            h1 { (ctx.t(spec.title)) }
            @if let Some((href, label)) = spec.new {
                @if access::create(ctx.user()?, collection).is_ok() {
                    a.button.primary href=(href) { (ctx.t(label)) }
                }
            }
        }
        (filters(ctx, spec, &kind, &query))
        @if let Some(why) = problem {
            p.notice.error role="alert" { (ctx.t("app.bad_query")) " " (why) }
        }
        @if items.is_empty() {
            p.empty { (ctx.t("list.empty")) }
        } @else {
            table.list #list {
                (head(std::iter::once(&spec.search).chain(spec.columns).map(|c| ctx.lang.field(collection, c))))
                tbody {
                    @for item in &items {
                        tr {
                            td { a href=(card.path(item["id"].as_str().unwrap_or_default())) {
                                (card.title(&kind, item))
                            } }
                            @for column in spec.columns {
                                td { @if let Some(field) = kind.field(column) {
                                    (display(ctx.lang, &kind, field, &item[*column]))
                                } }
                            }
                        }
                    }
                }
            }
        }
        nav.pages aria-label=(ctx.t("list.next_page")) {
            @if !query.get("cursor").is_empty() {
                a href=(query.with_cursor(spec, None)) { (ctx.t("list.first_page")) }
            }
            @if let Some(next) = next {
                a #next-page href=(query.with_cursor(spec, Some(&next))) { (ctx.t("list.next_page")) " →" }
            }
        }
    };
    Ok(layout::page(ctx, ctx.t(spec.title), body).into_response())
}

fn filters(ctx: &Ctx, spec: &ListSpec, kind: &KindDef, query: &ListQuery) -> Markup {
    let collection = spec.collection;
    html! {
        form.filters method="get" action={ "/" (collection) } aria-label=(ctx.t("list.filters")) {
            div.field {
                label for="q" { (ctx.lang.field(collection, spec.search)) " " (ctx.t("list.starts")) }
                input #q type="search" name="q" value=(query.get("q"));
            }
            @for name in spec.filters {
                @if let Some(field) = kind.field(name) {
                    div.field {
                        label for={ "filter-" (name) } { (ctx.lang.field(collection, name)) }
                        @if field.values.is_empty() {
                            input id={ "filter-" (name) } name=(name) value=(query.get(name));
                        } @else {
                            select id={ "filter-" (name) } name=(name) {
                                option value="" { (ctx.t("list.any")) }
                                @for v in &field.values {
                                    option value=(v) selected[query.get(name) == v] { (ctx.lang.value(collection, name, v)) }
                                }
                            }
                        }
                    }
                }
            }
            div.field {
                label for="sort" { (ctx.t("list.sort")) }
                select #sort name="sort" {
                    @for (value, label) in spec.sorts {
                        option value=(value) selected[query.get("sort") == *value] { (ctx.t(label)) }
                    }
                }
            }
            div.actions {
                button.primary type="submit" { (ctx.t("list.apply")) }
                a.button href={ "/" (collection) } { (ctx.t("list.reset")) }
            }
        }
    }
}
