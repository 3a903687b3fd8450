//! crm-bench: the benchmark harness of crm-node. The command line only:
//! `run` measures every figure at each data-set size and adds the table
//! to BENCHMARKS.md; `smoke` does the same on tiny data sets (CI checks
//! that the harness works) and writes nothing unless asked; `csv` prints
//! generated clients for an import.

mod api;
mod cpu_probe;
mod data_sets;
mod dataset;
mod figures;
mod generator;
mod inprocess;
mod lean_http;
mod load;
mod node_process;
mod report;
mod scenarios;
mod settle;
mod suite;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use node_process::Profile;
use report::RunInfo;
use suite::Plan;

#[derive(Debug, Parser)]
#[command(
    name = "crm-bench",
    version,
    about = "Benchmarks crm-node against the targets of issue 4"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure every figure at each size and add the results to BENCHMARKS.md.
    Run {
        /// Data-set sizes (clients), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
        sizes: Vec<u64>,
        /// Seconds of each measured load (after a 2 s warm-up).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The results file (default: BENCHMARKS.md of the workspace).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Measure only these groups of figures, comma-separated (default:
        /// all). The data set is loaded and its import measured every time
        /// (unless `--data-sets` has it); `--only creates` at 1,000,000
        /// takes minutes instead of a quarter of an hour.
        #[arg(long, value_delimiter = ',')]
        only: Vec<suite::Group>,
        /// Keep each size's loaded data set in DIR/<size>, and start node A
        /// on a copy of the one kept there instead of loading (the import
        /// is then not measured). For looking into one figure; runs recorded
        /// as the project's figures load afresh.
        #[arg(long, value_name = "DIR")]
        data_sets: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Tiny data sets and short loads: checks that every figure produces a
    /// number. Writes no file unless --out is given.
    Smoke {
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Print generated clients as CSV on stdout, ready for
    /// `crm-node import clients FILE.csv`: sample data, or a file to profile
    /// an import with.
    Csv {
        /// How many clients.
        #[arg(long, default_value_t = 1000)]
        rows: u64,
        /// The data set: the same seed gives the same clients.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Debug, Args)]
struct Common {
    /// The crm-node binary (default: target/release/crm-node for `run`,
    /// built when missing; target/debug/crm-node for `smoke`).
    #[arg(long)]
    node: Option<PathBuf>,
    /// Where the temporary data folders go (default: the system's temp dir).
    #[arg(long)]
    work_dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (plan, out, node, profile) = match cli.command {
        Command::Run {
            sizes,
            seconds,
            out,
            only,
            data_sets,
            common,
        } => {
            anyhow::ensure!(
                !sizes.is_empty() && !sizes.contains(&0),
                "--sizes needs sizes above 0"
            );
            let work_dir = common.work_dir.unwrap_or_else(std::env::temp_dir);
            let mut plan = Plan::full(sizes, Duration::from_secs(seconds.max(1)), work_dir);
            plan.only = only;
            plan.data_sets = data_sets;
            let out = out.unwrap_or_else(|| node_process::workspace_root().join("BENCHMARKS.md"));
            (plan, Some(out), common.node, Profile::Release)
        }
        Command::Csv { rows, seed } => {
            let text = dataset::csv(seed, &dataset::columns(seed), 0..rows);
            std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes())
                .context("writing the CSV to stdout")?;
            return Ok(());
        }
        Command::Smoke { out, common } => {
            let work_dir = common.work_dir.unwrap_or_else(std::env::temp_dir);
            (Plan::smoke(work_dir), out, common.node, Profile::Debug)
        }
    };
    let node_bin = node_process::locate(node, profile)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let began = Instant::now();
    let (mut info, rows) = runtime.block_on(async {
        let version = node_process::version(&node_bin).await?;
        let info = RunInfo::new(
            command_line(),
            version,
            &node_bin,
            cpu_probe::CpuProbe::measure(),
        );
        let rows = suite::run(&plan, &node_bin).await?;
        anyhow::Ok((info, rows))
    })?;
    info.took = began.elapsed();
    if let Some((_, end)) = info.cpu.as_mut() {
        *end = cpu_probe::CpuProbe::measure();
    }
    let section = report::render(&info, &rows);
    println!("{section}");
    if let Some(path) = out {
        report::record(&path, &section)?;
        eprintln!("crm-bench: results added to {}", path.display());
    }
    let failed = rows
        .iter()
        .filter(|r| r.verdict() == figures::Verdict::Failed)
        .count();
    anyhow::ensure!(
        failed == 0,
        "{failed} figures could not be measured (FAILED rows)"
    );
    Ok(())
}

/// The command as typed, for the report.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("crm-bench {}", args.join(" "))
}
