//! Reading request bodies and query strings strictly, so that every kind of
//! bad input becomes a clear problem instead of an extractor's plain text.

use axum::extract::rejection::BytesRejection;
use axum::http::{header, HeaderMap, StatusCode};
use bytes::Bytes;
use serde_json::{Map, Value as Json};

use super::problem::ApiError;

/// The body as a JSON object.
pub fn json_object(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Map<String, Json>, ApiError> {
    let body = body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                status,
                "too-large",
                "the request body is larger than this node accepts",
            )
        } else {
            ApiError::bad_request(format!("the request body could not be read: {rejection}"))
        }
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if media != "application/json" && media != "application/merge-patch+json" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send the body as application/json",
        ));
    }
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
