//! Folds the WAL back into the database file on a thread of its own.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses the
//! WAL's size limit, on the writer: every few group commits, one of them
//! copied a thousand pages and waited for them, while every write queued
//! behind it. Here this thread copies the WAL often, in parallel with the
//! writer, and a page changed by many commits between two checkpoints is
//! copied once.
//!
//! The WAL can only start again from its beginning once a checkpoint has
//! copied all of it and synced the database file, and under a steady
//! stream of writes a commit always lands while a pass copies. So once the
//! WAL is long ([`FINISH_AT`]) this thread finishes the cycle: it syncs the
//! database file while the writer goes on, copies again, and repeats until
//! a sync is quick; then it holds the [`CommitGate`] for one last pass, which
//! no commit can overtake (unless the writer is in a long commit, an
//! import's say: then a later pass finishes the cycle). The writer waits
//! for that pass alone, about 13 ms, where it used to copy and sync the
//! whole cycle itself (150–300 ms, BENCHMARKS.md, eleventh round). The
//! writer's own checkpoint ([`WRITER_AUTOCHECKPOINT`]) remains as the
//! backstop.

use std::fs::File;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
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

/// WAL frames from which this thread finishes a cycle (module comment).
/// About a second of creates at 1,000,000 clients; finishing from 25,000
/// frames on gave a higher create p99 (32 ms against 28) and more bytes
/// written, the pages changed in every cycle being copied more often.
const FINISH_AT: i64 = 50_000;

/// A database sync this quick leaves little for the gated pass: the pages
/// copied since are about as few, so the writer waits about as long.
const QUICK_SYNC: Duration = Duration::from_millis(15);

/// Syncs before the gated pass at most, should the disk never be quick.
/// Each sync covers the copies of the one before; three or four get there.
const MAX_SYNCS: usize = 5;

/// How long the last pass waits for the group the writer is committing. A
/// group that takes longer (an import's, a first sync's) may have written
/// more than that pass could copy and sync without holding every write for
/// long: the cycle is then finished from a later pass.
const GATE_WAIT: Duration = Duration::from_millis(20);

/// WAL pages at which the writer checkpoints by itself: the backstop, for
/// when this thread falls behind (a cycle's syncs slower than the writes
/// that come in meanwhile). Its checkpoint copies what this thread has not
/// and syncs the database file, while every write waits: 34–300 ms at
/// 1,000,000 clients (BENCHMARKS.md, ninth and eleventh rounds).
/// [`crate::database`] keeps a WAL file of that size instead of cutting it
/// back at each restart.
pub(crate) const WRITER_AUTOCHECKPOINT: i64 = 100_000;

/// Held by the writer while it commits a group, and by the checkpoint
/// thread for the last pass of a cycle, which must see no commit land.
#[derive(Clone, Default)]
pub(crate) struct CommitGate(Arc<Mutex<()>>);

impl CommitGate {
    /// Runs `f` holding the gate. A fair release: the writer takes the gate
    /// again for its next group at once, and a plain release would let it
    /// overtake a waiting checkpoint thread group after group (a wait of
    /// 1.3 s was seen).
    pub(crate) fn while_held<T>(&self, f: impl FnOnce() -> T) -> T {
        let held = self.0.lock();
        let out = f();
        parking_lot::MutexGuard::unlock_fair(held);
        out
    }

    /// Runs `f` holding the gate if it can be had within `wait`.
    fn try_while_held<T>(&self, wait: Duration, f: impl FnOnce() -> T) -> Option<T> {
        let held = self.0.try_lock_for(wait)?;
        let out = f();
        parking_lot::MutexGuard::unlock_fair(held);
        Some(out)
    }
}

