//! Users (admins): the list of the node's users in pages by login, or
//! those a search by login or name finds, each with its name, office, role
//! and active flag changed in place (and a new password set), and a form
//! that creates a user with a password. Other roles see the list only.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use crm_schema::KindDef;
use maud::{html, Markup};
use serde_json::{Map, Value as Json};

use super::error::WebError;
use super::fields::{self, control};
use super::layout::{csrf_field, page};
use super::session::{local_path, Ctx, WebForm};
use crate::access;
use crate::api::AppState;
use crate::auth::Role;
use crate::records::{ErrorCode, FieldError, Invalid, RecordError, USERS};

/// Users on a page of the list, and found by a search at most.
const PAGE_SIZE: usize = 50;
/// The hidden field of every form that says which page it was on.
const BACK: &str = "_back";
/// The fields changed in place on each user's row.
const ROW_FIELDS: &[&str] = &["display_name", "office", "role", "active"];
/// The fields of the new-user form.
const NEW_FIELDS: &[&str] = &["login", "display_name", "office", "role", "password"];
const PASSWORD: &str = "password";

/// `/users`'s query: a search by login or name (`q`), or a page of the
/// list (`cursor`).
#[derive(Default)]
struct UsersQuery {
    q: String,
    cursor: String,
}

impl UsersQuery {
    fn parse(raw: &str) -> UsersQuery {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw).unwrap_or_default();
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        UsersQuery {
            q: get("q"),
            cursor: get("cursor"),
        }
    }

    /// The query of the page a form was sent from.
    fn of_form(form: &WebForm) -> UsersQuery {
        let back = local_path(form.get(BACK));
        UsersQuery::parse(back.split_once('?').map_or("", |(_, query)| query))
    }

    fn href(&self, cursor: Option<&str>) -> String {
        let mut pairs = Vec::new();
        if !self.q.is_empty() {
            pairs.push(("q", self.q.as_str()));
        }
        pairs.extend(cursor.map(|c| ("cursor", c)));
        match serde_urlencoded::to_string(pairs) {
            Ok(query) if !query.is_empty() => format!("/users?{query}"),
            _ => "/users".to_owned(),
        }
    }
}

/// The users a page shows: a search's hits, or a page of the list by
/// login; and the next page's cursor, or whether the search found more
/// than are shown.
struct Shown {
    users: Vec<Json>,
    next_cursor: Option<String>,
    more_found: bool,
}

