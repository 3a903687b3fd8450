//! Users (admins): the list of the node's users, each with its name,
//! office, role and active flag changed in place (and a new password set),
//! and a form that creates a user with a password. Other roles see the
//! list only.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use crm_schema::KindDef;
use maud::{html, Markup};
use serde_json::{Map, Value as Json};

use super::error::WebError;
use super::fields::{self, control};
use super::layout::{csrf_field, page};
use super::session::{Ctx, WebForm};
use crate::access;
use crate::api::AppState;
use crate::auth::Role;
use crate::records::{FieldError, RecordError, USERS};

/// Users listed on the page.
const SHOWN: &str = "200";
/// The fields changed in place on each user's row.
const ROW_FIELDS: &[&str] = &["display_name", "office", "role", "active"];
/// The fields of the new-user form.
const NEW_FIELDS: &[&str] = &["login", "display_name", "office", "role", "password"];
const PASSWORD: &str = "password";

/// A refused form and where it came from (`new`, or a user's id).
struct Refused<'a> {
    form: &'a str,
    errors: Vec<FieldError>,
    values: Json,
}

async fn render(
    state: &AppState,
    ctx: &Ctx,
    refused: Option<Refused<'_>>,
) -> Result<Markup, WebError> {
    let admin = ctx.user()?.role == Role::Admin;
    let kind = state.records.kind_def(USERS)?;
    let params = vec![
        ("sort".to_owned(), "login".to_owned()),
        ("limit".to_owned(), SHOWN.to_owned()),
    ];
    let users = state.records.list(USERS, params).await?.records();
    let errors_of = |form: &str| match &refused {
        Some(r) if r.form == form => (r.errors.as_slice(), Some(&r.values)),
        _ => (&[][..], None),
    };
    let body = html! {
        h1 { (ctx.t("users.title")) }
        @if refused.is_some() {
            p.notice.error role="alert" { (ctx.t("app.fix_errors")) }
        }
        section #users aria-labelledby="users-h" {
            h2 #users-h { (ctx.t("users.list")) }
            @for user in &users {
                @let id = user["id"].as_str().unwrap_or_default();
                @let (errors, values) = errors_of(id);
                form.user-row method="post" action={ "/users/" (id) } novalidate {
                    (csrf_field(ctx))
                    div.field {
                        span.label { (ctx.lang.field(USERS, "login")) }
                        strong.login { (user["login"].as_str().unwrap_or_default()) }
                    }
                    fieldset disabled[!admin] {
                        div.row-fields {
                            @for name in ROW_FIELDS {
                                @if let Some(field) = kind.field(name) {
                                    (control(ctx.lang, &kind, field, &values.unwrap_or(user)[*name], errors, &format!("u-{id}")))
                                }
                            }
                            @if admin {
                                @let password_id = format!("u-{id}-password");
                                div.field {
                                    label for=(password_id) { (ctx.t("users.new_password")) }
                                    input id=(password_id) type="password" name=(PASSWORD) autocomplete="new-password"
                                        aria-invalid=[errors.iter().any(|e| e.field == PASSWORD).then_some("true")];
                                    @for error in errors.iter().filter(|e| e.field == PASSWORD) {
                                        p.field-error { (error.message) }
                                    }
                                }
                                div.actions { button.primary type="submit" aria-label={ (ctx.t("app.save")) " " (user["login"].as_str().unwrap_or_default()) } { (ctx.t("app.save")) } }
                            }
                        }
                    }
                }
            }
        }
        @if admin {
            (new_user(ctx, &kind, errors_of("new")))
        }
    };
    Ok(page(ctx, ctx.t("users.title"), body))
}

fn new_user(ctx: &Ctx, kind: &KindDef, (errors, values): (&[FieldError], Option<&Json>)) -> Markup {
    let empty = Json::Object(Map::new());
    let values = values.unwrap_or(&empty);
    html! {
        section #new-user aria-labelledby="new-user-h" {
            h2 #new-user-h { (ctx.t("users.new")) }
            form.card-form method="post" action="/users" novalidate {
                (csrf_field(ctx))
                div.grid {
                    @for name in NEW_FIELDS {
                        @if let Some(field) = kind.field(name) {
                            (control(ctx.lang, kind, field, &values[*name], errors, "new"))
                        }
                    }
                }
                div.actions { button.primary #create-user type="submit" { (ctx.t("users.create")) } }
            }
        }
    }
}

pub async fn list(State(state): State<AppState>, ctx: Ctx) -> Result<Response, WebError> {
    access::read(ctx.user()?)?;
    Ok(render(&state, &ctx, None).await?.into_response())
}

/// A refusal the form can show next to its fields: validation, or a login
/// that is taken.
fn field_errors(ctx: &Ctx, error: RecordError) -> Result<Vec<FieldError>, WebError> {
    match error {
        RecordError::Invalid(errors) => Ok(errors),
        RecordError::Duplicate { field, .. } => {
            Ok(vec![FieldError::new(&field, ctx.t("app.taken"))])
        }
        other => Err(other.into()),
    }
}

async fn refused_page(
    state: &AppState,
    ctx: &Ctx,
    form: &str,
    errors: Vec<FieldError>,
    values: Json,
) -> Result<Response, WebError> {
    let refused = Refused {
        form,
        errors,
        values,
    };
    let page = render(state, ctx, Some(refused)).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

/// The password typed in a form, if any (a secret field: only these forms
/// set it).
fn new_password(form: &WebForm) -> Map<String, Json> {
    let password = form.get(PASSWORD);
    if password.is_empty() {
        return Map::new();
    }
    Map::from_iter([(PASSWORD.to_owned(), Json::String(password.to_owned()))])
}

/// `POST /users`: a new user with a password.
pub async fn create(
    State(state): State<AppState>,
    ctx: Ctx,
    form: WebForm,
) -> Result<Response, WebError> {
    let kind = state.records.kind_def(USERS)?;
    match fields::create(&state, &ctx, USERS, &form, new_password(&form)).await? {
        Ok(_) => Ok(Redirect::to("/users").into_response()),
        Err(e) => {
            let values = fields::echo(&kind, &form, &Json::Object(Map::new()));
            refused_page(&state, &ctx, "new", field_errors(&ctx, e)?, values).await
        }
    }
}

/// `POST /users/{id}`: a user's name, office, role or active flag.
pub async fn update(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    form: WebForm,
) -> Result<Response, WebError> {
    let user = ctx.user()?;
    access::modify_record(&state.records, user, USERS, &id).await?;
    let kind = state.records.kind_def(USERS)?;
    let current = state.records.get(USERS, &id).await?.record;
    let mut patch = fields::patch(&kind, &form, &current);
    patch.extend(new_password(&form));
    if patch.is_empty() {
        return Ok(Redirect::to("/users").into_response());
    }
    match state
        .records
        .update(USERS, &id, patch, None, &user.author())
        .await
    {
        Ok(_) => Ok(Redirect::to("/users").into_response()),
        Err(e) => {
            let values = fields::echo(&kind, &form, &current);
            refused_page(&state, &ctx, &id, field_errors(&ctx, e)?, values).await
        }
    }
}
