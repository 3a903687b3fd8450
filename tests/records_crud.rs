//! Record lifecycle over the HTTP API against a real node: create, read,
//! merge-patch (with `If-Match`), delete, restore for clients and contacts;
//! defaults, phone and email normalisation in filters, history, persistence
//! across a restart, and graceful SIGTERM shutdown. See the API section of README.md.

mod common;

use chrono::DateTime;
use serde_json::{json, Value};

use common::{create, id_of, list_ids, search_ids, sorted, TestNode};

/// Declared field names of a collection, from the schema compiled into the node.
fn declared_fields(collection: &str) -> Vec<String> {
    let schema = crm_schema::Schema::builtin().expect("built-in schema parses");
    let kind = schema.kind(collection).expect("collection is declared");
    kind.fields.iter().map(|f| f.name.clone()).collect()
}

fn parse_time(record: &Value, member: &str) -> DateTime<chrono::FixedOffset> {
    let text = record[member]
        .as_str()
        .unwrap_or_else(|| panic!("{member} is not a string in {record}"));
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{member} {text:?} is not RFC 3339: {e}"))
}

/// Checks the record JSON shape of the contract and that `etag` is the
/// quoted, dot-joined `version`.
fn assert_record_shape(record: &Value, collection: &str, etag: Option<&str>) {
    let id = id_of(record);
    let uuid =
        uuid::Uuid::parse_str(&id).unwrap_or_else(|e| panic!("id {id:?} is not a UUID: {e}"));
    assert_eq!(uuid.get_version_num(), 7, "id {id} is not a UUIDv7");
    for field in declared_fields(collection) {
        assert!(
            record.get(&field).is_some(),
            "declared field {field} missing from {record}"
        );
    }
    parse_time(record, "created_at");
    parse_time(record, "updated_at");
    let heads: Vec<&str> = record["version"]
        .as_array()
        .unwrap_or_else(|| panic!("version is not an array in {record}"))
        .iter()
        .map(|h| h.as_str().expect("version heads are strings"))
        .collect();
    assert!(!heads.is_empty(), "version has no heads: {record}");
    for head in &heads {
        assert!(
            !head.is_empty() && head.chars().all(|c| c.is_ascii_hexdigit()),
            "version head {head:?} is not hex"
        );
    }
    assert_eq!(
        etag,
        Some(format!("\"{}\"", heads.join(".")).as_str()),
        "ETag vs version of {record}"
    );
    assert!(
        record.get("conflicts").is_none(),
        "a single node shows no conflicts: {record}"
    );
}

fn record_path(collection: &str, id: &str) -> String {
    format!("/api/v1/{collection}/{id}")
}

#[tokio::test]
async fn client_create_applies_defaults_and_reads_back() {
    let node = TestNode::start().await;
    let body = json!({
        "name": "Acme", "city": "Moscow", "tags": ["vip", "b2b"], "tax_id": "7707083893",
        "client_type": "company", "notes": "first call went well"
    });
    let resp = node.post_json("/api/v1/clients", &body).await;
    resp.expect_status(201, "create client");
    let record = resp.json.clone();
    let id = id_of(&record);
    assert_eq!(
        resp.header("location"),
        Some(record_path("clients", &id).as_str())
    );
    assert_record_shape(&record, "clients", resp.etag());
    assert_eq!(record["stage"], "potential", "default stage");
    assert_eq!(
        record["tags"],
        json!(["b2b", "vip"]),
        "sets are sorted arrays"
    );
    assert_eq!(record["notes"], "first call went well");
    assert_eq!(record["tax_id"], "7707083893");
    assert_eq!(record["email"], Value::Null, "unset fields are null");
    assert_eq!(record["importance"], Value::Null);
    assert_eq!(record["created_at"], record["updated_at"]);

    let got = node.get(&record_path("clients", &id)).await;
    got.expect_status(200, "get client");
    assert_eq!(got.json, record, "GET shows what POST returned");
    assert_eq!(got.etag(), resp.etag());
    // GET sends the stored text as it is: the same bytes as the JSON that
    // POST wrote out from the record's value.
    assert_eq!(got.text, resp.text, "GET answers POST's bytes");
    assert_eq!(got.header("content-type"), Some("application/json"));

    // Lengths count characters, not bytes: 300 Cyrillic letters fit `name`.
    let long = create(&node, "clients", json!({"name": "Я".repeat(300)})).await;
    assert_eq!(long["name"].as_str().map(|s| s.chars().count()), Some(300));
    assert_eq!(long["tags"], json!([]), "an empty set is []");
}

