//! Loading a data set of generated clients into a node: as CSV through
//! `POST /api/v1/import/clients` in chunks, or, while a node has no import
//! endpoint (404/405), by concurrent `POST /api/v1/clients`. The result
//! says which path loaded the data.

use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use reqwest::StatusCode;
use serde_json::Value;

use crate::api::{self, Api};
use crate::generator;
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

/// The CSV columns: the generator's field names, in a fixed order.
pub fn columns(seed: u64) -> Vec<String> {
    match generator::client(seed, 0) {
        Value::Object(fields) => fields.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// One CSV cell: sets joined with ';', absent or null as an empty cell,
/// quoted when it holds a comma, a quote or a line break.
fn cell(value: Option<&Value>) -> String {
    let text = match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(";"),
        Some(other) => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The CSV of clients `rows` of the data set `seed`, with a header row.
pub fn csv(seed: u64, columns: &[String], rows: Range<u64>) -> String {
    let mut out = columns.join(",");
    out.push('\n');
    for n in rows {
        let record = generator::client(seed, n);
        let cells: Vec<String> = columns.iter().map(|c| cell(record.get(c))).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

enum Chunk {
    Imported,
    NoEndpoint,
    TooLarge,
}

async fn import_chunk(api: &Api, body: String, rows: u64) -> anyhow::Result<Chunk> {
    let url = api.url("/api/v1/import/clients", &[])?;
    let response = api
        .client()
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "text/csv")
        .body(body)
        .timeout(IMPORT_TIMEOUT)
        .send()
        .await
        .context("POST /api/v1/import/clients")?;
    let status = response.status();
    let text = response.text().await.context("reading the import answer")?;
    match status {
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => return Ok(Chunk::NoEndpoint),
        StatusCode::PAYLOAD_TOO_LARGE => return Ok(Chunk::TooLarge),
        s if !s.is_success() => {
            let excerpt: String = text.chars().take(600).collect();
            bail!("import answered {s}: {excerpt}");
        }
        _ => {}
    }
    let answer: Value = serde_json::from_str(&text).context("import answer is not JSON")?;
    let imported = answer["imported"]
        .as_u64()
        .context("import answer without `imported`")?;
    if imported != rows {
        bail!("import took {imported} of {rows} rows: {text}");
    }
    Ok(Chunk::Imported)
}

/// Loads clients `rows` of the data set `seed` into the node behind `api`.
pub async fn load_clients(api: &Api, seed: u64, rows: Range<u64>) -> anyhow::Result<Loaded> {
    let total = rows.end.saturating_sub(rows.start);
    let columns = columns(seed);
    let began = Instant::now();
    let mut chunk_rows = CHUNK_ROWS;
    let mut next = rows.start;
    // Bounded: every pass imports a chunk or halves the chunk size.
    let max_passes = total / MIN_CHUNK_ROWS as u64 + 64;
    for _ in 0..max_passes {
        if next >= rows.end {
            return Ok(Loaded {
                rows: total,
                elapsed: began.elapsed(),
                path: LoadPath::Import { chunk_rows },
            });
        }
        let end = (next + chunk_rows as u64).min(rows.end);
        let body = csv(seed, &columns, next..end);
        match import_chunk(api, body, end - next).await? {
            Chunk::Imported => next = end,
            Chunk::NoEndpoint if next == rows.start => return post_each(api, seed, rows).await,
            Chunk::NoEndpoint => bail!(
                "the import endpoint vanished after {} rows",
                next - rows.start
            ),
            Chunk::TooLarge if chunk_rows > MIN_CHUNK_ROWS => chunk_rows /= 2,
            Chunk::TooLarge => bail!("import refuses even {chunk_rows}-row chunks as too large"),
        }
    }
    bail!("import of {total} rows did not finish in {max_passes} requests")
}

/// The fallback: one `POST /api/v1/clients` per record, 32 at a time.
async fn post_each(api: &Api, seed: u64, rows: Range<u64>) -> anyhow::Result<Loaded> {
    let total = rows.end.saturating_sub(rows.start);
    let first = rows.start;
    let url = api.url("/api/v1/clients", &[])?;
    let client = api.client().clone();
    let result = load::run(FALLBACK_CONCURRENCY, Stop::Count(total), move |i| {
        let request = client
            .post(url.clone())
            .json(&generator::client(seed, first + i));
        async move { api::check(request.send().await).await.map(drop) }
    })
    .await?;
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
