//! Loading a data set into a node: generated clients as CSV through
//! `POST /api/v1/import/clients` in chunks (or, while a node has no import
//! endpoint (404/405), by concurrent `POST /api/v1/clients`; the result
//! says which path loaded them), then their contact persons, deals, and
//! invoices with lines, imported the same way.

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::StatusCode;
use serde_json::Value;

use crate::api::{string_field, Api};
use crate::generator;
use crate::lean_http::Target;
use crate::load::{self, Stop};

/// Rows per import request.
pub const CHUNK_ROWS: usize = 10_000;
/// The smallest chunk tried when the node answers 413 (body too large).
const MIN_CHUNK_ROWS: usize = 250;
/// Concurrent requests of the POST fallback.
const FALLBACK_CONCURRENCY: usize = 32;
/// Timeout of one import request.
const IMPORT_TIMEOUT: Duration = Duration::from_secs(600);

/// How the data reached the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadPath {
    /// CSV through the import endpoint, with the chunk size that worked.
    Import { chunk_rows: usize },
    /// One `POST /api/v1/clients` per record: the node has no import endpoint.
    PostFallback,
}

impl LoadPath {
    pub fn describe(self) -> String {
        match self {
            LoadPath::Import { chunk_rows } => {
                format!("CSV via POST /api/v1/import/clients, {chunk_rows}-row chunks")
            }
            LoadPath::PostFallback => format!(
                "import endpoint missing (404/405): {FALLBACK_CONCURRENCY} concurrent POST /api/v1/clients"
            ),
        }
    }
}

/// A finished load.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    pub rows: u64,
    pub elapsed: Duration,
    pub path: LoadPath,
}