#[tokio::test]
async fn contact_create_reads_back() {
    let node = TestNode::start().await;
    let client = create(&node, "clients", json!({"name": "Acme"})).await;
    let body = json!({
        "client_id": id_of(&client), "last_name": "Иванов", "first_name": "Иван",
        "birthday": "1985-06-15", "preferred_channel": "email"
    });
    let resp = node.post_json("/api/v1/contacts", &body).await;
    resp.expect_status(201, "create contact");
    let id = id_of(&resp.json);
    assert_eq!(
        resp.header("location"),
        Some(record_path("contacts", &id).as_str())
    );
    assert_record_shape(&resp.json, "contacts", resp.etag());
    for (field, value) in body.as_object().expect("literal object") {
        assert_eq!(&resp.json[field], value, "contact field {field}");
    }
    assert_eq!(resp.json["middle_name"], Value::Null);
    let got = node.get(&record_path("contacts", &id)).await;
    got.expect_status(200, "get contact");
    assert_eq!(got.json, resp.json);
}

/// Create, patch (merge, null clears, `If-Match`), delete, restore one record,
/// checking lists and search at each step. `changes` are the expected values
/// after `patch`; `word` finds the record in search.
async fn lifecycle(
    node: &TestNode,
    collection: &str,
    body: Value,
    patch: Value,
    changes: Value,
    word: &str,
) {
    let created = node
        .post_json(&format!("/api/v1/{collection}"), &body)
        .await;
    created.expect_status(201, "create");
    let id = id_of(&created.json);
    let path = record_path(collection, &id);
    let first_etag = created.etag().expect("POST sets ETag").to_owned();

    let patched = node.patch_json(&path, &patch, Some(&first_etag)).await;
    patched.expect_status(200, "patch with a fresh If-Match");
    assert_record_shape(&patched.json, collection, patched.etag());
    let fresh_etag = patched.etag().expect("PATCH sets ETag").to_owned();
    assert_ne!(fresh_etag, first_etag, "a change moves the ETag");
    for (field, value) in changes.as_object().expect("changes is an object") {
        assert_eq!(&patched.json[field], value, "{field} after patch");
    }
    for (field, value) in body.as_object().expect("body is an object") {
        if changes.get(field).is_none() {
            assert_eq!(&patched.json[field], value, "{field} untouched by patch");
        }
    }
    assert_eq!(patched.json["created_at"], created.json["created_at"]);
    assert!(parse_time(&patched.json, "updated_at") >= parse_time(&created.json, "updated_at"));

    let stale = node
        .patch_json(&path, &json!({"notes": "lost update"}), Some(&first_etag))
        .await;
    stale.expect_problem(412, "patch with a stale If-Match");
    let after_stale = node.get(&path).await;
    after_stale.expect_status(200, "get after 412");
    assert_eq!(after_stale.json, patched.json, "412 changed nothing");
    assert_eq!(after_stale.etag(), Some(fresh_etag.as_str()));

    assert!(
        list_ids(node, collection, &[]).await.contains(&id),
        "listed before delete"
    );
    assert!(
        search_ids(node, word).await.contains(&id),
        "found by {word:?} before delete"
    );

    node.delete(&path).await.expect_status(204, "delete");
    node.get(&path)
        .await
        .expect_problem(410, "get after delete");
    node.patch_json(&path, &json!({"notes": "x"}), None)
        .await
        .expect_problem(410, "patch deleted");
    assert!(
        !list_ids(node, collection, &[]).await.contains(&id),
        "deleted record listed"
    );
    assert!(
        !search_ids(node, word).await.contains(&id),
        "deleted record found by search"
    );
    node.delete(&path).await.expect_problem(410, "delete twice");

    let restored = node.post_empty(&format!("{path}/restore")).await;
    restored.expect_status(200, "restore");
    assert_eq!(id_of(&restored.json), id);
    for (field, value) in changes.as_object().expect("changes is an object") {
        assert_eq!(&restored.json[field], value, "{field} after restore");
    }
    let got = node.get(&path).await;
    got.expect_status(200, "get after restore");
    assert_eq!(got.json, restored.json);
    assert!(
        list_ids(node, collection, &[]).await.contains(&id),
        "restored record not listed"
    );
    assert!(
        search_ids(node, word).await.contains(&id),
        "restored record not found"
    );
}

