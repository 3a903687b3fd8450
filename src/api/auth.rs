//! `/api/v1/auth/*` and the session guard in front of every other
//! `/api/v1` endpoint: a session token comes as `Authorization: Bearer` or
//! as the `crm_session` cookie; cookie-authenticated unsafe requests must
//! also carry the CSRF token in `X-CSRF-Token` (double submit). The guard
//! puts the request's [`Principal`] into its extensions, where handlers
//! take it from.

use std::net::{IpAddr, Ipv4Addr};

use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, Extensions, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::body::{json_object, typed};
use super::problem::ApiError;
use super::AppState;
use crate::auth::{csrf_token, Principal};
use crate::records::value::format_datetime;

pub const SESSION_COOKIE: &str = "crm_session";
pub const CSRF_COOKIE: &str = "crm_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Added to both cookies' attributes when the node serves HTTPS itself.
/// Behind a TLS proxy or on loopback the node speaks plain HTTP, and a
/// `Secure` cookie would never come back to it.
fn secure_attribute(https: bool) -> &'static str {
    if https {
        "; Secure"
    } else {
        ""
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub login: String,
    #[schema(min_length = 1, max_length = 1000, format = Password)]
    pub password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    /// The session token: send it as `Authorization: Bearer <token>`.
    pub token: String,
    /// When the session ends, RFC 3339.
    pub expires_at: String,
    /// For cookie sessions: send it back in `X-CSRF-Token` with every
    /// POST, PATCH, PUT and DELETE (also set as the `crm_csrf` cookie).
    pub csrf_token: String,
    pub user: Principal,
}

/// How a request proved its session; kept in its extensions for logout.
#[derive(Debug, Clone)]
struct Credentials {
    token: String,
    via_cookie: bool,
}

pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The bearer token, else the session cookie; an `Authorization` header
/// that is not a bearer token is refused rather than ignored.
fn credentials(headers: &HeaderMap) -> Result<Credentials, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim().to_owned())
            .ok_or_else(|| ApiError::unauthorized("Authorization must be `Bearer <token>`"))?;
        return Ok(Credentials {
            token,
            via_cookie: false,
        });
    }
    match cookie(headers, SESSION_COOKIE) {
        Some(token) => Ok(Credentials {
            token: token.to_owned(),
            via_cookie: true,
        }),
        None => Err(ApiError::unauthorized(
            "log in first (POST /api/v1/auth/login) and send the token as `Authorization: Bearer <token>`",
        )),
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Double submit: the header must equal the cookie, and both must be the
/// session's own CSRF token (so a cookie planted by another site fails).
fn check_csrf(headers: &HeaderMap, session_token: &str) -> Result<(), ApiError> {
    let header = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    let cookie = cookie(headers, CSRF_COOKIE);
    let expected = csrf_token(session_token);
    match (header, cookie) {
        (Some(h), Some(c)) if h == c && h == expected => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "csrf",
            "a cookie session must send the crm_csrf cookie's value in X-CSRF-Token",
        )),
    }
}

/// The guard of every `/api/v1` endpoint but login and the OpenAPI
/// document: no valid session, 401; a cookie session without its CSRF
/// token on an unsafe method, 403.
pub async fn require_session(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let credentials = credentials(request.headers())?;
    let principal = state.auth.principal(&credentials.token).await?;
    if credentials.via_cookie && !is_safe(request.method()) {
        check_csrf(request.headers(), &credentials.token)?;
    }
    request.extensions_mut().insert(principal);
    request.extensions_mut().insert(credentials);
    Ok(next.run(request).await)
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Principal, ApiError> {
        // Only routes behind `require_session` take a principal.
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("this endpoint needs a session"))
    }
}

/// The client's address for rate limiting: the connection's peer, or,
/// when that is a proxy on this machine, the last `X-Forwarded-For` hop.
pub(crate) fn client_address(extensions: &Extensions, headers: &HeaderMap) -> IpAddr {
    let peer = extensions
        .get::<ConnectInfo<super::ClientAddr>>()
        .map(|c| c.0 .0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    if !peer.is_loopback() {
        return peer;
    }
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|hop| hop.trim().parse().ok())
        .unwrap_or(peer)
}

pub(crate) fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

pub(crate) fn set_cookie(response: &mut Response, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// Login answers, failures included, are never cached.
pub async fn login(
    state: State<AppState>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut response = open_session(state, extensions, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    no_store(&mut response);
    response
}

async fn open_session(
    State(state): State<AppState>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: LoginRequest = typed(json_object(&headers, body)?)?;
    let address = client_address(&extensions, &headers);
    let session = state
        .auth
        .login(&request.login, &request.password, address)
        .await?;
    let max_age = state.auth.session_ttl().as_secs();
    let mut response = Json(LoginResponse {
        token: session.token.clone(),
        expires_at: format_datetime(session.expires_at_ms),
        csrf_token: csrf_token(&session.token),
        user: session.user,
    })
    .into_response();
    set_session_cookies(&mut response, &session.token, max_age, state.https);
    Ok(response)
}

/// The cookies of a new browser session: the HttpOnly session cookie and
/// the readable CSRF cookie (the API's and the web pages' logins share them).
pub(crate) fn set_session_cookies(response: &mut Response, token: &str, max_age: u64, https: bool) {
    let secure = secure_attribute(https);
    set_cookie(
        response,
        &format!(
            "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
        ),
    );
    // Readable by the page's script, which copies it into X-CSRF-Token.
    set_cookie(
        response,
        &format!(
            "{CSRF_COOKIE}={}; SameSite=Strict; Path=/; Max-Age={max_age}{secure}",
            csrf_token(token)
        ),
    );
}

/// Ends a browser session's cookies.
pub(crate) fn clear_session_cookies(response: &mut Response, https: bool) {
    let secure = secure_attribute(https);
    for name in [SESSION_COOKIE, CSRF_COOKIE] {
        set_cookie(
            response,
            &format!("{name}=; SameSite=Strict; Path=/; Max-Age=0{secure}"),
        );
    }
}

pub async fn logout(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    if let Some(credentials) = request.extensions().get::<Credentials>() {
        state.auth.logout(&credentials.token).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    clear_session_cookies(&mut response, state.https);
    no_store(&mut response);
    Ok(response)
}

pub async fn me(principal: Principal) -> Response {
    let mut response = Json(principal).into_response();
    no_store(&mut response);
    response
}
