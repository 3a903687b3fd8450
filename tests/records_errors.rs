//! Every error status of the API contract, table-driven against a real node:
//! each bad request must get `application/problem+json` whose `status` equals
//! the HTTP status (422s name the offending field in `errors[].field`), and
//! must change nothing (lists compared before and after). See
//! README.md, section "Errors".

mod common;

use reqwest::header::{CONTENT_TYPE, IF_MATCH};
use reqwest::Method;
use serde_json::{json, Value};

use common::{create, id_of, list_all, TestNode};

/// A 422 for INN length against `client_type` may name either field.
const INN: &[&str] = &["tax_id", "client_type"];

/// (request as "METHOD path under /api/v1/", body sent as JSON when not empty,
/// expected status, fields one of which a 422's `errors[].field` must name).
/// `{acme}`, `{contact}`, `{gone}` (deleted) and `{missing}` (never existed)
/// stand for fixture ids.
type Row = (&'static str, &'static str, u16, &'static [&'static str]);

// One row per line is the point of a table.
#[rustfmt::skip]
const ROWS: &[Row] = &[
    // Malformed JSON and bodies that are not objects.
    ("POST clients", r#"{"name": "#, 400, &[]),
    ("POST clients", r#"[{"name": "Acme"}]"#, 400, &[]),
    ("POST clients", r#""Acme""#, 400, &[]),
    ("POST clients", "null", 400, &[]),
    ("PATCH clients/{acme}", "{", 400, &[]),
    ("PATCH clients/{acme}", "[]", 400, &[]),
    // Wrong types, bad enum values, bad dates.
    ("POST clients", r#"{"name": 5}"#, 422, &["name"]),
    ("POST clients", r#"{"name": "A", "tags": "vip"}"#, 422, &["tags"]),
    ("POST clients", r#"{"name": "A", "tags": [1]}"#, 422, &["tags"]),
    ("POST clients", r#"{"name": "A", "city": {"a": 1}}"#, 422, &["city"]),
    ("POST clients", r#"{"name": "A", "stage": "won"}"#, 422, &["stage"]),
    ("POST clients", r#"{"name": "A", "client_type": "corp"}"#, 422, &["client_type"]),
    ("PATCH clients/{acme}", r#"{"stage": "won"}"#, 422, &["stage"]),
    ("POST contacts", r#"{"client_id": "{acme}", "last_name": "P", "birthday": "31.12.1990"}"#, 422, &["birthday"]),
    ("POST contacts", r#"{"client_id": "{acme}", "last_name": "P", "birthday": "1990-02-30"}"#, 422, &["birthday"]),
    ("POST contacts", r#"{"client_id": "{acme}", "last_name": "P", "preferred_channel": "fax"}"#, 422, &["preferred_channel"]),
    // Email, phone, INN (checksums: 7707083893 and 500100732259 are valid).
    ("POST clients", r#"{"name": "A", "email": "not-an-email"}"#, 422, &["email"]),
    ("POST clients", r#"{"name": "A", "email": "a@"}"#, 422, &["email"]),
    ("POST clients", r#"{"name": "A", "phone": "12ab"}"#, 422, &["phone"]),
    ("POST clients", r#"{"name": "A", "phone": "123"}"#, 422, &["phone"]),
    ("POST clients", r#"{"name": "A", "tax_id": "7707083894"}"#, 422, &["tax_id"]),
    ("POST clients", r#"{"name": "A", "tax_id": "500100732258"}"#, 422, &["tax_id"]),
    ("POST clients", r#"{"name": "A", "tax_id": "12345"}"#, 422, &["tax_id"]),
    ("POST clients", r#"{"name": "A", "tax_id": "77070838AB"}"#, 422, &["tax_id"]),
    ("POST clients", r#"{"name": "A", "client_type": "company", "tax_id": "500100732259"}"#, 422, INN),
    ("POST clients", r#"{"name": "A", "client_type": "person", "tax_id": "7707083893"}"#, 422, INN),
    ("PATCH clients/{acme}", r#"{"tax_id": "500100732259"}"#, 422, INN),
    ("PATCH clients/{acme}", r#"{"client_type": "person"}"#, 422, INN),
    // Required fields missing or nulled.
    ("POST clients", "{}", 422, &["name"]),
    ("POST clients", r#"{"city": "Moscow"}"#, 422, &["name"]),
    ("POST clients", r#"{"name": null}"#, 422, &["name"]),
    ("PATCH clients/{acme}", r#"{"name": null}"#, 422, &["name"]),
    ("POST contacts", r#"{"client_id": "{acme}"}"#, 422, &["last_name"]),
    ("POST contacts", r#"{"last_name": "P"}"#, 422, &["client_id"]),
    ("PATCH contacts/{contact}", r#"{"last_name": null}"#, 422, &["last_name"]),
    // Unknown and read-only fields.
    ("POST clients", r#"{"name": "A", "colour": "red"}"#, 422, &["colour"]),
    ("PATCH clients/{acme}", r#"{"colour": "red"}"#, 422, &["colour"]),
    ("POST clients", r#"{"name": "A", "id": "{missing}"}"#, 422, &["id"]),
    ("POST clients", r#"{"name": "A", "created_at": "2024-01-01T00:00:00Z"}"#, 422, &["created_at"]),
    ("POST clients", r#"{"name": "A", "updated_at": "2024-01-01T00:00:00Z"}"#, 422, &["updated_at"]),
    ("POST clients", r#"{"name": "A", "version": ["00"]}"#, 422, &["version"]),
    ("PATCH clients/{acme}", r#"{"id": "{missing}"}"#, 422, &["id"]),
    ("PATCH clients/{acme}", r#"{"created_at": "2024-01-01T00:00:00Z"}"#, 422, &["created_at"]),
    // References to clients that are missing, deleted or not ids.
    ("POST contacts", r#"{"client_id": "{missing}", "last_name": "P"}"#, 422, &["client_id"]),
    ("POST contacts", r#"{"client_id": "{gone}", "last_name": "P"}"#, 422, &["client_id"]),
    ("POST contacts", r#"{"client_id": "abc", "last_name": "P"}"#, 422, &["client_id"]),
    ("PATCH contacts/{contact}", r#"{"client_id": "{missing}"}"#, 422, &["client_id"]),
    // Sales: integer ranges, money, references to the right kind.
    ("POST deals", r#"{"client_id": "{acme}", "title": "T", "probability": 101}"#, 422, &["probability"]),
    ("POST deals", r#"{"client_id": "{acme}", "title": "T", "probability": -1}"#, 422, &["probability"]),
    ("POST deals", r#"{"client_id": "{acme}", "title": "T", "amount": 100}"#, 422, &["amount"]),
    ("POST deals", r#"{"client_id": "{acme}", "title": "T", "stage": "potential"}"#, 422, &["stage"]),
    ("POST deals", r#"{"title": "T"}"#, 422, &["client_id"]),
    ("POST invoices", r#"{"client_id": "{acme}", "number": "1"}"#, 422, &["issued_on"]),
    ("POST invoices", r#"{"client_id": "{acme}", "number": "1", "issued_on": "2026-11-27", "deal_id": "{acme}"}"#, 422, &["deal_id"]),
    ("POST invoice_lines", r#"{"invoice_id": "{missing}", "item": "A", "quantity": 1, "price": {"minor": 100, "currency": "RUB"}}"#, 422, &["invoice_id"]),
    // Malformed, unknown and deleted ids; unknown collections.
    ("GET clients/not-a-uuid", "", 400, &[]),
    ("PATCH clients/not-a-uuid", r#"{"city": "Kazan"}"#, 400, &[]),
    ("DELETE clients/not-a-uuid", "", 400, &[]),
    ("POST clients/not-a-uuid/restore", "", 400, &[]),
    ("GET clients/not-a-uuid/history", "", 400, &[]),
    ("GET clients/{missing}", "", 404, &[]),
    ("PATCH clients/{missing}", r#"{"city": "Kazan"}"#, 404, &[]),
    ("DELETE clients/{missing}", "", 404, &[]),
    ("POST clients/{missing}/restore", "", 404, &[]),
    ("GET clients/{missing}/history", "", 404, &[]),
    ("GET clients/{gone}", "", 410, &[]),
    ("PATCH clients/{gone}", r#"{"city": "Kazan"}"#, 410, &[]),
    ("DELETE clients/{gone}", "", 410, &[]),
    ("GET widgets", "", 404, &[]),
    ("POST widgets", r#"{"name": "A"}"#, 404, &[]),
    ("GET widgets/{missing}", "", 404, &[]),
    // List parameters: unknown, not indexed, wrong operator or value, bad cursor.
    ("GET clients?colour=red", "", 400, &[]),
    ("GET clients?website=x.ru", "", 400, &[]),
    ("GET clients?notes=hello", "", 400, &[]),
    ("GET clients?name.gt=A", "", 400, &[]),
    ("GET clients?city.between=a", "", 400, &[]),
    ("GET clients?created_at.gt=yesterday", "", 400, &[]),
    ("GET clients?stage=won", "", 400, &[]),
    ("GET clients?sort=website", "", 400, &[]),
    ("GET clients?sort=bogus", "", 400, &[]),
    ("GET clients?cursor=garbage", "", 400, &[]),
    ("GET contacts?birthday.gte=1990-13-01", "", 400, &[]),
    ("GET contacts?birthday.prefix=1990", "", 400, &[]),
    ("GET contacts?client_id=abc", "", 400, &[]),
    // Search without words.
    ("GET search?q=", "", 400, &[]),
    ("GET search", "", 400, &[]),
];

/// (request, content type or none, body, expected status): the media type is
/// what is wrong.
#[rustfmt::skip]
const MEDIA_ROWS: &[(&str, Option<&str>, &str, u16)] = &[
    ("POST clients", Some("text/plain"), r#"{"name": "Acme"}"#, 415),
    ("POST clients", Some("application/x-www-form-urlencoded"), "name=Acme", 415),
    ("POST clients", None, r#"{"name": "Acme"}"#, 415),
    ("PATCH clients/{acme}", Some("text/plain"), r#"{"city": "Kazan"}"#, 415),
];

/// One bad request and the error it must get.
struct Case {
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    if_match: Option<String>,
    body: Vec<u8>,
    status: u16,
    fields: &'static [&'static str],
}

impl Case {
    /// `request` is "METHOD path-under-/api/v1/"; a non-empty body goes as JSON.
    fn new(request: &str, body: Vec<u8>, status: u16, fields: &'static [&'static str]) -> Case {
        let (method, path) = request.split_once(' ').expect("request is METHOD PATH");
        Case {
            method: Method::from_bytes(method.as_bytes()).expect("a valid method"),
            path: format!("/api/v1/{path}"),
            content_type: (!body.is_empty()).then_some("application/json"),
            if_match: None,
            body,
            status,
            fields,
        }
    }

    fn label(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let short: String = body.chars().take(80).collect();
        format!("{} {} {short}", self.method, self.path)
    }
}

/// Ids of the records the cases refer to.
struct Fixture {
    acme: String,
    contact: String,
    gone: String,
    missing: String,
    stale_etag: String,
}

impl Fixture {
    async fn create(node: &TestNode) -> Fixture {
        let body = json!({"name": "Acme", "client_type": "company", "tax_id": "7707083893"});
        let acme = node.post_json("/api/v1/clients", &body).await;
        acme.expect_status(201, "create fixture client");
        let id = id_of(&acme.json);
        node.patch_json(
            &format!("/api/v1/clients/{id}"),
            &json!({"city": "Moscow"}),
            None,
        )
        .await
        .expect_status(200, "move the ETag on");
        let contact = create(node, "contacts", json!({"client_id": id, "last_name": "P"})).await;
        let gone = id_of(&create(node, "clients", json!({"name": "Gone"})).await);
        node.delete(&format!("/api/v1/clients/{gone}"))
            .await
            .expect_status(204, "delete fixture client");
        Fixture {
            acme: id,
            contact: id_of(&contact),
            gone,
            missing: uuid::Uuid::now_v7().to_string(),
            stale_etag: acme.etag().expect("POST sets ETag").to_owned(),
        }
    }

    fn expand(&self, text: &str) -> String {
        text.replace("{acme}", &self.acme)
            .replace("{contact}", &self.contact)
            .replace("{gone}", &self.gone)
            .replace("{missing}", &self.missing)
    }

    /// Every case: the tables plus those built from lengths and fixture state.
    fn cases(&self) -> Vec<Case> {
        let mut cases: Vec<Case> = ROWS
            .iter()
            .map(|(request, body, status, fields)| {
                Case::new(
                    &self.expand(request),
                    self.expand(body).into_bytes(),
                    *status,
                    fields,
                )
            })
            .collect();
        for (request, content_type, body, status) in MEDIA_ROWS {
            let mut case = Case::new(
                &self.expand(request),
                body.as_bytes().to_vec(),
                *status,
                &[],
            );
            case.content_type = *content_type;
            cases.push(case);
        }
        let long = |n: usize| "x".repeat(n);
        let too_long: [(Value, &'static [&'static str]); 4] = [
            (json!({"name": long(301)}), &["name"]),
            (json!({"name": "A", "city": long(101)}), &["city"]),
            (json!({"name": "A", "tags": [long(101)]}), &["tags"]),
            (json!({"name": "A", "notes": long(20_001)}), &["notes"]),
        ];
        for (body, fields) in too_long {
            cases.push(Case::new("POST clients", to_bytes(&body), 422, fields));
        }
        let huge = json!({"name": "Huge", "notes": long(1_100_000)});
        cases.push(Case::new("POST clients", to_bytes(&huge), 413, &[]));
        let stale = format!("PATCH clients/{}", self.acme);
        let mut case = Case::new(&stale, br#"{"city": "Kazan"}"#.to_vec(), 412, &[]);
        case.if_match = Some(self.stale_etag.clone());
        cases.push(case);
        cases
    }
}

fn to_bytes(body: &Value) -> Vec<u8> {
    serde_json::to_vec(body).expect("serialize a JSON value")
}

/// Everything a request could change, as lists of records in a fixed order.
async fn snapshot(node: &TestNode) -> Vec<Vec<Value>> {
    let mut all = Vec::new();
    for collection in ["clients", "contacts", "deals", "invoices", "invoice_lines"] {
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
    let named = resp.error_fields();
    if case.status == 422 && !named.iter().any(|f| case.fields.contains(&f.as_str())) {
        let want = case.fields;
        return Some(format!(
            "errors[].field {named:?} names none of {want:?}: {}",
            resp.text
        ));
    }
    None
}

#[tokio::test]
async fn every_error_is_problem_json_and_changes_nothing() {
    let node = TestNode::start().await;
    let fixture = Fixture::create(&node).await;
    let cases = fixture.cases();
    let mut failures = Vec::new();
    let mut before = snapshot(&node).await;
    for case in &cases {
        if let Some(wrong) = check(&node, case).await {
            failures.push(format!("{}: {wrong}", case.label()));
        }
        let after = snapshot(&node).await;
        if after != before {
            failures.push(format!(
                "{}: the request changed stored records",
                case.label()
            ));
            before = after;
        }
    }
    assert_eq!(before[0].len(), 1, "only the fixture client is listed");
    assert_eq!(before[1].len(), 1, "only the fixture contact is listed");
    let count = failures.len();
    let all = cases.len();
    assert!(
        failures.is_empty(),
        "{count} of {all} cases failed:\n{}",
        failures.join("\n")
    );
}
