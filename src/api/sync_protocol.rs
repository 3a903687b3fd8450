//! `/sync/v1`: the replication API peers call. Every request must carry a
//! valid access token and this build's protocol version; handlers parse
//! HTTP and hand frames to `crm_sync`, nothing more.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use bytes::Bytes;
use crm_sync::feed::{self, FeedQuery, KindSet, SnapshotQuery, MAX_SNAPSHOT_IDS};
use crm_sync::frame::{is_valid_kind, Frame, FrameType, Sender, PROTOCOL_VERSION};
use crm_sync::{DocId, DocScope, ReceiveError};
use serde::Serialize;

use super::body::{query_pairs, read_body, require_media_type};
use super::problem::ApiError;
use super::AppState;
use crate::records::scope::{PeerScope, ScopeSpec};
use crate::replication::http_transport::{PushAnswer, FRAME_MEDIA_TYPE, PROTOCOL_HEADER};

/// Longest long-poll a peer may ask for.
const MAX_WAIT_SECS: u64 = 60;
/// Largest page a peer may ask for.
const MAX_LIMIT: usize = 10_000;

/// What the token a request presented lets its peer see and change: the
/// handlers serve and accept only documents inside `scope` (all without).
#[derive(Clone)]
pub struct PeerAccess {
    pub scope: Option<Arc<PeerScope>>,
}

impl PeerAccess {
    fn scope(&self) -> Option<&dyn DocScope> {
        self.scope.as_deref().map(|s| s as &dyn DocScope)
    }
}

/// Checks the token and the protocol version before any handler runs.
pub async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    match check(&state, request.headers()).await {
        Ok(access) => {
            request.extensions_mut().insert(access);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

async fn check(state: &AppState, headers: &HeaderMap) -> Result<PeerAccess, ApiError> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return Err(ApiError::unauthorized(
            "this endpoint needs `Authorization: Bearer <token>` with a token from `crm-node token create`",
        ));
    };
    let known = state.replication.authenticate(secret).await.map_err(|e| {
        tracing::error!(error = %e, "token check failed");
        ApiError::unavailable()
    })?;
    let Some(grant) = known else {
        return Err(ApiError::unauthorized("the token is unknown or revoked"));
    };
    let scope = match grant.scope.as_deref() {
        None => None,
        Some(text) => {
            let scope = ScopeSpec::from_json(text)
                .and_then(|spec| PeerScope::new(state.records.shared_schema(), spec))
                .map_err(|e| {
                    // The schema changed under the token (a field removed):
                    // refuse rather than serve more than the scope allowed.
                    tracing::error!(token = %grant.name, error = %e, "a token's scope no longer fits the schema");
                    ApiError::new(
                        StatusCode::FORBIDDEN,
                        "scope-invalid",
                        format!("this token's scope no longer fits this node's record kinds ({e}); issue a new token"),
                    )
                })?;
            Some(Arc::new(scope))
        }
    };
    let access = PeerAccess { scope };
    let version = headers
        .get(PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    match version {
        Some(v) if v == PROTOCOL_VERSION.to_string() => Ok(access),
        Some(v) => {
            tracing::warn!(
                their_version = v,
                "refused a peer speaking another replication protocol version"
            );
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "protocol-version",
                format!(
                    "replication protocol version {v} is not supported: this node speaks version {PROTOCOL_VERSION}; upgrade the older node"
                ),
            ))
        }
        None => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "protocol-version",
            format!("send the `{PROTOCOL_HEADER}: {PROTOCOL_VERSION}` header"),
        )),
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SyncInfo {
    pub node_id: String,
    pub epoch: u32,
    pub name: String,
    /// The last seq of this node's change feed.
    pub latest_seq: i64,
    /// The replication protocol version this node speaks.
    pub protocol: u8,
    /// The record kinds this node knows and replicates.
    pub kinds: Vec<String>,
}

pub async fn info(State(state): State<AppState>) -> Result<Json<SyncInfo>, ApiError> {
    let store = state.replication.store();
    let identity = store.identity();
    let latest = *store.latest_seq().borrow();
    Ok(Json(SyncInfo {
        node_id: identity.node_id.to_string(),
        epoch: identity.epoch.0,
        name: identity.name.clone(),
        latest_seq: latest,
        protocol: PROTOCOL_VERSION,
        kinds: state.replication.kinds().iter().cloned().collect(),
    }))
}

fn parse_number(name: &str, value: &str, min: u64, max: u64) -> Result<u64, ApiError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad-query",
                format!("`{name}` must be a whole number from {min} to {max}"),
            )
        })
}

/// `limit`: rows per page.
fn parse_limit(value: &str) -> Result<usize, ApiError> {
    Ok(parse_number("limit", value, 1, MAX_LIMIT as u64)? as usize)
}

fn parse_kinds(value: &str) -> Result<KindSet, ApiError> {
    let kinds: KindSet = value
        .split(',')
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect();
    if kinds.iter().all(|k| is_valid_kind(k)) {
        Ok(kinds)
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-query",
            "`kinds` is a comma-separated list of kind names (a-z, 0-9, _)",
        ))
    }
}

