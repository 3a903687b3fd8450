//! Users, sessions and roles over real nodes: login, logout and expiry,
//! rate limits, bearer and cookie sessions (with CSRF), deactivation,
//! password hashes that never leave the node, what each role may do, a
//! user who logs in at another office after sync, and who changed what.

mod common;

use std::time::Duration;

use common::cluster::{wait_for, Cluster, Topology};
use common::{create, http_client, id_of, Resp, TestNode, ADMIN_PASSWORD};
use reqwest::header::{HeaderMap, AUTHORIZATION, COOKIE};
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};

/// Sends `request` (built on a client without a session) and reads it.
async fn send(node: &TestNode, request: RequestBuilder) -> Resp {
    node.send(request).await
}

/// A request with no session at all.
fn anonymous(node: &TestNode, method: Method, path: &str) -> RequestBuilder {
    http_client(HeaderMap::new()).request(method, node.url(path))
}

/// A request with `token` as its bearer session.
fn bearer(node: &TestNode, token: &str, method: Method, path: &str) -> RequestBuilder {
    anonymous(node, method, path).header(AUTHORIZATION, format!("Bearer {token}"))
}

/// A login attempt as if from `address` (the node trusts X-Forwarded-For
/// from loopback, as from a local proxy).
async fn attempt(node: &TestNode, login: &str, password: &str, address: &str) -> Resp {
    send(
        node,
        anonymous(node, Method::POST, "/api/v1/auth/login")
            .header("x-forwarded-for", address)
            .json(&json!({"login": login, "password": password})),
    )
    .await
}

/// Creates a user as the node's admin and returns its id.
async fn add_user(node: &TestNode, login: &str, role: &str, office: &str) -> String {
    let user = create(
        node,
        "users",
        json!({"login": login, "password": password_of(login), "role": role,
               "display_name": format!("User {login}"), "office": office}),
    )
    .await;
    id_of(&user)
}

/// Sets a user's `active` flag as the node's admin.
async fn set_active(node: &TestNode, id: &str, active: bool) -> Resp {
    node.patch_json(
        &format!("/api/v1/users/{id}"),
        &json!({ "active": active }),
        None,
    )
    .await
}

fn password_of(login: &str) -> String {
    format!("{login}-password")
}

async fn session_of(node: &TestNode, login: &str) -> String {
    node.login(login, &password_of(login)).await
}