async fn shown(state: &AppState, query: &UsersQuery) -> Result<Shown, WebError> {
    if query.q.is_empty() {
        let mut params = vec![
            ("sort".to_owned(), "login".to_owned()),
            ("limit".to_owned(), PAGE_SIZE.to_string()),
        ];
        if !query.cursor.is_empty() {
            params.push(("cursor".to_owned(), query.cursor.clone()));
        }
        let page = match state.records.list(USERS, params).await {
            Ok(page) => page,
            // A stale or foreign cursor: the first page.
            Err(RecordError::BadQuery(_)) => {
                let params = vec![
                    ("sort".to_owned(), "login".to_owned()),
                    ("limit".to_owned(), PAGE_SIZE.to_string()),
                ];
                state.records.list(USERS, params).await?
            }
            Err(e) => return Err(e.into()),
        };
        return Ok(Shown {
            users: page.records(),
            next_cursor: page.next_cursor,
            more_found: false,
        });
    }
    // Full-text search finds the start of any word of the login or the
    // name ("петр" finds "Иван Петров"); one more hit than shown tells
    // whether there are more.
    let hits = state
        .records
        .search(query.q.clone(), Some(USERS.to_owned()), PAGE_SIZE + 1)
        .await?;
    let mut users = Vec::with_capacity(hits.len().min(PAGE_SIZE));
    for hit in hits.iter().take(PAGE_SIZE) {
        match state.records.get(USERS, &hit.id).await {
            Ok(user) => users.push(user.record),
            Err(RecordError::Gone { .. } | RecordError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Shown {
        users,
        next_cursor: None,
        more_found: hits.len() > PAGE_SIZE,
    })
}

/// A refused form and where it came from (`new`, or a user's id).
struct Refused<'a> {
    form: &'a str,
    errors: Vec<FieldError>,
    values: Json,
}

async fn render(
    state: &AppState,
    ctx: &Ctx,
    query: &UsersQuery,
    refused: Option<Refused<'_>>,
) -> Result<Markup, WebError> {
    let admin = ctx.user()?.role == Role::Admin;
    let kind = state.records.kind_def(USERS)?;
    let Shown {
        users,
        next_cursor,
        more_found,
    } = shown(state, query).await?;
    let here = query.href(
        Some(&query.cursor)
            .filter(|c| !c.is_empty())
            .map(String::as_str),
    );
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
            form.filters #users-search role="search" method="get" action="/users" {
                div.field {
                    label for="users-q" { (ctx.t("users.search")) }
                    input #users-q type="search" name="q" value=(query.q);
                }
                div.actions {
                    button.primary type="submit" { (ctx.t("app.search")) }
                    @if !query.q.is_empty() {
                        a.button href="/users" { (ctx.t("list.reset")) }
                    }
                }
            }
            @if users.is_empty() {
                p.empty #no-users { (ctx.t("list.empty")) }
            }
            @for user in &users {
                @let id = user["id"].as_str().unwrap_or_default();
                @let (errors, values) = errors_of(id);
                form.user-row method="post" action={ "/users/" (id) } novalidate data-login=(user["login"].as_str().unwrap_or_default()) {
                    (csrf_field(ctx))
                    input type="hidden" name=(BACK) value=(here);
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
                                        p.field-error { (ctx.lang.invalid(error)) }
                                    }
                                }
                                div.actions { button.primary type="submit" aria-label={ (ctx.t("app.save")) " " (user["login"].as_str().unwrap_or_default()) } { (ctx.t("app.save")) } }
                            }
                        }
                    }
                }
            }
            @if more_found {
                p.notice #users-first-matches role="status" { (ctx.t("users.first_matches")) }
            }
            nav.pages aria-label=(ctx.t("list.next_page")) {
                @if !query.cursor.is_empty() {
                    a #first-page href=(query.href(None)) { (ctx.t("list.first_page")) }
                }
                @if let Some(next) = &next_cursor {
                    a #next-page href=(query.href(Some(next))) { (ctx.t("list.next_page")) " →" }
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

pub async fn list(
    State(state): State<AppState>,
    ctx: Ctx,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    access::read(ctx.user()?)?;
    let query = UsersQuery::parse(raw.as_deref().unwrap_or_default());
    Ok(render(&state, &ctx, &query, None).await?.into_response())
}

/// A refusal the form can show next to its fields: validation, or a login
/// that is taken.
fn field_errors(error: RecordError) -> Result<Vec<FieldError>, WebError> {
    match error {
        RecordError::Invalid(errors) => Ok(errors),
        RecordError::Duplicate { field, value, .. } => Ok(vec![FieldError::new(
            &field,
            Invalid::new(ErrorCode::Unique, format!("{value:?} is taken")),
        )]),
        other => Err(other.into()),
    }
}

async fn refused_page(
    state: &AppState,
    ctx: &Ctx,
    query: &UsersQuery,
    form: &str,
    errors: Vec<FieldError>,
    values: Json,
) -> Result<Response, WebError> {
    let refused = Refused {
        form,
        errors,
        values,
    };
    let page = render(state, ctx, query, Some(refused)).await?;
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
            let query = UsersQuery::of_form(&form);
            refused_page(&state, &ctx, &query, "new", field_errors(e)?, values).await
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
    let mut patch = fields::patch(ctx.lang, &kind, &form, &current);
    patch.extend(new_password(&form));
    let back = local_path(form.get(BACK));
    let back = if back.starts_with("/users") {
        back
    } else {
        "/users"
    };
    if patch.is_empty() {
        return Ok(Redirect::to(back).into_response());
    }
    match state
        .records
        .update(USERS, &id, patch, None, &user.author())
        .await
    {
        Ok(_) => Ok(Redirect::to(back).into_response()),
        Err(e) => {
            let values = fields::echo(&kind, &form, &current);
            let query = UsersQuery::of_form(&form);
            refused_page(&state, &ctx, &query, &id, field_errors(e)?, values).await
        }
    }
}
