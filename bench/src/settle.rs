//! Waiting for a node to settle after a bulk write: its background work
//! done and the machine's write-back of what it wrote finished.
//!
//! Why: the figures of converged nodes (one changed record, a no-op round)
//! describe a node in its steady state. Right after a 1,000,000-record
//! first sync, node B goes on optimizing its full-text index in the
//! background, in steps that each hold its writer (a step ends at the end
//! of a term, and a common term's list of records spans many pages), and
//! the kernel goes on writing out what the sync wrote. A round that writes
//! waits for both: two runs measured one-change rounds of 2.4 s and 4.7 s
//! median while no-op rounds, which write nothing, took 2 ms. The wait is
//! reported with the figures, so what it hides stays visible.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::api::Api;
use crate::node_process::storage_writes_of;

/// A node writing less than this per second counts as quiet.
const QUIET_WRITES_PER_SECOND: u64 = 1 << 20;
/// A node using less than this share of a core (in hundredths) counts as
/// quiet: an optimize in the background uses about half of one, and
/// rewrites pages already dirty, which `write_bytes` does not count again.
const QUIET_CPU_HUNDREDTHS: u64 = 10;
/// Dirty and under-write-back memory below this counts as written out.
const WRITTEN_OUT_BYTES: u64 = 64 << 20;
/// Seconds in a row both must hold.
const QUIET_SECONDS: u32 = 3;

/// How a wait for quiet ended.
#[derive(Debug, Clone, Copy)]
pub struct Settled {
    pub waited: Duration,
    /// `false`: the wait gave up at its bound, and the figures after it
    /// were measured on a busy node.
    pub quiet: bool,
}

impl Settled {
    /// A note for the figures measured after the wait.
    pub fn note(&self) -> String {
        if self.quiet {
            format!(
                "measured once node B and the disk were quiet, {:.0} s after the first sync",
                self.waited.as_secs_f64()
            )
        } else {
            format!(
                "node B or the disk still busy {:.0} s after the first sync: measured then",
                self.waited.as_secs_f64()
            )
        }
    }
}

/// Waits, at most `most`, until the node of process `pid` (answering at
/// `api`) says it optimizes no index, uses under a tenth of a core and
/// writes under a mebibyte a second, and the machine holds less than
/// 64 MiB of dirty or under-write-back memory, for three seconds in a row.
/// The node's own word is needed: between two steps the optimize pauses
/// as long as the last one took, seconds on a large index.
pub async fn settle(pid: u32, api: &Api, most: Duration) -> anyhow::Result<Settled> {
    let began = Instant::now();
    let mut written = storage_writes_of(pid)?;
    let mut ticks = cpu_ticks_of(pid)?;
    let mut quiet_for = 0;
    while quiet_for < QUIET_SECONDS {
        if began.elapsed() >= most {
            return Ok(Settled {
                waited: began.elapsed(),
                quiet: false,
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = storage_writes_of(pid)?;
        let now_ticks = cpu_ticks_of(pid)?;
        let node_quiet = now.saturating_sub(written) < QUIET_WRITES_PER_SECOND
            && now_ticks.saturating_sub(ticks) < QUIET_CPU_HUNDREDTHS
            && !optimizing(api).await?;
        (written, ticks) = (now, now_ticks);
        let machine_quiet = unwritten_bytes()? < WRITTEN_OUT_BYTES;
        quiet_for = if node_quiet && machine_quiet {
            quiet_for + 1
        } else {
            0
        };
    }
    Ok(Settled {
        waited: began.elapsed(),
        quiet: true,
    })
}

/// Whether the node says it is optimizing its full-text index (`/healthz`;
/// a node too old to say counts as not optimizing).
async fn optimizing(api: &Api) -> anyhow::Result<bool> {
    let health = api.get("/healthz", &[]).await?;
    Ok(health["optimizing_search_index"].as_bool().unwrap_or(false))
}

/// The CPU time process `pid` has used, all its threads, in the hundredths
/// of a second `/proc` counts in (`USER_HZ`, 100 on Linux whatever the
/// kernel's own tick): `utime` plus `stime` of `/proc/PID/stat`.
fn cpu_ticks_of(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    ticks_of(&stat).with_context(|| format!("{path} has no utime and stime"))
}

/// The fields after the command name (which may hold spaces and
/// parentheses, so it ends at the last `)`) start with the third, the
/// state; `utime` and `stime` are the 14th and 15th.
fn ticks_of(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Memory the kernel has yet to write out: `Dirty` plus `Writeback` of
/// `/proc/meminfo`.
fn unwritten_bytes() -> anyhow::Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
    unwritten_of(&meminfo).context("/proc/meminfo has no Dirty or Writeback line")
}

fn unwritten_of(meminfo: &str) -> Option<u64> {
    let kib = |key: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some((kib("Dirty:")? + kib("Writeback:")?) * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwritten_memory_is_dirty_plus_writeback() {
        let meminfo = "MemTotal:       24641232 kB\nDirty:             12345 kB\nWriteback:           100 kB\nWritebackTmp:          7 kB\n";
        assert_eq!(unwritten_of(meminfo), Some((12_345 + 100) * 1024));
        assert_eq!(unwritten_of("Dirty: 1 kB\n"), None);
        assert!(unwritten_bytes().is_ok(), "this machine's /proc/meminfo");
    }

    #[test]
    fn cpu_time_is_utime_plus_stime() {
        let stat = "4242 (crm (node) x) S 1 4242 4242 0 -1 4194560 1234 0 5 0 731 129 0 0 20 0 9 0 5000 1000000 5000";
        assert_eq!(ticks_of(stat), Some(731 + 129));
        assert_eq!(ticks_of("4242 (crm-node) S 1 2"), None);
        assert!(cpu_ticks_of(std::process::id()).is_ok(), "this process");
    }

    #[test]
    fn the_note_says_whether_the_node_settled() {
        let quiet = Settled {
            waited: Duration::from_secs(42),
            quiet: true,
        };
        assert!(quiet.note().contains("quiet, 42 s"), "{}", quiet.note());
        let busy = Settled {
            waited: Duration::from_secs(600),
            quiet: false,
        };
        assert!(busy.note().contains("still busy 600 s"), "{}", busy.note());
    }
}
