//! `/api/v1/peers` and the `peer` subcommands: adding, listing and removing
//! peers, and the errors for duplicates, bad URLs and unknown peers.

mod common;

use common::cluster::issue_token;
use common::TestNode;
use serde_json::json;

#[tokio::test]
async fn peers_are_added_listed_and_removed_with_clear_errors() {
    let hub = TestNode::start_with_config("hub", "auto_sync = false\n").await;
    let node = TestNode::start_with_config("laptop", "auto_sync = false\n").await;
    let token = issue_token(&hub, "laptop").await;
    let peer = json!({"name": "hq", "url": hub.base_url(), "token": token});

    let added = node.post_json("/api/v1/peers", &peer).await;
    added.expect_status(201, "add a peer");
    assert_eq!(added.header("location"), Some("/api/v1/peers/hq"));
    assert_eq!(added.json["name"], "hq");
    assert!(
        added.json.get("token").is_none(),
        "the secret is never shown: {}",
        added.text
    );

    node.post_json("/api/v1/peers", &peer)
        .await
        .expect_problem(409, "the same name twice");
    for (body, why) in [
        (
            json!({"name": "x", "url": "ftp://hub", "token": "t"}),
            "not http",
        ),
        (
            json!({"name": "x", "url": hub.base_url(), "token": "t", "colour": 1}),
            "unknown member",
        ),
        (
            json!({"name": "bad name!", "url": hub.base_url(), "token": "t"}),
            "bad name",
        ),
        (json!({"name": "x", "url": hub.base_url()}), "no token"),
    ] {
        node.post_json("/api/v1/peers", &body)
            .await
            .expect_problem(422, why);
    }

    let listed = node.get("/api/v1/peers").await;
    listed.expect_status(200, "list peers");
    assert_eq!(
        listed.json.as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.text
    );
    assert!(!listed.text.contains(&token), "the secret is never listed");

    node.post_json("/api/v1/sync/run", &json!({"peer": "nobody"}))
        .await
        .expect_problem(404, "round with an unknown peer");
    let round = node
        .post_json("/api/v1/sync/run", &json!({"peer": "hq"}))
        .await;
    round.expect_status(200, "round with hq");
    assert_eq!(round.json["results"][0]["ok"], true, "{}", round.text);

    node.delete("/api/v1/peers/hq")
        .await
        .expect_status(204, "remove");
    node.delete("/api/v1/peers/hq")
        .await
        .expect_problem(404, "remove twice");
    let listed = node.get("/api/v1/peers").await;
    assert_eq!(listed.json, json!([]), "{}", listed.text);
}

#[tokio::test]
async fn the_cli_adds_lists_and_removes_peers() {
    let hub = TestNode::start_with_config("hub", "auto_sync = false\n").await;
    let node = TestNode::start_with_config("laptop", "auto_sync = false\n").await;
    let token = issue_token(&hub, "laptop").await;

    let (ok, out, err) = node
        .cli(&["peer", "add", "hq", hub.base_url(), "--token", &token])
        .await;
    assert!(ok, "{out}{err}");
    let (ok, out, _) = node.cli(&["peer", "list"]).await;
    assert!(
        ok && out.contains("hq") && out.contains(hub.base_url()),
        "{out}"
    );
    assert!(!out.contains(&token), "the secret is never listed");
    let (ok, out, err) = node.cli(&["peer", "remove", "hq"]).await;
    assert!(ok, "{out}{err}");
    let (ok, _, err) = node.cli(&["peer", "remove", "hq"]).await;
    assert!(!ok && err.contains("no peer named `hq`"), "{err}");
    let listed = node.get("/api/v1/peers").await;
    assert_eq!(listed.json, serde_json::json!([]), "{}", listed.text);
}
