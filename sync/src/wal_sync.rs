//! Makes the writer's commits durable on a thread of its own, so that the
//! writer runs the next group while the last one's WAL frames go to disk.
//!
//! The writer commits with `synchronous=NORMAL` (the WAL is written, not
//! synced) and hands each committed group here. This thread syncs the WAL
//! file, then publishes the feed position and answers the group's jobs:
//! "acknowledged = on disk" holds as with `synchronous=FULL`, but the fsync
//! no longer stops the writer. One sync covers every group committed while
//! the previous one ran, since the WAL is written in order.
//!
//! Readers on this node may see a group a millisecond before it is durable.
//! Nothing leaves for a peer before it is: a frame is sent only once the
//! feed position it was read at is published ([`crate::Store::read_frame`]),
//! so a power cut can never take back a change a peer holds (the node would
//! then write another change under the same actor and seq).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::kind_seqs::KindSeqs;
use crate::writer::Delivery;
use crate::{StorageProblem, StoreError};

/// Where the feed's position is published once a commit that added to it
/// is durable.
pub(crate) struct Published {
    /// The feed's last durable seq.
    pub(crate) latest: watch::Sender<i64>,
    /// The same, per kind of document changed.
    pub(crate) kind_seqs: Arc<KindSeqs>,
}

/// A group the writer committed, waiting for its sync.
pub(crate) struct Committed {
    /// Answers to the group's jobs.
    pub(crate) deliveries: Vec<Delivery>,
    /// The kinds whose documents the group changed in the feed.
    pub(crate) fed: Vec<String>,
    /// The feed's last seq after the commit, when the group added to it.
    pub(crate) seq: Option<i64>,
}

/// The running sync thread; finishes the groups handed to it, then stops
/// and is joined when dropped.
pub(crate) struct WalSyncer {
    sender: Option<mpsc::Sender<Committed>>,
    thread: Option<JoinHandle<()>>,
}

impl WalSyncer {
    /// Starts the thread; `sync` makes every WAL frame written so far
    /// durable (the WAL file's `fdatasync`, or a stand-in in tests).
    pub(crate) fn spawn(
        mut sync: impl FnMut() -> io::Result<()> + Send + 'static,
        published: Published,
    ) -> Result<WalSyncer, StoreError> {
        let (sender, receiver) = mpsc::channel::<Committed>();
        let thread = std::thread::Builder::new()
            .name("crm-wal-sync".into())
            .spawn(move || {
                while let Ok(first) = receiver.recv() {
                    let mut groups = vec![first];
                    groups.extend(receiver.try_iter());
                    let began = Instant::now();
                    let synced = sync();
                    tracing::trace!(
                        groups = groups.len(),
                        sync_us = began.elapsed().as_micros(),
                        "WAL synced"
                    );
                    finish(groups, synced, &published);
                }
            })
            .map_err(|e| StoreError::TaskFailed(e.to_string()))?;
        Ok(WalSyncer {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    /// Hands a committed group over; its jobs hear back after the sync.
    pub(crate) fn submit(&self, committed: Committed) {
        let sent = match &self.sender {
            Some(sender) => sender.send(committed),
            None => Err(mpsc::SendError(committed)),
        };
        if let Err(mpsc::SendError(committed)) = sent {
            // Only if the thread died: the group's fate is unknown.
            for deliver in committed.deliveries {
                deliver(Err(not_synced("the WAL sync thread is gone".into())));
            }
        }
    }
}

impl Drop for WalSyncer {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the WAL sync thread ended abnormally");
            }
        }
    }
}

/// Publishes and answers `groups` once their sync ended with `synced`.
fn finish(groups: Vec<Committed>, synced: io::Result<()>, published: &Published) {
    match synced {
        Ok(()) => {
            let mut latest = None;
            for group in &groups {
                if let Some(seq) = group.seq {
                    published.kind_seqs.committed(&group.fed, seq);
                    latest = Some(seq);
                }
            }
            if let Some(seq) = latest {
                published.latest.send_replace(seq);
            }
            for group in groups {
                for deliver in group.deliveries {
                    deliver(Ok(()));
                }
            }
        }
        Err(e) => {
            // The frames are in the WAL, but the disk did not confirm them:
            // the writes may or may not survive a power cut. Their callers
            // are told so ("retry later"); the position is not published,
            // so no peer is sent these changes until a later sync succeeds.
            tracing::error!(error = %e, "syncing the WAL failed");
            for group in groups {
                for deliver in group.deliveries {
                    deliver(Err(not_synced(e.to_string())));
                }
            }
        }
    }
}

/// Waits until the published durable position `durable` reaches `seq`,
/// for `limit` at most.
pub(crate) async fn durable_through(
    mut durable: watch::Receiver<i64>,
    seq: i64,
    limit: Duration,
) -> Result<(), StoreError> {
    let waited = tokio::time::timeout(limit, durable.wait_for(|&at| at >= seq)).await;
    match waited {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(StoreError::Closed),
        Err(_) => Err(StoreError::Unavailable {
            problem: StorageProblem::Io,
            message: format!(
                "the feed through seq {seq} was not synced to disk within {} s",
                limit.as_secs_f64()
            ),
        }),
    }
}

fn not_synced(cause: String) -> StoreError {
    StoreError::Unavailable {
        problem: StorageProblem::Io,
        message: format!("the write may not be on disk: syncing the WAL failed: {cause}"),
    }
}

