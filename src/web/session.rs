//! Who is looking at a page and in which language: the login guard in
//! front of every signed-in page (the API's cookie session; no valid
//! session, to the login page, which says so when a session has ended and
//! brings the user back afterwards), the [`Ctx`] each handler takes, and
//! [`WebForm`], the only way a handler reads a submitted form, which
//! refuses it unless its `_csrf` field holds the page's CSRF token.

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;

use super::error::WebError;
use super::i18n::{Lang, LANG_COOKIE};
use crate::api::auth::{clear_session_cookies, cookie, set_cookie, SESSION_COOKIE};
use crate::api::AppState;
use crate::auth::{csrf_token, Principal};

/// Before a session exists (the login page), forms are protected by a
/// random token in this cookie (double submit).
pub const FORM_COOKIE: &str = "crm_form";
/// The form field every unsafe form carries.
pub const CSRF_FIELD: &str = "_csrf";
/// Set by the login page and kept for a year, cleared by logging out: a
/// browser that comes without its session cookie but with this one had a
/// session that ended (the cookie lives as long as the session), so the
/// login page says so.
pub const SIGNED_IN_COOKIE: &str = "crm_signed_in";
/// How long [`SIGNED_IN_COOKIE`] is kept.
const SIGNED_IN_MAX_AGE: u64 = 365 * 24 * 3600;

/// The session token of a signed-in page's request.
#[derive(Clone)]
pub struct SessionToken(pub String);

/// Every signed-in page: the session cookie must name a live session,
/// else the browser goes to the login page, told where to come back to
/// and, when a session existed (its cookie no longer valid: expired,
/// ended elsewhere, the user deactivated; or gone with a browser that had
/// signed in), that it has ended.
pub async fn require_login(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let back = return_path(&request);
    let Some(token) = cookie(request.headers(), SESSION_COOKIE).map(str::to_owned) else {
        let ended = cookie(request.headers(), SIGNED_IN_COOKIE).is_some();
        return to_login(ended, back.as_deref(), state.https);
    };
    match state.auth.principal(&token).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            request.extensions_mut().insert(SessionToken(token));
            next.run(request).await
        }
        Err(crate::auth::AuthError::NoSession) => to_login(true, back.as_deref(), state.https),
        Err(e) => WebError::from(e).into_response(),
    }
}

/// Where to come back to after logging in: the page asked for, or for a
/// form sent with a session that had ended, the page the form was on
/// (its `Referer`, when it is this site's).
fn return_path(request: &Request) -> Option<String> {
    let headers = request.headers();
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned());
    }
    let referer = headers.get(header::REFERER)?.to_str().ok()?;
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let (_, rest) = referer.split_once("://")?;
    let (authority, path) = rest.split_at(rest.find('/')?);
    (authority == host).then(|| path.to_owned())
}

/// The login page, with `next` (a local path) and `expired=1` when a
/// session ended; the ended session's cookies are removed.
fn to_login(ended: bool, next: Option<&str>, https: bool) -> Response {
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    if ended {
        pairs.push(("expired", "1"));
    }
    if let Some(next) = next.map(local_path).filter(|n| *n != "/") {
        pairs.push(("next", next));
    }
    let url = match serde_urlencoded::to_string(&pairs) {
        Ok(query) if !query.is_empty() => format!("/login?{query}"),
        _ => "/login".to_owned(),
    };
    let mut response = Redirect::to(&url).into_response();
    if ended {
        clear_session_cookies(&mut response, https);
        forget_sign_in(&mut response);
    }
    response
}

/// Marks the browser as having signed in (see [`SIGNED_IN_COOKIE`]).
pub fn remember_sign_in(response: &mut Response, https: bool) {
    let secure = if https { "; Secure" } else { "" };
    set_cookie(
        response,
        &format!(
            "{SIGNED_IN_COOKIE}=1; HttpOnly; SameSite=Strict; Path=/; Max-Age={SIGNED_IN_MAX_AGE}{secure}"
        ),
    );
}

