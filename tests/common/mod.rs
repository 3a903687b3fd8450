//! Test-node harness shared by the integration tests: spawns the real
//! `crm-node` binary on a temporary data directory and a loopback port, talks
//! to it over HTTP, and stops it gracefully (SIGTERM) or abruptly (SIGKILL).
//! Every node starts with [`ADMIN_PASSWORD`] for its first admin; after each
//! start the harness logs in as `admin`, and its client sends that session
//! with every request that has no `Authorization` of its own.
//! Also holds the small API helpers (create, list all pages, search) that more
//! than one test file needs.

// Each test file compiles this module separately and uses only part of it.
#![allow(dead_code)]

pub mod cluster;
pub mod seeded;
pub mod storage;

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE, IF_MATCH};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a node may take to print its listening line.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// How long a node may take to exit after SIGTERM or SIGKILL.
const STOP_DEADLINE: Duration = Duration::from_secs(20);
/// Upper bound on pages walked by [`list_all`], so a cursor loop fails fast.
const MAX_PAGES: usize = 1_000;
const LISTENING_PREFIX: &str = "crm-node listening on ";
/// The password of every test node's first `admin` user.
pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// One running (or stopped, restartable) `crm-node serve` process with its own
/// data directory. The directory lives as long as the value; dropping the
/// value kills the process.
pub struct TestNode {
    data: TempDir,
    /// Holds the node's standard error (its logs), kept out of the data dir.
    logs: TempDir,
    name: String,
    child: Option<Child>,
    base_url: String,
    /// The address to listen on: port 0 (any) until [`Self::restart_same_port`].
    listen: String,
    client: reqwest::Client,
    /// The test CA (PEM) of a node serving HTTPS.
    trusted_ca: Option<String>,
}