/// The database's WAL file, opened to be synced. SQLite takes no locks on
/// this file (WAL locks live in the `-shm` file), so this handle's close
/// cannot drop one of SQLite's; and the file stays while the write
/// connection is open (SQLite deletes it only when its last connection
/// closes), so the handle keeps naming the live WAL.
pub(crate) fn open_wal(database: &Path) -> Result<File, StoreError> {
    let mut path = database.as_os_str().to_owned();
    path.push("-wal");
    let path = PathBuf::from(path);
    File::open(&path).map_err(|e| StoreError::Unavailable {
        problem: StorageProblem::Io,
        message: format!("opening the WAL {} to sync it: {e}", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A syncer whose every sync waits for the test: it says when a sync
    /// has begun, and returns the answer the test releases.
    struct Gated {
        /// Dropped before `syncer`: a sync still waiting then ends, and the
        /// syncer's join does not wait for a release no one will send.
        release: mpsc::Sender<io::Result<()>>,
        began: mpsc::Receiver<()>,
        syncer: WalSyncer,
        seen: watch::Receiver<i64>,
        kind_seqs: Arc<KindSeqs>,
    }

    fn gated() -> Gated {
        let (release, gate) = mpsc::channel::<io::Result<()>>();
        let (begin, began) = mpsc::channel();
        let sync = move || {
            let _ = begin.send(());
            // Bounded too, should a test keep its `Gated` alive on failure.
            gate.recv_timeout(LONG)
                .unwrap_or_else(|_| Err(io::Error::other("gate closed")))
        };
        let (latest, seen) = watch::channel(0);
        let kind_seqs = Arc::new(KindSeqs::default());
        let published = Published {
            latest,
            kind_seqs: kind_seqs.clone(),
        };
        Gated {
            release,
            began,
            syncer: WalSyncer::spawn(sync, published).expect("spawn"),
            seen,
            kind_seqs,
        }
    }

    /// A committed group of one job, whose answer lands in the returned
    /// channel.
    fn group(seq: i64) -> (Committed, mpsc::Receiver<Result<(), StoreError>>) {
        let (answer, answered) = mpsc::channel();
        let deliver: Delivery = Box::new(move |outcome| {
            let _ = answer.send(outcome);
        });
        let committed = Committed {
            deliveries: vec![deliver],
            fed: vec!["client".into()],
            seq: Some(seq),
        };
        (committed, answered)
    }

    const SHORT: Duration = Duration::from_millis(100);
    const LONG: Duration = Duration::from_secs(10);

    #[test]
    fn nothing_is_acknowledged_or_published_before_the_sync() {
        let gated = gated();
        let (first, first_answer) = group(7);
        gated.syncer.submit(first);
        gated.began.recv_timeout(LONG).expect("sync began");
        assert!(
            first_answer.recv_timeout(SHORT).is_err(),
            "answered unsynced"
        );
        assert_eq!(*gated.seen.borrow(), 0);
        assert_eq!(gated.kind_seqs.get("client"), 0);

        gated.release.send(Ok(())).expect("release");
        assert!(first_answer.recv_timeout(LONG).expect("answered").is_ok());
        assert_eq!(*gated.seen.borrow(), 7);
        assert_eq!(gated.kind_seqs.get("client"), 7);
    }

    #[test]
    fn groups_committed_during_a_sync_share_the_next_one() {
        let gated = gated();
        let (first, first_answer) = group(1);
        gated.syncer.submit(first);
        gated.began.recv_timeout(LONG).expect("first sync began");
        // Committed while the first sync runs: they wait for the next one.
        let (second, second_answer) = group(2);
        let (third, third_answer) = group(3);
        gated.syncer.submit(second);
        gated.syncer.submit(third);
        gated.release.send(Ok(())).expect("first sync");
        assert!(first_answer.recv_timeout(LONG).expect("first").is_ok());
        gated.began.recv_timeout(LONG).expect("second sync began");
        assert!(second_answer.recv_timeout(SHORT).is_err());
        gated.release.send(Ok(())).expect("second sync");
        assert!(second_answer.recv_timeout(LONG).expect("second").is_ok());
        assert!(third_answer.recv_timeout(LONG).expect("third").is_ok());
        assert_eq!(*gated.seen.borrow(), 3);
    }

    #[test]
    fn a_failed_sync_is_reported_and_publishes_nothing() {
        let gated = gated();
        let (failing, failing_answer) = group(4);
        gated.syncer.submit(failing);
        gated
            .release
            .send(Err(io::Error::other("disk gone")))
            .expect("release");
        let answer = failing_answer.recv_timeout(LONG).expect("answered");
        assert!(
            matches!(
                answer,
                Err(StoreError::Unavailable {
                    problem: StorageProblem::Io,
                    ..
                })
            ),
            "{answer:?}"
        );
        assert_eq!(*gated.seen.borrow(), 0);
        assert_eq!(gated.kind_seqs.get("client"), 0);
    }

    #[test]
    fn dropping_the_syncer_answers_what_it_holds() {
        let published = Published {
            latest: watch::channel(0).0,
            kind_seqs: Arc::default(),
        };
        let syncer = WalSyncer::spawn(|| Ok(()), published).expect("spawn");
        let (last, last_answer) = group(9);
        syncer.submit(last);
        drop(syncer);
        assert!(last_answer
            .try_recv()
            .expect("answered before drop ended")
            .is_ok());
    }

    #[tokio::test]
    async fn a_frame_waits_for_its_position_to_be_durable() {
        let (publish, durable) = watch::channel(3);
        assert!(durable_through(durable.clone(), 3, SHORT).await.is_ok());
        let late = durable_through(durable.clone(), 5, SHORT).await;
        assert!(
            matches!(late, Err(StoreError::Unavailable { .. })),
            "{late:?}"
        );
        let waiting = tokio::spawn(durable_through(durable, 5, LONG));
        tokio::time::sleep(SHORT).await;
        assert!(!waiting.is_finished());
        publish.send_replace(6);
        assert!(waiting.await.expect("joined").is_ok());
    }
}
