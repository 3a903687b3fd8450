//! The order of a run: the in-process limit once, then for each data-set
//! size a fresh node A loaded with the set (the clients, then their
//! contact persons, deals and invoices with lines), the read figures, a new node B
//! that syncs from A, a restart of both with continuous sync, memory under
//! load, and HTTP creates last (so that every earlier figure sees exactly
//! the data set), once the disk has written out what the earlier steps
//! left. A figure that fails becomes a FAILED row; the run goes on.
//! `--only` picks groups of figures ([`Group`]); the rest are not run.
//! `--data-sets` keeps the loaded sets and starts later runs on copies
//! ([`crate::data_sets`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::api::Api;
use crate::data_sets::KeptDataSet;
use crate::dataset;
use crate::figures::{self, Measurement, Spec};
use crate::node_process::NodeProcess;
use crate::scenarios;
use crate::settle;

/// How much a run measures.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    pub sizes: Vec<u64>,
    /// Concurrent clients of the throughput figures.
    pub concurrency: usize,
    /// Unrecorded load before each measured load.
    pub warmup: Duration,
    /// Length of each measured load.
    pub measure: Duration,
    pub visibility_samples: usize,
    /// Rounds behind the one-change and no-op sync figures.
    pub sync_repeats: usize,
    pub inprocess_creates: u64,
    /// Ids fetched for the GET figure.
    pub sample_ids: usize,
    /// Where the temporary data folders go.
    pub work_dir: PathBuf,
    /// The groups of figures measured; empty: all of them.
    pub only: Vec<Group>,
    /// Where loaded data sets are kept and reused (`--data-sets`).
    pub data_sets: Option<PathBuf>,
    /// How long node B may take to settle after its first sync before the
    /// converged figures are measured anyway (see `settle`).
    pub settle_at_most: Duration,
}

/// Figures measured together, for `crm-bench run --only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// The in-process create limit.
    Limit,
    /// GET by id, list pages, search.
    Reads,
    /// First sync, one changed record, no-op sync, write-to-visible.
    Sync,
    /// Start-up and memory under load.
    Restart,
    /// HTTP creates and their p99.
    Creates,
}

/// The figures each group measures. The import is in none: every run loads
/// the data set, so it is always measured.
const GROUP_FIGURES: &[(Group, &[Spec])] = &[
    (Group::Limit, &[figures::INPROCESS_LIMIT]),
    (
        Group::Reads,
        &[figures::GET_RATE, figures::LIST_P99, figures::SEARCH_P99],
    ),
    (
        Group::Sync,
        &[
            figures::FIRST_SYNC,
            figures::ONE_CHANGE_TIME,
            figures::ONE_CHANGE_BYTES,
            figures::NOOP_REQUESTS,
            figures::NOOP_BYTES,
            figures::NOOP_TIME,
            figures::VISIBILITY_P95,
        ],
    ),
    (Group::Restart, &[figures::STARTUP, figures::RSS]),
    (Group::Creates, &[figures::CREATE_RATE, figures::CREATE_P99]),
];

impl Group {
    /// The group `spec` is measured in; none for the import.
    fn of(spec: Spec) -> Option<Group> {
        GROUP_FIGURES
            .iter()
            .find(|(_, specs)| specs.contains(&spec))
            .map(|(group, _)| *group)
    }
}

impl Plan {
    /// Whether the run measures `group`.
    fn measures(&self, group: Group) -> bool {
        self.only.is_empty() || self.only.contains(&group)
    }

    /// Whether the run measures `spec`.
    fn measures_spec(&self, spec: Spec) -> bool {
        Group::of(spec).is_none_or(|group| self.measures(group))
    }

    /// The full benchmark.
    pub fn full(sizes: Vec<u64>, measure: Duration, work_dir: PathBuf) -> Plan {
        Plan {
            seed: 42,
            sizes,
            concurrency: 32,
            warmup: Duration::from_secs(2),
            measure,
            visibility_samples: 200,
            sync_repeats: 10,
            inprocess_creates: 30_000,
            sample_ids: 10_000,
            work_dir,
            only: Vec::new(),
            data_sets: None,
            settle_at_most: Duration::from_secs(600),
        }
    }