/// The values of the `Set-Cookie` headers, by cookie name.
fn set_cookies(resp: &Resp) -> Vec<(String, String)> {
    resp.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (name, rest) = v.split_once('=')?;
            Some((name.to_owned(), rest.to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn login_me_logout() {
    let node = TestNode::start().await;
    let resp = attempt(&node, "admin", ADMIN_PASSWORD, "10.1.0.1").await;
    resp.expect_status(200, "login");
    assert_eq!(resp.header("cache-control"), Some("no-store"));
    let token = resp.json["token"].as_str().expect("token").to_owned();
    assert!(resp.json["expires_at"].is_string(), "{}", resp.text);
    assert_eq!(resp.json["user"]["login"], "admin");
    assert_eq!(resp.json["user"]["role"], "admin");
    assert!(resp.json["user"]["id"].is_string());

    let me = send(&node, bearer(&node, &token, Method::GET, "/api/v1/auth/me")).await;
    me.expect_status(200, "me");
    assert_eq!(me.json["login"], "admin");
    assert_eq!(me.json["id"], resp.json["user"]["id"]);

    send(
        &node,
        bearer(&node, &token, Method::POST, "/api/v1/auth/logout"),
    )
    .await
    .expect_status(204, "logout");
    send(&node, bearer(&node, &token, Method::GET, "/api/v1/auth/me"))
        .await
        .expect_problem(401, "me after logout");
}

#[tokio::test]
async fn sessions_expire() {
    let node = TestNode::start_with_config("short", "session_ttl_secs = 1\n").await;
    let token = node.login("admin", ADMIN_PASSWORD).await;
    send(&node, bearer(&node, &token, Method::GET, "/api/v1/clients"))
        .await
        .expect_status(200, "fresh session");
    wait_for(Duration::from_secs(10), "the session expires", || async {
        let resp = send(&node, bearer(&node, &token, Method::GET, "/api/v1/clients")).await;
        match resp.status.as_u16() {
            401 => Ok(()),
            other => Err(format!("status {other}")),
        }
    })
    .await;
}

#[tokio::test]
async fn wrong_passwords_unknown_logins_and_the_rate_limit() {
    let node = TestNode::start().await;
    let wrong = attempt(&node, "admin", "not-the-password", "10.2.0.1").await;
    wrong.expect_problem(401, "wrong password");
    assert_eq!(wrong.header("www-authenticate"), Some("Bearer"));
    assert_eq!(wrong.header("cache-control"), Some("no-store"));
    attempt(&node, "nobody", "whatever-password", "10.2.0.2")
        .await
        .expect_problem(401, "unknown login");
    send(
        &node,
        anonymous(&node, Method::POST, "/api/v1/auth/login").json(&json!({"login": "admin"})),
    )
    .await
    .expect_problem(422, "no password");

    // Five failures for one login, from different addresses, block it
    // (even with the right password) ...
    add_user(&node, "target", "viewer", "spb").await;
    for i in 0..4 {
        attempt(&node, "target", "wrong-password", &format!("10.3.0.{i}"))
            .await
            .expect_problem(401, "failure below the limit");
    }
    attempt(&node, "TARGET", "wrong-password", "10.3.0.9")
        .await
        .expect_problem(401, "fifth failure (logins ignore case)");
    let blocked = attempt(&node, "target", &password_of("target"), "10.3.1.1").await;
    blocked.expect_problem(429, "sixth attempt");
    let retry: u64 = blocked
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", blocked.headers));
    assert!((1..=300).contains(&retry), "Retry-After {retry}");

    // ... and five failures from one address block it for every login.
    for i in 0..5 {
        attempt(&node, &format!("guess{i}"), "wrong-password", "10.4.0.1")
            .await
            .expect_problem(401, "guessing");
    }
    attempt(&node, "admin", ADMIN_PASSWORD, "10.4.0.1")
        .await
        .expect_problem(429, "the address is blocked");
    attempt(&node, "admin", ADMIN_PASSWORD, "10.4.0.2")
        .await
        .expect_status(200, "another address");

    // A success clears the login's failures.
    add_user(&node, "forgetful", "viewer", "spb").await;
    for round in 0..2 {
        for i in 0..4 {
            attempt(
                &node,
                "forgetful",
                "wrong-password",
                &format!("10.5.{round}.{i}"),
            )
            .await
            .expect_problem(401, "a failure");
        }
        attempt(
            &node,
            "forgetful",
            &password_of("forgetful"),
            &format!("10.5.{round}.9"),
        )
        .await
        .expect_status(200, "success resets the count");
    }
}

#[tokio::test]
async fn the_api_needs_a_session_except_login_openapi_and_health() {
    let node = TestNode::start().await;
    for path in ["/api/v1/clients", "/api/v1/users", "/api/v1/sync/status"] {
        let resp = send(&node, anonymous(&node, Method::GET, path)).await;
        resp.expect_problem(401, path);
        assert_eq!(resp.header("www-authenticate"), Some("Bearer"), "{path}");
        send(&node, bearer(&node, "crms_0000", Method::GET, path))
            .await
            .expect_problem(401, "unknown token");
        send(
            &node,
            anonymous(&node, Method::GET, path).header(AUTHORIZATION, "Basic YWRtaW46YWRtaW4="),
        )
        .await
        .expect_problem(401, "not a bearer token");
    }
    send(
        &node,
        anonymous(&node, Method::POST, "/api/v1/clients").json(&json!({"name": "X"})),
    )
    .await
    .expect_problem(401, "create without a session");
    let openapi = send(&node, anonymous(&node, Method::GET, "/api/v1/openapi.json")).await;
    openapi.expect_status(200, "openapi is open");
    send(&node, anonymous(&node, Method::GET, "/healthz"))
        .await
        .expect_status(200, "healthz is open");
    // Security headers on every answer.
    let refused = send(&node, anonymous(&node, Method::GET, "/api/v1/clients")).await;
    for resp in [&openapi, &refused] {
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(resp.header("x-frame-options"), Some("DENY"));
        assert_eq!(resp.header("referrer-policy"), Some("no-referrer"));
        assert!(resp.header("content-security-policy").is_some());
    }
    // The description says so.
    let doc = &openapi.json;
    assert!(doc["components"]["securitySchemes"]["session"].is_object());
    assert!(doc["components"]["securitySchemes"]["sessionCookie"].is_object());
    assert_eq!(
        doc["paths"]["/api/v1/auth/login"]["post"]["security"],
        json!([{}])
    );
    assert!(doc["paths"]["/api/v1/clients"]["get"]["responses"]["401"].is_object());
    assert!(doc["paths"]["/api/v1/clients"]["post"]["responses"]["403"].is_object());
    assert!(doc["paths"]["/api/v1/auth/login"]["post"]["responses"]["429"].is_object());
    let user = &doc["components"]["schemas"]["User"]["properties"];
    assert!(user.get("password").is_none(), "{user}");
    assert!(user.get("login").is_some(), "{user}");
    let create = &doc["components"]["schemas"]["UserCreate"]["properties"]["password"];
    assert_eq!(create["writeOnly"], json!(true), "{create}");
}

#[tokio::test]
async fn cookie_sessions_need_the_csrf_token_for_changes() {
    let node = TestNode::start().await;
    let login = attempt(&node, "admin", ADMIN_PASSWORD, "10.6.0.1").await;
    login.expect_status(200, "login");
    let raw: Vec<&str> = login
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let session_cookie = raw
        .iter()
        .find(|c| c.starts_with("crm_session="))
        .expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session_cookie.contains(attribute), "{session_cookie}");
    }
    let csrf_cookie = raw
        .iter()
        .find(|c| c.starts_with("crm_csrf="))
        .expect("csrf cookie");
    assert!(!csrf_cookie.contains("HttpOnly"), "{csrf_cookie}");
    let cookies = set_cookies(&login);
    let value = |name: &str| {
        cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, rest)| rest.split(';').next().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    let (session, csrf) = (value("crm_session"), value("crm_csrf"));
    assert_eq!(json!(csrf), login.json["csrf_token"]);
    let cookie = format!("crm_session={session}; crm_csrf={csrf}");
    let with_cookie =
        |method: Method, path: &str| anonymous(&node, method, path).header(COOKIE, cookie.clone());

    send(&node, with_cookie(Method::GET, "/api/v1/clients"))
        .await
        .expect_status(200, "a read needs no CSRF token");
    let body = json!({"name": "Cookie client"});
    send(
        &node,
        with_cookie(Method::POST, "/api/v1/clients").json(&body),
    )
    .await
    .expect_problem(403, "no X-CSRF-Token");
    send(
        &node,
        with_cookie(Method::POST, "/api/v1/clients")
            .header("x-csrf-token", "0".repeat(64))
            .json(&body),
    )
    .await
    .expect_problem(403, "a wrong X-CSRF-Token");
    send(
        &node,
        with_cookie(Method::POST, "/api/v1/clients")
            .header("x-csrf-token", &csrf)
            .json(&body),
    )
    .await
    .expect_status(201, "the right X-CSRF-Token");
    // A bearer session needs no CSRF token.
    let token = login.json["token"].as_str().expect("token");
    send(
        &node,
        bearer(&node, token, Method::POST, "/api/v1/clients").json(&body),
    )
    .await
    .expect_status(201, "bearer");
}

#[tokio::test]
async fn deactivated_and_deleted_users_lose_access_at_once() {
    let node = TestNode::start().await;
    let id = add_user(&node, "leaving", "manager", "spb").await;
    let token = session_of(&node, "leaving").await;
    let read = || bearer(&node, &token, Method::GET, "/api/v1/clients");
    send(&node, read()).await.expect_status(200, "active");

    set_active(&node, &id, false)
        .await
        .expect_status(200, "deactivate");
    send(&node, read()).await.expect_problem(401, "deactivated");
    attempt(&node, "leaving", &password_of("leaving"), "10.7.0.1")
        .await
        .expect_problem(401, "a deactivated user cannot log in");

    set_active(&node, &id, true)
        .await
        .expect_status(200, "reactivate");
    send(&node, read()).await.expect_status(200, "active again");
    node.delete(&format!("/api/v1/users/{id}"))
        .await
        .expect_status(204, "delete the user");
    send(&node, read()).await.expect_problem(401, "deleted");
}

#[tokio::test]
async fn password_hashes_never_leave_the_node() {
    let node = TestNode::start().await;
    let id = add_user(&node, "ivanov", "manager", "spb").await;
    node.patch_json(
        &format!("/api/v1/users/{id}"),
        &json!({"password": "a-new-password"}),
        None,
    )
    .await
    .expect_status(200, "change the password");
    node.login("ivanov", "a-new-password").await;
    node.patch_json(
        &format!("/api/v1/users/{id}"),
        &json!({"password": "short"}),
        None,
    )
    .await
    .expect_problem(422, "a short password");

    let user_path = format!("/api/v1/users/{id}");
    let history = node.get(&format!("{user_path}/history")).await;
    history.expect_status(200, "history");
    let changed: Vec<&Value> = history.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .flat_map(|e| e["fields"].as_array().into_iter().flatten())
        .filter(|f| f["field"] == "password")
        .collect();
    assert_eq!(changed.len(), 2, "set, then changed: {}", history.text);
    for change in changed {
        assert_eq!(change["secret"], json!(true));
        assert_eq!(change["from"], Value::Null);
        assert_eq!(change["to"], Value::Null);
    }
    let export = node.get("/api/v1/export/users").await;
    export.expect_status(200, "export");
    assert!(export.text.contains("ivanov"), "{}", export.text);
    let answers = [
        node.get(&user_path).await,
        node.get("/api/v1/users").await,
        node.get("/api/v1/users?fields=login,password").await,
        node.get("/api/v1/search?q=ivanov").await,
        node.get("/api/v1/auth/me").await,
        history,
        export,
    ];
    for answer in &answers {
        assert!(
            !answer.text.contains("argon2") && !answer.text.contains("\"password\":"),
            "a hash leaked: {}",
            answer.text
        );
    }
    assert!(!answers[6]
        .text
        .lines()
        .next()
        .unwrap_or_default()
        .contains("password"));
    node.get("/api/v1/users?password=x")
        .await
        .expect_problem(400, "no filter on a password");
}

#[tokio::test]
async fn logins_are_unique_among_active_users() {
    let node = TestNode::start().await;
    let first = add_user(&node, "twin", "viewer", "spb").await;
    let again = node
        .post_json(
            "/api/v1/users",
            &json!({"login": "Twin", "password": "another-password", "role": "viewer"}),
        )
        .await;
    again.expect_problem(409, "a second active twin");
    set_active(&node, &first, false)
        .await
        .expect_status(200, "deactivate the first");
    let second = node
        .post_json(
            "/api/v1/users",
            &json!({"login": "twin", "password": "another-password", "role": "viewer"}),
        )
        .await;
    second.expect_status(201, "the login is free again");
    set_active(&node, &first, true)
        .await
        .expect_problem(409, "reactivating would make two");
    // An import is checked the same way, against the node and the file.
    let import = |csv: &'static str| {
        node.request(Method::POST, "/api/v1/import/users")
            .header("content-type", "text/csv")
            .body(csv)
    };
    for csv in [
        "login,password,role\ntwin,imported-password,viewer\n",
        "login,password,role\nsolo,imported-password,viewer\nSOLO,imported-password,viewer\n",
    ] {
        let refused = node.send(import(csv)).await;
        refused.expect_problem(422, "a taken login in an import");
        assert!(refused.text.contains("taken"), "{}", refused.text);
    }
    node.send(import(
        "login,password,role\nsolo,imported-password,viewer\n",
    ))
    .await
    .expect_status(200, "a free login");
    node.login("solo", "imported-password").await;

    // Restoring a deleted user takes their login back only if it is free.
    let gone = add_user(&node, "phoenix", "viewer", "spb").await;
    node.delete(&format!("/api/v1/users/{gone}"))
        .await
        .expect_status(204, "delete phoenix");
    let heir = add_user(&node, "phoenix", "viewer", "msk").await;
    node.post_empty(&format!("/api/v1/users/{gone}/restore"))
        .await
        .expect_problem(409, "the login was taken meanwhile");
    node.delete(&format!("/api/v1/users/{heir}"))
        .await
        .expect_status(204, "delete the heir");
    node.post_empty(&format!("/api/v1/users/{gone}/restore"))
        .await
        .expect_status(200, "now it is free");
}