impl Loaded {
    pub fn rows_per_second(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The CSV columns of a record: its keys, in the generator's order.
fn columns_of(record: &Value) -> Vec<String> {
    match record {
        Value::Object(fields) => fields.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// The CSV columns of the clients: the generator's field names.
pub fn columns(seed: u64) -> Vec<String> {
    columns_of(&generator::client(seed, 0))
}

/// One CSV cell: sets joined with ';', money as `<minor> <currency>`,
/// absent or null as an empty cell, quoted when it holds a comma, a quote
/// or a line break.
fn cell(value: Option<&Value>) -> String {
    let text = match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(";"),
        Some(Value::Object(money)) if money.contains_key("minor") => format!(
            "{} {}",
            money["minor"],
            money.get("currency").and_then(Value::as_str).unwrap_or("")
        ),
        Some(other) => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The CSV of `records` under `columns`, with a header row.
fn csv_of<R: Borrow<Value>>(columns: &[String], records: impl Iterator<Item = R>) -> String {
    let mut out = columns.join(",");
    out.push('\n');
    for record in records {
        let record = record.borrow();
        let cells: Vec<String> = columns.iter().map(|c| cell(record.get(c))).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// The CSV of clients `rows` of the data set `seed`, with a header row.
pub fn csv(seed: u64, columns: &[String], rows: Range<u64>) -> String {
    csv_of(columns, rows.map(|n| generator::client(seed, n)))
}

enum Chunk {
    Imported,
    NoEndpoint,
    TooLarge,
}

async fn import_chunk(
    api: &Api,
    collection: &str,
    body: String,
    rows: u64,
) -> anyhow::Result<Chunk> {
    let path = format!("/api/v1/import/{collection}");
    let url = api.url(&path, &[])?;
    let response = api
        .client()
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "text/csv")
        .body(body)
        .timeout(IMPORT_TIMEOUT)
        .send()
        .await
        .with_context(|| format!("POST {path}"))?;
    let status = response.status();
    let text = response.text().await.context("reading the import answer")?;
    match status {
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => return Ok(Chunk::NoEndpoint),
        StatusCode::PAYLOAD_TOO_LARGE => return Ok(Chunk::TooLarge),
        s if !s.is_success() => {
            let excerpt: String = text.chars().take(600).collect();
            bail!("import of {collection} answered {s}: {excerpt}");
        }
        _ => {}
    }
    let answer: Value = serde_json::from_str(&text).context("import answer is not JSON")?;
    let imported = answer["imported"]
        .as_u64()
        .context("import answer without `imported`")?;
    if imported != rows {
        bail!("import of {collection} took {imported} of {rows} rows: {text}");
    }
    Ok(Chunk::Imported)
}

/// How an import of many rows went.
enum Imported {
    /// Every row, in chunks of this many (or fewer, at the end).
    All { chunk_rows: usize },
    /// The node has no import endpoint; nothing was sent.
    NoEndpoint,
}

/// Imports `records` into `collection` in chunks, halving the chunk while
/// the node answers that a body is too large.
async fn import_all(
    api: &Api,
    collection: &str,
    mut records: impl Iterator<Item = Value>,
) -> anyhow::Result<Imported> {
    let mut pending: VecDeque<Value> = VecDeque::new();
    let mut columns: Option<Vec<String>> = None;
    let mut chunk_rows = CHUNK_ROWS;
    let mut sent = 0u64;
    // Ends: every pass imports rows from a finite iterator or halves the
    // chunk, which stops at MIN_CHUNK_ROWS.
    loop {
        while pending.len() < chunk_rows {
            match records.next() {
                Some(record) => pending.push_back(record),
                None => break,
            }
        }
        let Some(first) = pending.front() else {
            return Ok(Imported::All { chunk_rows });
        };
        let columns = columns.get_or_insert_with(|| columns_of(first));
        let take = chunk_rows.min(pending.len());
        let body = csv_of(columns, pending.iter().take(take));
        match import_chunk(api, collection, body, take as u64).await? {
            Chunk::Imported => {
                pending.drain(..take);
                sent += take as u64;
            }
            Chunk::NoEndpoint if sent == 0 => return Ok(Imported::NoEndpoint),
            Chunk::NoEndpoint => bail!("the import endpoint vanished after {sent} {collection}"),
            Chunk::TooLarge if chunk_rows > MIN_CHUNK_ROWS => chunk_rows /= 2,
            Chunk::TooLarge => bail!("import refuses even {chunk_rows}-row chunks as too large"),
        }
    }
}

/// Loads clients `rows` of the data set `seed` into the node behind `api`.
pub async fn load_clients(api: &Api, seed: u64, rows: Range<u64>) -> anyhow::Result<Loaded> {
    let total = rows.end.saturating_sub(rows.start);
    let began = Instant::now();
    let records = rows.clone().map(|n| generator::client(seed, n));
    match import_all(api, "clients", records).await? {
        Imported::All { chunk_rows } => Ok(Loaded {
            rows: total,
            elapsed: began.elapsed(),
            path: LoadPath::Import { chunk_rows },
        }),
        Imported::NoEndpoint => post_each(api, seed, rows).await,
    }
}

/// How many records of each related kind a data set of `clients` holds:
/// a contact person per 10 clients, a deal and an invoice (of 1 to 5
/// lines) per 20.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelatedCounts {
    pub contacts: u64,
    pub deals: u64,
    pub invoices: u64,
}

impl RelatedCounts {
    pub fn of(clients: u64) -> RelatedCounts {
        RelatedCounts {
            contacts: clients.div_ceil(10),
            deals: clients.div_ceil(20),
            invoices: clients.div_ceil(20),
        }
    }
}

/// The related records loaded.
#[derive(Debug, Clone, Copy)]
pub struct LoadedRelated {
    pub contacts: u64,
    pub deals: u64,
    pub invoices: u64,
    pub lines: u64,
    pub elapsed: Duration,
}

impl LoadedRelated {
    pub fn records(&self) -> u64 {
        self.contacts + self.deals + self.invoices + self.lines
    }
}

/// Spreads the `n`-th related record over `len` targets, not in runs.
fn spread(n: u64, len: usize) -> usize {
    generator::Rng::new(n).below(len)
}

/// Imports the contact persons, deals, invoices and invoice lines of the
/// data set `seed` with `clients` clients, whose ids are `client_ids`
/// (every client, in any order).
pub async fn load_related(
    api: &Api,
    seed: u64,
    clients: u64,
    client_ids: &[String],
) -> anyhow::Result<LoadedRelated> {
    anyhow::ensure!(!client_ids.is_empty(), "related records need clients");
    let counts = RelatedCounts::of(clients);
    let began = Instant::now();
    let client_of = |n: u64| client_ids[spread(n, client_ids.len())].as_str();
    let contacts = (0..counts.contacts).map(|n| generator::contact(seed, n, client_of(n)));
    require_import(import_all(api, "contacts", contacts).await?, "contacts")?;
    let deals = (0..counts.deals).map(|n| generator::deal(seed, n, client_of(n ^ 0xD)));
    require_import(import_all(api, "deals", deals).await?, "deals")?;

    // An invoice closes a deal of its client seven times in ten.
    let deals = api.list_all("deals", "id,client_id", "created_at").await?;
    let deals: Vec<(String, String)> = deals
        .iter()
        .map(|d| Ok((string_field(d, "id")?, string_field(d, "client_id")?)))
        .collect::<anyhow::Result<_>>()?;
    let invoices = (0..counts.invoices).map(|n| {
        match deals.get(spread(n, deals.len())).filter(|_| n % 10 < 7) {
            Some((deal, client)) => generator::invoice(seed, n, client, Some(deal)),
            None => generator::invoice(seed, n, client_of(n ^ 0x1A), None),
        }
    });
    require_import(import_all(api, "invoices", invoices).await?, "invoices")?;

    // Lines name their invoice's id, found by the invoice's number.
    let mut invoice_ids = vec![String::new(); counts.invoices as usize];
    for invoice in api.list_all("invoices", "id,number", "number").await? {
        let number = string_field(&invoice, "number")?;
        let slot = generator::invoice_index(&number)
            .and_then(|n| invoice_ids.get_mut(n as usize))
            .with_context(|| format!("an invoice the data set does not have: {number}"))?;
        *slot = string_field(&invoice, "id")?;
    }
    anyhow::ensure!(
        invoice_ids.iter().all(|id| !id.is_empty()),
        "the node lists fewer invoices than were imported"
    );
    let mut lines = 0u64;
    let records = invoice_ids.iter().enumerate().flat_map(|(n, id)| {
        generator::invoice_lines(seed, n as u64)
            .into_iter()
            .map(move |mut line| {
                line["invoice_id"] = Value::String(id.clone());
                line
            })
    });
    let records = records.inspect(|_| lines += 1);
    require_import(
        import_all(api, "invoice_lines", records).await?,
        "invoice_lines",
    )?;
    Ok(LoadedRelated {
        contacts: counts.contacts,
        deals: counts.deals,
        invoices: counts.invoices,
        lines,
        elapsed: began.elapsed(),
    })
}

fn require_import(imported: Imported, collection: &str) -> anyhow::Result<()> {
    match imported {
        Imported::All { .. } => Ok(()),
        Imported::NoEndpoint => bail!("the node has no import endpoint for {collection}"),
    }
}

/// The operation that creates generated client `first + i` of data set
/// `seed` by `POST /api/v1/clients`, for [`load::run`]: the HTTP creates'
/// figure and the loading fallback.
pub fn create_client(
    api: &Api,
    seed: u64,
    first: u64,
) -> anyhow::Result<impl Fn(u64) -> BoxedSend + Clone + Send + Sync + 'static> {
    let url = api.url("/api/v1/clients", &[])?;
    let client = Arc::new(api.lean()?);
    Ok(move |i| {
        let client = Arc::clone(&client);
        let target = Target::post_json(&url, &generator::client(seed, first + i));
        Box::pin(async move {
            let target = target.map_err(|e| format!("{e:#}"))?;
            client.send(&target).await.map(drop)
        }) as BoxedSend
    })
}

/// One operation of a load, boxed so that its type can be named.
pub type BoxedSend =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'static>>;

/// The fallback: one `POST /api/v1/clients` per record, 32 at a time.
async fn post_each(api: &Api, seed: u64, rows: Range<u64>) -> anyhow::Result<Loaded> {
    let total = rows.end.saturating_sub(rows.start);
    let create = create_client(api, seed, rows.start)?;
    let result = load::run(FALLBACK_CONCURRENCY, Stop::Count(total), create).await?;
    result.require_clean("loading clients by POST")?;
    Ok(Loaded {
        rows: total,
        elapsed: result.elapsed,
        path: LoadPath::PostFallback,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_follow_the_import_format() {
        assert_eq!(cell(Some(&json!("Москва"))), "Москва");
        assert_eq!(cell(Some(&json!("Москва, ул. 1"))), "\"Москва, ул. 1\"");
        assert_eq!(
            cell(Some(&json!("ООО \"Ромашка\""))),
            "\"ООО \"\"Ромашка\"\"\""
        );
        assert_eq!(cell(Some(&json!(["vip", "опт"]))), "vip;опт");
        assert_eq!(cell(Some(&json!([]))), "");
        assert_eq!(cell(Some(&Value::Null)), "");
        assert_eq!(cell(None), "");
        assert_eq!(
            cell(Some(&json!({"minor": 150000, "currency": "RUB"}))),
            "150000 RUB"
        );
    }

    #[test]
    fn related_counts_follow_the_clients() {
        let counts = RelatedCounts::of(1_000);
        assert_eq!(
            (counts.contacts, counts.deals, counts.invoices),
            (100, 50, 50)
        );
        assert_eq!(RelatedCounts::of(1).invoices, 1);
        let spread: std::collections::HashSet<usize> = (0..100).map(|n| spread(n, 1_000)).collect();
        assert!(spread.len() > 90, "related records crowd on few clients");
    }

    #[test]
    fn csv_has_a_header_and_one_line_per_row() {
        let columns = columns(3);
        assert!(columns.iter().any(|c| c == "name"));
        let text = csv(3, &columns, 10..15);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0], columns.join(","));
    }
}
