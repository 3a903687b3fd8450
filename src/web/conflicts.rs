//! `/conflicts`: every live record of every kind whose fields hold values
//! written concurrently at different offices, most recently changed
//! first, with its kind, its conflicting fields and a link to its card
//! (where one value is kept); cursor pages.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::card::CardKind;
use super::error::WebError;
use super::layout::{head, page as layout_page};
use super::session::Ctx;
use crate::access;
use crate::api::AppState;
use crate::records::ConflictedRecord;

/// Records on a page.
const PAGE_SIZE: usize = 25;

#[derive(Deserialize)]
pub struct ConflictsQuery {
    #[serde(default)]
    cursor: String,
}

pub async fn page(
    State(state): State<AppState>,
    ctx: Ctx,
    Query(query): Query<ConflictsQuery>,
) -> Result<Response, WebError> {
    access::read(ctx.user()?)?;
    let cursor = Some(query.cursor.trim().to_owned()).filter(|c| !c.is_empty());
    let first = cursor.is_none();
    let page = state.records.conflicted(cursor, PAGE_SIZE).await?;
    let body = html! {
        h1 { (ctx.t("conflicts.title")) }
        p { (ctx.t("conflicts.intro")) }
        @if page.items.is_empty() {
            p.empty #no-conflicts { (ctx.t("conflicts.none")) }
        } @else {
            table.list #conflicts-list {
                (head(["conflicts.record", "search.kind", "conflicts.fields", "conflicts.changed"].map(|k| ctx.t(k))))
                tbody {
                    @for item in &page.items {
                        (row(&ctx, &state, item))
                    }
                }
            }
        }
        nav.pages aria-label=(ctx.t("list.next_page")) {
            @if !first {
                a #first-page href="/conflicts" { (ctx.t("list.first_page")) }
            }
            @if let Some(next) = &page.next_cursor {
                a #next-page href={ "/conflicts?" (serde_urlencoded::to_string([("cursor", next)]).unwrap_or_default()) } {
                    (ctx.t("list.next_page")) " →"
                }
            }
        }
    };
    Ok(layout_page(&ctx, ctx.t("conflicts.title"), body).into_response())
}

fn row(ctx: &Ctx, state: &AppState, item: &ConflictedRecord) -> Markup {
    let record = &item.record;
    let id = record["id"].as_str().unwrap_or_default();
    let which = CardKind::of(&item.collection);
    let title = match state.records.kind_def(&item.collection) {
        Ok(kind) => which.title(&kind, record),
        Err(_) => id.to_owned(),
    };
    let fields: Vec<String> = record["conflicts"]
        .as_object()
        .map(|c| {
            c.keys()
                .map(|f| ctx.lang.field(&item.collection, f))
                .collect()
        })
        .unwrap_or_default();
    let updated_at = record["updated_at"].as_str().unwrap_or_default();
    html! {
        tr data-kind=(item.collection) data-id=(id) {
            td { a href=(which.path(id)) { (title) } }
            td { (ctx.lang.kind(&item.collection)) }
            td.conflict-fields { (fields.join(", ")) }
            td { time datetime=(updated_at) { (ctx.lang.datetime(updated_at)) } }
        }
    }
}

/// A conflicted record as a link to its card, for short lists (the
/// desktop's box).
pub fn link(ctx: &Ctx, state: &AppState, item: &ConflictedRecord) -> Markup {
    let id = item.record["id"].as_str().unwrap_or_default();
    let which = CardKind::of(&item.collection);
    let title = state
        .records
        .kind_def(&item.collection)
        .map(|kind| which.title(&kind, &item.record))
        .unwrap_or_else(|_| id.to_owned());
    html! {
        a href=(which.path(id)) { (title) }
        " "
        span.muted { "(" (ctx.lang.kind(&item.collection)) ")" }
    }
}

#[cfg(test)]
mod tests {
    use super::super::card::record_title;

    #[test]
    fn titles_come_from_the_kinds_title_fields() {
        let schema = crm_schema::Schema::builtin().expect("the built-in schema loads");
        let users = schema.kind("users").expect("users are built in");
        let user = serde_json::json!({"id": "x", "login": "ivanov", "display_name": "Иван Иванов"});
        assert_eq!(record_title(users, &user), "Иван Иванов ivanov");
        let nameless = serde_json::json!({"id": "x", "login": null});
        assert_eq!(record_title(users, &nameless), "x");
    }
}
