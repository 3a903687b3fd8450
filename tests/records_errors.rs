//! Every error status of the API contract, table-driven against a real node:
//! each bad request must get `application/problem+json` whose `status` equals
//! the HTTP status (422s name the offending field in `errors[].field`), and
//! must change nothing (lists compared before and after). See
//! docs/api-contract.md, section "Errors".

mod common;

use reqwest::header::{CONTENT_TYPE, IF_MATCH};
use reqwest::Method;
use serde_json::{json, Value};

use common::{create, id_of, list_all, TestNode};

const JSON: Option<&str> = Some("application/json");

/// One bad request and the error it must get.
struct Case {
    name: String,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    if_match: Option<String>,
    body: Vec<u8>,
    status: u16,
    /// For 422: `errors[].field` must name one of these.
    fields: &'static [&'static str],
}

fn raw(
    name: &str,
    method: Method,
    path: &str,
    content_type: Option<&'static str>,
    body: &[u8],
    status: u16,
) -> Case {
    Case {
        name: name.to_owned(),
        method,
        path: path.to_owned(),
        content_type,
        if_match: None,
        body: body.to_vec(),
        status,
        fields: &[],
    }
}

fn bodyless(name: &str, method: Method, path: &str, status: u16) -> Case {
    raw(name, method, path, None, b"", status)
}

/// A JSON body that must be refused with 422 naming one of `fields`.
fn invalid(
    name: &str,
    method: Method,
    path: &str,
    body: Value,
    fields: &'static [&'static str],
) -> Case {
    let bytes = serde_json::to_vec(&body).expect("serialize a JSON value");
    Case {
        fields,
        ..raw(name, method, path, JSON, &bytes, 422)
    }
}

/// Everything a request could change, as lists of records in a fixed order.
async fn snapshot(node: &TestNode) -> Vec<Vec<Value>> {
    let mut all = Vec::new();
    for collection in ["clients", "contacts"] {
        let mut items = list_all(node, collection, &[("limit", "200")]).await;
        items.sort_by_key(id_of);
        all.push(items);
    }
    all
}

/// Runs one case; returns what is wrong with the response, if anything.
async fn check(node: &TestNode, case: &Case) -> Option<String> {
    let mut request = node.request(case.method.clone(), &case.path);
    if let Some(content_type) = case.content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    if let Some(etag) = &case.if_match {
        request = request.header(IF_MATCH, etag.as_str());
    }
    if !case.body.is_empty() {
        request = request.body(case.body.clone());
    }
    let resp = match node.try_send(request).await {
        Ok(resp) => resp,
        Err(e) => return Some(format!("transport error: {e}")),
    };
    if let Some(wrong) = resp.problem_mismatch(case.status) {
        return Some(wrong);
    }
    if case.status == 422 {
        let named = resp.error_fields();
        if !named.iter().any(|f| case.fields.contains(&f.as_str())) {
            return Some(format!(
                "errors[].field {named:?} names none of {:?}: {}",
                case.fields, resp.text
            ));
        }
    }
    None
}