#[tokio::test]
async fn client_lifecycle() {
    let node = TestNode::start().await;
    let body = json!({"name": "Ромашка Trade", "city": "Moscow", "email": "info@romashka.ru", "tags": ["vip"]});
    let patch = json!({"city": "Kazan", "email": null, "tags": ["b2b", "new"]});
    let changes =
        json!({"city": "Kazan", "email": null, "tags": ["b2b", "new"], "stage": "potential"});
    lifecycle(&node, "clients", body, patch, changes, "ромашка").await;
}

#[tokio::test]
async fn contact_lifecycle() {
    let node = TestNode::start().await;
    let client = create(&node, "clients", json!({"name": "Acme"})).await;
    let body = json!({
        "client_id": id_of(&client), "last_name": "Petrov", "first_name": "Ivan",
        "position": "CEO", "email": "ivan@acme.ru"
    });
    let patch = json!({"position": "CTO", "email": null});
    let changes = json!({"position": "CTO", "email": null});
    lifecycle(&node, "contacts", body, patch, changes, "petrov").await;
}

#[tokio::test]
async fn deal_and_invoice_lifecycles() {
    let node = TestNode::start().await;
    let client = id_of(&create(&node, "clients", json!({"name": "Acme"})).await);
    let amount = json!({"minor": 150_000_000, "currency": "RUB"});
    lifecycle(
        &node,
        "deals",
        json!({"client_id": client, "title": "Поставка серверов", "amount": amount, "probability": 40}),
        json!({"stage": "won", "probability": 100}),
        json!({"stage": "won", "probability": 100}),
        "серверов",
    )
    .await;
    lifecycle(
        &node,
        "invoices",
        json!({"client_id": client, "number": "СЧ-0000042", "issued_on": "2026-11-27", "total": amount}),
        json!({"status": "paid", "paid": amount, "paid_on": "2026-11-30"}),
        json!({"status": "paid", "paid": amount, "paid_on": "2026-11-30"}),
        "0000042",
    )
    .await;
}

#[tokio::test]
async fn sales_records_take_defaults_and_lines_list_by_invoice() {
    let node = TestNode::start().await;
    let client = id_of(&create(&node, "clients", json!({"name": "Acme"})).await);
    let deal = create(
        &node,
        "deals",
        json!({"client_id": client, "title": "Пилот"}),
    )
    .await;
    assert_eq!(deal["stage"], "evaluation");
    let invoice = |number: &str| json!({"client_id": client, "deal_id": id_of(&deal), "number": number, "issued_on": "2026-11-27"});
    let first = create(&node, "invoices", invoice("1")).await;
    assert_eq!(first["status"], "draft");
    let other = create(&node, "invoices", invoice("2")).await;
    let price = json!({"minor": 250_000, "currency": "RUB"});
    for (invoice, position) in [(&first, 2), (&other, 1), (&first, 1), (&first, 3)] {
        let line = json!({
            "invoice_id": id_of(invoice), "position": position, "item": "Консультация",
            "quantity": 2, "unit": "ч", "price": price,
        });
        create(&node, "invoice_lines", line).await;
    }
    let invoice_id = id_of(&first);
    let lines = common::list_all(
        &node,
        "invoice_lines",
        &[("invoice_id", invoice_id.as_str()), ("sort", "position")],
    )
    .await;
    let positions: Vec<&Value> = lines.iter().map(|l| &l["position"]).collect();
    assert_eq!(positions, [&json!(1), &json!(2), &json!(3)]);
    assert!(lines.iter().all(|l| l["invoice_id"] == json!(invoice_id)));

    // The probability's range is in the OpenAPI description, wherever a
    // schema has the field.
    let openapi = node.get("/api/v1/openapi.json").await;
    openapi.expect_status(200, "openapi");
    let schemas = openapi.json["components"]["schemas"]
        .as_object()
        .expect("component schemas");
    let ranges: Vec<(&Value, &Value)> = schemas
        .values()
        .filter_map(|schema| schema["properties"].get("probability"))
        .map(|p| (&p["minimum"], &p["maximum"]))
        .collect();
    assert!(!ranges.is_empty(), "no schema describes probability");
    assert!(
        ranges.iter().all(|r| *r == (&json!(0), &json!(100))),
        "{ranges:?}"
    );
}

