//! The card of a record: every field in one form (edit in place, each
//! refused value's message next to its field), conflicting values from
//! other offices (with who wrote each, where and when) and a choice
//! between them, delete and restore, and the history of changes. Clients
//! and contact persons have cards of their own (a client's lists its
//! contact persons with a form to add one, a contact's links its client);
//! every other kind (users, the directory of nodes, a kinds folder's) has
//! the same card at `/records/<collection>/<id>`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Extension;
use crm_schema::{FieldDef, KindDef};
use maud::{html, Markup};
use serde_json::{Map, Value as Json};

use super::clients::CLIENTS;
use super::error::WebError;
use super::fields::{self, control, display, editable};
use super::layout::{csrf_field, head, page};
use super::offices::Offices;
use super::session::{Ctx, WebForm};
use crate::access;
use crate::api::AppState;
use crate::auth::Principal;
use crate::records::{FieldError, HistoryEntry, RecordError};

pub const CONTACTS: &str = "contacts";
/// The contact field that names the client.
const CLIENT_REF: &str = "client_id";
/// The contact fields of the card's "add a contact person" form.
const CONTACT_FORM: &[&str] = &["last_name", "first_name", "position", "phone", "email"];
/// The contact fields shown in the card's list.
const CONTACT_COLUMNS: &[&str] = &["position", "phone", "email"];
/// Contacts shown on a card.
const CONTACTS_SHOWN: &str = "100";

/// Which card a record has; each route of a card carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardKind {
    Client,
    Contact,
    /// Any other kind, by its collection: the generic card.
    Other(String),
}

/// Where the cards of kinds without pages of their own live.
const OTHER_CARDS: &str = "/records";

impl CardKind {
    /// The kinds with pages of their own.
    pub const OWN: [CardKind; 2] = [CardKind::Client, CardKind::Contact];

    /// The card of a record of `collection`.
    pub fn of(collection: &str) -> CardKind {
        match collection {
            CLIENTS => CardKind::Client,
            CONTACTS => CardKind::Contact,
            other => CardKind::Other(other.to_owned()),
        }
    }

    pub fn collection(&self) -> &str {
        match self {
            CardKind::Client => CLIENTS,
            CardKind::Contact => CONTACTS,
            CardKind::Other(collection) => collection,
        }
    }

    /// The path the cards of this kind start with.
    pub fn base(&self) -> String {
        match self {
            CardKind::Other(collection) => format!("{OTHER_CARDS}/{collection}"),
            own => format!("/{}", own.collection()),
        }
    }

    /// The card of record `id`.
    pub fn path(&self, id: &str) -> String {
        format!("{}/{id}", self.base())
    }

    /// What the card is called: a client's name, a person's full name,
    /// else the kind's title fields.
    pub fn title(&self, kind: &KindDef, record: &Json) -> String {
        match self {
            CardKind::Client => record["name"].as_str().unwrap_or_default().to_owned(),
            CardKind::Contact => person_name(record),
            CardKind::Other(_) => record_title(kind, record),
        }
    }
}