/// What one role may do, as statuses of one request per kind of action.
#[tokio::test]
async fn every_role_on_every_kind_of_action() {
    let node = TestNode::start().await;
    add_user(&node, "ivanov", "manager", "spb").await;
    add_user(&node, "viewer", "viewer", "spb").await;
    let manager = session_of(&node, "ivanov").await;
    let viewer = session_of(&node, "viewer").await;
    let admin = node.login("admin", ADMIN_PASSWORD).await;

    // The manager's own client gets their login and office.
    let own = send(
        &node,
        bearer(&node, &manager, Method::POST, "/api/v1/clients").json(&json!({"name": "Own"})),
    )
    .await;
    own.expect_status(201, "manager creates a client");
    assert_eq!(own.json["manager"], "ivanov");
    assert_eq!(own.json["office"], "spb");
    let own = id_of(&own.json);
    let new_id = |collection: &'static str, body: Value| {
        let node = &node;
        async move { id_of(&create(node, collection, body).await) }
    };
    let office = new_id(
        "clients",
        json!({"name": "Office", "manager": "sidorov", "office": "SPB"}),
    )
    .await;
    let other = new_id(
        "clients",
        json!({"name": "Other", "manager": "petrov", "office": "msk"}),
    )
    .await;
    let own_contact = new_id("contacts", json!({"client_id": own, "last_name": "Own"})).await;
    let other_contact = new_id(
        "contacts",
        json!({"client_id": other, "last_name": "Other"}),
    )
    .await;
    let victim = add_user(&node, "victim", "viewer", "msk").await;

    let csv = "name\nImported\n";
    let patch = json!({"notes": "changed"});
    // (what, method, path, body, statuses for admin, manager, viewer)
    type Case = (&'static str, Method, String, Option<Value>, [u16; 3]);
    let (get, post, patch_, delete) = (Method::GET, Method::POST, Method::PATCH, Method::DELETE);
    let peer = json!({"name": "p", "url": "http://127.0.0.1:9", "token": "t"});
    let user = json!({"login": "new", "password": "new-password", "role": "viewer"});
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("read", get.clone(), format!("/api/v1/clients/{other}"), None, [200, 200, 200]),
        ("list", get.clone(), "/api/v1/clients".into(), None, [200, 200, 200]),
        ("search", get.clone(), "/api/v1/search?q=other".into(), None, [200, 200, 200]),
        ("history", get.clone(), format!("/api/v1/clients/{other}/history"), None, [200, 200, 200]),
        ("read users", get.clone(), "/api/v1/users".into(), None, [200, 200, 200]),
        ("export", get.clone(), "/api/v1/export/clients".into(), None, [200, 200, 200]),
        ("sync status", get.clone(), "/api/v1/sync/status".into(), None, [200, 200, 200]),
        ("create", post.clone(), "/api/v1/clients".into(), Some(json!({"name": "New"})), [201, 201, 403]),
        ("edit own", patch_.clone(), format!("/api/v1/clients/{own}"), Some(patch.clone()), [200, 200, 403]),
        ("edit office's", patch_.clone(), format!("/api/v1/clients/{office}"), Some(patch.clone()), [200, 200, 403]),
        ("edit other's", patch_.clone(), format!("/api/v1/clients/{other}"), Some(patch.clone()), [200, 403, 403]),
        ("edit own contact", patch_.clone(), format!("/api/v1/contacts/{own_contact}"), Some(patch.clone()), [200, 200, 403]),
        ("edit other's contact", patch_.clone(), format!("/api/v1/contacts/{other_contact}"), Some(patch.clone()), [200, 403, 403]),
        ("create user", post.clone(), "/api/v1/users".into(), Some(user), [201, 403, 403]),
        ("edit user", patch_.clone(), format!("/api/v1/users/{victim}"), Some(json!({"office": "kzn"})), [200, 403, 403]),
        ("list peers", get.clone(), "/api/v1/peers".into(), None, [200, 403, 403]),
        ("add peer", post.clone(), "/api/v1/peers".into(), Some(peer), [201, 403, 403]),
        ("remove peer", delete, "/api/v1/peers/p".into(), None, [204, 403, 403]),
        ("sync run", post, "/api/v1/sync/run".into(), Some(json!({})), [200, 200, 403]),
    ];
    for (what, method, path, body, expected) in &cases {
        // The manager and the viewer go first: the admin's success may
        // change what follows (a peer added, then removed).
        for (who, token, status) in [
            ("viewer", &viewer, expected[2]),
            ("manager", &manager, expected[1]),
            ("admin", &admin, expected[0]),
        ] {
            let mut request = bearer(&node, token, method.clone(), path);
            if let Some(body) = body {
                request = request.json(body);
            }
            let resp = send(&node, request).await;
            assert_eq!(
                resp.status.as_u16(),
                status,
                "{what} as {who}: {}",
                resp.text
            );
            if status == 403 {
                resp.expect_problem(403, what);
            }
        }
        let mut request = anonymous(&node, method.clone(), path);
        if let Some(body) = body {
            request = request.json(body);
        }
        send(&node, request)
            .await
            .expect_problem(401, &format!("{what} without a session"));
    }

    // Import: managers and admins, not viewers; users only by admins.
    for (who, token, status) in [
        ("viewer", &viewer, 403),
        ("manager", &manager, 200),
        ("admin", &admin, 200),
    ] {
        let resp = send(
            &node,
            bearer(&node, token, Method::POST, "/api/v1/import/clients")
                .header("content-type", "text/csv")
                .body(csv),
        )
        .await;
        assert_eq!(
            resp.status.as_u16(),
            status,
            "import as {who}: {}",
            resp.text
        );
    }
    send(
        &node,
        bearer(&node, &manager, Method::POST, "/api/v1/import/users")
            .header("content-type", "text/csv")
            .body("login,password,role\nx,xxxxxxxxxx,viewer\n"),
    )
    .await
    .expect_problem(403, "a manager imports users");

    // Delete, restore and import need a session; then delete and restore
    // follow edit.
    for (method, path) in [
        (Method::DELETE, format!("/api/v1/clients/{own}")),
        (Method::POST, format!("/api/v1/clients/{own}/restore")),
        (Method::POST, "/api/v1/import/clients".to_owned()),
    ] {
        send(&node, anonymous(&node, method, &path))
            .await
            .expect_problem(401, &format!("{path} without a session"));
    }
    for (who, token, id, status) in [
        ("viewer", &viewer, &own, 403),
        ("manager", &manager, &other, 403),
        ("manager", &manager, &own, 204),
    ] {
        let resp = send(
            &node,
            bearer(
                &node,
                token,
                Method::DELETE,
                &format!("/api/v1/clients/{id}"),
            ),
        )
        .await;
        assert_eq!(
            resp.status.as_u16(),
            status,
            "delete as {who}: {}",
            resp.text
        );
    }
    for (who, token, status) in [("viewer", &viewer, 403), ("manager", &manager, 200)] {
        let resp = send(
            &node,
            bearer(
                &node,
                token,
                Method::POST,
                &format!("/api/v1/clients/{own}/restore"),
            ),
        )
        .await;
        assert_eq!(
            resp.status.as_u16(),
            status,
            "restore as {who}: {}",
            resp.text
        );
    }
    node.delete(&format!("/api/v1/clients/{other}"))
        .await
        .expect_status(204, "admin deletes another's");
    send(
        &node,
        bearer(
            &node,
            &manager,
            Method::POST,
            &format!("/api/v1/clients/{other}/restore"),
        ),
    )
    .await
    .expect_problem(403, "a manager restores another's");
    node.post_empty(&format!("/api/v1/clients/{other}/restore"))
        .await
        .expect_status(200, "admin restores");
}

