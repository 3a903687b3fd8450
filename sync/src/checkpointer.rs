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
use std::time::Duration;

use rusqlite::Connection;

use crate::{database, StoreError};

/// How often the WAL is copied back while the store runs.
const INTERVAL: Duration = Duration::from_millis(200);

/// WAL pages at which the writer checkpoints by itself: only reached when
/// this thread falls behind (under a long burst of writes the WAL can only
/// restart from its beginning once a checkpoint catches up with the
/// writer, which the writer's own checkpoint does).
pub(crate) const WRITER_AUTOCHECKPOINT: i64 = 10_000;

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
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(INTERVAL) {
        // PASSIVE: copies what no reader still needs, never waits for the
        // writer or a reader. Busy is normal (the writer's backstop, a
        // backup); anything else is logged once until it changes.
        let outcome = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        match outcome {
            Ok(()) => last_problem = None,
            Err(e) => {
                let problem = e.to_string();
                if last_problem.as_ref() != Some(&problem) {
                    tracing::warn!(error = %problem, "WAL checkpoint failed; retrying");
                    last_problem = Some(problem);
                }
            }
        }
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
