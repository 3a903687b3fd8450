//! The harness works: `crm-bench smoke` against the debug `crm-node`
//! (built by `cargo test --workspace`) measures every figure on tiny data
//! sets and prints the table. Numbers are not checked: benchmarks are not
//! timed tests.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A run that has not ended after this long is taken to hang, and killed.
/// Not a speed check (the smoke plan's loads last fractions of a second;
/// how long it takes is the machine's business): a bound, so that a
/// harness that hangs fails the test instead of stalling CI.
const HANG_GUARD: Duration = Duration::from_secs(15 * 60);

/// The figures every smoke run must report (names as in the table).
const FIGURES: &[&str] = &[
    "limit: create in process",
    "create a client over HTTP, 32 concurrent, durable",
    "create a client over HTTP: p99",
    "GET a record by id",
    "list page (filter + sort, 50 rows",
    "full-text search: p99",
    "first sync of a new node from a peer",
    "one changed record pulled by a converged peer: round",
    "one changed record pulled by a converged peer: bytes pulled",
    "no-op sync between converged nodes: requests per direction",
    "no-op sync between converged nodes: bytes both ways",
    "no-op sync between converged nodes: round",
    "write at A visible in a list at B",
    "node memory (peak RSS)",
    "start-up to ready",
    "bulk import of clients from CSV",
];

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// The debug `crm-node` that `cargo test --workspace` builds.
fn debug_node() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let node = target.join("debug").join("crm-node");
    assert!(
        node.is_file(),
        "{} is missing: `cargo test --workspace` builds it, or run `cargo build --bin crm-node`",
        node.display()
    );
    node
}

/// What a finished `crm-bench` printed.
struct Printed {
    stdout: String,
    stderr: String,
}

/// Runs `crm-bench` with `args` (its output in files under `dir`, so no
/// pipe can fill up while it runs) and fails unless it ends successfully
/// within [`HANG_GUARD`].
fn crm_bench(args: &mut Command, dir: &Path) -> Printed {
    let stdout_path = dir.join("crm-bench.stdout");
    let stderr_path = dir.join("crm-bench.stderr");
    let mut child = args
        .stdout(Stdio::from(
            File::create(&stdout_path).expect("a stdout file"),
        ))
        .stderr(Stdio::from(
            File::create(&stderr_path).expect("a stderr file"),
        ))
        .spawn()
        .expect("crm-bench starts");
    let began = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for crm-bench") {
            break status;
        }
        if began.elapsed() > HANG_GUARD {
            let _ = child.kill();
            let _ = child.wait();
            panic!("crm-bench still ran after {HANG_GUARD:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed = Printed {
        stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    };
    assert!(
        status.success(),
        "crm-bench failed ({status}):\n{}\n{}",
        printed.stdout,
        printed.stderr
    );
    printed
}

#[test]
fn smoke_mode_measures_every_figure() {
    let node = debug_node();
    let out_dir = tempfile::tempdir().expect("a temporary folder");
    let out = out_dir.path().join("BENCHMARKS.md");
    let Printed { stdout, .. } = crm_bench(
        Command::new(env!("CARGO_BIN_EXE_crm-bench"))
            .arg("smoke")
            .arg("--node")
            .arg(&node)
            .arg("--out")
            .arg(&out)
            .arg("--work-dir")
            .arg(out_dir.path()),
        out_dir.path(),
    );
    assert!(stdout.contains("| figure | size | measured |"), "{stdout}");
    let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with("| ")).collect();
    for figure in FIGURES {
        let found: Vec<&&str> = rows.iter().filter(|r| r.contains(figure)).collect();
        assert!(!found.is_empty(), "no row for {figure:?} in:\n{stdout}");
        for row in found {
            let cells: Vec<&str> = row.split(" | ").collect();
            let measured = cells.get(2).map(|c| c.trim()).unwrap_or("");
            assert!(
                measured.replace(',', "").parse::<f64>().is_ok(),
                "{figure:?} has no number: {row}"
            );
        }
    }
    assert!(!stdout.contains("FAILED"), "{stdout}");
    let written = std::fs::read_to_string(&out).expect("--out was written");
    assert!(written.contains("## Runs") && written.contains("crm-bench smoke"));
}

/// `run --data-sets`: the first run loads the set (and measures the
/// import) and keeps it; the second starts node A on a copy, measures
/// without loading, and has no import row.
#[test]
fn a_kept_data_set_is_reused_instead_of_loaded() {
    let node = debug_node();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let kept = dir.path().join("kept");
    let run = || {
        let printed = crm_bench(
            Command::new(env!("CARGO_BIN_EXE_crm-bench"))
                .args([
                    "run",
                    "--sizes",
                    "300",
                    "--only",
                    "creates",
                    "--seconds",
                    "1",
                ])
                .arg("--node")
                .arg(&node)
                .arg("--data-sets")
                .arg(&kept)
                .arg("--out")
                .arg(dir.path().join("BENCHMARKS.md"))
                .arg("--work-dir")
                .arg(dir.path()),
            dir.path(),
        );
        (printed.stdout, printed.stderr)
    };
    let import_row = |stdout: &str| {
        stdout
            .lines()
            .any(|l| l.starts_with("| bulk import of clients from CSV"))
    };
    let create_row = |stdout: &str| {
        stdout
            .lines()
            .any(|l| l.starts_with("| create a client over HTTP, 32 concurrent"))
    };

    let (first, log) = run();
    assert!(import_row(&first) && create_row(&first), "{first}");
    assert!(log.contains("keeping the data set"), "{log}");
    assert!(kept.join("300").join("crm.sqlite3").is_file());

    let (second, log) = run();
    assert!(log.contains("on a copy of the data set"), "{log}");
    assert!(!log.contains("loading the data set"), "{log}");
    assert!(create_row(&second), "{second}");
    assert!(!import_row(&second), "{second}");
    assert!(!second.contains("FAILED"), "{second}");
}
