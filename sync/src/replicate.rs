//! One side of a peer relationship: pull a page of the peer's feed (or of
//! its documents, on a first sync) and apply it together with the new
//! checkpoint; push a batch of our feed and record what the peer took.
//! Network I/O goes through a [`Transport`], so the same logic runs over
//! HTTP in the node and in-process in simulations.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::feed::{self, FeedQuery, KindSet, SnapshotQuery};
use crate::frame::{Frame, FrameType, Sender};
use crate::peers::{self, kinds_fingerprint, Peer};
use crate::receive::{ApplyReport, PreparedSnapshot, ReceiveError};
use crate::{DocId, Store, StoreError};

/// Rows of the feed (or documents) per page.
pub const PAGE: usize = 1000;

/// What a puller asks of a peer's feed.
#[derive(Debug, Clone)]
pub struct FeedRequest {
    pub query: FeedQuery,
    /// Long-poll: how long the peer may wait for a change when none is new.
    pub wait: Duration,
}

/// What a peer answered to a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushReply {
    pub receiver: Sender,
    pub report: ApplyReport,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The peer answered but could not prove who it is (e.g. a TLS
    /// certificate no trusted CA issued): retrying will not help until the
    /// configuration changes.
    #[error("peer not trusted: {0}")]
    Untrusted(String),
    #[error("peer refused the request ({status}): {detail}")]
    Refused { status: u16, detail: String },
    #[error("peer answered something unreadable: {0}")]
    BadAnswer(String),
}

/// How requests reach a peer. Each call returns the bytes it moved on the
/// wire along with its answer, for reports.
pub trait Transport: Send + Sync {
    fn feed(
        &self,
        request: &FeedRequest,
    ) -> impl Future<Output = Result<(Frame, u64), TransportError>> + Send;
    fn snapshots(
        &self,
        query: &SnapshotQuery,
    ) -> impl Future<Output = Result<(Frame, u64), TransportError>> + Send;
    fn push(
        &self,
        frame: &Frame,
    ) -> impl Future<Output = Result<(PushReply, u64), TransportError>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("no peer named `{0}`")]
    NoSuchPeer(String),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the peer sent a batch this node refuses: {0}")]
    Refused(ReceiveError),
    #[error("the peer answered with a {0:?} frame where another was expected")]
    WrongFrame(FrameType),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ReceiveError> for SyncError {
    fn from(e: ReceiveError) -> Self {
        match e {
            ReceiveError::Store(e) => SyncError::Store(e),
            other => SyncError::Refused(other),
        }
    }
}

/// What one step moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    pub requests: u64,
    pub bytes: u64,
    /// Changes (or, on a first sync, documents' changes) moved.
    pub changes: u64,
    /// Of those, changes the other side did not have yet.
    pub applied: u64,
    pub held: u64,
    /// Pushed changes the other side refused: their records are outside
    /// the scope its token gives us.
    #[serde(default)]
    pub rejected: u64,
    /// Nothing more to move in this direction right now.
    pub caught_up: bool,
}

impl StepReport {
    fn from_apply(report: ApplyReport, requests: u64, bytes: u64, caught_up: bool) -> Self {
        StepReport {
            requests,
            bytes,
            changes: report.applied + report.duplicates + report.held + report.rejected,
            applied: report.applied,
            held: report.held,
            rejected: report.rejected,
            caught_up,
        }
    }

    pub fn add(&mut self, other: StepReport) {
        self.requests += other.requests;
        self.bytes += other.bytes;
        self.changes += other.changes;
        self.applied += other.applied;
        self.held += other.held;
        self.rejected += other.rejected;
        self.caught_up = other.caught_up;
    }
}

/// Replication with one peer over `transport`.
pub struct Replicator<T> {
    store: Store,
    peer: String,
    transport: T,
    kinds: KindSet,
    /// Changes per pushed batch: halved each time the peer answers 413
    /// (its batch limit is smaller than our page).
    push_batch: AtomicUsize,
    /// During a first sync, the page after the one being written, fetched
    /// and prepared meanwhile: the peer reads, the network carries and the
    /// cores load page n+1 while the writer stores page n.
    next_page: Mutex<Option<SnapshotPage>>,
}