/// The running checkpoint thread; stops and joins when dropped.
pub(crate) struct Checkpointer {
    gate: CommitGate,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub(crate) fn spawn(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = database::open_checkpointer(path)?;
        // Written through SQLite only; this handle is for syncing it.
        let database = File::options()
            .write(true)
            .open(path)
            .map_err(|e| StoreError::TaskFailed(format!("opening the database to sync it: {e}")))?;
        let gate = CommitGate::default();
        let cycle = Cycle {
            conn,
            database,
            gate: gate.clone(),
            gate_wait: GATE_WAIT,
        };
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("crm-checkpoint".into())
            .spawn(move || run(&cycle, &stopped))
            .map_err(|e| StoreError::TaskFailed(e.to_string()))?;
        Ok(Checkpointer {
            gate,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The gate the writer holds while it commits a group.
    pub(crate) fn gate(&self) -> CommitGate {
        self.gate.clone()
    }
}

/// What a checkpoint pass needs.
struct Cycle {
    conn: Connection,
    database: File,
    gate: CommitGate,
    gate_wait: Duration,
}

/// How a try at finishing the cycle ended, with the WAL as it left it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Finish {
    /// The last pass ran: unless a reader held it back, it copied the
    /// whole WAL.
    Done(WalFrames),
    /// The writer held the gate longer than [`GATE_WAIT`].
    WriterBusy(WalFrames),
}

#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error("{0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("syncing the database file: {0}")]
    Sync(#[from] std::io::Error),
}

impl Cycle {
    /// PASSIVE: copies what no reader still needs, never waits for the
    /// writer or a reader.
    fn pass(&self) -> Result<WalFrames, rusqlite::Error> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                Ok(WalFrames {
                    logged: row.get(1)?,
                    copied: row.get(2)?,
                })
            })
    }

    /// Finishes the cycle (module comment): syncs until a sync is quick,
    /// then one last pass behind the gate. That pass reaches the end of
    /// the WAL (unless a reader still needs an older page), so SQLite syncs
    /// the database file and the writer's next commit restarts the WAL.
    fn finish(&self, mut wal: WalFrames) -> Result<Finish, PassError> {
        let began = Instant::now();
        let mut syncs = 0;
        loop {
            let sync_began = Instant::now();
            self.database.sync_data()?;
            syncs += 1;
            if sync_began.elapsed() < QUICK_SYNC || syncs == MAX_SYNCS {
                break;
            }
            wal = self.pass()?;
        }
        let synced = began.elapsed();
        let gated = self.gate.try_while_held(self.gate_wait, || {
            let gated = Instant::now();
            (self.pass(), gated.elapsed())
        });
        let Some((last, gated)) = gated else {
            tracing::trace!(
                syncs,
                synced_us = synced.as_micros(),
                "WAL cycle left for later: the writer is in a long commit"
            );
            return Ok(Finish::WriterBusy(wal));
        };
        let last = last?;
        tracing::trace!(
            syncs,
            synced_us = synced.as_micros(),
            gated_us = gated.as_micros(),
            logged = last.logged,
            copied = last.copied,
            "WAL cycle finished"
        );
        Ok(Finish::Done(last))
    }
}