/// A response with its body read: status, headers, raw text and the body
/// parsed as JSON (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn etag(&self) -> Option<&str> {
        self.header("etag")
    }

    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }

    /// Panics with the whole response unless the status is `expected`.
    pub fn expect_status(&self, expected: u16, context: &str) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            expected,
            "{context}: expected {expected}, got {} with body {}",
            self.status,
            self.text
        );
        self
    }

    /// Checks that this is an `application/problem+json` error whose
    /// `status` member equals the HTTP status; returns what is wrong, if anything.
    pub fn problem_mismatch(&self, expected: u16) -> Option<String> {
        if self.status.as_u16() != expected {
            return Some(format!(
                "status {} (want {expected}), body {}",
                self.status, self.text
            ));
        }
        if !self.content_type().starts_with("application/problem+json") {
            return Some(format!(
                "content-type {:?} (want application/problem+json), body {}",
                self.content_type(),
                self.text
            ));
        }
        if self.json.get("status").and_then(Value::as_u64) != Some(u64::from(expected)) {
            return Some(format!(
                "body status member is not {expected}: {}",
                self.text
            ));
        }
        for member in ["type", "title"] {
            if !self.json.get(member).is_some_and(Value::is_string) {
                return Some(format!(
                    "body lacks string member {member:?}: {}",
                    self.text
                ));
            }
        }
        None
    }

    /// Panics unless this is a problem+json error with status `expected`.
    pub fn expect_problem(&self, expected: u16, context: &str) {
        if let Some(wrong) = self.problem_mismatch(expected) {
            panic!("{context}: {wrong}");
        }
    }

    /// Field names listed in a validation problem's `errors` array.
    pub fn error_fields(&self) -> Vec<String> {
        self.json
            .get("errors")
            .and_then(Value::as_array)
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e.get("field").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl TestNode {
    /// Starts a node on a fresh temporary data directory.
    pub async fn start() -> TestNode {
        let data = TempDir::new().expect("create a temporary data directory");
        TestNode::start_in(data).await
    }

    /// Starts a node on a fresh data directory whose `crm-node.toml` holds
    /// `config` (e.g. `auto_sync = false`).
    pub async fn start_with_config(name: &str, config: &str) -> TestNode {
        let data = TempDir::new().expect("create a temporary data directory");
        std::fs::write(data.path().join("crm-node.toml"), config).expect("write crm-node.toml");
        let mut node = TestNode::new(data, name);
        node.spawn().await;
        node
    }

    /// Starts a node on `data`, which the node then owns and keeps alive.
    pub async fn start_in(data: TempDir) -> TestNode {
        let mut node = TestNode::new(data, "test-node");
        node.spawn().await;
        node
    }

    /// Starts a node on `data`, which already holds a `crm-node.toml` that
    /// serves HTTPS with a certificate issued by the CA `ca_pem`; the
    /// harness's client trusts that CA.
    pub async fn start_tls(data: TempDir, name: &str, ca_pem: &str) -> TestNode {
        let mut node = TestNode::new(data, name);
        node.trusted_ca = Some(ca_pem.to_owned());
        node.client = node.make_client(HeaderMap::new());
        node.spawn().await;
        node
    }

    fn new(data: TempDir, name: &str) -> TestNode {
        let logs = TempDir::new().expect("create a temporary log directory");
        let client = http_client(HeaderMap::new());
        TestNode {
            data,
            logs,
            name: name.to_owned(),
            child: None,
            base_url: String::new(),
            listen: "127.0.0.1:0".to_owned(),
            client,
            trusted_ca: None,
        }
    }

    /// A client sending `headers` on every request, trusting the node's test
    /// CA when it serves HTTPS.
    fn make_client(&self, headers: HeaderMap) -> reqwest::Client {
        let mut builder = client_builder().default_headers(headers);
        if let Some(pem) = &self.trusted_ca {
            let ca = reqwest::Certificate::from_pem(pem.as_bytes()).expect("the test CA is PEM");
            builder = builder.add_root_certificate(ca);
        }
        builder.build().expect("build an HTTP client")
    }

    /// Starts the process again on the same data directory and the same
    /// port, so that peers configured with its URL reach it again.
    pub async fn restart_same_port(&mut self) {
        self.listen = self
            .base_url
            .split_once("://")
            .expect("the node has run before")
            .1
            .to_owned();
        self.restart().await;
    }

    /// Runs `crm-node ARGS --data DIR` (a tool subcommand on this node's
    /// data folder) and returns its exit status, stdout and stderr.
    pub async fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let data = [OsStr::new("--data"), self.data.path().as_os_str()];
        run_crm_node(args.iter().map(OsStr::new).chain(data)).await
    }

    /// Starts the process again on the same data directory (on a new port).
    /// The previous process must have been stopped with [`Self::kill9`] or
    /// [`Self::terminate`].
    pub async fn restart(&mut self) {
        assert!(
            self.child.is_none(),
            "restart() needs the node stopped first"
        );
        self.spawn().await;
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The node's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    fn log_path(&self) -> PathBuf {
        self.logs.path().join("stderr.log")
    }

    /// The last lines the node wrote to standard error, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    async fn spawn(&mut self) {
        let log: File = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the node's log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_crm-node"));
        command
            .arg("serve")
            .arg("--data")
            .arg(self.data.path())
            .args(["--listen", &self.listen, "--name", &self.name])
            .env_remove("CRM_LISTEN")
            .env_remove("CRM_NAME")
            .env_remove("CRM_DATA")
            .env("CRM_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = command.spawn().expect("spawn the crm-node binary");
        let stdout = child.stdout.take().expect("stdout was piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        let found = tokio::time::timeout(START_DEADLINE, async {
            while let Some(line) = lines.next_line().await.expect("read the node's stdout") {
                if let Some(url) = line.strip_prefix(LISTENING_PREFIX) {
                    return Some(url.trim().to_owned());
                }
                seen.push(line);
            }
            None
        })
        .await;
        let url = match found {
            Ok(Some(url)) => url,
            Ok(None) => {
                let status = tokio::time::timeout(STOP_DEADLINE, child.wait()).await;
                panic!(
                    "node closed stdout without a listening line (exit {status:?}); stdout {seen:?}; stderr:\n{}",
                    self.log_tail()
                );
            }
            Err(_) => {
                // Best effort: the panic below is the real report.
                let _ = child.start_kill();
                panic!(
                    "node printed no listening line within {START_DEADLINE:?}; stdout {seen:?}; stderr:\n{}",
                    self.log_tail()
                );
            }
        };
        let port = url
            .strip_prefix("http://127.0.0.1:")
            .or_else(|| url.strip_prefix("https://127.0.0.1:"))
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("listening line names no loopback port: {url:?}"));
        assert_ne!(port, 0, "node reported port 0");
        // Keep draining stdout so a chatty node never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.base_url = url;
        self.child = Some(child);
        let token = self.login("admin", ADMIN_PASSWORD).await;
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            format!("Bearer {token}")
                .parse()
                .expect("a session token is a header value"),
        );
        self.client = self.make_client(headers);
    }

    /// Logs in over the API (with a client of no session) and returns the
    /// session token; panics unless the login succeeds.
    pub async fn login(&self, login: &str, password: &str) -> String {
        let request = self
            .make_client(HeaderMap::new())
            .post(self.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"login": login, "password": password}));
        let resp = self.send(request).await;
        resp.expect_status(200, &format!("log in as {login}"));
        resp.json["token"]
            .as_str()
            .unwrap_or_else(|| panic!("login answered no token: {}", resp.text))
            .to_owned()
    }

    fn take_child(&mut self) -> Child {
        self.child.take().expect("the node is not running")
    }

    /// Kills the process with SIGKILL and waits for it to be gone.
    pub async fn kill9(&mut self) {
        let mut child = self.take_child();
        child.start_kill().expect("send SIGKILL to the node");
        tokio::time::timeout(STOP_DEADLINE, child.wait())
            .await
            .expect("node did not die after SIGKILL")
            .expect("wait for the killed node");
    }

    /// Sends SIGHUP (the node reads its size limit again).
    pub async fn hang_up(&self) {
        let child = self.child.as_ref().expect("the node is not running");
        signal(child, "-HUP").await;
    }

    /// Sends SIGTERM and waits (with a deadline) for the process to exit.
    pub async fn terminate(&mut self) -> ExitStatus {
        let mut child = self.take_child();
        signal(&child, "-TERM").await;
        match tokio::time::timeout(STOP_DEADLINE, child.wait()).await {
            Ok(status) => status.expect("wait for the terminated node"),
            Err(_) => {
                // Best effort clean-up before reporting the hang.
                let _ = child.start_kill();
                panic!(
                    "node did not exit within {STOP_DEADLINE:?} of SIGTERM; stderr:\n{}",
                    self.log_tail()
                );
            }
        }
    }

    /// A request builder for `path` (starting with `/`) on this node.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// Sends a request and reads the whole response; transport errors are
    /// returned (a killed node, a connection closed early).
    pub async fn try_send(&self, request: RequestBuilder) -> Result<Resp, reqwest::Error> {
        read_response(request).await
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&self, request: RequestBuilder) -> Resp {
        self.try_send(request)
            .await
            .expect("HTTP request to the test node")
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.request(Method::DELETE, path)).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.send(json_body(self.request(Method::POST, path), body))
            .await
    }

    /// POST without a body (e.g. `/restore`).
    pub async fn post_empty(&self, path: &str) -> Resp {
        self.send(self.request(Method::POST, path)).await
    }

    pub async fn patch_json(&self, path: &str, body: &Value, if_match: Option<&str>) -> Resp {
        let mut request = json_body(self.request(Method::PATCH, path), body);
        if let Some(etag) = if_match {
            request = request.header(IF_MATCH, etag);
        }
        self.send(request).await
    }
}