/// A record's title fields joined, as search shows it; its id when they
/// are empty.
pub fn record_title(kind: &KindDef, record: &Json) -> String {
    let title = kind
        .title
        .iter()
        .filter_map(|name| match &record[name.as_str()] {
            Json::Null => None,
            Json::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if title.is_empty() {
        record["id"].as_str().unwrap_or_default().to_owned()
    } else {
        title
    }
}

/// What a card shows besides its record.
struct Card {
    which: CardKind,
    kind: std::sync::Arc<KindDef>,
    contacts_kind: std::sync::Arc<KindDef>,
    record: Json,
    etag: String,
    deleted: bool,
    /// The user's role lets them change this client.
    may_edit: bool,
    /// The user's role lets them add contact persons.
    may_add_contact: bool,
    /// A client's contact persons.
    contacts: Vec<Json>,
    /// A contact's client.
    client: Option<Json>,
    history: Vec<HistoryEntry>,
    offices: Offices,
}

impl Card {
    /// The card's own path.
    fn path(&self) -> String {
        self.which
            .path(self.record["id"].as_str().unwrap_or_default())
    }
}

/// What the card says after a submitted form.
#[derive(Default)]
struct Outcome<'a> {
    notice: Option<&'static str>,
    errors: &'a [FieldError],
    /// What the edit form sent, shown again when refused.
    values: Option<Json>,
    contact_errors: &'a [FieldError],
    contact_values: Option<Json>,
}

async fn load(state: &AppState, ctx: &Ctx, which: &CardKind, id: &str) -> Result<Card, WebError> {
    let user = ctx.user()?;
    let collection = which.collection();
    let records = &state.records;
    let (record, etag, deleted) = match records.get(collection, id).await {
        Ok(v) => (v.record, v.etag, false),
        Err(RecordError::Gone { .. }) => {
            (records.get_any(collection, id).await?, String::new(), true)
        }
        Err(e) => return Err(e.into()),
    };
    let (contacts, client) = match which {
        CardKind::Client => {
            let params = vec![
                (CLIENT_REF.to_owned(), id.to_owned()),
                ("sort".to_owned(), "last_name".to_owned()),
                ("limit".to_owned(), CONTACTS_SHOWN.to_owned()),
            ];
            (records.list(CONTACTS, params).await?.records(), None)
        }
        CardKind::Contact => {
            let client = record[CLIENT_REF].as_str().unwrap_or_default();
            (Vec::new(), records.get_any(CLIENTS, client).await.ok())
        }
        CardKind::Other(_) => (Vec::new(), None),
    };
    let kind = records.kind_def(collection)?;
    let mut history = records.history(collection, id).await?;
    history.reverse();
    Ok(Card {
        which: which.clone(),
        // The nodes write their own system records.
        may_edit: !kind.system
            && access::modify_record(records, user, collection, id)
                .await
                .is_ok(),
        kind,
        contacts_kind: records.kind_def(CONTACTS)?,
        record,
        etag,
        deleted,
        may_add_contact: access::create(user, CONTACTS).is_ok(),
        contacts,
        client,
        history,
        offices: Offices::load(state).await?,
    })
}

pub async fn card(
    State(state): State<AppState>,
    ctx: Ctx,
    Extension(which): Extension<CardKind>,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    access::read(ctx.user()?)?;
    let card = load(&state, &ctx, &which, &id).await?;
    Ok(render(&ctx, &card, Outcome::default()).into_response())
}

fn render(ctx: &Ctx, card: &Card, outcome: Outcome) -> Markup {
    let id = card.record["id"].as_str().unwrap_or_default();
    let name = card.which.title(&card.kind, &card.record);
    let base = card.path();
    let shown = outcome.values.as_ref().unwrap_or(&card.record);
    let body = html! {
        div.page-head {
            h1 #card-title { (name) }
            @if !card.may_edit {
            } @else if card.deleted {
                form.inline method="post" action={ (base) "/restore" } {
                    (csrf_field(ctx))
                    button.primary #restore type="submit" { (ctx.t("card.restore")) }
                }
            } @else {
                form.inline method="post" action={ (base) "/delete" } data-confirm=(ctx.t("card.delete_confirm")) {
                    (csrf_field(ctx))
                    button.danger #delete type="submit" { (ctx.t("card.delete")) }
                }
            }
        }
        @if let Some(notice) = outcome.notice {
            p.notice #notice role="status" { (ctx.t(notice)) }
        }
        @if !outcome.errors.is_empty() {
            p.notice.error role="alert" { (ctx.t("app.fix_errors")) }
        }
        @if card.deleted {
            p.notice.error #deleted { (ctx.t("card.deleted")) }
        }
        @if let Some(client) = &card.client {
            p #client-link {
                (ctx.lang.field(CONTACTS, CLIENT_REF)) ": "
                a href={ "/clients/" (client["id"].as_str().unwrap_or_default()) } { (client["name"].as_str().unwrap_or_default()) }
            }
        }
        (conflicts(ctx, card))
        section aria-labelledby="card-h" {
            h2 #card-h { (ctx.t("card.fields")) }
            form.card-form #card method="post" action=(base) novalidate {
                (csrf_field(ctx))
                input type="hidden" name="_version" value=(card.etag);
                fieldset disabled[card.deleted || !card.may_edit] {
                    div.grid {
                        @for field in card.kind.fields.iter().filter(|f| editable(f)) {
                            (control(ctx.lang, &card.kind, field, &shown[&field.name], outcome.errors, "f"))
                        }
                    }
                    @if card.may_edit {
                        div.actions {
                            button.primary #save type="submit" { (ctx.t("app.save")) }
                        }
                    }
                }
            }
        }
        @if card.which == CardKind::Client {
            (contacts(ctx, card, id, &outcome))
        }
        (history(ctx, card))
    };
    page(ctx, &name, body)
}

