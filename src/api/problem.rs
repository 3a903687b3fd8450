//! The one place where errors become HTTP: every failure is answered as
//! `application/problem+json` (RFC 9457). Internal details are logged, not
//! shown.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use crm_sync::StorageProblem;
use serde::Serialize;

use crate::access::AccessError;
use crate::auth::AuthError;
use crate::records::csv_io::RowError;
use crate::records::{FieldError, RecordError};
use crate::replication::ReplicationError;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Each field that failed validation, with what is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// An import's rejected rows (the first 100), with what is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Vec<RowError>>,
    /// How many rows of an import were rejected in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_count: Option<u64>,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    slug: &'static str,
    detail: String,
    errors: Option<Vec<FieldError>>,
    rejected: Option<(Vec<RowError>, u64)>,
    /// Seconds, for a 429's `Retry-After`.
    retry_after: Option<u64>,
}

/// What a client is told to wait before retrying a write the storage refused.
const STORAGE_RETRY_AFTER_SECS: u64 = 30;

impl ApiError {
    pub fn new(status: StatusCode, slug: &'static str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            slug,
            detail: detail.into(),
            errors: None,
            rejected: None,
            retry_after: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// A request that ran out of time (see `api::within`).
    pub fn timed_out(limit: std::time::Duration) -> ApiError {
        ApiError {
            retry_after: Some(STORAGE_RETRY_AFTER_SECS),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                format!(
                    "the node did not answer within {} s; a write may still have been applied: check before retrying",
                    limit.as_secs()
                ),
            )
        }
    }

    pub fn unavailable() -> ApiError {
        ApiError {
            retry_after: Some(STORAGE_RETRY_AFTER_SECS),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage-unavailable",
                "the node cannot use its database right now (disk full or read-only?); nothing was changed",
            )
        }
    }

    /// The storage refused a write: says why, and that nothing changed.
    fn storage(problem: StorageProblem) -> ApiError {
        ApiError {
            detail: format!(
                "{problem}: the node cannot store changes right now; nothing was changed. \
                 Reads still work; writes succeed again once the cause is fixed"
            ),
            ..ApiError::unavailable()
        }
    }

    fn internal() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been logged",
        )
    }

    pub fn from_store(error: crm_sync::StoreError) -> ApiError {
        if let Some(problem) = error.storage_problem() {
            tracing::error!(error = %error, "storage unavailable");
            ApiError::storage(problem)
        } else if error.is_unavailable() {
            tracing::error!(error = %error, "storage unavailable");
            ApiError::unavailable()
        } else {
            tracing::error!(error = %error, "internal error");
            ApiError::internal()
        }
    }
}

impl From<ReplicationError> for ApiError {
    fn from(error: ReplicationError) -> ApiError {
        use crm_sync::peers::PeerError;
        use crm_sync::tokens::TokenError;
        let detail = error.to_string();
        match error {
            ReplicationError::Invalid(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", detail)
            }
            ReplicationError::Peer(PeerError::Exists(_))
            | ReplicationError::Token(TokenError::Exists(_)) => {
                ApiError::new(StatusCode::CONFLICT, "exists", detail)
            }
            ReplicationError::Peer(PeerError::NotFound(_))
            | ReplicationError::Token(TokenError::NotFound(_)) => ApiError::not_found(detail),
            ReplicationError::Peer(PeerError::Store(e))
            | ReplicationError::Token(TokenError::Store(e))
            | ReplicationError::Store(e) => ApiError::from_store(e),
            ReplicationError::Token(TokenError::Random(_)) => {
                tracing::error!(error = %detail, "internal error");
                ApiError::internal()
            }
        }
    }
}

impl From<RecordError> for ApiError {
    fn from(error: RecordError) -> ApiError {
        use RecordError as E;
        let detail = error.to_string();
        match error {
            E::UnknownCollection(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown-collection", detail)
            }
            E::InvalidId(_) => ApiError::new(StatusCode::BAD_REQUEST, "invalid-id", detail),
            E::NotFound { .. } => ApiError::not_found(detail),
            E::Gone { .. } => ApiError::new(StatusCode::GONE, "deleted", detail),
            E::VersionMismatch => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, "version-mismatch", detail)
            }
            E::Invalid(errors) => {
                let summary = errors
                    .iter()
                    .map(|e| format!("{} {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; ");
                ApiError {
                    errors: Some(errors),
                    ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", summary)
                }
            }
            E::ImportRejected { rejected, count } => ApiError {
                rejected: Some((rejected, count)),
                ..ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "import-rejected", detail)
            },
            E::Duplicate { .. } => ApiError::new(StatusCode::CONFLICT, "exists", detail),
            E::BadQuery(_) => ApiError::new(StatusCode::BAD_REQUEST, "bad-query", detail),
            E::SystemKind(_) => {
                ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "read-only-kind", detail)
            }
            E::Store(e) => ApiError::from_store(e),
            E::Internal(_) => {
                tracing::error!(error = %detail, "internal error");
                ApiError::internal()
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> ApiError {
        let detail = error.to_string();
        match error {
            AuthError::WrongCredentials | AuthError::NoSession => ApiError::unauthorized(detail),
            AuthError::RateLimited(wait) => ApiError {
                // Round up: retrying a moment early would fail again.
                retry_after: Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", detail)
            },
            AuthError::Record(e) => e.into(),
            AuthError::Store(e) => ApiError::from_store(e),
            AuthError::Random(_) => {
                tracing::error!(error = %detail, "internal error");
                ApiError::internal()
            }
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> ApiError {
        match error {
            AccessError::Denied(why) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", why),
            AccessError::Record(e) => e.into(),
        }
    }
}

fn title(status: StatusCode) -> String {
    status.canonical_reason().unwrap_or("Error").to_owned()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: format!("urn:crm-node:problem:{}", self.slug),
            title: title(self.status),
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors,
            rejected_count: self.rejected.as_ref().map(|(_, count)| *count),
            rejected: self.rejected.map(|(rows, _)| rows),
        };
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Answers unknown paths.
pub async fn no_route() -> ApiError {
    ApiError::not_found("no such endpoint; see /api/v1/openapi.json")
}

/// Answers known paths called with a method they do not take.
pub async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this endpoint does not take that method; see /api/v1/openapi.json",
    )
}
