//! `GET /search?q=`: full-text search over every kind, from the box at the
//! top of every page.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::card::CardKind;
use super::error::WebError;
use super::layout;
use super::session::Ctx;
use crate::access;
use crate::api::AppState;

const LIMIT: usize = 50;

#[derive(Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
}

pub async fn page(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(query): Query<SearchQuery>,
) -> Result<Response, WebError> {
    access::read(ctx.user()?)?;
    let q = query.q.trim();
    let hits = if q.is_empty() {
        Vec::new()
    } else {
        state.records.search(q.to_owned(), None, LIMIT).await?
    };
    let body = html! {
        h1 { (ctx.t("search.title")) }
        form.filters role="search" method="get" action="/search" {
            div.field {
                label for="q" { (ctx.t("app.search")) }
                input #q type="search" name="q" value=(q);
            }
            div.actions { button.primary type="submit" { (ctx.t("app.search")) } }
        }
        @if !q.is_empty() {
            h2 { (ctx.t("search.results_for")) " «" (q) "»" }
            @if hits.is_empty() {
                p.empty { (ctx.t("search.nothing")) }
            } @else {
                table.list #results {
                    (layout::head(["search.title", "search.kind"].map(|k| ctx.t(k))))
                    tbody {
                        @for hit in &hits {
                            tr {
                                td { a href=(CardKind::of(&hit.kind).path(&hit.id)) { (hit.title) } }
                                td { (ctx.lang.kind(&hit.kind)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&ctx, ctx.t("search.title"), body).into_response())
}