/// Each conflicting field's values, with a button that keeps one.
fn conflicts(ctx: &Ctx, card: &Card) -> Markup {
    let collection = card.which.collection();
    let Some(conflicts) = card.record["conflicts"].as_object() else {
        return html! {};
    };
    // Everyone sees each value and who wrote it where; only those who may
    // edit get a button that keeps one.
    html! {
        div.conflicts #conflicts {
            p { strong { (ctx.t("card.conflict")) } }
            @for (name, values) in conflicts {
                @if let Some(field) = card.kind.field(name) {
                    div.conflict {
                        span.conflict-field { (ctx.lang.field(collection, name)) }
                        @for value in values.as_array().into_iter().flatten() {
                            @if card.may_edit {
                                form.inline method="post" action={ (card.path()) "/resolve" } {
                                    (csrf_field(ctx))
                                    input type="hidden" name="field" value=(name);
                                    input type="hidden" name="value" value=(value["value"].as_str().map_or_else(|| value["value"].to_string(), str::to_owned));
                                    button type="submit" { (conflict_value(ctx, card, field, value)) }
                                }
                            } @else {
                                span.conflict-value { (conflict_value(ctx, card, field, value)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One conflicting value, with the office, the user and the time it was
/// written.
fn conflict_value(ctx: &Ctx, card: &Card, field: &FieldDef, value: &Json) -> Markup {
    let at = value["at"].as_str().unwrap_or_default();
    html! {
        (display(ctx.lang, &card.kind, field, &value["value"]))
        span.muted { " — "
            span.conflict-office { (card.offices.name(value["node"].as_str())) } ", "
            span.conflict-user { (conflict_author(ctx, value)) } ", "
            time datetime=(at) { (ctx.lang.datetime(at)) }
        }
    }
}

/// Who wrote a conflicting value.
fn conflict_author<'v>(ctx: &'v Ctx, value: &'v Json) -> &'v str {
    author_label(
        ctx,
        value["user"].as_str(),
        value["display_name"].as_str(),
        value["login"].as_str(),
    )
}

fn contacts(ctx: &Ctx, card: &Card, id: &str, outcome: &Outcome) -> Markup {
    let kind = &card.contacts_kind;
    let empty = Json::Object(Map::new());
    let values = outcome.contact_values.as_ref().unwrap_or(&empty);
    html! {
        section #contacts aria-labelledby="contacts-h" {
            h2 #contacts-h { (ctx.t("card.contacts")) }
            @if card.contacts.is_empty() {
                p.empty { (ctx.t("card.no_contacts")) }
            } @else {
                table.list {
                    (head(std::iter::once(&"last_name").chain(CONTACT_COLUMNS).map(|c| ctx.lang.field(CONTACTS, c))))
                    tbody {
                        @for contact in &card.contacts {
                            tr {
                                td { a href={ "/contacts/" (contact["id"].as_str().unwrap_or_default()) } { (person_name(contact)) } }
                                @for column in CONTACT_COLUMNS {
                                    td { @if let Some(field) = kind.field(column) {
                                        (display(ctx.lang, kind, field, &contact[*column]))
                                    } }
                                }
                            }
                        }
                    }
                }
            }
            @if !card.deleted && card.may_add_contact {
                details open[!outcome.contact_errors.is_empty()] {
                    summary { (ctx.t("card.add_contact")) }
                    form.card-form method="post" action={ "/clients/" (id) "/contacts" } novalidate {
                        (csrf_field(ctx))
                        div.grid {
                            @for name in CONTACT_FORM {
                                @if let Some(field) = kind.field(name) {
                                    (control(ctx.lang, kind, field, &values[*name], outcome.contact_errors, "c"))
                                }
                            }
                        }
                        div.actions { button.primary #add-contact type="submit" { (ctx.t("card.add_contact")) } }
                    }
                }
            }
        }
    }
}

fn person_name(contact: &Json) -> String {
    ["last_name", "first_name", "middle_name"]
        .iter()
        .filter_map(|k| contact[*k].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn history(ctx: &Ctx, card: &Card) -> Markup {
    let kind = &card.kind;
    html! {
        section #history aria-labelledby="history-h" {
            h2 #history-h { (ctx.t("card.history")) }
            table.list {
                (head(["card.when", "card.who", "card.where", "card.what"].map(|k| ctx.t(k))))
                tbody {
                    @for (i, entry) in card.history.iter().enumerate() {
                        tr {
                            td { time datetime=(entry.at) { (ctx.lang.datetime(&entry.at)) } }
                            td { (history_author(ctx, entry)) }
                            td { (card.offices.name(entry.node.as_deref())) }
                            td {
                                @if i + 1 == card.history.len() {
                                    em { (ctx.t("card.created")) }
                                } @else {
                                    ul.changes {
                                        @for change in &entry.fields {
                                            li {
                                                @if let Some(field) = kind.field(&change.field) {
                                                    (ctx.lang.field(card.which.collection(), &change.field)) ": "
                                                    s { (display(ctx.lang, kind, field, &change.from)) }
                                                    " → " (display(ctx.lang, kind, field, &change.to))
                                                } @else if change.to == Json::Bool(true) {
                                                    em { (ctx.t("card.deleted_flag")) }
                                                } @else {
                                                    em { (ctx.t("card.restored_flag")) }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Who made a change, as the history shows it.
pub fn history_author<'e>(ctx: &'e Ctx, entry: &'e HistoryEntry) -> &'e str {
    author_label(
        ctx,
        entry.user.as_deref(),
        entry.display_name.as_deref(),
        entry.login.as_deref(),
    )
}

/// A change's author as people know them: their name, else login, else
/// id; the node itself for what it wrote before any user existed.
fn author_label<'a>(
    ctx: &'a Ctx,
    user: Option<&'a str>,
    display_name: Option<&'a str>,
    login: Option<&'a str>,
) -> &'a str {
    match user {
        Some("system") => ctx.t("app.system"),
        user => display_name.or(login).or(user).unwrap_or_default(),
    }
}

/// The signed-in user, if their role lets them change record `id`.
async fn may_modify<'c>(
    state: &AppState,
    ctx: &'c Ctx,
    which: &CardKind,
    id: &str,
) -> Result<&'c Principal, WebError> {
    let user = ctx.user()?;
    access::modify_record(&state.records, user, which.collection(), id).await?;
    Ok(user)
}

fn back_to(which: &CardKind, id: &str) -> Response {
    Redirect::to(&which.path(id)).into_response()
}

/// `POST /clients/{id}`: saves the fields that changed, if the record is
/// still the version the form showed.
pub async fn update(
    State(state): State<AppState>,
    ctx: Ctx,
    Extension(which): Extension<CardKind>,
    Path(id): Path<String>,
    form: WebForm,
) -> Result<Response, WebError> {
    let user = may_modify(&state, &ctx, &which, &id).await?;
    let card = load(&state, &ctx, &which, &id).await?;
    let patch = fields::patch(ctx.lang, &card.kind, &form, &card.record);
    if patch.is_empty() {
        return Ok(back_to(&which, &id));
    }
    let version = Some(form.get("_version").to_owned()).filter(|v| !v.is_empty());
    match state
        .records
        .update(which.collection(), &id, patch, version, &user.author())
        .await
    {
        Ok(_) => Ok(back_to(&which, &id)),
        Err(RecordError::Invalid(errors)) => {
            let outcome = Outcome {
                errors: &errors,
                values: Some(fields::echo(&card.kind, &form, &card.record)),
                ..Outcome::default()
            };
            Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                render(&ctx, &card, outcome),
            )
                .into_response())
        }
        Err(RecordError::VersionMismatch) => {
            let card = load(&state, &ctx, &which, &id).await?;
            let outcome = Outcome {
                notice: Some("app.stale"),
                ..Outcome::default()
            };
            Ok((StatusCode::CONFLICT, render(&ctx, &card, outcome)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /clients/{id}/resolve`: writes the chosen value of a conflicting
/// field: an ordinary edit, so the resolution replicates like any other.
pub async fn resolve(
    State(state): State<AppState>,
    ctx: Ctx,
    Extension(which): Extension<CardKind>,
    Path(id): Path<String>,
    form: WebForm,
) -> Result<Response, WebError> {
    let user = may_modify(&state, &ctx, &which, &id).await?;
    let kind = state.records.kind_def(which.collection())?;
    let field = form.get("field");
    let Some(def) = kind.field(field).filter(|f| editable(f)) else {
        return Err(WebError::new(StatusCode::BAD_REQUEST, "app.error"));
    };
    let mut patch = Map::new();
    patch.insert(
        def.name.clone(),
        fields::parse(ctx.lang, def, form.get("value")),
    );
    state
        .records
        .update(which.collection(), &id, patch, None, &user.author())
        .await?;
    Ok(back_to(&which, &id))
}

pub async fn delete(
    State(state): State<AppState>,
    ctx: Ctx,
    Extension(which): Extension<CardKind>,
    Path(id): Path<String>,
    _form: WebForm,
) -> Result<Response, WebError> {
    let user = may_modify(&state, &ctx, &which, &id).await?;
    match state
        .records
        .delete(which.collection(), &id, &user.author())
        .await
    {
        Ok(()) | Err(RecordError::Gone { .. }) => Ok(back_to(&which, &id)),
        Err(e) => Err(e.into()),
    }
}

pub async fn restore(
    State(state): State<AppState>,
    ctx: Ctx,
    Extension(which): Extension<CardKind>,
    Path(id): Path<String>,
    _form: WebForm,
) -> Result<Response, WebError> {
    let user = may_modify(&state, &ctx, &which, &id).await?;
    state
        .records
        .restore(which.collection(), &id, &user.author())
        .await?;
    Ok(back_to(&which, &id))
}

/// `POST /clients/{id}/contacts`: a new contact person of the client.
pub async fn add_contact(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    form: WebForm,
) -> Result<Response, WebError> {
    let kind = state.records.kind_def(CONTACTS)?;
    let client = Map::from_iter([(CLIENT_REF.to_owned(), Json::String(id.clone()))]);
    match fields::create(&state, &ctx, CONTACTS, &form, client).await? {
        Ok(_) => Ok(Redirect::to(&format!("/clients/{id}#contacts")).into_response()),
        Err(RecordError::Invalid(errors)) => {
            let card = load(&state, &ctx, &CardKind::Client, &id).await?;
            let outcome = Outcome {
                contact_errors: &errors,
                contact_values: Some(fields::echo(&kind, &form, &Json::Object(Map::new()))),
                ..Outcome::default()
            };
            Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                render(&ctx, &card, outcome),
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}