/// A page of a peer's documents, loaded and rendered, not yet stored.
struct SnapshotPage {
    /// The query's `after`: the page is used only by a pull that asks for
    /// it.
    after: Option<DocId>,
    /// The frame's header; its entries are in `prepared`.
    frame: Frame,
    bytes: u64,
    last: Option<DocId>,
    prepared: Vec<PreparedSnapshot>,
}

impl<T: Transport> Replicator<T> {
    /// `kinds` are the kinds this node knows: it accepts and asks for only
    /// those.
    pub fn new(store: Store, peer: String, transport: T, kinds: KindSet) -> Self {
        Replicator {
            store,
            peer,
            transport,
            kinds,
            push_batch: AtomicUsize::new(PAGE),
            next_page: Mutex::new(None),
        }
    }

    pub fn peer_name(&self) -> &str {
        &self.peer
    }

    fn me(&self) -> Sender {
        let id = self.store.identity();
        Sender {
            node: id.node_id,
            epoch: id.epoch,
        }
    }

    async fn load_peer(&self) -> Result<Peer, SyncError> {
        let name = self.peer.clone();
        self.store
            .read(move |conn| peers::get(conn, &name))
            .await?
            .ok_or_else(|| SyncError::NoSuchPeer(self.peer.clone()))
    }

    /// Whether the peer is still the node (and epoch, and kinds) our
    /// checkpoints were taken against. When not, they restart from zero.
    async fn check_identity(&self, peer: &Peer, frame: &Frame) -> Result<bool, SyncError> {
        let fingerprint = kinds_fingerprint(&self.kinds, &frame.kinds);
        if peer.remote == Some(frame.sender) && peer.kinds == fingerprint {
            return Ok(true);
        }
        if let Some(old) = peer.remote {
            tracing::warn!(
                peer = %self.peer,
                old_node = %old.node, old_epoch = old.epoch.0,
                node = %frame.sender.node, epoch = frame.sender.epoch.0,
                "peer identity, epoch or kinds changed: syncing again from the start"
            );
        }
        let name = self.peer.clone();
        let sender = frame.sender;
        self.store
            .write(move |txn| peers::reset(txn.conn(), &name, sender, None, &fingerprint))
            .await?;
        Ok(false)
    }

    /// Pulls one page: of the peer's documents while a first sync copies
    /// them, of its feed otherwise. `wait` lets the peer hold the request
    /// until it has something new.
    pub async fn pull(&self, wait: Duration) -> Result<StepReport, SyncError> {
        let peer = self.load_peer().await?;
        if peer.copying() {
            return self.pull_snapshot(peer).await;
        }
        let request = FeedRequest {
            query: FeedQuery {
                since: peer.pull_since,
                limit: PAGE,
                requester: Some(self.me()),
                kinds: Some(self.kinds.clone()),
            },
            wait,
        };
        let (frame, bytes) = self.transport.feed(&request).await?;
        if frame.frame_type != FrameType::Changes {
            return Err(SyncError::WrongFrame(frame.frame_type));
        }
        if !self.check_identity(&peer, &frame).await? {
            return Ok(StepReport {
                requests: 1,
                bytes,
                ..StepReport::default()
            });
        }
        let name = self.peer.clone();
        let kinds = self.kinds.clone();
        let caught_up = frame.through >= frame.latest;
        let sender = frame.sender;
        let report = self
            .store
            .write(move |txn| {
                let report = txn.receive_changes(frame.sender, frame.entries, &kinds, None)?;
                peers::advance_pull(txn.conn(), &name, frame.sender, frame.through, frame.latest)?;
                Ok::<_, ReceiveError>(report)
            })
            .await?;
        let mut step = StepReport::from_apply(report, 1, bytes, caught_up);
        if report.held > 0 {
            let copied = self.fetch_missing(sender).await?;
            step.requests += copied.requests;
            step.bytes += copied.bytes;
            step.applied += copied.applied;
        }
        Ok(step)
    }