#[tokio::test]
async fn history_names_the_user_who_changed_a_record() {
    let node = TestNode::start().await;
    let manager_id = add_user(&node, "ivanov", "manager", "spb").await;
    let manager = session_of(&node, "ivanov").await;
    let created = send(
        &node,
        bearer(&node, &manager, Method::POST, "/api/v1/clients").json(&json!({"name": "Told"})),
    )
    .await;
    created.expect_status(201, "create");
    let id = id_of(&created.json);
    node.patch_json(
        &format!("/api/v1/clients/{id}"),
        &json!({"city": "Kazan"}),
        None,
    )
    .await
    .expect_status(200, "admin edits");
    let history = node.get(&format!("/api/v1/clients/{id}/history")).await;
    history.expect_status(200, "history");
    let items = history.json["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{}", history.text);
    assert_eq!(items[0]["user"], json!(manager_id));
    assert_eq!(items[0]["login"], "ivanov");
    assert_eq!(items[0]["display_name"], "User ivanov");
    assert_eq!(items[1]["login"], "admin");
}

#[tokio::test]
async fn a_user_created_at_one_office_logs_in_at_another_and_loses_access_when_deactivated_there() {
    let cluster = Cluster::with_topology(2, Topology::Chain, "auto_sync = false\n").await;
    let (hq, branch) = (&cluster.nodes[0], &cluster.nodes[1]);
    add_user(hq, "traveller", "manager", "hq").await;
    attempt(branch, "traveller", &password_of("traveller"), "10.8.0.1")
        .await
        .expect_problem(401, "not there yet");
    cluster.sync_pair(0, 1).await;
    let token = session_of(branch, "traveller").await;
    let me = send(
        branch,
        bearer(branch, &token, Method::GET, "/api/v1/auth/me"),
    )
    .await;
    me.expect_status(200, "me at the branch");
    assert_eq!(me.json["office"], "hq");
    // Each office made its own first admin; both log in.
    let admins = common::list_all(branch, "users", &[("login", "admin")]).await;
    assert_eq!(admins.len(), 2, "{admins:?}");
    branch.login("admin", ADMIN_PASSWORD).await;

    // The branch remembers the checked session while other records change
    // (its own writes and a sync of clients), and forgets it as soon as a
    // deactivation made at HQ arrives.
    let read = || bearer(branch, &token, Method::GET, "/api/v1/auth/me");
    create(branch, "clients", json!({"name": "ООО Ромашка"})).await;
    create(hq, "clients", json!({"name": "ООО Василёк"})).await;
    cluster.sync_pair(0, 1).await;
    send(branch, read())
        .await
        .expect_status(200, "still active");
    let traveller = common::list_all(hq, "users", &[("login", "traveller")]).await;
    let id = traveller[0]["id"].as_str().expect("user id").to_owned();
    set_active(hq, &id, false)
        .await
        .expect_status(200, "deactivate at HQ");
    send(branch, read())
        .await
        .expect_status(200, "the branch has not heard yet");
    cluster.sync_pair(0, 1).await;
    send(branch, read())
        .await
        .expect_problem(401, "deactivated at HQ, synced");
}

