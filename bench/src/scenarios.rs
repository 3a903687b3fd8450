//! One function per figure of issue 4: each takes running nodes (or a
//! directory, for the in-process limit), measures, and answers the rows it
//! contributes to the table. Which node holds which data, and in what
//! order figures run, is `suite.rs`'s business.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use reqwest::{Method, Url};
use serde_json::{json, Value};

use crate::api::{Api, Round};
use crate::dataset::{self, Loaded, LoadedRelated};
use crate::figures::{self, Measurement};
use crate::generator;
use crate::inprocess;
use crate::lean_http::Target;
use crate::load::{self, LoadResult, Stop};
use crate::node_process::NodeProcess;
use crate::suite::Plan;

/// Concurrent clients of the latency figures (list, search): a few users
/// at once, so that p99 shows the query's cost rather than a queue.
pub const LATENCY_CONCURRENCY: usize = 4;
/// How often a node is polled for a record written at its peer.
const VISIBILITY_POLL: Duration = Duration::from_millis(5);
/// How long a write may take to show up at the peer before it counts as lost.
const VISIBILITY_DEADLINE: Duration = Duration::from_secs(10);
/// How often memory is sampled under load.
const MEMORY_POLL: Duration = Duration::from_millis(50);
/// Record numbers of records the figures create, far above any data set.
const CREATED_BASE: u64 = 1 << 40;
/// Added to operation numbers during a warm-up, so that warm-up and
/// measurement create different records.
const WARMUP_OFFSET: u64 = 1 << 36;
const MIB: f64 = 1024.0 * 1024.0;
/// The issue's memory targets are in megabytes.
const MB: f64 = 1_000_000.0;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// The value at `percentile` (0..=100) of `values` (nearest rank).
fn percentile(values: &[f64], percentile: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((percentile / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A warm-up of `plan.warmup` (not recorded), then a measured load of
/// `plan.measure`, both of `op` on `concurrency` tasks.
async fn measured<F, Fut>(plan: &Plan, concurrency: usize, op: F) -> anyhow::Result<LoadResult>
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    warm_up(plan, concurrency, &op).await?;
    load::run(concurrency, Stop::After(plan.measure), op).await
}

/// The warm-up of [`measured`] alone, for a scenario that reads the node
/// between it and the measured load.
async fn warm_up<F, Fut>(plan: &Plan, concurrency: usize, op: &F) -> anyhow::Result<()>
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    if !plan.warmup.is_zero() {
        let warm = op.clone();
        load::run(concurrency, Stop::After(plan.warmup), move |i| {
            warm(i + WARMUP_OFFSET)
        })
        .await?;
    }
    Ok(())
}

/// A measured load of GETs cycling through `urls`; fails on any error.
async fn get_cycle(
    plan: &Plan,
    api: &Api,
    urls: Vec<Url>,
    concurrency: usize,
) -> anyhow::Result<LoadResult> {
    ensure!(!urls.is_empty(), "no URLs to load");
    let targets = urls
        .iter()
        .map(Target::get)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let targets = Arc::new(targets);
    let client = Arc::new(api.lean()?);
    let result = measured(plan, concurrency, move |i| {
        let (client, targets) = (Arc::clone(&client), Arc::clone(&targets));
        async move {
            let target = &targets[(i % targets.len() as u64) as usize];
            client.send(target).await.map(drop)
        }
    })
    .await?;
    result.require_clean("GET load")?;
    Ok(result)
}

fn record_urls(api: &Api, ids: &[String]) -> anyhow::Result<Vec<Url>> {
    ids.iter()
        .map(|id| api.url(&format!("/api/v1/clients/{id}"), &[]))
        .collect()
}

/// The list queries: a broad and a narrow filter with the default sort,
/// a filter with a sort on another field; first pages and (where the data
/// set has one) second pages through the cursor.
const LIST_QUERIES: [&[(&str, &str)]; 3] = [
    &[("city", "Казань"), ("sort", "-updated_at"), ("limit", "50")],
    &[
        ("city", "Казань"),
        ("manager", "ivanov"),
        ("stage", "lost"),
        ("sort", "-updated_at"),
        ("limit", "50"),
    ],
    &[("stage", "regular"), ("sort", "name"), ("limit", "50")],
];

async fn list_urls(api: &Api) -> anyhow::Result<Vec<Url>> {
    let mut urls = Vec::new();
    let mut found = 0;
    for query in LIST_QUERIES {
        let first = api.get("/api/v1/clients", query).await?;
        found += first["items"].as_array().map_or(0, Vec::len);
        urls.push(api.url("/api/v1/clients", query)?);
        if let Some(cursor) = first["next_cursor"].as_str() {
            let mut second = query.to_vec();
            second.push(("cursor", cursor));
            urls.push(api.url("/api/v1/clients", &second)?);
        }
    }
    ensure!(found > 0, "the list queries find nothing");
    Ok(urls)
}

fn search_urls(api: &Api) -> anyhow::Result<Vec<Url>> {
    generator::search_terms()
        .into_iter()
        .map(|term| api.url("/api/v1/search", &[("q", term)]))
        .collect()
}

/// One of each group in turn (shorter groups repeat) until the longest is
/// used up: a mix with equal shares of every group.
fn interleave(groups: &[Vec<Url>]) -> Vec<Url> {
    let longest = groups.iter().map(Vec::len).max().unwrap_or(0);
    let mut mixed = Vec::with_capacity(longest * groups.len());
    for k in 0..longest {
        for group in groups.iter().filter(|g| !g.is_empty()) {
            mixed.push(group[k % group.len()].clone());
        }
    }
    mixed
}

/// The in-process create limit, measured in a fresh store in `dir`.
pub async fn inprocess_limit(plan: &Plan, dir: &std::path::Path) -> anyhow::Result<Measurement> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let result =
        inprocess::create_limit(dir, plan.seed, plan.inprocess_creates, plan.concurrency).await?;
    result.require_clean("in-process creates")?;
    Ok(
        Measurement::new(figures::INPROCESS_LIMIT, None, result.per_second()).with_note(format!(
            "{} concurrent, {}",
            plan.concurrency,
            result.summary()
        )),
    )
}