    /// Copies the documents whose changes `peer` sent but which are not
    /// here: a peer that scopes what we see sends only the changes made
    /// since a record entered the scope, and those need the document.
    async fn fetch_missing(&self, peer: Sender) -> Result<StepReport, SyncError> {
        let ids = self
            .store
            .read(move |conn| crate::receive::missing_docs(conn, peer, feed::MAX_SNAPSHOT_IDS))
            .await?;
        if ids.is_empty() {
            return Ok(StepReport::default());
        }
        let query = SnapshotQuery {
            after: None,
            limit: ids.len(),
            kinds: Some(self.kinds.clone()),
            ids,
        };
        let SnapshotPage {
            frame,
            prepared,
            bytes,
            ..
        } = self.fetch_prepared(query).await?;
        let sender = frame.sender;
        let report = self
            .store
            .write(move |txn| txn.receive_snapshots(sender, prepared))
            .await?;
        tracing::info!(peer = %self.peer, documents = report.documents, "copied documents whose changes arrived before them");
        Ok(StepReport::from_apply(report, 1, bytes, true))
    }

    async fn pull_snapshot(&self, peer: Peer) -> Result<StepReport, SyncError> {
        let after = peer.snapshot_after;
        let page = match self.take_next_page(after) {
            Some(page) => page,
            None => self.fetch_snapshot_page(after).await?,
        };
        let known = self.check_identity(&peer, &page.frame).await?;
        if !known && after.is_some() {
            // A copy begun against another identity starts over.
            return Ok(StepReport {
                requests: 1,
                bytes: page.bytes,
                ..StepReport::default()
            });
        }
        let at = match (known, peer.snapshot_at) {
            (true, Some(at)) => at,
            _ => page.frame.through,
        };
        let SnapshotPage {
            frame,
            bytes,
            last,
            prepared,
            ..
        } = page;
        let name = self.peer.clone();
        let sender = frame.sender;
        let apply = self.store.write(move |txn| {
            let report = txn.receive_snapshots(sender, prepared)?;
            peers::advance_snapshot(txn.conn(), &name, sender, at, last)?;
            Ok::<_, ReceiveError>(report)
        });
        let report = match last {
            Some(last) => {
                let (applied, next) = tokio::join!(apply, self.fetch_snapshot_page(Some(last)));
                match next {
                    Ok(next) => *self.lock_next_page() = Some(next),
                    // The next pull asks again and reports what fails then.
                    Err(e) => {
                        tracing::debug!(peer = %self.peer, error = %e, "first sync: prefetching the next page failed")
                    }
                }
                applied?
            }
            None => apply.await?,
        };
        if let Some(last) = last {
            tracing::info!(peer = %self.peer, documents = report.documents, last = %last, "first sync: copied a page of documents");
        } else {
            tracing::info!(peer = %self.peer, from = at, "first sync: documents copied; following the feed");
        }
        Ok(StepReport::from_apply(report, 1, bytes, false))
    }

    /// Fetches the page of the peer's documents after `after` and loads
    /// and renders them. Loading is most of a first sync's work: it runs
    /// on every core, the writer only stores the result.
    async fn fetch_snapshot_page(&self, after: Option<DocId>) -> Result<SnapshotPage, SyncError> {
        let query = SnapshotQuery {
            after,
            limit: PAGE,
            kinds: Some(self.kinds.clone()),
            ids: Vec::new(),
        };
        self.fetch_prepared(query).await
    }

