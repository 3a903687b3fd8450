//! HTTPS between nodes: nodes serving TLS with certificates from a private
//! CA replicate over `https://` peer URLs when `peer_ca` names that CA (on
//! demand and continuously, and through the CLI); a node without it, or
//! with another CA, refuses the peer; bad certificate files stop start-up
//! with the config key named; `crm-node tls self-signed` gives a working
//! set-up.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::cluster::{add_peer, issue_token, peer_status, run_sync, Cluster};
use common::{create, run_crm_node as run, TestNode};
use crm_node::tls::self_signed::Authority;
use serde_json::json;
use tempfile::TempDir;

/// A data folder for a node. `serve`: the CA that issues its certificate
/// (SAN localhost and 127.0.0.1), for a node serving HTTPS; `trust`: the CA
/// its `peer_ca` names. `config` is appended to `crm-node.toml`.
fn folder(serve: Option<&Authority>, trust: Option<&Authority>, config: &str) -> TempDir {
    let dir = TempDir::new().expect("temp data folder");
    let write = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).expect("write a test file");
    };
    let mut toml = String::new();
    if let Some(ca) = serve {
        let node = ca
            .issue(
                "localhost",
                &["localhost".to_owned()],
                &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            )
            .expect("issue a node certificate");
        write("node.crt", &node.cert_pem);
        write("node.key", &node.key_pem);
        toml.push_str("tls_cert = \"node.crt\"\ntls_key = \"node.key\"\n");
    }
    if let Some(ca) = trust {
        write("peer-ca.pem", &ca.cert_pem());
        toml.push_str("peer_ca = \"peer-ca.pem\"\n");
    }
    toml.push_str(config);
    write("crm-node.toml", &toml);
    dir
}

fn authority(name: &str) -> Authority {
    Authority::new(name).expect("make a test CA")
}

/// Creates a client named `name` on each node of `made`.
async fn create_clients(cluster: &Cluster, made: [(usize, &str); 2]) {
    for (i, name) in made {
        let body = json!({"name": name, "client_type": "company"});
        create(&cluster.nodes[i], "clients", body).await;
    }
}

#[tokio::test]
async fn two_tls_nodes_replicate_on_demand_and_continuously() {
    let ca = authority("test CA");
    let mut nodes = Vec::new();
    for i in 0..2 {
        let data = folder(Some(&ca), Some(&ca), "");
        nodes.push(TestNode::start_tls(data, &format!("node{i}"), &ca.cert_pem()).await);
    }
    for node in &nodes {
        assert!(
            node.base_url().starts_with("https://"),
            "{}",
            node.base_url()
        );
    }
    let mut cluster = Cluster {
        nodes,
        links: Vec::new(),
    };
    cluster.link(0, 1).await;
    create_clients(&cluster, [(0, "Alpha"), (1, "Beta")]).await;
    // POST /api/v1/sync/run (sync_pair checks the round succeeded).
    let states = cluster.quiesce().await;
    assert_eq!(states[0].ids("clients").len(), 2);

    // The continuous workers carry new records both ways.
    create_clients(&cluster, [(0, "Gamma"), (1, "Delta")]).await;
    let states = cluster.await_convergence(Duration::from_secs(30)).await;
    assert_eq!(states[0].ids("clients").len(), 4);

    // The tools reach the node through serve.url, now https, with the
    // node's own certificate as trust anchor.
    let node = &cluster.nodes[0];
    let (ok, stdout, stderr) = node.cli(&["sync"]).await;
    assert!(ok, "crm-node sync over HTTPS: {stdout}\n{stderr}");
    assert!(stdout.contains("node1: pulled"), "{stdout}");
    let out = node.data_dir().join("clients.csv");
    let out_arg = out.to_str().expect("temp paths are UTF-8");
    let (ok, stdout, stderr) = node.cli(&["export", "clients", out_arg]).await;
    assert!(ok, "crm-node export over HTTPS: {stdout}\n{stderr}");
    let csv = std::fs::read_to_string(&out).expect("read the export");
    assert_eq!(csv.lines().count(), 5, "{csv}");

    // Graceful shutdown drains and exits cleanly under TLS too.
    for node in &mut cluster.nodes {
        let status = node.terminate().await;
        assert!(status.success(), "{status}\n{}", node.log_tail());
    }
}