fn run(cycle: &Cycle, stopped: &mpsc::Receiver<()>) {
    let mut last_problem: Option<String> = None;
    let mut wait = IDLE_INTERVAL;
    let mut last_wal: Option<WalFrames> = None;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(wait) {
        // Busy is normal (the writer's backstop, a backup); anything else
        // is logged once until it changes.
        let began = Instant::now();
        let outcome = cycle.pass().map_err(PassError::from).and_then(|wal| {
            tracing::trace!(
                logged = wal.logged,
                copied = wal.copied,
                took_us = began.elapsed().as_micros(),
                "WAL checkpoint pass"
            );
            if wal.logged >= FINISH_AT {
                cycle.finish(wal).map(|finish| match finish {
                    Finish::Done(wal) | Finish::WriterBusy(wal) => wal,
                })
            } else {
                Ok(wal)
            }
        });
        match outcome {
            Ok(wal) => {
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

    const LONG: Duration = Duration::from_secs(10);

    /// A database in WAL mode with a table to fill, the writer's way.
    fn writer_and_cycle(dir: &Path, gate_wait: Duration) -> (Connection, Cycle) {
        let path = dir.join("db.sqlite3");
        let writer = database::open_writer(&path).expect("writer");
        writer
            .execute_batch("CREATE TABLE t (b BLOB)")
            .expect("table");
        let cycle = Cycle {
            conn: database::open_checkpointer(&path).expect("checkpointer"),
            database: File::options().write(true).open(&path).expect("file"),
            gate: CommitGate::default(),
            gate_wait,
        };
        (writer, cycle)
    }

    fn commit_pages(writer: &Connection, pages: usize) {
        writer.execute_batch("BEGIN IMMEDIATE").expect("begin");
        for _ in 0..pages {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(3000))", [])
                .expect("insert");
        }
        writer.execute_batch("COMMIT").expect("commit");
    }

    /// The WAL's frames, read the way the checkpoint thread reads them.
    fn frames_of(conn: &Connection) -> WalFrames {
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok(WalFrames {
                logged: row.get(1)?,
                copied: row.get(2)?,
            })
        })
        .expect("frames")
    }

    #[test]
    fn a_finished_cycle_lets_the_next_commit_start_the_wal_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (writer, cycle) = writer_and_cycle(dir.path(), LONG);
        for _ in 0..10 {
            commit_pages(&writer, 50);
        }
        let wal = cycle.pass().expect("pass");
        // Frames no pass has copied yet: only the cycle's last pass can.
        for _ in 0..10 {
            commit_pages(&writer, 50);
        }
        let Finish::Done(finished) = cycle.finish(wal).expect("finished") else {
            panic!("the gate was free");
        };
        assert!(finished.logged > wal.logged, "{finished:?} after {wal:?}");
        assert_eq!(finished.copied, finished.logged);
        commit_pages(&writer, 1);
        let after = cycle.pass().expect("pass");
        assert!(after.logged < 10, "the WAL went on: {after:?}");
    }

    #[test]
    fn the_last_pass_of_a_cycle_waits_for_the_commit_in_progress() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (writer, cycle) = writer_and_cycle(dir.path(), LONG);
        commit_pages(&writer, 50);
        let gate = cycle.gate.clone();
        let (holding, held) = mpsc::channel();
        let committer = std::thread::spawn(move || {
            gate.while_held(|| {
                holding.send(()).expect("tell");
                // A commit that takes its time: without the gate, the
                // cycle's last pass would run before it lands.
                std::thread::sleep(Duration::from_millis(300));
                commit_pages(&writer, 80);
                frames_of(&writer).logged
            })
        });
        held.recv_timeout(LONG).expect("the gate is held");
        let wal = cycle.pass().expect("pass");
        let finish = cycle.finish(wal).expect("finished");
        let frames_after_commit = committer.join().expect("committer");
        let Finish::Done(finished) = finish else {
            panic!("gave up waiting: {finish:?}");
        };
        assert_eq!(finished.logged, frames_after_commit);
        assert_eq!(finished.copied, finished.logged);
    }

    #[test]
    fn a_cycle_is_left_for_later_while_a_long_commit_holds_the_gate() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (writer, cycle) = writer_and_cycle(dir.path(), Duration::from_millis(50));
        commit_pages(&writer, 50);
        let gate = cycle.gate.clone();
        let (holding, held) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        let committer = std::thread::spawn(move || {
            gate.while_held(|| {
                holding.send(()).expect("tell");
                released.recv_timeout(LONG).expect("released");
                commit_pages(&writer, 80);
            })
        });
        held.recv_timeout(LONG).expect("the gate is held");
        let wal = cycle.pass().expect("pass");
        let finish = cycle.finish(wal).expect("tried");
        release.send(()).expect("release");
        committer.join().expect("committer");
        assert!(matches!(finish, Finish::WriterBusy(_)), "{finish:?}");
    }

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