/// Bulk import: the rate at which the data set's clients were loaded; the
/// note adds the related records imported after them (not in the rate).
pub fn bulk_import(size: u64, loaded: &Loaded, related: &LoadedRelated) -> Measurement {
    Measurement::new(figures::IMPORT_RATE, Some(size), loaded.rows_per_second()).with_note(format!(
        "{} rows in {:.1} s; {}; then {} contact persons, {} deals, {} invoices and {} invoice lines in {:.1} s",
        loaded.rows,
        loaded.elapsed.as_secs_f64(),
        loaded.path.describe(),
        related.contacts,
        related.deals,
        related.invoices,
        related.lines,
        related.elapsed.as_secs_f64(),
    ))
}

/// GET a record by id, `plan.concurrency` concurrent, cycling through `ids`.
pub async fn get_by_id(
    plan: &Plan,
    api: &Api,
    ids: &[String],
    size: u64,
) -> anyhow::Result<Measurement> {
    let result = get_cycle(plan, api, record_urls(api, ids)?, plan.concurrency).await?;
    Ok(
        Measurement::new(figures::GET_RATE, Some(size), result.per_second()).with_note(format!(
            "{} ids; {}",
            ids.len(),
            result.summary()
        )),
    )
}

/// List pages with a filter and a sort: p99.
pub async fn list_page(plan: &Plan, api: &Api, size: u64) -> anyhow::Result<Measurement> {
    let urls = list_urls(api).await?;
    let pages = urls.len();
    let result = get_cycle(plan, api, urls, LATENCY_CONCURRENCY).await?;
    Ok(
        Measurement::new(figures::LIST_P99, Some(size), result.percentile_ms(99.0)).with_note(format!(
            "{LATENCY_CONCURRENCY} concurrent, {pages} pages (city=Казань; city=Казань&manager=ivanov&stage=lost; both sort=-updated_at; stage=regular sort=name); {:.0} req/s; {}",
            result.per_second(),
            result.summary()
        )),
    )
}

