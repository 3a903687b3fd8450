//! A thin client of one node's HTTP API: JSON requests with status checks,
//! paging through a list, peers and sync rounds.

use std::time::Duration;

use anyhow::{bail, Context};
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{json, Value};

/// Default timeout of one request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Timeout of one sync round (a first sync of a large data set is long).
const ROUND_TIMEOUT: Duration = Duration::from_secs(3 * 3600);
/// Bound on the rounds of one sync, in case a round never reports caught up.
const MAX_ROUNDS: usize = 1_000;
/// Steps (pages of documents or changes) asked of one round: a first sync
/// of a million records takes minutes, longer than the node lets one
/// request run (60 s), so the bench asks for it in rounds of this many.
const STEPS_PER_ROUND: u32 = 20;
/// Largest list page the API serves.
const PAGE_LIMIT: usize = 200;

use crm_sync::replicate::StepReport;

use crate::lean_http::LeanClient;

/// What a sync moved, both ways.
#[derive(Debug, Clone, Copy, Default)]
pub struct Round {
    pub pulled: StepReport,
    pub pushed: StepReport,
}

#[derive(Deserialize)]
struct RunAnswer {
    results: Vec<RoundResult>,
}

#[derive(Deserialize)]
struct RoundResult {
    ok: bool,
    pulled: Option<StepReport>,
    pushed: Option<StepReport>,
    error: Option<String>,
}

/// The API of one node.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    /// The session token, when logged in (the load loops send it too).
    token: Option<String>,
}

/// The start of an answer's body, for error messages.
pub fn excerpt(text: &str) -> String {
    text.chars().take(300).collect()
}

fn client_with(headers: reqwest::header::HeaderMap) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(256)
        .default_headers(headers)
        .build()
        .context("building the HTTP client")
}

impl Api {
    /// A client without a session (enough for `/healthz`).
    pub fn new(base: &str) -> anyhow::Result<Api> {
        Ok(Api {
            client: client_with(Default::default())?,
            base: base.trim_end_matches('/').to_owned(),
            token: None,
        })
    }

