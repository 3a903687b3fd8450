//! The sync page: each peer's state, last success and error, backlogs;
//! "sync now"; and for admins, adding and removing peers and issuing and
//! revoking the tokens other nodes present here.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::error::WebError;
use super::layout::{csrf_field, head, page};
use super::session::{Ctx, WebForm};
use crate::access;
use crate::api::auth::no_store;
use crate::api::AppState;
use crate::auth::Role;
use crate::records::value::format_datetime;
use crate::replication::status::PeerState;
use crate::replication::{ReplicationError, RoundResult};
use crm_sync::peers::PeerError;
use crm_sync::tokens::TokenError;

/// What the page says after a form: a round's results, a new token's
/// secret (shown once), or why a form was refused.
#[derive(Default)]
struct Outcome {
    rounds: Option<Vec<RoundResult>>,
    secret: Option<(String, String)>,
    refused: Option<String>,
}

async fn render(state: &AppState, ctx: &Ctx, outcome: Outcome) -> Result<Markup, WebError> {
    let user = ctx.user()?;
    let peers = state.replication.status().await?;
    let admin = user.role == Role::Admin;
    let tokens = if admin {
        state.replication.tokens().await?
    } else {
        Vec::new()
    };
    let when = |at: &Option<String>| match at {
        Some(at) => html! { time datetime=(at) { (ctx.lang.datetime(at)) } },
        None => html! { (ctx.t("app.none")) },
    };
    let body = html! {
        div.page-head {
            h1 { (ctx.t("sync.title")) }
            @if access::sync_run(user).is_ok() && !peers.is_empty() {
                form.inline method="post" action="/sync/run" {
                    (csrf_field(ctx))
                    button.primary #sync-now type="submit" { (ctx.t("sync.run")) }
                }
            }
        }
        @if let Some(why) = &outcome.refused {
            p.notice.error role="alert" { (ctx.t("sync.refused")) " " (why) }
        }
        @if let Some(rounds) = &outcome.rounds {
            ul.notice #rounds role="status" {
                @for round in rounds {
                    li {
                        strong { (round.peer) } ": "
                        @if round.ok {
                            (ctx.t("sync.received")) " " (ctx.lang.number(applied(round.pulled.as_ref()))) ", "
                            (ctx.t("sync.sent")) " " (ctx.lang.number(applied(round.pushed.as_ref())))
                        } @else {
                            (round.error.as_deref().unwrap_or_default())
                        }
                    }
                }
            }
        }
        section #peers aria-labelledby="peers-h" {
            h2 #peers-h { (ctx.t("sync.peers")) }
            @if peers.is_empty() {
                p.empty { (ctx.t("desktop.no_peers")) }
            } @else {
                table.list {
                    (head(["sync.peer", "sync.state", "sync.last_success", "sync.last_error", "sync.backlog", "sync.behind", ""].map(|k| if k.is_empty() { "" } else { ctx.t(k) })))
                    tbody {
                        @for peer in &peers {
                            tr {
                                td { (peer.name) br; span.muted { (peer.url) } }
                                td { (state_badge(ctx, peer.state)) }
                                td { (when(&peer.last_success)) }
                                td { @if let Some(error) = &peer.last_error { (when(&peer.last_error_at)) br; span.muted { (error) } } @else { (ctx.t("app.none")) } }
                                td { (ctx.lang.number(peer.backlog)) }
                                td { (ctx.lang.number(peer.behind)) }
                                td { @if admin {
                                    form.inline method="post" action={ "/sync/peers/" (peer.name) "/remove" } data-confirm=(ctx.t("sync.remove_confirm")) {
                                        (csrf_field(ctx))
                                        button.danger type="submit" aria-label={ (ctx.t("sync.remove")) " " (peer.name) } { (ctx.t("sync.remove")) }
                                    }
                                } }
                            }
                        }
                    }
                }
            }
            @if admin {
                details {
                    summary { (ctx.t("sync.add_peer")) }
                    form.card-form method="post" action="/sync/peers" {
                        (csrf_field(ctx))
                        div.grid {
                            div.field { label for="peer-name" { (ctx.t("sync.peer_name")) } input #peer-name name="name" required; }
                            div.field { label for="peer-url" { (ctx.t("sync.peer_url")) } input #peer-url name="url" type="url" placeholder="https://" required; }
                            div.field { label for="peer-token" { (ctx.t("sync.peer_token")) } input #peer-token name="token" required; }
                        }
                        div.actions { button.primary #add-peer type="submit" { (ctx.t("sync.add_peer")) } }
                    }
                }
            }
        }
        @if admin {
            section #tokens aria-labelledby="tokens-h" {
                h2 #tokens-h { (ctx.t("sync.tokens")) }
                p.muted { (ctx.t("sync.tokens_hint")) }
                @if let Some((name, secret)) = &outcome.secret {
                    p.notice #new-secret role="status" {
                        (ctx.t("sync.secret_once")) " " strong { (name) } ": " code.mono { (secret) }
                    }
                }
                @if !tokens.is_empty() {
                    table.list {
                        (head(["sync.token_name", "sync.issued", "sync.revoked", ""].map(|k| if k.is_empty() { "" } else { ctx.t(k) })))
                        tbody {
                            @for token in &tokens {
                                tr {
                                    td { (token.name) }
                                    td { (when(&Some(format_datetime(token.created_at)))) }
                                    td { (when(&token.revoked_at.map(format_datetime))) }
                                    td { @if token.revoked_at.is_none() {
                                        form.inline method="post" action={ "/sync/tokens/" (token.name) "/remove" } data-confirm=(ctx.t("sync.revoke_confirm")) {
                                            (csrf_field(ctx))
                                            button.danger type="submit" aria-label={ (ctx.t("sync.revoke")) " " (token.name) } { (ctx.t("sync.revoke")) }
                                        }
                                    } }
                                }
                            }
                        }
                    }
                }
                form.card-form method="post" action="/sync/tokens" {
                    (csrf_field(ctx))
                    div.grid {
                        div.field { label for="token-name" { (ctx.t("sync.token_name")) } input #token-name name="name" required; }
                    }
                    div.actions { button.primary #issue-token type="submit" { (ctx.t("sync.issue")) } }
                }
            }
        }
    };
    Ok(page(ctx, ctx.t("sync.title"), body))
}

/// A peer's state as a coloured word.
pub fn state_badge(ctx: &Ctx, state: PeerState) -> Markup {
    let (class, key) = match state {
        PeerState::Idle => ("idle", "sync.idle"),
        PeerState::Connected => ("connected", "sync.connected"),
        PeerState::Offline => ("offline", "sync.offline"),
        PeerState::Failing => ("failing", "sync.failing"),
    };
    html! { span class={ "state " (class) } { (ctx.t(key)) } }
}

fn applied(step: Option<&crate::replication::StepView>) -> i64 {
    step.map_or(0, |s| i64::try_from(s.applied).unwrap_or(i64::MAX))
}

pub async fn show(State(state): State<AppState>, ctx: Ctx) -> Result<Response, WebError> {
    access::read(ctx.user()?)?;
    Ok(render(&state, &ctx, Outcome::default())
        .await?
        .into_response())
}

/// `POST /sync/run`: one round with every peer now.
pub async fn run(
    State(state): State<AppState>,
    ctx: Ctx,
    _form: WebForm,
) -> Result<Response, WebError> {
    access::sync_run(ctx.user()?)?;
    let rounds = state.replication.run_round(None, None).await?;
    let outcome = Outcome {
        rounds: Some(rounds),
        ..Outcome::default()
    };
    Ok(render(&state, &ctx, outcome).await?.into_response())
}

/// A refused peer or token form is shown with the reason; anything else
/// fails the page.
async fn refused_or(
    state: &AppState,
    ctx: &Ctx,
    result: Result<Outcome, ReplicationError>,
) -> Result<Response, WebError> {
    match result {
        Ok(outcome) if outcome.secret.is_some() => {
            Ok(render(state, ctx, outcome).await?.into_response())
        }
        Ok(_) => Ok(Redirect::to("/sync").into_response()),
        Err(
            e @ (ReplicationError::Invalid(_)
            | ReplicationError::Peer(PeerError::Exists(_) | PeerError::NotFound(_))
            | ReplicationError::Token(TokenError::Exists(_) | TokenError::NotFound(_))),
        ) => {
            let outcome = Outcome {
                refused: Some(e.to_string()),
                ..Outcome::default()
            };
            Ok((
                StatusCode::UNPROCESSABLE_ENTITY,
                render(state, ctx, outcome).await?,
            )
                .into_response())
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn add_peer(
    State(state): State<AppState>,
    ctx: Ctx,
    form: WebForm,
) -> Result<Response, WebError> {
    access::peers(ctx.user()?)?;
    let result = state
        .replication
        .add_peer(
            form.get("name").trim(),
            form.get("url").trim(),
            form.get("token").trim(),
        )
        .await
        .map(|_| Outcome::default());
    refused_or(&state, &ctx, result).await
}

/// What `/sync/{list}/{name}/remove` removes from: a peer, or a token
/// (revoked).
#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Listed {
    Peers,
    Tokens,
}

pub async fn remove(
    State(state): State<AppState>,
    ctx: Ctx,
    Path((list, name)): Path<(Listed, String)>,
    _form: WebForm,
) -> Result<Response, WebError> {
    access::peers(ctx.user()?)?;
    let replication = &state.replication;
    let result = match list {
        Listed::Peers => replication.remove_peer(&name).await,
        Listed::Tokens => replication.revoke_token(&name).await,
    };
    refused_or(&state, &ctx, result.map(|()| Outcome::default())).await
}

/// `POST /sync/tokens`: a new token; its secret is shown on this page only.
pub async fn issue_token(
    State(state): State<AppState>,
    ctx: Ctx,
    form: WebForm,
) -> Result<Response, WebError> {
    access::peers(ctx.user()?)?;
    let name = form.get("name").trim().to_owned();
    let result = state
        .replication
        .create_token(&name, None)
        .await
        .map(|secret| Outcome {
            secret: Some((name, secret)),
            ..Outcome::default()
        });
    // The secret is on this page: never cached.
    let mut response = refused_or(&state, &ctx, result).await?;
    no_store(&mut response);
    Ok(response)
}
