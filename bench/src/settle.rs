//! Waiting for a node to settle after a bulk write: its background work
//! done and the machine's write-back of what it wrote finished.
//!
//! Why: the figures of converged nodes (one changed record, a no-op round)
//! describe a node in its steady state. Right after a 1,000,000-record
//! first sync, node B goes on optimizing its full-text index in the
//! background, and the kernel goes on writing gigabytes out to the disk;
//! every commit's WAL sync then waits seconds behind that write-back (one
//! run measured one-change rounds of 2.2–5.0 s while no-op rounds, which
//! write nothing, took 1.8 ms). The wait is reported with the figures, so
//! what it hides stays visible.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::node_process::storage_writes_of;

/// A node writing less than this per second counts as quiet.
const QUIET_WRITES_PER_SECOND: u64 = 1 << 20;
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

/// Waits, at most `most`, until process `pid` has written less than a
/// mebibyte a second and the machine holds less than 64 MiB of dirty or
/// under-write-back memory, for three seconds in a row.
pub async fn settle(pid: u32, most: Duration) -> anyhow::Result<Settled> {
    let began = Instant::now();
    let mut written = storage_writes_of(pid)?;
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
        let node_quiet = now.saturating_sub(written) < QUIET_WRITES_PER_SECOND;
        written = now;
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