/// Sends `child` a signal with `kill` (e.g. `-TERM`).
async fn signal(child: &Child, which: &str) {
    let pid = child.id().expect("a running child has a pid");
    let sent = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .await
        .unwrap_or_else(|e| panic!("run kill {which}: {e}"));
    assert!(sent.success(), "kill {which} {pid} failed: {sent}");
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // The process may already be gone; kill_on_drop also covers it.
            let _ = child.start_kill();
        }
    }
}

/// Runs `crm-node ARGS` to its end (a tool, or a start-up that must fail)
/// and returns its exit status, stdout and stderr.
pub async fn run_crm_node<I, S>(args: I) -> (bool, String, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let output = Command::new(env!("CARGO_BIN_EXE_crm-node"))
        .args(args)
        .env_remove("CRM_DATA")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("the crm-node tool finished within 2 minutes")
        .expect("run the crm-node tool");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The harness's client settings: no proxy, a bounded wait.
fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
}

/// Sends `request` and reads the whole response; transport errors are
/// returned (a killed node, a connection closed early).
pub async fn read_response(request: RequestBuilder) -> Result<Resp, reqwest::Error> {
    let response = request.send().await?;
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await?;
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok(Resp {
        status,
        headers,
        text,
        json,
    })
}

/// The harness's HTTP client, sending `headers` with every request that
/// does not set them itself.
pub fn http_client(headers: HeaderMap) -> reqwest::Client {
    client_builder()
        .default_headers(headers)
        .build()
        .expect("build an HTTP client")
}