#[tokio::test]
async fn tools_go_through_the_node_with_its_token() {
    let mut node = TestNode::start().await;
    let token_file = node.data_dir().join("serve.token");
    assert!(token_file.exists(), "serve.token while serving");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file)
            .expect("serve.token")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = node.data_dir().join("users.csv");
    let out_arg = out.to_string_lossy().into_owned();
    let (ok, stdout, stderr) = node.cli(&["export", "users", &out_arg]).await;
    assert!(ok, "export through the node: {stdout} {stderr}");
    let csv = std::fs::read_to_string(&out).expect("exported file");
    assert!(csv.contains("admin") && !csv.contains("argon2"), "{csv}");
    let (ok, stdout, stderr) = node.cli(&["sync"]).await;
    assert!(ok, "sync through the node: {stdout} {stderr}");
    node.terminate().await;
    assert!(!token_file.exists(), "serve.token removed at a clean stop");
}

#[tokio::test]
async fn without_a_configured_password_the_first_admins_is_printed_once() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let data = tempfile::TempDir::new().expect("a data folder");
    let spawn = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_crm-node"))
            .arg("serve")
            .arg("--data")
            .arg(data.path())
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("CRM_ADMIN_PASSWORD")
            .env_remove("CRM_DATA")
            .env_remove("CRM_LISTEN")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn crm-node")
    };
    let mut child = spawn();
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let password = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = stderr.next_line().await.expect("read stderr") {
            if let Some(rest) =
                line.strip_prefix("crm-node: created the user `admin` with password ")
            {
                return rest.trim().to_owned();
            }
        }
        panic!("the node exited without printing the admin's password");
    })
    .await
    .expect("the password line within 20 s");
    assert!(
        password.len() >= 16,
        "a weak generated password: {password}"
    );
    let url = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = stdout.next_line().await.expect("read stdout") {
            if let Some(url) = line.strip_prefix("crm-node listening on ") {
                return url.trim().to_owned();
            }
        }
        panic!("no listening line");
    })
    .await
    .expect("the listening line within 20 s");
    let login = http_client(HeaderMap::new())
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({"login": "admin", "password": password}))
        .send()
        .await
        .expect("log in");
    assert_eq!(login.status().as_u16(), 200);
    child.kill().await.expect("stop the node");

    // The next start has an admin: nothing is created or printed.
    let mut child = spawn();
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let stderr = child.stderr.take().expect("stderr");
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = stdout.next_line().await.expect("read stdout") {
            if line.starts_with("crm-node listening on ") {
                return;
            }
        }
        panic!("no listening line");
    })
    .await
    .expect("the listening line within 20 s");
    child.kill().await.expect("stop the node");
    let mut rest = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut BufReader::new(stderr), &mut rest)
        .await
        .expect("read stderr");
    assert!(!rest.contains("created the user"), "{rest}");
}