    /// Logs in and answers a client that sends the session token with
    /// every request.
    pub async fn logged_in(&self, login: &str, password: &str) -> anyhow::Result<Api> {
        let answer = self
            .post(
                "/api/v1/auth/login",
                &json!({"login": login, "password": password}),
            )
            .await?;
        let token = string_field(&answer, "token")?;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}")
                .parse()
                .context("a session token is a valid header value")?,
        );
        Ok(Api {
            client: client_with(headers)?,
            base: self.base.clone(),
            token: Some(token),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A client for load loops, with this one's node and session.
    pub fn lean(&self) -> anyhow::Result<LeanClient> {
        let base = Url::parse(&self.base).with_context(|| format!("bad URL {}", self.base))?;
        LeanClient::new(&base, self.token.as_deref())
    }

    /// The URL of `path` (starting with `/`) with query parameters.
    pub fn url(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Url> {
        let base = format!("{}{path}", self.base);
        Url::parse_with_params(&base, query).with_context(|| format!("bad URL {base}"))
    }

    /// Sends a request and returns the answer's JSON; fails on a non-2xx.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let url = self.url(path, query)?;
        let mut request = self.client.request(method.clone(), url.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("reading the answer of {method} {url}"))?;
        if !status.is_success() {
            bail!("{method} {url}: {status}: {}", excerpt(&text));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {url}: answer is not JSON"))
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        self.json(Method::GET, path, query, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.json(Method::POST, path, &[], Some(body)).await
    }

    /// Creates a record and returns its id.
    pub async fn create(&self, collection: &str, record: &Value) -> anyhow::Result<String> {
        let answer = self.post(&format!("/api/v1/{collection}"), record).await?;
        string_field(&answer, "id")
    }

    /// Up to `max` ids of `collection`, walking pages in id-stable order.
    pub async fn ids(&self, collection: &str, max: usize) -> anyhow::Result<Vec<String>> {
        let records = self.list(collection, "id", "created_at", max).await?;
        records.iter().map(|r| string_field(r, "id")).collect()
    }

    /// Every live record of `collection` with only `fields` (comma-separated),
    /// in the order of `sort`.
    pub async fn list_all(
        &self,
        collection: &str,
        fields: &str,
        sort: &str,
    ) -> anyhow::Result<Vec<Value>> {
        self.list(collection, fields, sort, usize::MAX).await
    }

    /// Up to `max` records of `collection`, page after page.
    async fn list(
        &self,
        collection: &str,
        fields: &str,
        sort: &str,
        max: usize,
    ) -> anyhow::Result<Vec<Value>> {
        let mut records = Vec::new();
        let mut cursor: Option<String> = None;
        let limit = PAGE_LIMIT.to_string();
        // Ends: each page either carries a cursor to a later page or ends
        // the walk, and the node's pages move strictly forward.
        loop {
            let mut query = vec![
                ("limit", limit.as_str()),
                ("fields", fields),
                ("sort", sort),
            ];
            if let Some(c) = cursor.as_deref() {
                query.push(("cursor", c));
            }
            let page = self.get(&format!("/api/v1/{collection}"), &query).await?;
            let items = page["items"]
                .as_array()
                .context("a list page without items")?;
            records.extend(items.iter().cloned());
            cursor = page["next_cursor"].as_str().map(str::to_owned);
            if cursor.is_none() || records.len() >= max {
                break;
            }
        }
        records.truncate(max);
        Ok(records)
    }

    /// Adds a peer to replicate with.
    pub async fn add_peer(&self, name: &str, url: &str, token: &str) -> anyhow::Result<()> {
        self.post(
            "/api/v1/peers",
            &json!({"name": name, "url": url, "token": token}),
        )
        .await
        .map(drop)
    }

    /// Runs sync rounds with `peer` until both directions are caught up;
    /// returns what moved in total.
    pub async fn sync(&self, peer: &str) -> anyhow::Result<Round> {
        let mut total = Round::default();
        for _ in 0..MAX_ROUNDS {
            let round = self.round(peer).await?;
            total.pulled.add(round.pulled);
            total.pushed.add(round.pushed);
            if round.pulled.caught_up && round.pushed.caught_up {
                return Ok(total);
            }
        }
        bail!("sync with {peer} not caught up after {MAX_ROUNDS} rounds")
    }

    /// One `POST /api/v1/sync/run` with `peer`.
    pub async fn round(&self, peer: &str) -> anyhow::Result<Round> {
        let url = self.url("/api/v1/sync/run", &[])?;
        let response = self
            .client
            .post(url)
            .json(&json!({"peer": peer, "max_steps": STEPS_PER_ROUND}))
            .timeout(ROUND_TIMEOUT)
            .send()
            .await
            .context("POST /api/v1/sync/run")?;
        let status = response.status();
        let text = response.text().await.context("reading the sync answer")?;
        if !status.is_success() {
            bail!("sync run: {status}: {}", excerpt(&text));
        }
        let answer: RunAnswer = serde_json::from_str(&text)
            .with_context(|| format!("sync run answer: {}", excerpt(&text)))?;
        let [result] = answer.results.as_slice() else {
            bail!(
                "sync run answered {} results for one peer",
                answer.results.len()
            );
        };
        match (result.ok, result.pulled, result.pushed) {
            (true, Some(pulled), Some(pushed)) => Ok(Round { pulled, pushed }),
            _ => bail!(
                "sync round failed: {}",
                result.error.as_deref().unwrap_or("no report")
            ),
        }
    }
}

/// A string member of a JSON object.
pub fn string_field(value: &Value, name: &str) -> anyhow::Result<String> {
    value[name]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no string {name:?} in {}", excerpt(&value.to_string())))
}
