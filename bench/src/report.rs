//! The results table and its context (date, machine, command, versions),
//! printed on stdout and added to BENCHMARKS.md under "## Runs", newest
//! first, keeping earlier runs.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::cpu_probe::CpuProbe;
use crate::figures::{self, Measurement};

const RUNS_HEADING: &str = "## Runs";
const FILE_HEADER: &str = "# Benchmarks

Results of `crm-bench` (the `bench/` crate): the figures of issue 4 measured
against their targets. How to run it: README.md, \"Benchmarks\". Every run is
added under \"Runs\", newest first, so earlier results stay for comparison.

Verdicts: \"meets goal\"; \"meets must\" (reaches the \"must reach\" target, not
the goal); \"MISSES\" (below \"must reach\"); \"below goal\" (a figure with a goal
only); \"FAILED\" (not measured, the note says why). \"ratio to limit\" is the
figure as a share of the limit measured in the same run (HTTP creates versus
the in-process create pipeline).
";

/// What a run was, besides its figures.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub date: DateTime<Utc>,
    pub command: String,
    pub machine: String,
    pub node_version: String,
    pub rustc: String,
    pub sqlite: &'static str,
    pub automerge: &'static str,
    pub node_path: String,
    pub took: Duration,
    /// The CPU probe at the start and (once done) at the end of the run;
    /// none from an unoptimized harness (smoke runs, tests).
    pub cpu: Option<(CpuProbe, Option<CpuProbe>)>,
}

impl RunInfo {
    pub fn new(
        command: String,
        node_version: String,
        node_path: &Path,
        cpu: Option<CpuProbe>,
    ) -> RunInfo {
        RunInfo {
            date: Utc::now(),
            command,
            machine: machine(),
            node_version,
            rustc: rustc_version(),
            sqlite: rusqlite::version(),
            automerge: "0.12",
            node_path: shown_path(node_path),
            took: Duration::ZERO,
            cpu: cpu.map(|start| (start, None)),
        }
    }
}

/// `path` relative to the workspace when inside it, so that reports do
/// not show where someone's checkout lives.
fn shown_path(path: &Path) -> String {
    let root = crate::node_process::workspace_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn first_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find(|line| line.starts_with(key))
        .and_then(|line| line.split_once(':'))
        .map(|(_, value)| value.trim())
}

/// CPU model, cores and memory, from /proc.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = first_value(&cpuinfo, "model name").unwrap_or("unknown CPU");
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = first_value(&meminfo, "MemTotal")
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or("unknown RAM".to_owned(), |kb| {
            format!("{:.1} GiB RAM", kb / 1024.0 / 1024.0)
        });
    format!("{model}, {cores} cores, {memory}")
}

/// `rustc -V`, or "unknown" where no rustc is on the path.
pub fn rustc_version() -> String {
    let rustc = std::env::var_os("RUSTC").unwrap_or("rustc".into());
    std::process::Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// A table cell: no line breaks, pipes escaped.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The results as a Markdown table, one row per figure and size.
pub fn table(rows: &[Measurement]) -> String {
    let mut out = String::from(
        "| figure | size | measured | unit | must reach | goal | verdict | ratio to limit | notes |\n\
         | --- | ---: | ---: | --- | --- | --- | --- | ---: | --- |\n",
    );
    for row in rows {
        let size = row
            .size
            .map_or("—".to_owned(), |s| figures::number(s as f64));
        let value = row.value.map_or("—".to_owned(), figures::number);
        let must = row.spec.must.map_or("—".to_owned(), |b| b.show());
        let ratio = row
            .ratio
            .map_or("—".to_owned(), |r| format!("{:.0}%", r * 100.0));
        out.push_str(&format!(
            "| {} | {size} | {value} | {} | {must} | {} | {} | {ratio} | {} |\n",
            cell(row.spec.name),
            row.spec.unit,
            row.goal_text(),
            row.verdict().show(),
            cell(&row.note),
        ));
    }
    out
}

/// A run as a section of BENCHMARKS.md: heading, context, table.
pub fn render(info: &RunInfo, rows: &[Measurement]) -> String {
    let took = info.took.as_secs();
    format!(
        "### {} UTC: `{}`\n\n\
         - machine: {}\n\
         - versions: {}; {}; SQLite {}; automerge {}\n\
         - node binary: `{}`\n\
         {}\
         - took: {} min {} s\n\n{}",
        info.date.format("%Y-%m-%d %H:%M"),
        info.command,
        info.machine,
        info.node_version,
        info.rustc,
        info.sqlite,
        info.automerge,
        info.node_path,
        info.cpu.map_or(String::new(), |(start, end)| format!(
            "- CPU probe: {}\n",
            CpuProbe::describe(start, end)
        )),
        took / 60,
        took % 60,
        table(rows)
    )
}

/// `existing` (the file's text, if any) with `run` added first under
/// "## Runs".
pub fn with_run(existing: Option<&str>, run: &str) -> String {
    let existing = existing.unwrap_or(FILE_HEADER);
    let heading = existing
        .match_indices(RUNS_HEADING)
        .find(|(at, _)| {
            let line_start = *at == 0 || existing[..*at].ends_with('\n');
            let rest = &existing[at + RUNS_HEADING.len()..];
            line_start && (rest.is_empty() || rest.starts_with('\n'))
        })
        .map(|(at, _)| at);
    match heading {
        Some(at) => {
            let after = at + RUNS_HEADING.len();
            let rest = existing[after..].trim_start_matches('\n');
            format!("{}\n\n{run}\n{rest}", &existing[..after])
        }
        None => format!("{}\n\n{RUNS_HEADING}\n\n{run}", existing.trim_end()),
    }
}

/// Adds `run` to the BENCHMARKS.md at `path` (created if missing).
pub fn record(path: &Path, run: &str) -> anyhow::Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let text = with_run(existing.as_deref(), run);
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_go_newest_first_and_history_stays() {
        let first = with_run(None, "### run 1\n");
        assert!(first.starts_with("# Benchmarks"));
        assert!(first.ends_with("## Runs\n\n### run 1\n"));
        let second = with_run(Some(&first), "### run 2\n");
        let (one, two) = (second.find("run 1"), second.find("run 2"));
        assert!(two < one, "{second}");
        assert!(second.contains("## Runs\n\n### run 2\n\n### run 1\n"));
        let foreign = with_run(Some("# Notes\n\nhand-written\n"), "### run 3\n");
        assert_eq!(foreign, "# Notes\n\nhand-written\n\n## Runs\n\n### run 3\n");
    }

    #[test]
    fn table_has_one_row_per_measurement() {
        let rows = vec![
            Measurement::new(figures::GET_RATE, Some(10_000), 20_000.0).with_note("a | b"),
            Measurement::failed(figures::RSS, Some(10_000), "node died".into()),
        ];
        let text = table(&rows);
        assert_eq!(text.lines().count(), 4);
        assert!(text.contains("| 10,000 | 20,000 | req/s | ≥ 15,000 | ≥ 30,000 | meets must |"));
        assert!(text.contains("a \\| b"));
        assert!(text.contains("FAILED"));
    }

    #[test]
    fn machine_and_versions_are_named() {
        assert!(machine().contains("cores"));
        assert!(!rusqlite::version().is_empty());
    }
}
