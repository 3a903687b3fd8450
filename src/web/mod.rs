//! The web UI served at `/`: server-rendered HTML pages (maud) for people
//! in a browser, with one stylesheet and one small script, all compiled
//! into the binary. Handlers call the same domain layer as `api/`
//! (`records`, `auth`, `access`, `replication`): no SQL here, and never
//! HTTP calls to the node's own API.
//!
//! Pages use the cookie session that `/api/v1/auth/login` also opens;
//! every form that changes something carries the CSRF token in `_csrf`
//! (see `session.rs`). The language is a cookie, not a field of the user's
//! record: it works on the login page before anyone is known, it is a
//! preference of a browser (a shared office PC can stay in Russian) rather
//! than data every office must replicate, and switching it writes nothing.

mod assets;
mod card;
mod clients;
mod conflicts;
mod contacts;
mod desktop;
mod error;
mod fields;
pub mod i18n;
mod layout;
mod lists;
mod login;
mod offices;
mod sales;
mod search;
mod session;
mod sync;
mod users;

use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use axum::{Extension, Router};

use crate::api::AppState;

/// The pages' routes; `api::router` merges them next to `/api/v1`.
pub fn router(state: AppState) -> Router<AppState> {
    let signed_in = Router::new()
        .route("/", get(desktop::page))
        .route(
            "/clients",
            lists::route(&clients::LIST).post(clients::create),
        )
        .route("/clients/new", get(clients::new_form))
        .route("/contacts", lists::route(&contacts::LIST))
        .route("/deals", lists::route(&sales::DEALS))
        .route("/invoices", lists::route(&sales::INVOICES))
        .route("/clients/{id}/contacts", post(card::add_contact))
        .route("/search", get(search::page))
        .route("/conflicts", get(conflicts::page))
        .route("/users", get(users::list).post(users::create))
        .route("/users/{id}", post(users::update))
        .route("/sync", get(sync::show))
        .route("/sync/run", post(sync::run))
        .route("/sync/peers", post(sync::add_peer))
        .route("/sync/tokens", post(sync::issue_token))
        .route("/sync/{list}/{name}/remove", post(sync::remove))
        .route("/logout", post(login::logout));
    // Each kind has a card: the same handlers, told their kind. Clients and
    // contacts have theirs at `/<collection>/<id>`, every other kind under
    // `/records/`, where no collection's name can clash with a page's.
    let cards: Vec<card::CardKind> = card::CardKind::OWN
        .into_iter()
        .chain(
            state
                .records
                .schema()
                .kinds()
                .iter()
                .map(|kind| card::CardKind::of(&kind.collection))
                .filter(|which| matches!(which, card::CardKind::Other(_))),
        )
        .collect();
    let signed_in = cards
        .into_iter()
        .fold(signed_in, |router, which| {
            let path = format!("{}/{{id}}", which.base());
            router.merge(
                Router::new()
                    .route(&path, get(card::card).post(card::update))
                    .route(&format!("{path}/delete"), post(card::delete))
                    .route(&format!("{path}/restore"), post(card::restore))
                    .route(&format!("{path}/resolve"), post(card::resolve))
                    .layer(Extension(which)),
            )
        })
        .route_layer(from_fn_with_state(state, session::require_login));
    let open = Router::new()
        .route("/login", get(login::form).post(login::submit))
        .route("/lang", post(session::set_lang));
    signed_in
        .merge(open)
        .route_layer(from_fn(error::render_errors))
        .route("/assets/{file}", get(assets::serve))
}