    /// Fetches the snapshot page `query` names, then loads and renders its
    /// documents on every core.
    async fn fetch_prepared(&self, query: SnapshotQuery) -> Result<SnapshotPage, SyncError> {
        let (mut frame, bytes) = self.transport.snapshots(&query).await?;
        if frame.frame_type != FrameType::Snapshots {
            return Err(SyncError::WrongFrame(frame.frame_type));
        }
        let last = frame.entries.last().map(|e| e.doc);
        let entries = std::mem::take(&mut frame.entries);
        let kinds = self.kinds.clone();
        let store = self.store.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            let actor = store.identity().actor();
            crate::receive::prepare_snapshots(store.projector(), &actor, entries, &kinds)
        })
        .await
        .map_err(|e| StoreError::TaskFailed(e.to_string()))??;
        Ok(SnapshotPage {
            after: query.after,
            frame,
            bytes,
            last,
            prepared,
        })
    }

    /// The prefetched page if it is the one after `after`; a stale one is
    /// dropped.
    fn take_next_page(&self, after: Option<DocId>) -> Option<SnapshotPage> {
        self.lock_next_page()
            .take()
            .filter(|page| page.after == after && after.is_some())
    }

    fn lock_next_page(&self) -> std::sync::MutexGuard<'_, Option<SnapshotPage>> {
        // The slot holds no invariant a panic could break.
        self.next_page
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Pushes one batch of our feed that the peer has not taken. Sends
    /// nothing when the peer has all of it. Needs one pull first, to know
    /// who the peer is and what kinds it takes.
    pub async fn push(&self) -> Result<StepReport, SyncError> {
        let peer = self.load_peer().await?;
        let Some(remote) = peer.remote else {
            // Nothing can go before a pull has told us who the peer is.
            return Ok(StepReport {
                caught_up: true,
                ..StepReport::default()
            });
        };
        let me = self.me();
        let kinds = self.kinds.clone();
        let batch = self.push_batch.load(Ordering::Relaxed);
        let query = FeedQuery {
            since: peer.push_acked,
            limit: batch,
            requester: Some(remote),
            kinds: Some(peer.their_kinds()),
        };
        let frame = self
            .store
            .read_frame(move |conn| feed::read_feed(conn, me, &kinds, &query, None))
            .await?;
        let caught_up = frame.through >= frame.latest;
        let through = frame.through;
        let name = self.peer.clone();
        if frame.entries.is_empty() {
            if through > peer.push_acked {
                self.store
                    .write(move |txn| peers::advance_push(txn.conn(), &name, remote, through))
                    .await?;
            }
            return Ok(StepReport {
                caught_up,
                ..StepReport::default()
            });
        }
        let (reply, bytes) = match self.transport.push(&frame).await {
            Err(TransportError::Refused { status: 413, .. }) if batch > 1 => {
                let smaller = (batch / 2).max(1);
                tracing::warn!(peer = %self.peer, batch = smaller, "the peer refused a batch as too large; sending smaller ones");
                self.push_batch.store(smaller, Ordering::Relaxed);
                return Ok(StepReport {
                    requests: 1,
                    ..StepReport::default()
                });
            }
            answer => answer?,
        };
        if reply.receiver != remote {
            // Restored from a backup (or replaced) since we last pulled: the
            // next pull notices and restarts both directions.
            tracing::warn!(peer = %self.peer, "peer identity changed during push");
            return Ok(StepReport {
                requests: 1,
                bytes,
                ..StepReport::default()
            });
        }
        self.store
            .write(move |txn| peers::advance_push(txn.conn(), &name, remote, through))
            .await?;
        if reply.report.rejected > 0 {
            // Not retried: the peer will refuse them as long as the records
            // stay outside the scope its token gives us.
            tracing::warn!(peer = %self.peer, rejected = reply.report.rejected, "the peer refused changes to records outside our scope");
        }
        Ok(StepReport::from_apply(reply.report, 1, bytes, caught_up))
    }

    /// One full round: pull until caught up, then push until caught up.
    /// `max_steps` bounds each direction (a partial sync when reached).
    pub async fn round(&self, max_steps: usize) -> Result<RoundReport, SyncError> {
        self.round_within(max_steps, None).await
    }

    /// A round that also stops taking steps once `budget` has passed: each
    /// direction still takes at least one step, and one not caught up says
    /// so. Someone waiting on the answer (a "sync now" over a first sync of
    /// a million records) gets one in time; what is left is for the next
    /// round. Every step commits on its own, so stopping loses nothing.
    pub async fn round_within(
        &self,
        max_steps: usize,
        budget: Option<Duration>,
    ) -> Result<RoundReport, SyncError> {
        let deadline = budget.map(|b| tokio::time::Instant::now() + b);
        let out_of_time = || deadline.is_some_and(|d| tokio::time::Instant::now() >= d);
        let mut report = RoundReport::default();
        for _ in 0..max_steps {
            let step = self.pull(Duration::ZERO).await?;
            report.pulled.add(step);
            if step.caught_up || out_of_time() {
                break;
            }
        }
        for _ in 0..max_steps {
            let step = self.push().await?;
            report.pushed.add(step);
            if step.caught_up || out_of_time() {
                break;
            }
        }
        Ok(report)
    }
}

/// What a round moved in each direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RoundReport {
    pub pulled: StepReport,
    pub pushed: StepReport,
}
