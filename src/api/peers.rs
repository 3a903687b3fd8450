//! `/api/v1/peers` and `/api/v1/sync/*`: whom this node replicates with, a
//! sync round on demand, and how replication is doing.

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::body::{json_object, typed};
use super::problem::ApiError;
use super::AppState;
use crate::access;
use crate::auth::Principal;
use crate::replication::{PeerStatus, PeerView, RoundResult};

/// A peer to add: its name here, its base URL and the token it issued.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPeer {
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub name: String,
    /// The peer's base URL, http:// or https://.
    #[schema(
        min_length = 8,
        max_length = 2048,
        pattern = "^https?://[^\\s/?#@]+[^\\s?#@]*$"
    )]
    pub url: String,
    /// The secret printed by `crm-node token create` on the peer.
    #[schema(min_length = 1, max_length = 256, pattern = "^[!-~]+$")]
    pub token: String,
}

/// Which peers a round runs with.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// One peer by name; every peer when absent.
    pub peer: Option<String>,
    /// Pages per direction at most (a partial sync when reached).
    #[schema(minimum = 1, maximum = 100000)]
    pub max_steps: Option<u32>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunResponse {
    pub results: Vec<RoundResult>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusResponse {
    pub peers: Vec<PeerStatus>,
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<PeerView>>, ApiError> {
    access::peers(&principal)?;
    let peers = state.replication.peers().await?;
    Ok(Json(peers.iter().map(PeerView::from).collect()))
}

pub async fn add(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    access::peers(&principal)?;
    let new: NewPeer = typed(json_object(&headers, body)?)?;
    let peer = state
        .replication
        .add_peer(&new.name, &new.url, &new.token)
        .await?;
    let mut response = (StatusCode::CREATED, Json(PeerView::from(&peer))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/peers/{}", peer.name)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

pub async fn remove(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    access::peers(&principal)?;
    state.replication.remove_peer(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn run(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RunResponse>, ApiError> {
    access::sync_run(&principal)?;
    let empty = matches!(&body, Ok(b) if b.iter().all(u8::is_ascii_whitespace));
    let request: RunRequest = if empty {
        RunRequest::default()
    } else {
        typed(json_object(&headers, body)?)?
    };
    if request
        .max_steps
        .is_some_and(|s| !(1..=100_000).contains(&s))
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "max_steps must be from 1 to 100000",
        ));
    }
    let results = state
        .replication
        .run_round(
            request.peer.as_deref(),
            request.max_steps.map(|s| s as usize),
        )
        .await?;
    Ok(Json(RunResponse { results }))
}

pub async fn status(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<StatusResponse>, ApiError> {
    access::read(&principal)?;
    Ok(Json(StatusResponse {
        peers: state.replication.status().await?,
    }))
}
