//! The HTTP edge: routes of the CRM API, error mapping, OpenAPI. Handlers
//! parse HTTP and call the domain layer (`records`); they hold no SQL and no
//! CRM rules.

pub mod auth;
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
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::serve::IncomingStream;
use axum::Router;
use tokio_util::sync::CancellationToken;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::records::Records;
use crate::replication::Replication;

/// How long a request may take before the node answers 503.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// For long-polls (`/sync/v1/feed` waits up to 25 s) and sync rounds run on
/// demand.
const LONG_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct AppState {
    pub records: Records,
    pub replication: Replication,
    pub auth: crate::auth::Auth,
    /// Cancelled when the node stops: long-polls end early so that a
    /// graceful shutdown does not wait for them.
    pub shutdown: CancellationToken,
    /// The node serves HTTPS itself: session cookies are marked `Secure`.
    pub https: bool,
    openapi: Arc<String>,
}

impl AppState {
    pub fn new(
        records: Records,
        replication: Replication,
        auth: crate::auth::Auth,
        shutdown: CancellationToken,
        https: bool,
    ) -> AppState {
        let openapi = Arc::new(openapi::document(records.schema()));
        AppState {
            records,
            replication,
            auth,
            shutdown,
            https,
            openapi,
        }
    }
}

/// The address of the client at the other end of a connection, plain or
/// TLS (axum provides `ConnectInfo<SocketAddr>` for plain TCP only).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, crate::tls::listener::TlsListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, crate::tls::listener::TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
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
        ))
        .layer(axum::middleware::from_fn(limit_long_request));
    let api = Router::new()
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me))
        .route("/peers", get(peers::list).post(peers::add))
        .route("/peers/{name}", delete(peers::remove))
        .route("/sync/status", get(peers::status))
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
        .route("/{collection}/{id}/history", get(records::history))
        .route_layer(axum::middleware::from_fn(limit_request))
        .route("/sync/run", post(peers::run))
        .route_layer(axum::middleware::from_fn(limit_long_request))
        // An import's time grows with its file, which max_import_bytes
        // bounds; no timeout.
        .route(
            "/import/{collection}",
            post(transfer::import).layer(DefaultBodyLimit::max(limits.import)),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_session,
        ));
    // Open: how to log in, and what the API is.
    let open = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/openapi.json", get(openapi_json))
        .route_layer(axum::middleware::from_fn(limit_request));
    let api = api.merge(open);
    Router::new()
        .merge(crate::web::router(state.clone()))
        .route("/healthz", get(health::health))
        .nest("/api/v1", api)
        .nest("/sync/v1", sync)
        .fallback(problem::no_route)
        .method_not_allowed_fallback(problem::wrong_method)
        .layer(DefaultBodyLimit::max(limits.api))
        .layer(TraceLayer::new_for_http())
        .layer(always(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(always(header::X_FRAME_OPTIONS, "DENY"))
        .layer(always(header::REFERRER_POLICY, "no-referrer"))
        .layer(always(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'",
        ))
        .with_state(state)
}

async fn limit_request(request: Request, next: Next) -> Response {
    within(REQUEST_TIMEOUT, request, next).await
}

async fn limit_long_request(request: Request, next: Next) -> Response {
    within(LONG_REQUEST_TIMEOUT, request, next).await
}

/// Answers 503 problem+json when the handler takes longer than `limit`. A
/// write cut off this way may still commit: the answer says so.
async fn within(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => problem::ApiError::timed_out(limit).into_response(),
    }
}

/// A header every response carries (unless the handler set it): no MIME
/// sniffing, no framing, no referrer, and a content policy for the HTML
/// the node will serve.
fn always(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

async fn openapi_json(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi.as_str().to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A handler slower than its limit gets a 503 problem with Retry-After,
    /// not a bare status.
    #[tokio::test]
    async fn a_request_past_its_time_limit_gets_a_problem() {
        let app: Router = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route_layer(axum::middleware::from_fn(|request, next| {
                within(Duration::from_millis(50), request, next)
            }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("the bound address");
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let response = reqwest::get(format!("http://{addr}/slow"))
            .await
            .expect("an answer");
        server.abort();
        assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        let content_type = response.headers()[header::CONTENT_TYPE].clone();
        assert_eq!(content_type, "application/problem+json");
        let body = response.text().await.expect("a body");
        assert!(body.contains("timeout"), "{body}");
    }
}
