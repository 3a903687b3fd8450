//! Sessions in the OpenAPI description: the login, logout and "me"
//! endpoints, the two ways to present a session (bearer token, cookie),
//! and, on every operation, whether it needs a session and the 401, 403
//! and 429 answers it can give.

use utoipa::openapi::path::{Operation, OperationBuilder};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ComponentsBuilder, HttpMethod, OpenApi, PathItem, PathsBuilder, RefOr, ResponseBuilder,
};

use super::{json_request, json_response, problem, schema_ref};
use crate::api::auth::{LoginRequest, LoginResponse, SESSION_COOKIE};
use crate::auth::{Principal, Role};

const BEARER: &str = "session";
const COOKIE: &str = "sessionCookie";
/// Operations anyone may call.
const OPEN: &[(&str, HttpMethod)] = &[
    ("/healthz", HttpMethod::Get),
    ("/api/v1/openapi.json", HttpMethod::Get),
    ("/api/v1/auth/login", HttpMethod::Post),
];

pub fn components(components: ComponentsBuilder) -> ComponentsBuilder {
    components
        .schema_from::<LoginRequest>()
        .schema_from::<LoginResponse>()
        .schema_from::<Principal>()
        .schema_from::<Role>()
        .security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The token answered by POST /api/v1/auth/login."))
                    .build(),
            ),
        )
        .security_scheme(
            COOKIE,
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "The session cookie set by login. POST, PATCH, PUT and DELETE with it also \
                 need the crm_csrf cookie's value in the X-CSRF-Token header.",
            ))),
        )
}

pub fn paths(paths: PathsBuilder) -> PathsBuilder {
    paths
        .path(
            "/api/v1/auth/login",
            PathItem::new(HttpMethod::Post, login_op()),
        )
        .path(
            "/api/v1/auth/logout",
            PathItem::new(
                HttpMethod::Post,
                OperationBuilder::new()
                    .operation_id(Some("logout"))
                    .tag("auth")
                    .summary(Some("End this session"))
                    .response(
                        "204",
                        ResponseBuilder::new().description("Logged out.").build(),
                    ),
            ),
        )
        .path(
            "/api/v1/auth/me",
            PathItem::new(
                HttpMethod::Get,
                OperationBuilder::new()
                    .operation_id(Some("me"))
                    .tag("auth")
                    .summary(Some("The logged-in user"))
                    .response(
                        "200",
                        json_response("The session's user.", schema_ref("Principal")),
                    ),
            ),
        )
}

fn login_op() -> OperationBuilder {
    OperationBuilder::new()
        .operation_id(Some("login"))
        .tag("auth")
        .summary(Some("Log in: a session token (and cookies for a browser)"))
        .request_body(Some(json_request("LoginRequest")))
        .response(
            "200",
            json_response("Logged in.", schema_ref("LoginResponse")),
        )
        .response("400", problem("The body is not a JSON object."))
        .response("401", problem("Wrong login or password."))
        .response("413", problem("The body is too large."))
        .response("415", problem("The body is not JSON."))
        .response("422", problem("The body lacks login or password."))
        .response(
            "429",
            problem("Too many failed logins for this login or address; see Retry-After."),
        )
}

/// Operations that a role may be refused: every change, and peers.
fn can_be_forbidden(path: &str, method: &HttpMethod) -> bool {
    !matches!(method, HttpMethod::Get) || path.starts_with("/api/v1/peers")
}

/// Sets the global requirement (a session, by bearer token or cookie),
/// exempts the open operations, and adds the answers a session check
/// gives. Operations that declare their own security (`/sync/v1`, peer
/// tokens) keep it.
pub fn apply(api: &mut OpenApi) {
    api.security = Some(vec![
        SecurityRequirement::new(BEARER, Vec::<String>::new()),
        SecurityRequirement::new(COOKIE, Vec::<String>::new()),
    ]);
    for (path, item) in api.paths.paths.iter_mut() {
        for (method, operation) in operations(item) {
            if OPEN.iter().any(|(p, m)| p == path && *m == method) {
                operation.security = Some(vec![SecurityRequirement::default()]);
                continue;
            }
            if operation.security.is_some() || !path.starts_with("/api/v1/") {
                continue;
            }
            let responses = &mut operation.responses.responses;
            responses.insert(
                "401".into(),
                RefOr::T(problem(
                    "No valid session (missing, unknown, expired, or the user is inactive).",
                )),
            );
            if can_be_forbidden(path, &method) {
                responses.insert(
                    "403".into(),
                    RefOr::T(problem(
                        "The user's role does not allow this, or a cookie session sent no CSRF token.",
                    )),
                );
            }
        }
    }
}

/// Adds the answer `status` to every operation that does not declare it:
/// what the edge itself may answer (a request timeout, say).
pub fn add_to_every_operation(api: &mut OpenApi, status: &str, description: &str) {
    for item in api.paths.paths.values_mut() {
        for (_, operation) in operations(item) {
            operation
                .responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| RefOr::T(problem(description)));
        }
    }
}

fn operations(item: &mut PathItem) -> Vec<(HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, item.get.as_mut()),
        (HttpMethod::Post, item.post.as_mut()),
        (HttpMethod::Put, item.put.as_mut()),
        (HttpMethod::Patch, item.patch.as_mut()),
        (HttpMethod::Delete, item.delete.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, op)| op.map(|op| (method, op)))
    .collect()
}