fn json_body(request: RequestBuilder, body: &Value) -> RequestBuilder {
    request
        .header(CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(body).expect("serialize a JSON value"))
}

/// `path?k=v&...` with the pairs percent-encoded.
pub fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse("http://localhost").expect("static base URL parses");
    url.set_path(path);
    if !pairs.is_empty() {
        url.query_pairs_mut().extend_pairs(pairs);
    }
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

/// The `id` member of a record or search hit.
pub fn id_of(record: &Value) -> String {
    record
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("record has no string id: {record}"))
        .to_owned()
}

/// Creates a record, expecting 201, and returns it.
pub async fn create(node: &TestNode, collection: &str, body: Value) -> Value {
    let resp = node
        .post_json(&format!("/api/v1/{collection}"), &body)
        .await;
    resp.expect_status(201, &format!("create {collection} {body}"));
    resp.json
}

/// Every item of a list query, walking `next_cursor` until it is null.
/// Fails on a non-200 page or when the walk does not end.
pub async fn list_all(node: &TestNode, collection: &str, params: &[(&str, &str)]) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut pairs = params.to_vec();
        if let Some(c) = &cursor {
            pairs.push(("cursor", c));
        }
        let resp = node
            .get(&with_query(&format!("/api/v1/{collection}"), &pairs))
            .await;
        resp.expect_status(200, &format!("list {collection} {pairs:?}"));
        let page = resp.json["items"]
            .as_array()
            .unwrap_or_else(|| panic!("list has no items array: {}", resp.text));
        items.extend(page.iter().cloned());
        match &resp.json["next_cursor"] {
            Value::Null => return items,
            Value::String(next) => cursor = Some(next.clone()),
            other => panic!("next_cursor is neither null nor a string: {other}"),
        }
    }
    panic!("list of {collection} did not end within {MAX_PAGES} pages");
}

/// Ids of every item of a list query, in list order.
pub async fn list_ids(node: &TestNode, collection: &str, params: &[(&str, &str)]) -> Vec<String> {
    list_all(node, collection, params)
        .await
        .iter()
        .map(id_of)
        .collect()
}

/// Hits of a search query, expecting 200.
pub async fn search(node: &TestNode, params: &[(&str, &str)]) -> Vec<Value> {
    let resp = node.get(&with_query("/api/v1/search", params)).await;
    resp.expect_status(200, &format!("search {params:?}"));
    resp.json["items"]
        .as_array()
        .unwrap_or_else(|| panic!("search has no items array: {}", resp.text))
        .clone()
}

/// Ids of the hits of a search for `q`.
pub async fn search_ids(node: &TestNode, q: &str) -> Vec<String> {
    search(node, &[("q", q)]).await.iter().map(id_of).collect()
}

/// Sorted copy, for comparing id sets.
pub fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}
