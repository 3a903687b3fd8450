//! Login and logout pages. Logging in opens the same session (and cookies)
//! as `POST /api/v1/auth/login`; the login form is protected by a random
//! pre-session token (the `crm_form` cookie and the `_csrf` field).

use axum::extract::State;
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};

use super::error::WebError;
use super::layout::{csrf_field, page};
use super::session::{Ctx, SessionToken, WebForm, FORM_COOKIE};
use crate::api::auth::{
    clear_session_cookies, client_address, no_store, set_cookie, set_session_cookies,
};
use crate::api::AppState;
use crate::auth::AuthError;

fn login_page(ctx: &Ctx, login: &str, problem: Option<&str>) -> Markup {
    let body = html! {
        section.login {
            h1 { (ctx.t("login.title")) }
            @if let Some(problem) = problem {
                p.notice.error #login-error role="alert" { (ctx.t(problem)) }
            }
            form method="post" action="/login" {
                (csrf_field(ctx))
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
pub async fn form(mut ctx: Ctx) -> Result<Response, WebError> {
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
    let mut response = login_page(&ctx, "", None).into_response();
    if let Some(cookie) = cookie {
        set_cookie(&mut response, &cookie);
    }
    no_store(&mut response);
    Ok(response)
}

/// `POST /login`: a session and its cookies, then the desktop.
pub async fn submit(
    State(state): State<AppState>,
    ctx: Ctx,
    extensions: Extensions,
    headers: HeaderMap,
    form: WebForm,
) -> Result<Response, WebError> {
    let login = form.get("login");
    let address = client_address(&extensions, &headers);
    let mut response = match state.auth.login(login, form.get("password"), address).await {
        Ok(session) => {
            let mut response = Redirect::to("/").into_response();
            set_session_cookies(
                &mut response,
                &session.token,
                state.auth.session_ttl().as_secs(),
                state.https,
            );
            response
        }
        Err(AuthError::WrongCredentials) => (
            StatusCode::UNAUTHORIZED,
            login_page(&ctx, login, Some("login.wrong")),
        )
            .into_response(),
        Err(AuthError::RateLimited(_)) => (
            StatusCode::TOO_MANY_REQUESTS,
            login_page(&ctx, login, Some("login.rate_limited")),
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
    Ok(response)
}