/// `ids`: comma-separated document ids, at most [`MAX_SNAPSHOT_IDS`].
fn parse_ids(value: &str) -> Result<Vec<DocId>, ApiError> {
    let bad = |detail: String| ApiError::new(StatusCode::BAD_REQUEST, "bad-query", detail);
    let ids = value
        .split(',')
        .map(|id| {
            id.parse::<DocId>()
                .map_err(|e| bad(format!("`ids`: `{id}`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.len() > MAX_SNAPSHOT_IDS {
        return Err(bad(format!(
            "`ids` names at most {MAX_SNAPSHOT_IDS} documents"
        )));
    }
    Ok(ids)
}

fn unknown_parameter(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad-query",
        format!("unknown query parameter `{name}`"),
    )
}

fn frame_response(frame: &Frame) -> Response {
    let mut response = (StatusCode::OK, frame.encode()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(FRAME_MEDIA_TYPE),
    );
    response
}

pub async fn feed(
    State(state): State<AppState>,
    Extension(access): Extension<PeerAccess>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut query = FeedQuery {
        since: 0,
        limit: crm_sync::replicate::PAGE,
        requester: None,
        kinds: None,
    };
    let mut wait = 0;
    for (name, value) in query_pairs(raw)? {
        match name.as_str() {
            "since" => query.since = parse_number(&name, &value, 0, i64::MAX as u64)? as i64,
            "limit" => query.limit = parse_limit(&value)?,
            "wait" => wait = parse_number(&name, &value, 0, MAX_WAIT_SECS)?,
            "requester" => {
                query.requester = Some(Sender::from_hex(&value).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad-query",
                        "`requester` is a node id and epoch as 40 hex digits",
                    )
                })?)
            }
            "kinds" => query.kinds = Some(parse_kinds(&value)?),
            other => return Err(unknown_parameter(other)),
        }
    }
    let store = state.replication.store().clone();
    if wait > 0 {
        let mut latest = store.latest_seq();
        let since = query.since;
        tokio::select! {
            _ = tokio::time::timeout(Duration::from_secs(wait), latest.wait_for(|&seq| seq > since)) => {}
            _ = state.shutdown.cancelled() => {}
        }
    }
    let me = store.sender();
    let kinds = state.replication.kinds().clone();
    let frame = store
        .read_frame(move |conn| feed::read_feed(conn, me, &kinds, &query, access.scope()))
        .await
        .map_err(ApiError::from_store)?;
    Ok(frame_response(&frame))
}

pub async fn snapshots(
    State(state): State<AppState>,
    Extension(access): Extension<PeerAccess>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut query = SnapshotQuery {
        after: None,
        limit: crm_sync::replicate::PAGE,
        kinds: None,
        ids: Vec::new(),
    };
    for (name, value) in query_pairs(raw)? {
        match name.as_str() {
            "after" => {
                query.after = Some(value.parse::<DocId>().map_err(|e| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "bad-query",
                        format!("`after`: {e}"),
                    )
                })?)
            }
            "limit" => query.limit = parse_limit(&value)?,
            "kinds" => query.kinds = Some(parse_kinds(&value)?),
            "ids" => query.ids = parse_ids(&value)?,
            other => return Err(unknown_parameter(other)),
        }
    }
    let store = state.replication.store().clone();
    let me = store.sender();
    let kinds = state.replication.kinds().clone();
    let frame = store
        .read_frame(move |conn| feed::read_snapshots(conn, me, &kinds, &query, access.scope()))
        .await
        .map_err(ApiError::from_store)?;
    Ok(frame_response(&frame))
}

pub async fn changes(
    State(state): State<AppState>,
    Extension(access): Extension<PeerAccess>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PushAnswer>, ApiError> {
    let body = read_body(
        body,
        "batch",
        "the batch is larger than this node accepts; send smaller batches",
    )?;
    require_media_type(
        &headers,
        &[FRAME_MEDIA_TYPE, "application/octet-stream"],
        &format!("send the batch as {FRAME_MEDIA_TYPE}"),
    )?;
    let frame = Frame::decode(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-frame",
            format!("the batch is not a valid frame: {e}"),
        )
    })?;
    if frame.frame_type != FrameType::Changes {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-frame",
            "push a frame of changes (type 1)",
        ));
    }
    let store = state.replication.store().clone();
    let kinds = state.replication.kinds().clone();
    let origin = frame.sender;
    let entries = frame.entries;
    let report = store
        .write(move |txn| txn.receive_changes(origin, entries, &kinds, access.scope()))
        .await
        .map_err(|e| match e {
            ReceiveError::Store(e) => ApiError::from_store(e),
            refused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "batch-refused",
                format!("the batch was refused and nothing of it applied: {refused}"),
            ),
        })?;
    Ok(Json(PushAnswer::new(store.sender(), report)))
}
