//! The clients list and the quick registration of a new client.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use crm_schema::KindDef;
use maud::{html, Markup};
use serde_json::{Map, Value as Json};

use super::error::WebError;
use super::fields::{self, control};
use super::layout::{csrf_field, page};
use super::lists::ListSpec;
use super::session::{Ctx, WebForm};
use crate::access;
use crate::api::AppState;
use crate::records::{FieldError, RecordError};

pub const CLIENTS: &str = "clients";
pub const LIST: ListSpec = ListSpec {
    collection: CLIENTS,
    title: "clients.title",
    search: "name",
    filters: &["stage", "importance", "city", "region", "manager", "tags"],
    columns: &["city", "stage", "importance", "manager", "phone"],
    sorts: &[
        ("-updated_at", "list.sort_updated_desc"),
        ("name", "list.sort_name"),
        ("city", "clients.sort_city"),
        ("-created_at", "list.sort_created_desc"),
    ],
    new: Some(("/clients/new", "nav.new_client")),
};
/// The fields of the quick registration form.
const QUICK: &[&str] = &["name", "client_type", "tax_id", "phone", "email", "city"];

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
        Ok(created) => Ok(Redirect::to(&format!("/clients/{}", created.id)).into_response()),
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
