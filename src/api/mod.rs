//! The HTTP edge: routes of the CRM API, error mapping, OpenAPI. Handlers
//! parse HTTP and call the domain layer (`records`); they hold no SQL and no
//! CRM rules.

mod body;
mod health;
pub mod openapi;
pub mod peers;
mod problem;
mod records;
mod search;
pub mod sync_protocol;
pub mod transfer;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::records::{Author, Records};
use crate::replication::Replication;

#[derive(Clone)]
pub struct AppState {
    pub records: Records,
    pub replication: Replication,
    /// Cancelled when the node stops: long-polls end early so that a
    /// graceful shutdown does not wait for them.
    pub shutdown: CancellationToken,
    openapi: Arc<String>,
}

impl AppState {
    pub fn new(
        records: Records,
        replication: Replication,
        shutdown: CancellationToken,
    ) -> AppState {
        let openapi = Arc::new(openapi::document(records.schema()));
        AppState {
            records,
            replication,
            shutdown,
            openapi,
        }
    }

    fn author(&self) -> Author {
        Author::local()
    }
}

/// Largest bodies accepted, by kind of request.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub api: usize,
    pub sync_batch: usize,
    pub import: usize,
}

pub fn router(state: AppState, limits: BodyLimits) -> Router {
    let sync = Router::new()
        .route("/info", get(sync_protocol::info))
        .route("/feed", get(sync_protocol::feed))
        .route("/snapshots", get(sync_protocol::snapshots))
        .route(
            "/changes",
            post(sync_protocol::changes).layer(DefaultBodyLimit::max(limits.sync_batch)),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            sync_protocol::guard,
        ));
    let api = Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/peers", get(peers::list).post(peers::add))
        .route("/peers/{name}", delete(peers::remove))
        .route("/sync/run", post(peers::run))
        .route("/sync/status", get(peers::status))
        .route(
            "/import/{collection}",
            post(transfer::import).layer(DefaultBodyLimit::max(limits.import)),
        )
        .route("/export/{collection}", get(transfer::export))
        .route("/search", get(search::search))
        .route("/{collection}", get(records::list).post(records::create))
        .route(
            "/{collection}/{id}",
            get(records::get)
                .patch(records::update)
                .delete(records::delete),
        )
        .route("/{collection}/{id}/restore", post(records::restore))
        .route("/{collection}/{id}/history", get(records::history));
    Router::new()
        .route("/healthz", get(health::health))
        .nest("/api/v1", api)
        .nest("/sync/v1", sync)
        .fallback(problem::no_route)
        .method_not_allowed_fallback(problem::wrong_method)
        .layer(DefaultBodyLimit::max(limits.api))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn openapi_json(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.as_str().to_owned(),
    )
}