    /// The smoke mode: tiny data sets and short loads, to check that every
    /// figure produces a number.
    pub fn smoke(work_dir: PathBuf) -> Plan {
        Plan {
            seed: 42,
            sizes: vec![200, 500],
            concurrency: 32,
            warmup: Duration::from_millis(100),
            measure: Duration::from_millis(300),
            visibility_samples: 10,
            sync_repeats: 2,
            inprocess_creates: 300,
            sample_ids: 100,
            work_dir,
            only: Vec::new(),
            data_sets: None,
            // The wait is run, but a busy CI machine must not hold it up.
            settle_at_most: Duration::from_secs(10),
        }
    }
}

/// The figures measured at each size: every group's but the limit's
/// (measured once per run), and the import.
fn per_size() -> impl Iterator<Item = Spec> {
    GROUP_FIGURES
        .iter()
        .filter(|(group, _)| *group != Group::Limit)
        .flat_map(|(_, specs)| specs.iter().copied())
        .chain([figures::IMPORT_RATE])
}

/// Collects rows; a failed step becomes FAILED rows for its figures.
struct Rows {
    rows: Vec<Measurement>,
    /// Figures left out on purpose at a size (the import of a kept data
    /// set): no row, and not a failure.
    left_out: Vec<(Spec, u64)>,
    began: Instant,
}

impl Rows {
    fn add(
        &mut self,
        specs: &[Spec],
        size: Option<u64>,
        outcome: anyhow::Result<Vec<Measurement>>,
    ) {
        match outcome {
            Ok(rows) => {
                for row in &rows {
                    self.progress(&format!(
                        "{}: {} {}",
                        row.spec.name,
                        row.value.map_or("-".to_owned(), figures::number),
                        row.spec.unit
                    ));
                }
                self.rows.extend(rows);
            }
            Err(e) => {
                self.progress(&format!(
                    "FAILED {}: {e:#}",
                    specs.first().map_or("", |s| s.name)
                ));
                for spec in specs {
                    self.rows
                        .push(Measurement::failed(*spec, size, format!("{e:#}")));
                }
            }
        }
    }

    fn one(&mut self, spec: Spec, size: Option<u64>, outcome: anyhow::Result<Measurement>) {
        self.add(&[spec], size, outcome.map(|m| vec![m]));
    }

    /// Adds FAILED rows for every per-size figure of `plan` not yet
    /// measured at `size`.
    fn fail_rest(&mut self, plan: &Plan, size: u64, why: &anyhow::Error) {
        for spec in per_size().filter(|spec| plan.measures_spec(*spec)) {
            let done = self
                .rows
                .iter()
                .any(|r| r.spec == spec && r.size == Some(size))
                || self.left_out.contains(&(spec, size));
            if !done {
                self.rows
                    .push(Measurement::failed(spec, Some(size), format!("{why:#}")));
            }
        }
    }

    fn progress(&self, what: &str) {
        eprintln!(
            "crm-bench [{:>6.1} s] {what}",
            self.began.elapsed().as_secs_f64()
        );
    }
}

