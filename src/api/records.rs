//! `/api/v1/{collection}`: create, read, merge-patch, delete, restore, list
//! and history of the records of every kind.

use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::json;

use super::body::{json_object, query_pairs};
use super::problem::ApiError;
use super::AppState;
use crate::access;
use crate::auth::Principal;
use crate::records::{Versioned, VersionedText};

fn with_etag(status: StatusCode, versioned: Versioned) -> Response {
    tagged(
        (status, Json(versioned.record)).into_response(),
        &versioned.etag,
    )
}

fn tagged(mut response: Response, etag: &str) -> Response {
    if let Ok(etag) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    Path(collection): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // Unknown collection wins over a bad body: the path is wrong first.
    let kind = state.records.kind_def(&collection)?;
    access::create(&principal, &collection)?;
    let mut body = json_object(&headers, body)?;
    access::fill_owner(&principal, &kind, &mut body);
    let created = state
        .records
        .create(&collection, body, &principal.author())
        .await?;
    let location = format!("/api/v1/{collection}/{}", created.id);
    let mut response = json_text(StatusCode::CREATED, created.text);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// A record's JSON text as it was rendered, with its ETag.
fn json_text(status: StatusCode, text: VersionedText) -> Response {
    let response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        text.json,
    )
        .into_response();
    tagged(response, &text.etag)
}

pub async fn get(
    State(state): State<AppState>,
    principal: Principal,
    Path((collection, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    access::read(&principal)?;
    // The stored text is the record's JSON as `Json` would write it.
    let found = state.records.get_text(&collection, &id).await?;
    Ok(json_text(StatusCode::OK, found))
}

pub async fn update(
    State(state): State<AppState>,
    principal: Principal,
    Path((collection, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    state.records.kind_exists(&collection)?;
    access::modify_record(&state.records, &principal, &collection, &id).await?;
    let patch = json_object(&headers, body)?;
    let if_match = match headers.get(header::IF_MATCH) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::PRECONDITION_FAILED,
                        "version-mismatch",
                        "If-Match is not a version of this record",
                    )
                })?
                .to_owned(),
        ),
    };
    let updated = state
        .records
        .update(&collection, &id, patch, if_match, &principal.author())
        .await?;
    Ok(with_etag(StatusCode::OK, updated))
}

pub async fn delete(
    State(state): State<AppState>,
    principal: Principal,
    Path((collection, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    access::modify_record(&state.records, &principal, &collection, &id).await?;
    state
        .records
        .delete(&collection, &id, &principal.author())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn restore(
    State(state): State<AppState>,
    principal: Principal,
    Path((collection, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    access::modify_record(&state.records, &principal, &collection, &id).await?;
    Ok(with_etag(
        StatusCode::OK,
        state
            .records
            .restore(&collection, &id, &principal.author())
            .await?,
    ))
}

pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(collection): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    access::read(&principal)?;
    state.records.kind_exists(&collection)?;
    let params = query_pairs(query)?;
    let page = state.records.list(&collection, params).await?;
    Ok(Json(json!({"items": page.items, "next_cursor": page.next_cursor})).into_response())
}

pub async fn history(
    State(state): State<AppState>,
    principal: Principal,
    Path((collection, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    access::read(&principal)?;
    let items = state.records.history(&collection, &id).await?;
    Ok(Json(json!({ "items": items })).into_response())
}