/// Forgets [`SIGNED_IN_COOKIE`]: logged out, or told once that the
/// session ended.
pub fn forget_sign_in(response: &mut Response) {
    set_cookie(
        response,
        &format!("{SIGNED_IN_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
}

/// The token a form on this request's page must carry: derived from the
/// session when there is one, else the pre-session cookie's.
pub fn expected_csrf(headers: &HeaderMap) -> Option<String> {
    match cookie(headers, SESSION_COOKIE) {
        Some(token) => Some(csrf_token(token)),
        None => cookie(headers, FORM_COOKIE)
            .filter(|v| !v.is_empty())
            .map(str::to_owned),
    }
}

/// What every page handler knows about its request.
#[derive(Clone)]
pub struct Ctx {
    pub lang: Lang,
    /// `None` on the login page.
    pub principal: Option<Principal>,
    /// The token this page's forms carry (empty before the login page set
    /// its cookie).
    pub csrf: String,
    /// The path and query of this page, to come back to.
    pub here: String,
}

impl Ctx {
    pub fn of(parts: &Parts) -> Ctx {
        let headers = &parts.headers;
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        Ctx {
            lang: Lang::choose(cookie(headers, LANG_COOKIE), accept),
            principal: parts.extensions.get::<Principal>().cloned(),
            csrf: expected_csrf(headers).unwrap_or_default(),
            here: parts
                .uri
                .path_and_query()
                .map_or("/".to_owned(), |p| p.as_str().to_owned()),
        }
    }

    /// The signed-in user; pages behind `require_login` always have one.
    pub fn user(&self) -> Result<&Principal, WebError> {
        self.principal
            .as_ref()
            .ok_or_else(|| WebError::new(StatusCode::UNAUTHORIZED, "app.forbidden"))
    }

    pub fn t<'k>(&self, key: &'k str) -> &'k str {
        self.lang.t(key)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Ctx, WebError> {
        Ok(Ctx::of(parts))
    }
}

/// A submitted form whose CSRF token checked out: its fields in order,
/// `_csrf` removed.
pub struct WebForm(pub Vec<(String, String)>);

impl WebForm {
    /// The first value of `name`, or "".
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequest<S> for WebForm {
    type Rejection = WebError;

    async fn from_request(request: Request, state: &S) -> Result<WebForm, WebError> {
        let expected = expected_csrf(request.headers());
        let Form(pairs): Form<Vec<(String, String)>> = Form::from_request(request, state)
            .await
            .map_err(|_| WebError::new(StatusCode::BAD_REQUEST, "app.error"))?;
        let sent = pairs
            .iter()
            .find(|(k, _)| k == CSRF_FIELD)
            .map(|(_, v)| v.as_str());
        match (expected, sent) {
            (Some(expected), Some(sent)) if expected == sent => Ok(WebForm(
                pairs.into_iter().filter(|(k, _)| k != CSRF_FIELD).collect(),
            )),
            _ => Err(WebError::new(StatusCode::FORBIDDEN, "app.csrf")),
        }
    }
}

/// A path on this site to go back to; anything else goes to `/`. Only a
/// path that starts with a single `/`: `//host` and `/\\host` lead
/// browsers to another site, and they drop tabs and line breaks from a
/// URL, so `/<tab>/host` would too.
pub fn local_path(path: &str) -> &str {
    let local = path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.chars().any(|c| c.is_control() || c.is_whitespace());
    if local {
        path
    } else {
        "/"
    }
}

/// `POST /lang`: keeps the chosen language in a cookie for a year and
/// goes back to the page.
pub async fn set_lang(form: WebForm) -> Response {
    let lang = Lang::from_code(form.get("lang")).unwrap_or(Lang::Ru);
    let mut response = Redirect::to(local_path(form.get("back"))).into_response();
    set_cookie(
        &mut response,
        &format!(
            "{LANG_COOKIE}={}; SameSite=Strict; Path=/; Max-Age=31536000",
            lang.code()
        ),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_returned_to() {
        for local in [
            "/",
            "/clients",
            "/clients/abc?x=1#y",
            "/search?q=%2F%2Fevil",
        ] {
            assert_eq!(local_path(local), local);
        }
        for foreign in [
            "//evil.example",
            "https://evil.example/",
            "/\\evil.example",
            "\\\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            " /clients",
            "evil.example",
            "",
        ] {
            assert_eq!(local_path(foreign), "/", "{foreign:?}");
        }
    }
}
