//! Folds the WAL back into the database file on a thread of its own.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses the
//! WAL's size limit, on the writer: every few group commits, one of them
//! copied a thousand pages and waited for them, while every write queued
//! behind it. Here the writer only checkpoints as a backstop
//! ([`WRITER_AUTOCHECKPOINT`]); this thread copies the WAL often, in
//! parallel with the writer, and a page changed by many commits between two
//! checkpoints is copied once.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::{database, StoreError};

/// How soon the WAL is copied again while writes come in. Under a stream
/// of creates the WAL grows by about 50,000 pages a second (each create
/// dirties a leaf of most field indexes). Copying every 200 ms instead
/// wrote 8% less to the disk (a page rewritten meanwhile is copied once)
/// but left the writer's checkpoint (see [`WRITER_AUTOCHECKPOINT`]) more
/// to copy, for no clear gain in create latency (BENCHMARKS.md, ninth
/// round).
const BUSY_INTERVAL: Duration = Duration::from_millis(50);
/// How often an idle WAL is looked at.
const IDLE_INTERVAL: Duration = Duration::from_millis(200);

/// WAL pages at which the writer checkpoints by itself. The WAL can only
/// restart from its beginning once a checkpoint has copied all of it, and
/// under a steady stream of writes this thread seldom gets there (a commit
/// lands while it copies): the writer's checkpoint, during which nothing
/// commits, does. It copies what this thread has not and syncs the
/// database file. SQLite syncs that file only after a checkpoint that
/// copied the whole WAL, so under load this thread's copies stay unsynced
/// and the writer's sync writes all of them out: 20–60 ms at 100,000
/// clients, 34–170 ms at 1,000,000, while every writer waits. (Syncing
/// after each pass here removed those stalls but not the create p99, and
/// cost more disk writes; that was measured while FTS5's merge bursts
/// still set the p99, BENCHMARKS.md, tenth round.) At 10,000 pages that came six times a second and
/// made most of the create p99; at 100,000 pages (about 400 MB of WAL) it
/// comes every second or two. [`crate::database`] keeps a WAL file of that
/// size instead of cutting it back at each restart.
pub(crate) const WRITER_AUTOCHECKPOINT: i64 = 100_000;

/// The running checkpoint thread; stops and joins when dropped.
pub(crate) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(crate) fn spawn(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = database::open_checkpointer(path)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("crm-checkpoint".into())
            .spawn(move || run(&conn, &stopped))
            .map_err(|e| StoreError::TaskFailed(e.to_string()))?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

fn run(conn: &Connection, stopped: &mpsc::Receiver<()>) {
    let mut last_problem: Option<String> = None;
    let mut wait = IDLE_INTERVAL;
    let mut last_wal: Option<WalFrames> = None;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
        // PASSIVE: copies what no reader still needs, never waits for the
        // writer or a reader. Busy is normal (the writer's backstop, a
        // backup); anything else is logged once until it changes.
        let began = Instant::now();
        let outcome = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok(WalFrames {
                logged: row.get(1)?,
                copied: row.get(2)?,
            })
        });
        match outcome {
            Ok(wal) => {
                tracing::trace!(
                    logged = wal.logged,
                    copied = wal.copied,
                    took_us = began.elapsed().as_micros(),
                    "WAL checkpoint pass"
                );
                last_problem = None;
                wait = next_wait(last_wal, wal);
                last_wal = Some(wal);
            }
            Err(e) => {
                wait = IDLE_INTERVAL;
                let problem = e.to_string();
                if last_problem.as_ref() != Some(&problem) {
                    tracing::warn!(error = %problem, "WAL checkpoint failed; retrying");
                    last_problem = Some(problem);
                }
            }
        }
    }
}

/// The WAL as a checkpoint left it: frames in the log, frames copied back
/// (both -1 when the checkpoint could not run).
#[derive(Debug, Clone, Copy, PartialEq)]
struct WalFrames {
    logged: i64,
    copied: i64,
}

/// Soon again while the WAL moves (it grew, or the writer restarted it),
/// at the idle pace once it stands still.
fn next_wait(last: Option<WalFrames>, now: WalFrames) -> Duration {
    match last {
        Some(last) if last == now => IDLE_INTERVAL,
        _ => BUSY_INTERVAL,
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the checkpoint thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn frames(logged: i64, copied: i64) -> WalFrames {
        WalFrames { logged, copied }
    }

    #[test]
    fn a_moving_wal_is_copied_soon_and_a_still_one_at_the_idle_pace() {
        assert_eq!(next_wait(None, frames(0, 0)), BUSY_INTERVAL);
        assert_eq!(
            next_wait(Some(frames(10, 10)), frames(250, 250)),
            BUSY_INTERVAL
        );
        // The writer restarted the WAL since: fewer frames than before.
        assert_eq!(
            next_wait(Some(frames(900, 900)), frames(40, 40)),
            BUSY_INTERVAL
        );
        assert_eq!(
            next_wait(Some(frames(250, 250)), frames(250, 250)),
            IDLE_INTERVAL
        );
        assert_eq!(next_wait(Some(frames(0, 0)), frames(0, 0)), IDLE_INTERVAL);
        assert_eq!(
            next_wait(Some(frames(-1, -1)), frames(-1, -1)),
            IDLE_INTERVAL
        );
    }
}