#[tokio::test]
async fn every_error_is_problem_json_and_changes_nothing() {
    let node = TestNode::start().await;
    let acme = node
        .post_json(
            "/api/v1/clients",
            &json!({"name": "Acme", "client_type": "company", "tax_id": "7707083893"}),
        )
        .await;
    acme.expect_status(201, "create fixture client");
    let stale_etag = acme.etag().expect("POST sets ETag").to_owned();
    let acme_id = id_of(&acme.json);
    let acme_path = format!("/api/v1/clients/{acme_id}");
    node.patch_json(&acme_path, &json!({"city": "Moscow"}), None)
        .await
        .expect_status(200, "move the ETag");
    let contact = create(
        &node,
        "contacts",
        json!({"client_id": acme_id, "last_name": "Petrov"}),
    )
    .await;
    let contact_path = format!("/api/v1/contacts/{}", id_of(&contact));
    let gone_id = id_of(&create(&node, "clients", json!({"name": "Gone"})).await);
    let gone_path = format!("/api/v1/clients/{gone_id}");
    node.delete(&gone_path)
        .await
        .expect_status(204, "delete fixture client");
    let missing_id = uuid::Uuid::now_v7().to_string();
    let missing_path = format!("/api/v1/clients/{missing_id}");

    let clients = "/api/v1/clients";
    let contacts = "/api/v1/contacts";
    let (post, patch, get, delete) = (Method::POST, Method::PATCH, Method::GET, Method::DELETE);
    let long = |n: usize| "x".repeat(n);
    let huge =
        serde_json::to_vec(&json!({"name": "Huge", "notes": long(1_100_000)})).expect("serialize");
    let mut cases = vec![
        raw(
            "malformed JSON",
            post.clone(),
            clients,
            JSON,
            br#"{"name": "#,
            400,
        ),
        raw(
            "array body",
            post.clone(),
            clients,
            JSON,
            br#"[{"name": "Acme"}]"#,
            400,
        ),
        raw(
            "string body",
            post.clone(),
            clients,
            JSON,
            br#""Acme""#,
            400,
        ),
        raw("null body", post.clone(), clients, JSON, b"null", 400),
        raw(
            "text/plain",
            post.clone(),
            clients,
            Some("text/plain"),
            br#"{"name": "Acme"}"#,
            415,
        ),
        raw(
            "form body",
            post.clone(),
            clients,
            Some("application/x-www-form-urlencoded"),
            b"name=Acme",
            415,
        ),
        raw(
            "no content type",
            post.clone(),
            clients,
            None,
            br#"{"name": "Acme"}"#,
            415,
        ),
        raw("body over 1 MiB", post.clone(), clients, JSON, &huge, 413),
        invalid(
            "name is a number",
            post.clone(),
            clients,
            json!({"name": 5}),
            &["name"],
        ),
        invalid(
            "set is a string",
            post.clone(),
            clients,
            json!({"name": "A", "tags": "vip"}),
            &["tags"],
        ),
        invalid(
            "set of numbers",
            post.clone(),
            clients,
            json!({"name": "A", "tags": [1]}),
            &["tags"],
        ),
        invalid(
            "string is an object",
            post.clone(),
            clients,
            json!({"name": "A", "city": {"a": 1}}),
            &["city"],
        ),
        invalid(
            "bad stage",
            post.clone(),
            clients,
            json!({"name": "A", "stage": "won"}),
            &["stage"],
        ),
        invalid(
            "bad client_type",
            post.clone(),
            clients,
            json!({"name": "A", "client_type": "corp"}),
            &["client_type"],
        ),
        invalid(
            "name too long",
            post.clone(),
            clients,
            json!({"name": long(301)}),
            &["name"],
        ),
        invalid(
            "city too long",
            post.clone(),
            clients,
            json!({"name": "A", "city": long(101)}),
            &["city"],
        ),
        invalid(
            "tag too long",
            post.clone(),
            clients,
            json!({"name": "A", "tags": [long(101)]}),
            &["tags"],
        ),
        invalid(
            "notes too long",
            post.clone(),
            clients,
            json!({"name": "A", "notes": long(20_001)}),
            &["notes"],
        ),
        invalid(
            "email without @",
            post.clone(),
            clients,
            json!({"name": "A", "email": "not-an-email"}),
            &["email"],
        ),
        invalid(
            "email without domain",
            post.clone(),
            clients,
            json!({"name": "A", "email": "a@"}),
            &["email"],
        ),
        invalid(
            "phone with letters",
            post.clone(),
            clients,
            json!({"name": "A", "phone": "12ab"}),
            &["phone"],
        ),
        invalid(
            "phone too short",
            post.clone(),
            clients,
            json!({"name": "A", "phone": "123"}),
            &["phone"],
        ),
        invalid(
            "INN checksum",
            post.clone(),
            clients,
            json!({"name": "A", "tax_id": "7707083894"}),
            &["tax_id"],
        ),
        invalid(
            "INN person checksum",
            post.clone(),
            clients,
            json!({"name": "A", "tax_id": "500100732258"}),
            &["tax_id"],
        ),
        invalid(
            "INN length",
            post.clone(),
            clients,
            json!({"name": "A", "tax_id": "12345"}),
            &["tax_id"],
        ),
        invalid(
            "INN letters",
            post.clone(),
            clients,
            json!({"name": "A", "tax_id": "77070838AB"}),
            &["tax_id"],
        ),
        invalid(
            "INN 12 for company",
            post.clone(),
            clients,
            json!({"name": "A", "client_type": "company", "tax_id": "500100732259"}),
            &["tax_id", "client_type"],
        ),
        invalid(
            "INN 10 for person",
            post.clone(),
            clients,
            json!({"name": "A", "client_type": "person", "tax_id": "7707083893"}),
            &["tax_id", "client_type"],
        ),
        invalid("empty object", post.clone(), clients, json!({}), &["name"]),
        invalid(
            "name missing",
            post.clone(),
            clients,
            json!({"city": "Moscow"}),
            &["name"],
        ),
        invalid(
            "name null",
            post.clone(),
            clients,
            json!({"name": null}),
            &["name"],
        ),
        invalid(
            "unknown field",
            post.clone(),
            clients,
            json!({"name": "A", "colour": "red"}),
            &["colour"],
        ),
        invalid(
            "id given",
            post.clone(),
            clients,
            json!({"name": "A", "id": missing_id}),
            &["id"],
        ),
        invalid(
            "created_at given",
            post.clone(),
            clients,
            json!({"name": "A", "created_at": "2024-01-01T00:00:00Z"}),
            &["created_at"],
        ),
        invalid(
            "updated_at given",
            post.clone(),
            clients,
            json!({"name": "A", "updated_at": "2024-01-01T00:00:00Z"}),
            &["updated_at"],
        ),
        invalid(
            "version given",
            post.clone(),
            clients,
            json!({"name": "A", "version": ["00"]}),
            &["version"],
        ),
        invalid(
            "contact without last_name",
            post.clone(),
            contacts,
            json!({"client_id": acme_id}),
            &["last_name"],
        ),
        invalid(
            "contact without client",
            post.clone(),
            contacts,
            json!({"last_name": "P"}),
            &["client_id"],
        ),
        invalid(
            "contact of a missing client",
            post.clone(),
            contacts,
            json!({"client_id": missing_id, "last_name": "P"}),
            &["client_id"],
        ),
        invalid(
            "contact of a deleted client",
            post.clone(),
            contacts,
            json!({"client_id": gone_id, "last_name": "P"}),
            &["client_id"],
        ),
        invalid(
            "client_id not an id",
            post.clone(),
            contacts,
            json!({"client_id": "abc", "last_name": "P"}),
            &["client_id"],
        ),
        invalid(
            "birthday format",
            post.clone(),
            contacts,
            json!({"client_id": acme_id, "last_name": "P", "birthday": "31.12.1990"}),
            &["birthday"],
        ),
        invalid(
            "birthday not a date",
            post.clone(),
            contacts,
            json!({"client_id": acme_id, "last_name": "P", "birthday": "1990-02-30"}),
            &["birthday"],
        ),
        invalid(
            "bad channel",
            post.clone(),
            contacts,
            json!({"client_id": acme_id, "last_name": "P", "preferred_channel": "fax"}),
            &["preferred_channel"],
        ),
        raw(
            "patch malformed JSON",
            patch.clone(),
            &acme_path,
            JSON,
            b"{",
            400,
        ),
        raw("patch array", patch.clone(), &acme_path, JSON, b"[]", 400),
        raw(
            "patch text/plain",
            patch.clone(),
            &acme_path,
            Some("text/plain"),
            br#"{"city": "Kazan"}"#,
            415,
        ),
        invalid(
            "patch nulls required",
            patch.clone(),
            &acme_path,
            json!({"name": null}),
            &["name"],
        ),
        invalid(
            "patch bad enum",
            patch.clone(),
            &acme_path,
            json!({"stage": "won"}),
            &["stage"],
        ),
        invalid(
            "patch id",
            patch.clone(),
            &acme_path,
            json!({"id": missing_id}),
            &["id"],
        ),
        invalid(
            "patch created_at",
            patch.clone(),
            &acme_path,
            json!({"created_at": "2024-01-01T00:00:00Z"}),
            &["created_at"],
        ),
        invalid(
            "patch unknown field",
            patch.clone(),
            &acme_path,
            json!({"colour": "red"}),
            &["colour"],
        ),
        invalid(
            "patch person INN on company",
            patch.clone(),
            &acme_path,
            json!({"tax_id": "500100732259"}),
            &["tax_id", "client_type"],
        ),
        invalid(
            "patch person type on company INN",
            patch.clone(),
            &acme_path,
            json!({"client_type": "person"}),
            &["tax_id", "client_type"],
        ),
        invalid(
            "patch contact to missing client",
            patch.clone(),
            &contact_path,
            json!({"client_id": missing_id}),
            &["client_id"],
        ),
        invalid(
            "patch contact nulls last_name",
            patch.clone(),
            &contact_path,
            json!({"last_name": null}),
            &["last_name"],
        ),
        Case {
            if_match: Some(stale_etag),
            ..raw(
                "stale If-Match",
                patch.clone(),
                &acme_path,
                JSON,
                br#"{"city": "Kazan"}"#,
                412,
            )
        },
        bodyless(
            "get malformed id",
            get.clone(),
            "/api/v1/clients/not-a-uuid",
            400,
        ),
        raw(
            "patch malformed id",
            patch.clone(),
            "/api/v1/clients/not-a-uuid",
            JSON,
            br#"{"city": "Kazan"}"#,
            400,
        ),
        bodyless(
            "delete malformed id",
            delete.clone(),
            "/api/v1/clients/not-a-uuid",
            400,
        ),
        bodyless(
            "restore malformed id",
            post.clone(),
            "/api/v1/clients/not-a-uuid/restore",
            400,
        ),
        bodyless(
            "history malformed id",
            get.clone(),
            "/api/v1/clients/not-a-uuid/history",
            400,
        ),
        bodyless("get unknown id", get.clone(), &missing_path, 404),
        raw(
            "patch unknown id",
            patch.clone(),
            &missing_path,
            JSON,
            br#"{"city": "Kazan"}"#,
            404,
        ),
        bodyless("delete unknown id", delete.clone(), &missing_path, 404),
        bodyless(
            "restore unknown id",
            post.clone(),
            &format!("{missing_path}/restore"),
            404,
        ),
        bodyless(
            "history unknown id",
            get.clone(),
            &format!("{missing_path}/history"),
            404,
        ),
        bodyless("get deleted", get.clone(), &gone_path, 410),
        raw(
            "patch deleted",
            patch.clone(),
            &gone_path,
            JSON,
            br#"{"city": "Kazan"}"#,
            410,
        ),
        bodyless("delete deleted", delete.clone(), &gone_path, 410),
        bodyless(
            "list unknown collection",
            get.clone(),
            "/api/v1/widgets",
            404,
        ),
        raw(
            "create in unknown collection",
            post.clone(),
            "/api/v1/widgets",
            JSON,
            br#"{"name": "A"}"#,
            404,
        ),
        bodyless(
            "get in unknown collection",
            get.clone(),
            &format!("/api/v1/widgets/{missing_id}"),
            404,
        ),
        bodyless("empty search", get.clone(), "/api/v1/search?q=", 400),
        bodyless("search without q", get.clone(), "/api/v1/search", 400),
    ];
    let list_params = [
        "colour=red",
        "website=x.ru",
        "notes=hello",
        "name.gt=A",
        "city.between=a",
        "created_at.gt=yesterday",
        "stage=won",
        "sort=website",
        "sort=bogus",
        "cursor=garbage",
        "limit=1&cursor=%%%",
    ];
    for query in list_params {
        cases.push(bodyless(
            &format!("list ?{query}"),
            get.clone(),
            &format!("{clients}?{query}"),
            400,
        ));
    }
    for query in [
        "birthday.gte=1990-13-01",
        "birthday.prefix=1990",
        "client_id=abc",
    ] {
        cases.push(bodyless(
            &format!("list ?{query}"),
            get.clone(),
            &format!("{contacts}?{query}"),
            400,
        ));
    }

    let mut failures = Vec::new();
    let mut before = snapshot(&node).await;
    for case in &cases {
        if let Some(wrong) = check(&node, case).await {
            failures.push(format!(
                "{} ({} {}): {wrong}",
                case.name, case.method, case.path
            ));
        }
        let after = snapshot(&node).await;
        if after != before {
            failures.push(format!(
                "{} ({} {}): the request changed stored records",
                case.name, case.method, case.path
            ));
            before = after;
        }
    }
    assert_eq!(before[0].len(), 1, "only the fixture client is listed");
    assert_eq!(before[1].len(), 1, "only the fixture contact is listed");
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