#[tokio::test]
async fn null_clears_a_set_to_empty() {
    let node = TestNode::start().await;
    let client = create(
        &node,
        "clients",
        json!({"name": "Acme", "tags": ["a"], "industry": "IT"}),
    )
    .await;
    let path = record_path("clients", &id_of(&client));
    let resp = node
        .patch_json(&path, &json!({"tags": null, "industry": null}), None)
        .await;
    resp.expect_status(200, "clear tags and industry");
    assert_eq!(resp.json["tags"], json!([]));
    assert_eq!(resp.json["industry"], Value::Null);
    assert_eq!(resp.json["name"], "Acme");
}

#[tokio::test]
async fn phones_are_shown_as_entered_and_filtered_normalised() {
    let node = TestNode::start().await;
    let mobile = create(
        &node,
        "clients",
        json!({"name": "Mobile", "phone": "+7 (912) 345-67-89"}),
    )
    .await;
    let office = create(
        &node,
        "clients",
        json!({"name": "Office", "phone": "+7 495 123-45-67"}),
    )
    .await;
    let got = node.get(&record_path("clients", &id_of(&mobile))).await;
    assert_eq!(
        got.json["phone"], "+7 (912) 345-67-89",
        "phone shown as entered"
    );
    for query in ["8 912 345 67 89", "+79123456789", "+7 (912) 345-67-89"] {
        let ids = list_ids(&node, "clients", &[("phone", query)]).await;
        assert_eq!(ids, vec![id_of(&mobile)], "phone={query}");
    }
    let ids = list_ids(&node, "clients", &[("phone", "8 (495) 1234567")]).await;
    assert_eq!(ids, vec![id_of(&office)]);

    let contact = create(
        &node,
        "contacts",
        json!({"client_id": id_of(&office), "last_name": "Sidorov", "phone": "8 912 345 67 89"}),
    )
    .await;
    assert_eq!(contact["phone"], "8 912 345 67 89");
    let ids = list_ids(&node, "contacts", &[("phone", "+7 (912) 345-67-89")]).await;
    assert_eq!(ids, vec![id_of(&contact)]);
}

#[tokio::test]
async fn email_filter_is_case_insensitive() {
    let node = TestNode::start().await;
    let ivan = create(
        &node,
        "clients",
        json!({"name": "Ivan", "email": "Ivan.Petrov@Example.RU"}),
    )
    .await;
    create(
        &node,
        "clients",
        json!({"name": "Other", "email": "other@example.ru"}),
    )
    .await;
    assert_eq!(
        ivan["email"], "Ivan.Petrov@Example.RU",
        "email shown as entered"
    );
    for query in [
        "ivan.petrov@example.ru",
        "IVAN.PETROV@EXAMPLE.RU",
        "Ivan.Petrov@Example.RU",
    ] {
        let ids = list_ids(&node, "clients", &[("email", query)]).await;
        assert_eq!(ids, vec![id_of(&ivan)], "email={query}");
    }
}

fn has_change(item: &Value, field: &str, from: Value, to: Value) -> bool {
    let wanted = json!({"field": field, "from": from, "to": to});
    item["fields"]
        .as_array()
        .is_some_and(|fields| fields.contains(&wanted))
}