/// The error `node`'s sync with `peer` ends in, checked in the round's
/// result and in the sync status.
async fn refused(node: &TestNode, peer: &str) -> String {
    let result = run_sync(node, peer, None).await;
    assert_eq!(result["ok"], json!(false), "{result}");
    let status = peer_status(node, peer).await;
    let last_error = status["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(last_error.contains("certificate"), "{status}");
    // Reachable but not trusted: a configuration problem, not a bad line.
    assert_eq!(status["state"], json!("failing"), "{status}");
    last_error
}

#[tokio::test]
async fn peers_are_verified_against_peer_ca() {
    let ca = authority("test CA");
    let other = authority("another CA");
    let hq = TestNode::start_tls(
        folder(Some(&ca), None, "auto_sync = false\n"),
        "hq",
        &ca.cert_pem(),
    )
    .await;
    hq.get("/healthz")
        .await
        .expect_status(200, "healthz over HTTPS");

    // No peer_ca: only the public web roots, which do not know the CA.
    let plain = TestNode::start_with_config("plain", "auto_sync = false\n").await;
    // peer_ca naming another CA.
    let wrong = TestNode::start_in(folder(None, Some(&other), "auto_sync = false\n")).await;
    for (node, who) in [(&plain, "plain"), (&wrong, "wrong")] {
        let token = issue_token(&hq, who).await;
        add_peer(node, "hq", hq.base_url(), &token).await;
        let error = refused(node, "hq").await;
        assert!(error.contains("UnknownIssuer"), "{who}: {error}");
    }

    // Plain HTTP on the HTTPS port fails in the handshake; no redirect.
    let http_url = hq.url("/healthz").replacen("https://", "http://", 1);
    let answer = plain.client().get(&http_url).send().await;
    assert!(answer.is_err(), "plain HTTP got an answer: {answer:?}");
}

#[tokio::test]
async fn bad_certificate_files_stop_start_up_naming_the_key() {
    let ca = authority("test CA");
    let stranger = ca
        .issue("other", &["other".to_owned()], &[])
        .expect("issue a second certificate");
    let cases: [(&str, &str, &str); 4] = [
        (
            "tls_cert = \"missing.crt\"\ntls_key = \"node.key\"\n",
            "",
            "tls_cert",
        ),
        (
            "tls_cert = \"bad.crt\"\ntls_key = \"node.key\"\n",
            "not a certificate",
            "tls_cert",
        ),
        (
            "tls_cert = \"node.crt\"\ntls_key = \"bad.key\"\n",
            &stranger.key_pem,
            "tls_key",
        ),
        ("peer_ca = \"missing.pem\"\n", "", "peer_ca"),
    ];
    for (config, bad, key) in cases {
        // A working certificate and key beside the broken file.
        let data = folder(Some(&ca), None, "");
        std::fs::write(data.path().join("crm-node.toml"), config).expect("write config");
        std::fs::write(data.path().join("bad.crt"), bad).expect("write bad.crt");
        std::fs::write(data.path().join("bad.key"), bad).expect("write bad.key");
        let dir = data.path().to_str().expect("temp paths are UTF-8");
        let (ok, stdout, stderr) = run(&["serve", "--listen", "127.0.0.1:0", "--data", dir]).await;
        assert!(!ok, "{config}: the node started: {stdout}");
        assert!(stderr.contains(key), "{config}: {stderr}");
    }
}

#[tokio::test]
async fn self_signed_command_makes_a_working_set_up() {
    let data = TempDir::new().expect("temp data folder");
    let dir = data
        .path()
        .to_str()
        .expect("temp paths are UTF-8")
        .to_owned();
    let args = ["tls", "self-signed", "--name", "crm.test", "--data", &dir];
    let (ok, stdout, stderr) = run(&args).await;
    assert!(ok, "{stdout}\n{stderr}");
    let config: String = stdout
        .lines()
        .filter(|l| {
            ["tls_cert", "tls_key", "peer_ca"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(config.lines().count(), 3, "{stdout}");
    let (again, _, stderr) = run(&args).await;
    assert!(!again, "a second run must not overwrite the certificates");
    assert!(stderr.contains("exists"), "{stderr}");

    std::fs::write(data.path().join("crm-node.toml"), config).expect("write config");
    let ca = std::fs::read_to_string(data.path().join("tls/ca.crt")).expect("read ca.crt");
    let mut node = TestNode::start_tls(data, "self-signed", &ca).await;
    let health = node.get("/healthz").await;
    health.expect_status(200, "healthz with the self-signed set-up");
    // Over HTTPS the session cookies are marked Secure.
    let login = node
        .post_json(
            "/api/v1/auth/login",
            &serde_json::json!({"login": "admin", "password": common::ADMIN_PASSWORD}),
        )
        .await;
    login.expect_status(200, "log in over HTTPS");
    let cookies: Vec<&str> = login
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    assert!(
        cookies.iter().all(|c| c.ends_with("; Secure")),
        "{cookies:?}"
    );
    let status = node.terminate().await;
    assert!(status.success(), "{status}");
}