/// Runs every figure at every size of `plan` against the `crm-node` at
/// `node_bin`; answers the rows in table order.
pub async fn run(plan: &Plan, node_bin: &Path) -> anyhow::Result<Vec<Measurement>> {
    std::fs::create_dir_all(&plan.work_dir)
        .with_context(|| format!("creating {}", plan.work_dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix("crm-bench-")
        .tempdir_in(&plan.work_dir)
        .context("creating the work folder")?;
    let mut rows = Rows {
        rows: Vec::new(),
        left_out: Vec::new(),
        began: Instant::now(),
    };
    let mut limit_value = None;
    if plan.measures(Group::Limit) {
        rows.progress("in-process create limit");
        let limit = scenarios::inprocess_limit(plan, &work.path().join("inprocess")).await;
        limit_value = limit.as_ref().ok().and_then(|m| m.value);
        rows.one(figures::INPROCESS_LIMIT, None, limit);
    }
    for &size in &plan.sizes {
        let dir = work.path().join(format!("n{size}"));
        let why = match at_size(plan, node_bin, &dir, size, limit_value, &mut rows).await {
            Ok(()) => anyhow::anyhow!("not measured: an earlier step failed"),
            Err(e) => {
                rows.progress(&format!("size {size} stopped: {e:#}"));
                e
            }
        };
        rows.fail_rest(plan, size, &why);
        // Best effort: the whole work folder goes when the run ends anyway.
        let _ = std::fs::remove_dir_all(&dir);
    }
    let order = |m: &Measurement| {
        let spec = figures::ALL
            .iter()
            .position(|s| *s == m.spec)
            .unwrap_or(usize::MAX);
        (spec, m.size)
    };
    rows.rows.sort_by_key(order);
    Ok(rows.rows)
}

/// Writes out the machine's dirty pages before the creates, which are
/// bound by the disk: at 1,000,000 node B's first sync leaves gigabytes
/// to write back, on a disk that a real node B, on a machine of its own,
/// would not share with node A. (It was not what slowed the creates at
/// 1,000,000: BENCHMARKS.md, twelfth round.)
async fn flush_disk() -> anyhow::Result<()> {
    let status = tokio::process::Command::new("sync")
        .status()
        .await
        .context("running sync")?;
    anyhow::ensure!(status.success(), "sync failed: {status}");
    Ok(())
}

/// Every per-size figure with a data set of `size` clients.
async fn at_size(
    plan: &Plan,
    node_bin: &Path,
    dir: &Path,
    size: u64,
    limit: Option<f64>,
    rows: &mut Rows,
) -> anyhow::Result<()> {
    let (mut a, mut ids, related) = node_a(plan, node_bin, dir, size, rows).await?;
    ids.truncate(plan.sample_ids);

    if plan.measures(Group::Reads) {
        let get = scenarios::get_by_id(plan, a.api(), &ids, size).await;
        rows.one(figures::GET_RATE, Some(size), get);
        let list = scenarios::list_page(plan, a.api(), size).await;
        rows.one(figures::LIST_P99, Some(size), list);
        let search = scenarios::search(plan, a.api(), size).await;
        rows.one(figures::SEARCH_P99, Some(size), search);
    }

    let mut b = None;
    let mut converged = false;
    if plan.measures(Group::Sync) {
        rows.progress(&format!("size {size}: node B, first sync from A"));
        let node = NodeProcess::start(node_bin, &dir.join("b"), "bench-b", false).await?;
        let records = size + related;
        let synced = scenarios::first_sync(&a, &node, &ids, size, records).await;
        converged = synced.is_ok();
        rows.one(figures::FIRST_SYNC, Some(size), synced);
        if converged {
            let settled = match node.pid() {
                Some(pid) => settle::settle(pid, node.api(), plan.settle_at_most).await,
                None => Err(anyhow::anyhow!("node B is not running")),
            };
            let note = match settled {
                Ok(settled) => settled.note(),
                Err(e) => format!("could not wait for node B to settle: {e:#}"),
            };
            rows.progress(&format!("size {size}: {note}"));
            sync_rounds(plan, a.api(), node.api(), &ids[0], size, rows, &note).await;
        }
        b = Some(node);
    }

    if plan.measures(Group::Restart) || plan.measures(Group::Sync) {
        rows.progress(&format!("size {size}: restart with continuous sync"));
        let took = a.restart(true).await?;
        if plan.measures(Group::Restart) {
            rows.one(
                figures::STARTUP,
                Some(size),
                Ok(scenarios::startup(size, took)),
            );
        }
        if let Some(b) = &mut b {
            b.restart(true).await?;
            let visible = if converged {
                scenarios::visibility(plan, a.api(), b.api(), size).await
            } else {
                Err(anyhow::anyhow!("skipped: the first sync failed"))
            };
            rows.one(figures::VISIBILITY_P95, Some(size), visible);
        }
        if plan.measures(Group::Restart) {
            let memory = scenarios::memory_under_load(plan, &a, &ids, size).await;
            rows.one(figures::RSS, Some(size), memory);
        }
    }
    if let Some(mut b) = b {
        b.stop().await?;
    }

    if !plan.measures(Group::Creates) {
        a.stop().await?;
        return Ok(());
    }
    rows.progress(&format!("size {size}: HTTP creates"));
    flush_disk().await?;
    let created = scenarios::create(plan, &a, size, limit).await;
    rows.add(
        &[figures::CREATE_RATE, figures::CREATE_P99],
        Some(size),
        created,
    );
    a.stop().await?;
    Ok(())
}

/// Node A with the data set of `size` clients, their ids (every client)
/// and how many other records it holds. The set is loaded through the
/// import, which is measured; with `--data-sets`, node A starts on a copy
/// of the set kept there instead, or, when none is, keeps the one it loaded
/// (and restarts).
async fn node_a(
    plan: &Plan,
    node_bin: &Path,
    dir: &Path,
    size: u64,
    rows: &mut Rows,
) -> anyhow::Result<(NodeProcess, Vec<String>, u64)> {
    let data = dir.join("a");
    let kept = plan
        .data_sets
        .as_deref()
        .map(|root| KeptDataSet::of(root, size));
    if let Some(kept) = kept.as_ref().filter(|kept| kept.exists()) {
        rows.progress(&format!(
            "size {size}: starting node A on a copy of the data set kept in {} (no import)",
            kept.dir().display()
        ));
        let related = kept.restore(&data)?;
        rows.left_out.push((figures::IMPORT_RATE, size));
        flush_disk().await?;
        let a = NodeProcess::start(node_bin, &data, "bench-a", false).await?;
        let ids = every_client(&a, size).await?;
        return Ok((a, ids, related));
    }
    rows.progress(&format!(
        "size {size}: starting node A and loading the data set"
    ));
    let mut a = NodeProcess::start(node_bin, &data, "bench-a", false).await?;
    let loaded = dataset::load_clients(a.api(), plan.seed, 0..size).await?;
    let ids = every_client(&a, size).await?;
    rows.progress(&format!(
        "size {size}: contact persons, deals, invoices and their lines"
    ));
    let related = dataset::load_related(a.api(), plan.seed, size, &ids).await?;
    rows.one(
        figures::IMPORT_RATE,
        Some(size),
        Ok(scenarios::bulk_import(size, &loaded, &related)),
    );
    if let Some(kept) = kept {
        rows.progress(&format!(
            "size {size}: keeping the data set in {}",
            kept.dir().display()
        ));
        a.stop().await?;
        kept.save(&data, related.records())?;
        a.restart(false).await?;
    }
    Ok((a, ids, related.records()))
}

/// The ids of every client of node A, which must hold `size` of them.
async fn every_client(a: &NodeProcess, size: u64) -> anyhow::Result<Vec<String>> {
    let ids = a.api().ids("clients", usize::MAX).await?;
    anyhow::ensure!(
        ids.len() as u64 == size,
        "node A lists {} clients after loading {size}",
        ids.len()
    );
    Ok(ids)
}

/// The figures of rounds between converged nodes, each noted with `note`
/// (how long node B took to settle after its first sync).
async fn sync_rounds(
    plan: &Plan,
    a: &Api,
    b: &Api,
    id: &str,
    size: u64,
    rows: &mut Rows,
    note: &str,
) {
    let noted = |measured: anyhow::Result<Vec<Measurement>>| {
        measured.map(|all| {
            all.into_iter()
                .map(|m| {
                    let with = format!("{}; {note}", m.note);
                    m.with_note(with)
                })
                .collect::<Vec<_>>()
        })
    };
    let changed = noted(scenarios::one_change(plan, a, b, id, size).await);
    rows.add(
        &[figures::ONE_CHANGE_TIME, figures::ONE_CHANGE_BYTES],
        Some(size),
        changed,
    );
    let noop = noted(scenarios::noop_sync(plan, b, size).await);
    rows.add(
        &[
            figures::NOOP_REQUESTS,
            figures::NOOP_BYTES,
            figures::NOOP_TIME,
        ],
        Some(size),
        noop,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_picks_its_groups_and_the_import_always() {
        let mut plan = Plan::smoke(PathBuf::from("/tmp"));
        assert!(per_size().all(|spec| plan.measures_spec(spec)));
        // Only the import, which every run measures, is in no group.
        let ungrouped: Vec<&str> = per_size()
            .filter(|spec| Group::of(*spec).is_none())
            .map(|spec| spec.name)
            .collect();
        assert_eq!(ungrouped, [figures::IMPORT_RATE.name]);
        assert_eq!(Group::of(figures::INPROCESS_LIMIT), Some(Group::Limit));
        plan.only = vec![Group::Creates];
        let measured: Vec<&str> = per_size()
            .filter(|spec| plan.measures_spec(*spec))
            .map(|spec| spec.name)
            .collect();
        assert_eq!(
            measured,
            [
                figures::CREATE_RATE.name,
                figures::CREATE_P99.name,
                figures::IMPORT_RATE.name
            ]
        );
        assert!(!plan.measures(Group::Limit));
        plan.only = vec![Group::Sync, Group::Reads];
        assert!(plan.measures_spec(figures::VISIBILITY_P95));
        assert!(plan.measures_spec(figures::NOOP_BYTES));
        assert!(plan.measures_spec(figures::SEARCH_P99));
        assert!(!plan.measures_spec(figures::RSS));
    }
}
