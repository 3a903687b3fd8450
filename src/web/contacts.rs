//! The list of contact persons (each opens its card, `card.rs`; new ones
//! are added from their client's card).

use axum::extract::{RawQuery, State};
use axum::response::Response;

use super::card::CardKind;
use super::error::WebError;
use super::lists::{self, ListSpec};
use super::session::Ctx;
use crate::api::AppState;

const LIST: ListSpec = ListSpec {
    card: CardKind::Contact,
    title: "contacts.title",
    search: "last_name",
    filters: &["position", "preferred_channel"],
    columns: &["first_name", "position", "phone", "email"],
    sorts: &[
        ("last_name", "contacts.sort_last_name"),
        ("-updated_at", "list.sort_updated_desc"),
        ("-created_at", "list.sort_created_desc"),
    ],
    new: None,
};

pub async fn list(
    State(state): State<AppState>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    lists::page(&state, &ctx, &LIST, raw).await
}
