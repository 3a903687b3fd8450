//! `/api/v1/search`: full-text search across all kinds.

use axum::extract::{RawQuery, State};
use axum::Json;
use serde_json::{json, Value};

use super::body::query_pairs;
use super::problem::ApiError;
use super::AppState;
use crate::access;
use crate::auth::Principal;
use crate::records::search::{DEFAULT_LIMIT, MAX_LIMIT};

pub async fn search(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    access::read(&principal)?;
    let mut q = None;
    let mut kind = None;
    let mut limit = DEFAULT_LIMIT;
    for (key, value) in query_pairs(query)? {
        match key.as_str() {
            "q" => q = Some(value),
            "kind" => kind = Some(value),
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "limit must be a whole number from 1 to {MAX_LIMIT}"
                        ))
                    })?;
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other}; search takes q, kind and limit"
                )))
            }
        }
    }
    let q = q.ok_or_else(|| ApiError::bad_request("q is required"))?;
    let items = state.records.search(q, kind, limit).await?;
    Ok(Json(json!({ "items": items })))
}
