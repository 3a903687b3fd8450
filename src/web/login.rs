//! Login and logout pages. Logging in opens the same session (and cookies)
//! as `POST /api/v1/auth/login`; the login form is protected by a random
//! pre-session token (the `crm_form` cookie and the `_csrf` field). The
//! page says when a session has ended (`?expired=1`) and, after login,
//! goes back to `next`, a path on this site only.

use axum::extract::{Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use serde::Deserialize;

use super::error::WebError;
use super::layout::{csrf_field, page};
use super::session::{
    forget_sign_in, local_path, remember_sign_in, Ctx, SessionToken, WebForm, FORM_COOKIE,
};
use crate::api::auth::{
    clear_session_cookies, client_address, no_store, set_cookie, set_session_cookies,
};
use crate::api::AppState;
use crate::auth::AuthError;

/// `GET /login`'s query: set by the login guard.
#[derive(Deserialize, Default)]
pub struct LoginQuery {
    /// `1` when the browser's session has ended.
    #[serde(default)]
    expired: String,
    /// Where to go after logging in.
    #[serde(default)]
    next: String,
}

/// What the login page says besides its form.
#[derive(Default)]
struct Notice<'a> {
    problem: Option<&'static str>,
    expired: bool,
    /// Where to go after logging in, as asked (checked by `after_login`).
    next: &'a str,
}

/// Where to go after logging in: `next` when it is a page on this site
/// other than the login page itself (which would only loop), else the
/// desktop.
fn after_login(next: &str) -> &str {
    match local_path(next) {
        "/login" => "/",
        path if path.starts_with("/login?") => "/",
        path => path,
    }
}

fn login_page(ctx: &Ctx, login: &str, notice: Notice) -> Markup {
    let next = Some(after_login(notice.next)).filter(|n| *n != "/");
    let body = html! {
        section.login {
            h1 { (ctx.t("login.title")) }
            @if let Some(problem) = notice.problem {
                p.notice.error #login-error role="alert" { (ctx.t(problem)) }
            } @else if notice.expired {
                p.notice #session-expired role="status" { (ctx.t("login.expired")) }
            }
            form method="post" action="/login" {
                (csrf_field(ctx))
                @if let Some(next) = next {
                    input type="hidden" name="next" value=(next);
                }
                div.field {
                    label for="login" { (ctx.t("login.login")) }
                    input #login name="login" value=(login) autocomplete="username" required autofocus[login.is_empty()];
                }
                div.field {
                    label for="password" { (ctx.t("login.password")) }
                    input #password type="password" name="password" autocomplete="current-password" required autofocus[!login.is_empty()];
                }
                button.primary type="submit" { (ctx.t("login.submit")) }
            }
        }
    };
    page(ctx, ctx.t("login.title"), body)
}

/// `GET /login`; gives the browser its pre-session form token first.
pub async fn form(mut ctx: Ctx, Query(query): Query<LoginQuery>) -> Result<Response, WebError> {
    let mut cookie = None;
    if ctx.csrf.is_empty() {
        let mut random = [0u8; 16];
        getrandom::fill(&mut random)
            .map_err(|_| WebError::new(StatusCode::INTERNAL_SERVER_ERROR, "app.error"))?;
        ctx.csrf = random.iter().map(|b| format!("{b:02x}")).collect();
        cookie = Some(format!(
            "{FORM_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/",
            ctx.csrf
        ));
    }
    let notice = Notice {
        expired: query.expired == "1",
        next: &query.next,
        ..Notice::default()
    };
    let mut response = login_page(&ctx, "", notice).into_response();
    if let Some(cookie) = cookie {
        set_cookie(&mut response, &cookie);
    }
    no_store(&mut response);
    Ok(response)
}

/// `POST /login`: a session and its cookies, then the page the user was
/// sent here from (`next`, when it is a path on this site), else the
/// desktop.
pub async fn submit(
    State(state): State<AppState>,
    ctx: Ctx,
    extensions: Extensions,
    headers: HeaderMap,
    form: WebForm,
) -> Result<Response, WebError> {
    let login = form.get("login");
    let next = form.get("next");
    let address = client_address(&extensions, &headers);
    let refused = |problem| Notice {
        problem: Some(problem),
        next,
        ..Notice::default()
    };
    let mut response = match state.auth.login(login, form.get("password"), address).await {
        Ok(session) => {
            let mut response = Redirect::to(after_login(next)).into_response();
            set_session_cookies(
                &mut response,
                &session.token,
                state.auth.session_ttl().as_secs(),
                state.https,
            );
            remember_sign_in(&mut response, state.https);
            response
        }
        Err(AuthError::WrongCredentials) => (
            StatusCode::UNAUTHORIZED,
            login_page(&ctx, login, refused("login.wrong")),
        )
            .into_response(),
        Err(AuthError::RateLimited(_)) => (
            StatusCode::TOO_MANY_REQUESTS,
            login_page(&ctx, login, refused("login.rate_limited")),
        )
            .into_response(),
        Err(e) => return Err(e.into()),
    };
    no_store(&mut response);
    Ok(response)
}

/// `POST /logout`: ends the session and its cookies.
pub async fn logout(
    State(state): State<AppState>,
    axum::Extension(SessionToken(token)): axum::Extension<SessionToken>,
    _form: WebForm,
) -> Result<Response, WebError> {
    state.auth.logout(&token).await?;
    let mut response = Redirect::to("/login").into_response();
    clear_session_cookies(&mut response, state.https);
    forget_sign_in(&mut response);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::after_login;

    #[test]
    fn logging_in_goes_back_to_a_local_page_but_not_the_login_page() {
        assert_eq!(after_login("/clients?q=a"), "/clients?q=a");
        for elsewhere in ["//evil.example", "/login", "/login?next=%2Fclients", ""] {
            assert_eq!(after_login(elsewhere), "/", "{elsewhere}");
        }
    }
}
