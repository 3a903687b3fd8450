//! Reading request bodies and query strings strictly, so that every kind of
//! bad input becomes a clear problem instead of an extractor's plain text.

use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};

use super::problem::ApiError;

/// The body, or a problem: 413 with `too_large` (what to do instead), or
/// 400 naming `what` could not be read.
pub fn read_body(
    body: Result<Bytes, BytesRejection>,
    what: &str,
    too_large: &str,
) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", too_large)
        } else {
            ApiError::bad_request(format!("the {what} could not be read: {rejection}"))
        }
    })
}

/// Refuses (415, with `hint`) a body whose media type is not one of
/// `accepted` (lower-case, without parameters).
pub fn require_media_type(
    headers: &HeaderMap,
    accepted: &[&str],
    hint: &str,
) -> Result<(), ApiError> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if accepted.contains(&media.as_str()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            hint,
        ))
    }
}

/// The body as a JSON object.
pub fn json_object(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Map<String, Json>, ApiError> {
    let body = read_body(
        body,
        "request body",
        "the request body is larger than this node accepts",
    )?;
    require_media_type(
        headers,
        &["application/json", "application/merge-patch+json"],
        "send the body as application/json",
    )?;
    match serde_json::from_slice::<Json>(&body) {
        Ok(Json::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!(
            "the body is not valid JSON: {e}"
        ))),
    }
}

/// Query-string pairs, in order.
pub fn query_pairs(raw: Option<String>) -> Result<Vec<(String, String)>, ApiError> {
    match raw {
        None => Ok(Vec::new()),
        Some(raw) => serde_urlencoded::from_str(&raw)
            .map_err(|e| ApiError::bad_request(format!("the query string does not parse: {e}"))),
    }
}

/// Deserializes a JSON object body into `T`, with problems on failure.
pub fn typed<T: DeserializeOwned>(
    object: serde_json::Map<String, serde_json::Value>,
) -> Result<T, ApiError> {
    serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            e.to_string(),
        )
    })
}