/// Full-text search for the generator's words: p99.
pub async fn search(plan: &Plan, api: &Api, size: u64) -> anyhow::Result<Measurement> {
    let urls = search_urls(api)?;
    let probe = api
        .get("/api/v1/search", &[("q", generator::search_terms()[0])])
        .await?;
    ensure!(
        probe["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty()),
        "search finds nothing for {:?}",
        generator::search_terms()[0]
    );
    let terms = urls.len();
    let result = get_cycle(plan, api, urls, LATENCY_CONCURRENCY).await?;
    Ok(
        Measurement::new(figures::SEARCH_P99, Some(size), result.percentile_ms(99.0)).with_note(
            format!(
                "{LATENCY_CONCURRENCY} concurrent, {terms} terms; {:.0} req/s; {}",
                result.per_second(),
                result.summary()
            ),
        ),
    )
}

/// Creating clients over HTTP, `plan.concurrency` concurrent: rate (with
/// its share of the in-process `limit`) and p99.
pub async fn create(
    plan: &Plan,
    node: &NodeProcess,
    size: u64,
    limit: Option<f64>,
) -> anyhow::Result<Vec<Measurement>> {
    let create_one = dataset::create_client(node.api(), plan.seed, CREATED_BASE)?;
    // The bytes are read around the measured load only: the warm-up's
    // creates are not in `result.ok`.
    warm_up(plan, plan.concurrency, &create_one).await?;
    let written_before = node.storage_writes();
    let result = load::run(plan.concurrency, Stop::After(plan.measure), create_one).await?;
    let written = node.storage_writes();
    result.require_clean("HTTP creates")?;
    let rate = result.per_second();
    let ratio = limit.filter(|l| *l > 0.0).map(|l| rate / l);
    // What the disk had to take per create (the WAL, and the checkpoint's
    // copies of it).
    let mut summary = result.summary();
    if let (Ok(before), Ok(after)) = (written_before, written) {
        summary.push_str(&format!(
            "; {:.1} KiB to storage per create",
            after.saturating_sub(before) as f64 / 1024.0 / (result.ok.max(1) as f64)
        ));
    }
    Ok(vec![
        Measurement::new(figures::CREATE_RATE, Some(size), rate)
            .with_ratio(ratio)
            .with_note(summary),
        Measurement::new(figures::CREATE_P99, Some(size), result.percentile_ms(99.0))
            .with_note(format!("{:.0} creates/s", rate)),
    ])
}

/// First sync of the empty node `b` from `a`, which holds `records`
/// records (`size` clients and their related records):
/// `b` adds `a` as a peer (with a token issued on `a`) and syncs until
/// caught up.
pub async fn first_sync(
    a: &NodeProcess,
    b: &NodeProcess,
    ids: &[String],
    size: u64,
    records: u64,
) -> anyhow::Result<Measurement> {
    let secret = a.issue_token("bench-b").await?;
    b.api().add_peer("a", a.url(), &secret).await?;
    let began = Instant::now();
    let round = b.api().sync("a").await?;
    let elapsed = began.elapsed();
    for id in [ids.first(), ids.last()].into_iter().flatten() {
        b.api()
            .get(&format!("/api/v1/clients/{id}"), &[])
            .await
            .context("a record of the peer is missing after the first sync")?;
    }
    let rate = records as f64 / elapsed.as_secs_f64().max(1e-9);
    Ok(
        Measurement::new(figures::FIRST_SYNC, Some(size), rate).with_note(format!(
            "{records} records in {:.2} s; pulled {} requests, {:.1} MiB, {} changes",
            elapsed.as_secs_f64(),
            round.pulled.requests,
            round.pulled.bytes as f64 / MIB,
            round.pulled.changes
        )),
    )
}

/// One timed sync round of `b` with its peer "a".
async fn timed_round(b: &Api) -> anyhow::Result<(Round, Duration)> {
    let began = Instant::now();
    let round = b.round("a").await?;
    Ok((round, began.elapsed()))
}

/// One record changed on `a` among `size`, pulled by the converged `b`:
/// round time and bytes pulled (medians of `plan.sync_repeats`).
pub async fn one_change(
    plan: &Plan,
    a: &Api,
    b: &Api,
    id: &str,
    size: u64,
) -> anyhow::Result<Vec<Measurement>> {
    let mut times = Vec::new();
    let mut bytes = Vec::new();
    for n in 0..plan.sync_repeats.max(1) {
        let patch = json!({"notes": format!("changed by crm-bench, round {n}")});
        a.json(
            Method::PATCH,
            &format!("/api/v1/clients/{id}"),
            &[],
            Some(&patch),
        )
        .await?;
        let (round, elapsed) = timed_round(b).await?;
        ensure!(
            round.pulled.applied >= 1,
            "the changed record was not pulled: {round:?}"
        );
        times.push(ms(elapsed));
        bytes.push(round.pulled.bytes as f64);
    }
    let note = format!(
        "median of {}; min {:.1} ms, max {:.1} ms",
        times.len(),
        percentile(&times, 0.0),
        percentile(&times, 100.0)
    );
    Ok(vec![
        Measurement::new(
            figures::ONE_CHANGE_TIME,
            Some(size),
            percentile(&times, 50.0),
        )
        .with_note(note),
        Measurement::new(
            figures::ONE_CHANGE_BYTES,
            Some(size),
            percentile(&bytes, 50.0),
        )
        .with_note("bytes of the pull step (feed request and answer)"),
    ])
}

/// A sync round between converged nodes: requests per direction, bytes
/// both ways (worst of `plan.sync_repeats`) and time (median).
pub async fn noop_sync(plan: &Plan, b: &Api, size: u64) -> anyhow::Result<Vec<Measurement>> {
    let mut times = Vec::new();
    let mut requests = 0;
    let mut bytes = 0;
    for _ in 0..plan.sync_repeats.max(1) {
        let (round, elapsed) = timed_round(b).await?;
        ensure!(
            round.pulled.applied == 0 && round.pushed.applied == 0,
            "a no-op round moved changes: {round:?}"
        );
        times.push(ms(elapsed));
        requests = requests.max(round.pulled.requests.max(round.pushed.requests));
        bytes = bytes.max(round.pulled.bytes + round.pushed.bytes);
    }
    let worst = format!("worst of {} rounds", times.len());
    Ok(vec![
        Measurement::new(figures::NOOP_REQUESTS, Some(size), requests as f64)
            .with_note(worst.clone()),
        Measurement::new(figures::NOOP_BYTES, Some(size), bytes as f64).with_note(worst),
        Measurement::new(figures::NOOP_TIME, Some(size), percentile(&times, 50.0)).with_note(
            format!(
                "median of {}; max {:.1} ms",
                times.len(),
                percentile(&times, 100.0)
            ),
        ),
    ])
}

/// Start-up to a ready `/healthz` with the data set.
pub fn startup(size: u64, took: Duration) -> Measurement {
    Measurement::new(figures::STARTUP, Some(size), took.as_secs_f64())
        .with_note("restart after SIGTERM, timed from spawn")
}

/// Polls `b` until a client named `name` is listed; the time it took, or
/// `None` past the deadline. Sorted by name, so that each poll is an index
/// look-up and the figure shows replication, not the list's cost (which
/// the list figure measures).
async fn wait_visible(b: &Api, name: &str) -> anyhow::Result<Option<Duration>> {
    let began = Instant::now();
    while began.elapsed() < VISIBILITY_DEADLINE {
        let query = [
            ("name", name),
            ("sort", "name"),
            ("limit", "1"),
            ("fields", "id"),
        ];
        let page = b.get("/api/v1/clients", &query).await?;
        if page["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty())
        {
            return Ok(Some(began.elapsed()));
        }
        tokio::time::sleep(VISIBILITY_POLL).await;
    }
    Ok(None)
}

/// A write acknowledged at `a` until it shows in a list at `b`, with
/// continuous sync: p95 over `plan.visibility_samples` writes (one
/// unrecorded write first). A write not seen within the deadline counts
/// as the deadline.
pub async fn visibility(plan: &Plan, a: &Api, b: &Api, size: u64) -> anyhow::Result<Measurement> {
    let nonce = chrono::Utc::now().timestamp_millis();
    let mut samples = Vec::new();
    let mut lost = 0;
    for n in 0..=plan.visibility_samples as u64 {
        let mut record = generator::client(plan.seed, CREATED_BASE + WARMUP_OFFSET + n);
        let name = format!("crm-bench visible {nonce} {n}");
        record["name"] = Value::String(name.clone());
        a.create("clients", &record).await?;
        let seen = wait_visible(b, &name).await?;
        if n == 0 {
            continue; // warm-up: the peer's worker may still be connecting
        }
        match seen {
            Some(took) => samples.push(ms(took)),
            None => {
                lost += 1;
                samples.push(ms(VISIBILITY_DEADLINE));
            }
        }
    }
    if lost == samples.len() {
        bail!("no write at A became visible at B within {VISIBILITY_DEADLINE:?}");
    }
    let mut note = format!(
        "{} writes; p50 {:.1} ms, max {:.1} ms",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 100.0)
    );
    if lost > 0 {
        note.push_str(&format!(
            "; {lost} not visible within {VISIBILITY_DEADLINE:?}"
        ));
    }
    Ok(Measurement::new(
        figures::VISIBILITY_P95,
        Some(size),
        percentile(&samples, 95.0),
    )
    .with_note(note))
}

/// Peak RSS of `node` while it serves GETs, list pages and searches in
/// equal shares (`plan.concurrency` concurrent), sampled every 50 ms.
pub async fn memory_under_load(
    plan: &Plan,
    node: &NodeProcess,
    ids: &[String],
    size: u64,
) -> anyhow::Result<Measurement> {
    let api = node.api();
    let urls = interleave(&[
        record_urls(api, ids)?,
        list_urls(api).await?,
        search_urls(api)?,
    ]);
    let peak = Arc::new(AtomicU64::new(node.memory()?.rss));
    let stop = Arc::new(AtomicBool::new(false));
    let pid = node.pid().context("the node is not running")?;
    let sampler = {
        let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(memory) = crate::node_process::memory_of(pid) {
                    peak.fetch_max(memory.rss, Ordering::Relaxed);
                }
                tokio::time::sleep(MEMORY_POLL).await;
            }
        })
    };
    let load = get_cycle(plan, api, urls, plan.concurrency).await;
    stop.store(true, Ordering::Relaxed);
    sampler.await.context("the memory sampler panicked")?;
    let load = load?;
    let memory = node.memory()?;
    let peak = peak.load(Ordering::Relaxed).max(memory.rss) as f64 / MB;
    Ok(
        Measurement::new(figures::RSS, Some(size), peak).with_note(format!(
            "GET/list/search mix, {} concurrent, {:.0} req/s; VmHWM since start {:.0} MB",
            plan.concurrency,
            load.per_second(),
            memory.peak as f64 / MB
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 95.0), 95.0);
        assert_eq!(percentile(&values, 50.0), 50.0);
        assert_eq!(percentile(&values, 0.0), 1.0);
        assert_eq!(percentile(&values, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 95.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
    }

    #[test]
    fn interleaving_gives_equal_shares() {
        let url = |s: &str| Url::parse(&format!("http://127.0.0.1/{s}")).expect("a URL");
        let mixed = interleave(&[
            vec![url("a1"), url("a2"), url("a3")],
            vec![url("b")],
            vec![],
        ]);
        let paths: Vec<&str> = mixed.iter().map(Url::path).collect();
        assert_eq!(paths, ["/a1", "/b", "/a2", "/b", "/a3", "/b"]);
    }
}
