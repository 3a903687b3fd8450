//! The manager's desktop at `/`: sync state at a glance, records of every
//! kind with conflicting values (the first few, and a link to all of them),
//! the user's own clients, and the clients changed most recently, here or
//! at another office.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::Value as Json;

use super::card::history_author;
use super::clients::CLIENTS;
use super::conflicts;
use super::error::WebError;
use super::layout::{head, page as layout_page};
use super::offices::Offices;
use super::session::Ctx;
use super::sync::state_badge;
use crate::access;
use crate::api::AppState;
use crate::replication::status::PeerStatus;

/// Rows in each of the desktop's lists.
const ROWS: usize = 10;

async fn clients(state: &AppState, filter: Option<(&str, &str)>) -> Result<Vec<Json>, WebError> {
    let mut params = vec![
        ("sort".to_owned(), "-updated_at".to_owned()),
        ("limit".to_owned(), ROWS.to_string()),
    ];
    params.extend(filter.map(|(k, v)| (k.to_owned(), v.to_owned())));
    Ok(state.records.list(CLIENTS, params).await?.records())
}

pub async fn page(State(state): State<AppState>, ctx: Ctx) -> Result<Response, WebError> {
    let user = ctx.user()?;
    access::read(user)?;
    let peers = state.replication.status().await?;
    let conflicted = state.records.conflicted(None, ROWS).await?;
    let mine = clients(&state, Some(("manager", &user.login))).await?;
    let recent = clients(&state, None).await?;
    // Who changed each recent client last, and where: its history's end.
    let mut last_changes = Vec::with_capacity(recent.len());
    for client in &recent {
        let id = client["id"].as_str().unwrap_or_default();
        last_changes.push(state.records.history(CLIENTS, id).await?.pop());
    }
    let offices = Offices::load(&state).await?;
    let body = html! {
        h1 { (ctx.t("desktop.title")) }
        div.desktop {
            (sync_panel(&ctx, &peers))
            section #conflicted aria-labelledby="conflicted-h" {
                h2 #conflicted-h { (ctx.t("desktop.conflicts")) }
                @if conflicted.items.is_empty() {
                    p.empty { (ctx.t("desktop.no_conflicts")) }
                } @else {
                    ul { @for item in &conflicted.items { li { (conflicts::link(&ctx, &state, item)) } } }
                    @if conflicted.next_cursor.is_some() {
                        p { a #all-conflicts href="/conflicts" { (ctx.t("desktop.all_conflicts")) " →" } }
                    }
                }
            }
            section #mine aria-labelledby="mine-h" {
                h2 #mine-h { (ctx.t("desktop.my_clients")) }
                @if mine.is_empty() {
                    p.empty { (ctx.t("desktop.no_my_clients")) }
                } @else {
                    ul { @for client in &mine { li { (client_link(client)) } } }
                }
            }
            section #recent aria-labelledby="recent-h" {
                h2 #recent-h { (ctx.t("desktop.recent")) }
                table.list {
                    (head([ctx.lang.field(CLIENTS, "name"), ctx.t("card.when").to_owned(), ctx.t("card.who").to_owned(), ctx.t("card.where").to_owned()]))
                    tbody {
                        @for (client, change) in recent.iter().zip(&last_changes) {
                            tr {
                                td { (client_link(client)) }
                                @if let Some(change) = change {
                                    td { time datetime=(change.at) { (ctx.lang.datetime(&change.at)) } }
                                    td { (history_author(&ctx, change)) }
                                    td { (offices.name(change.node.as_deref())) }
                                } @else {
                                    td {} td {} td {}
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout_page(&ctx, ctx.t("desktop.title"), body).into_response())
}

fn client_link(client: &Json) -> Markup {
    html! {
        a href={ "/clients/" (client["id"].as_str().unwrap_or_default()) } {
            (client["name"].as_str().unwrap_or_default())
        }
    }
}

fn sync_panel(ctx: &Ctx, peers: &[PeerStatus]) -> Markup {
    let waiting: i64 = peers.iter().map(|p| p.backlog).sum();
    html! {
        section #sync aria-labelledby="sync-h" {
            h2 #sync-h { (ctx.t("desktop.sync")) }
            @if peers.is_empty() {
                p.empty { (ctx.t("desktop.no_peers")) }
            } @else {
                p #waiting {
                    @if waiting == 0 {
                        (ctx.t("desktop.all_sent"))
                    } @else {
                        (ctx.t("desktop.waiting")) ": " strong { (ctx.lang.number(waiting)) }
                    }
                }
                table.list {
                    (head(["sync.peer", "sync.state", "sync.backlog", "sync.last_success"].map(|k| ctx.t(k))))
                    tbody {
                        @for peer in peers {
                            tr {
                                td { (peer.name) }
                                td { (state_badge(ctx, peer.state)) }
                                td { (ctx.lang.number(peer.backlog)) }
                                td { @match &peer.last_success {
                                    Some(at) => time datetime=(at) { (ctx.lang.datetime(at)) },
                                    None => (ctx.t("app.none")),
                                } }
                            }
                        }
                    }
                }
            }
        }
    }
}