#[tokio::test]
async fn history_shows_who_what_from_to() {
    let node = TestNode::start().await;
    let health = node.get("/healthz").await;
    health.expect_status(200, "healthz");
    let node_id = health.json["node_id"]
        .as_str()
        .expect("healthz names the node")
        .to_owned();
    assert_eq!(
        health.json["optimizing_search_index"],
        json!(false),
        "a new node has nothing to optimize"
    );

    let client = create(&node, "clients", json!({"name": "Acme", "city": "Moscow"})).await;
    let path = record_path("clients", &id_of(&client));
    node.patch_json(&path, &json!({"city": "Kazan"}), None)
        .await
        .expect_status(200, "patch");
    node.delete(&path).await.expect_status(204, "delete");

    let resp = node.get(&format!("{path}/history")).await;
    resp.expect_status(200, "history of a deleted record");
    let items = resp.json["items"].as_array().expect("history has items");
    assert_eq!(items.len(), 3, "create, patch, delete: {}", resp.text);
    for item in items {
        let change = item["change"].as_str().expect("change is a string");
        assert!(
            !change.is_empty() && change.chars().all(|c| c.is_ascii_hexdigit()),
            "change {change:?}"
        );
        parse_time(item, "at");
        assert_eq!(item["node"], node_id.as_str(), "who: node");
        assert!(
            item["user"].as_str().is_some_and(|u| !u.is_empty()),
            "who: user in {item}"
        );
    }
    assert!(
        has_change(&items[0], "city", Value::Null, json!("Moscow")),
        "{}",
        items[0]
    );
    assert!(
        has_change(&items[0], "name", Value::Null, json!("Acme")),
        "{}",
        items[0]
    );
    assert!(
        has_change(&items[1], "city", json!("Moscow"), json!("Kazan")),
        "{}",
        items[1]
    );
    assert!(
        has_change(&items[2], "deleted", json!(false), json!(true)),
        "{}",
        items[2]
    );
    assert!(
        parse_time(&items[0], "at") <= parse_time(&items[2], "at"),
        "oldest first"
    );
}

#[tokio::test]
async fn records_survive_a_graceful_restart() {
    let mut node = TestNode::start().await;
    let client = create(
        &node,
        "clients",
        json!({"name": "Ромашка", "city": "Moscow", "tags": ["vip"]}),
    )
    .await;
    let client_path = record_path("clients", &id_of(&client));
    node.patch_json(&client_path, &json!({"stage": "regular"}), None)
        .await
        .expect_status(200, "patch");
    let contact = create(
        &node,
        "contacts",
        json!({"client_id": id_of(&client), "last_name": "Petrov"}),
    )
    .await;
    let contact_path = record_path("contacts", &id_of(&contact));
    let gone = create(&node, "clients", json!({"name": "Gone"})).await;
    let gone_path = record_path("clients", &id_of(&gone));
    node.delete(&gone_path).await.expect_status(204, "delete");

    let before_client = node.get(&client_path).await;
    let before_contact = node.get(&contact_path).await;
    let before_history = node.get(&format!("{client_path}/history")).await;
    let before_list = sorted(list_ids(&node, "clients", &[]).await);

    let status = node.terminate().await;
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM exits 0; stderr:\n{}",
        node.log_tail()
    );
    node.restart().await;

    for (path, before) in [
        (&client_path, &before_client),
        (&contact_path, &before_contact),
    ] {
        let after = node.get(path).await;
        after.expect_status(200, "get after restart");
        assert_eq!(after.json, before.json, "{path} after restart");
        assert_eq!(after.etag(), before.etag(), "{path} ETag after restart");
    }
    assert_eq!(before_client.json["stage"], "regular");
    node.get(&gone_path)
        .await
        .expect_problem(410, "deleted stays deleted");
    assert_eq!(sorted(list_ids(&node, "clients", &[]).await), before_list);
    assert_eq!(
        search_ids(&node, "ромашка").await,
        vec![id_of(&client)],
        "search index after restart"
    );
    let after_history = node.get(&format!("{client_path}/history")).await;
    assert_eq!(
        after_history.json, before_history.json,
        "history after restart"
    );
}

#[tokio::test]
async fn healthz_then_sigterm_exits_zero() {
    let mut node = TestNode::start().await;
    let health = node.get("/healthz").await;
    health.expect_status(200, "healthz");
    assert_eq!(health.json["status"], "ok");
    assert_eq!(health.json["name"], node.name());
    assert!(
        health.json["epoch"].is_u64(),
        "epoch is a number: {}",
        health.text
    );
    let node_id = health.json["node_id"]
        .as_str()
        .expect("node_id is a string");
    uuid::Uuid::parse_str(node_id).expect("node_id is a UUID");

    let openapi = node.get("/api/v1/openapi.json").await;
    openapi.expect_status(200, "openapi");
    assert!(
        openapi.json["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "OpenAPI 3.1: {}",
        openapi.text.chars().take(200).collect::<String>()
    );

    let status = node.terminate().await;
    assert!(
        status.success(),
        "SIGTERM exit status {status}; stderr:\n{}",
        node.log_tail()
    );
    assert_eq!(status.code(), Some(0));
}
