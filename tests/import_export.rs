//! CSV import and export over HTTP and the CLI: a file imports whole or not
//! at all, rejected rows are reported with their line, columns map by name
//! or explicitly, and an export lists every live record.

mod common;

use common::{list_all, TestNode};
use reqwest::Method;

const GOOD: &str = "Название,client_type,tax_id,city,tags\n\
                    ООО «Ромашка»,company,7707083893,Казань,vip;опт\n\
                    \"Acme, Ltd\",company,,London,\n\
                    ИП Петров,person,,Самара,\n";

async fn import(node: &TestNode, query: &str, csv: &str) -> common::Resp {
    node.send(
        node.request(Method::POST, &format!("/api/v1/import/clients{query}"))
            .header("content-type", "text/csv")
            .body(csv.to_owned()),
    )
    .await
}

#[tokio::test]
async fn a_file_imports_whole_or_not_at_all_and_exports_back() {
    let node = TestNode::start().await;

    // An unmapped column is refused before any row is looked at.
    import(&node, "", GOOD)
        .await
        .expect_problem(400, "unmapped column");

    // One bad row: nothing is imported, the row is named with its line.
    let bad = format!("{GOOD}Без типа,robot,,Омск,\n");
    let resp = import(
        &node,
        "?map=%D0%9D%D0%B0%D0%B7%D0%B2%D0%B0%D0%BD%D0%B8%D0%B5:name",
        &bad,
    )
    .await;
    resp.expect_problem(422, "bad row");
    assert_eq!(resp.json["rejected_count"], 1, "{}", resp.text);
    assert_eq!(resp.json["rejected"][0]["row"], 5, "{}", resp.text);
    assert_eq!(
        resp.json["rejected"][0]["errors"][0]["field"],
        "client_type"
    );
    assert!(list_all(&node, "clients", &[]).await.is_empty());

    // A dry run checks and writes nothing; then the real import.
    let map = "?map=%D0%9D%D0%B0%D0%B7%D0%B2%D0%B0%D0%BD%D0%B8%D0%B5:name";
    let resp = import(&node, &format!("{map}&dry_run=true"), GOOD).await;
    resp.expect_status(200, "dry run");
    assert_eq!(resp.json["imported"], 3);
    assert!(list_all(&node, "clients", &[]).await.is_empty());
    let resp = import(&node, map, GOOD).await;
    resp.expect_status(200, "import");
    assert_eq!(resp.json["imported"], 3);
    let clients = list_all(&node, "clients", &[("sort", "name")]).await;
    assert_eq!(clients.len(), 3);
    let romashka = clients
        .iter()
        .find(|c| c["tax_id"] == "7707083893")
        .expect("imported with its INN");
    assert_eq!(romashka["tags"], serde_json::json!(["vip", "опт"]));
    assert_eq!(romashka["stage"], "potential", "defaults apply");

    // Wrong media type, unknown kind, unknown parameter.
    node.send(
        node.request(Method::POST, "/api/v1/import/clients")
            .header("content-type", "application/json")
            .body("{}"),
    )
    .await
    .expect_problem(415, "json body");
    import(&node, "?colour=red", GOOD)
        .await
        .expect_problem(400, "unknown parameter");

    // Export: a header and one row per live record, quoting as needed.
    let resp = node.get("/api/v1/export/clients").await;
    resp.expect_status(200, "export");
    assert!(resp.content_type().starts_with("text/csv"));
    let lines: Vec<&str> = resp.text.lines().collect();
    assert!(lines[0].starts_with("id,name,"), "{}", lines[0]);
    assert_eq!(lines.len(), 4, "{}", resp.text);
    assert!(resp.text.contains("\"Acme, Ltd\""));
    assert!(resp.text.contains("vip;опт"));
}

/// Rows are checked in parallel batches: bad rows in several batches are
/// all reported, first lines first, and none of the good rows is written.
#[tokio::test]
async fn bad_rows_anywhere_in_a_large_file_are_all_reported_and_nothing_is_written() {
    let node = TestNode::start().await;
    let bad_rows = [10usize, 700, 1150];
    let mut csv = String::from("name,client_type,city\n");
    for n in 0..1200 {
        let client_type = if bad_rows.contains(&n) {
            "robot"
        } else {
            "company"
        };
        csv.push_str(&format!("Клиент {n},{client_type},Казань\n"));
    }
    let resp = import(&node, "", &csv).await;
    resp.expect_problem(422, "bad rows in three batches");
    assert_eq!(resp.json["rejected_count"], 3, "{}", resp.text);
    let lines: Vec<u64> = resp.json["rejected"]
        .as_array()
        .expect("rejected rows")
        .iter()
        .filter_map(|r| r["row"].as_u64())
        .collect();
    // Line 1 is the header.
    assert_eq!(lines, [12, 702, 1152], "{}", resp.text);
    assert!(list_all(&node, "clients", &[]).await.is_empty());

    // The same file without its bad rows imports whole.
    let good: String = csv
        .lines()
        .filter(|line| !line.contains("robot"))
        .map(|line| format!("{line}\n"))
        .collect();
    let resp = import(&node, "", &good).await;
    resp.expect_status(200, "import");
    assert_eq!(resp.json["imported"], 1197);
    assert_eq!(list_all(&node, "clients", &[]).await.len(), 1197);
}

#[tokio::test]
async fn the_cli_imports_and_exports_with_or_without_a_running_node() {
    let mut node = TestNode::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("clients.csv");
    std::fs::write(&file, GOOD).expect("write csv");
    let path = file.to_str().expect("utf-8 path");

    // Through the running node.
    let (ok, stdout, stderr) = node
        .cli(&["import", "clients", path, "--map", "Название:name"])
        .await;
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("imported 3 clients"), "{stdout}");

    // Directly on the data folder when the node is stopped; a failing file
    // reports its rows and changes nothing.
    node.terminate().await;
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "name,client_type\nX,robot\n").expect("write csv");
    let (ok, stdout, _) = node
        .cli(&["import", "clients", bad.to_str().expect("utf-8")])
        .await;
    assert!(!ok);
    assert!(stdout.contains("line 2: client_type"), "{stdout}");
    let out = dir.path().join("out.csv");
    let (ok, stdout, stderr) = node
        .cli(&["export", "clients", out.to_str().expect("utf-8")])
        .await;
    assert!(ok, "{stdout}{stderr}");
    let exported = std::fs::read_to_string(&out).expect("export written");
    assert_eq!(exported.lines().count(), 4, "{exported}");
    node.restart().await;
    assert_eq!(list_all(&node, "clients", &[]).await.len(), 3);
}
