//! What a page shows when something fails: domain errors become a status
//! and a message key; [`render_errors`] turns them into a page in the
//! user's language. Internal details are logged, never shown.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::layout;
use super::session::Ctx;
use crate::access::AccessError;
use crate::auth::AuthError;
use crate::records::RecordError;
use crate::replication::ReplicationError;

#[derive(Debug, Clone)]
pub struct WebError {
    pub status: StatusCode,
    /// The message's key in the language files.
    pub key: &'static str,
    /// Shown after the message (a bad filter's explanation), when safe.
    pub detail: Option<String>,
}

impl WebError {
    pub fn new(status: StatusCode, key: &'static str) -> WebError {
        WebError {
            status,
            key,
            detail: None,
        }
    }

    fn internal(what: &dyn std::fmt::Display) -> WebError {
        tracing::error!(error = %what, "internal error on a page");
        WebError::new(StatusCode::INTERNAL_SERVER_ERROR, "app.error")
    }
}

impl From<RecordError> for WebError {
    fn from(error: RecordError) -> WebError {
        use RecordError as E;
        match error {
            E::UnknownCollection(_) | E::InvalidId(_) | E::NotFound { .. } => {
                WebError::new(StatusCode::NOT_FOUND, "app.not_found")
            }
            E::Gone { .. } => WebError::new(StatusCode::GONE, "app.gone"),
            E::VersionMismatch => WebError::new(StatusCode::PRECONDITION_FAILED, "app.stale"),
            E::SystemKind(_) => WebError::new(StatusCode::FORBIDDEN, "app.forbidden"),
            E::BadQuery(why) => WebError {
                detail: Some(why),
                ..WebError::new(StatusCode::BAD_REQUEST, "app.bad_query")
            },
            E::Store(e) if e.is_unavailable() => {
                WebError::new(StatusCode::SERVICE_UNAVAILABLE, "app.unavailable")
            }
            other => WebError::internal(&other),
        }
    }
}

impl From<AccessError> for WebError {
    fn from(error: AccessError) -> WebError {
        match error {
            AccessError::Denied(_) => WebError::new(StatusCode::FORBIDDEN, "app.forbidden"),
            AccessError::Record(e) => e.into(),
        }
    }
}

impl From<ReplicationError> for WebError {
    fn from(error: ReplicationError) -> WebError {
        match error {
            ReplicationError::Store(e) => RecordError::Store(e).into(),
            other => WebError::internal(&other),
        }
    }
}

impl From<AuthError> for WebError {
    fn from(error: AuthError) -> WebError {
        match error {
            AuthError::Record(e) => e.into(),
            other => WebError::internal(&other),
        }
    }
}

/// Stands in the response until [`render_errors`] renders it.
impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// Renders a failed page's [`WebError`] as a page in the user's language.
pub async fn render_errors(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let ctx = Ctx::of(&parts);
    let response = next.run(Request::from_parts(parts, body)).await;
    let Some(error) = response.extensions().get::<WebError>().cloned() else {
        return response;
    };
    let body = html! {
        p.notice.error role="alert" {
            (ctx.t(error.key))
            @if let Some(detail) = &error.detail { " " (detail) }
        }
        p { a href="/clients" { (ctx.t("nav.clients")) } }
    };
    (error.status, layout::page(&ctx, ctx.t("app.name"), body)).into_response()
}
