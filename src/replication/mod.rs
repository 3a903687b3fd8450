//! Replication as the node runs it: the peers it is configured with, one
//! background worker per peer, sync rounds on demand, and the status the API
//! shows. The protocol itself is `crm_sync::replicate`; the wire is
//! `http_transport`.

pub mod http_transport;
pub mod status;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crm_sync::feed::KindSet;
use crm_sync::peers::{self, Peer, PeerError};
use crm_sync::replicate::{Replicator, RoundReport, StepReport, SyncError};
use crm_sync::tokens::{self, TokenError, TokenInfo};
use crm_sync::{Store, StoreError};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::tls::PeerTrust;
use http_transport::{parse_peer_url, HttpTransport};

use crate::records::scope::ScopeSpec;
pub use status::PeerStatus;

/// How often the supervisor looks for peers added or removed by another
/// process (`crm-node peer add` while the node runs).
const RECONCILE_EVERY: Duration = Duration::from_secs(2);
/// Steps per direction in an on-demand round, so that a round over a huge
/// backlog still ends (the workers carry on).
const ROUND_STEPS: usize = 100_000;
/// How long an on-demand round may go on taking steps: its caller waits
/// for the answer, and the API cuts requests off at 60 s.
const ROUND_BUDGET: Duration = Duration::from_secs(40);
/// Changes received since the last look at the full-text index's layout
/// that make a bulk of them (a first sync, a peer's import): once a pull
/// catches up after so many, the index is optimized if its layout calls
/// for it (`records::search_upkeep`).
const BULK_RECEIVED: u64 = 5_000;
/// An on-demand round that caught up after a bulk runs that optimize's
/// steps until this long after it began, and leaves the rest to the
/// background. The API cuts requests off at 60 s.
const ROUND_ANSWER_BY: Duration = Duration::from_secs(50);

/// Changes pulled from any peer since the last full-text upkeep, counted
/// across pulls and rounds: a first sync or a peer's import arrives in many
/// pages, and only the pull that catches up after them runs the upkeep.
#[derive(Default)]
struct ReceivedSinceUpkeep(AtomicU64);

impl ReceivedSinceUpkeep {
    fn add(&self, applied: u64) {
        self.0.fetch_add(applied, Ordering::Relaxed);
    }

    /// The count, when it makes a bulk (`BULK_RECEIVED`), taken away so
    /// that counting starts again; changes added meanwhile stay counted.
    fn take_bulk(&self) -> Option<u64> {
        let received = self.0.load(Ordering::Relaxed);
        (received >= BULK_RECEIVED).then(|| {
            self.0.fetch_sub(received, Ordering::Relaxed);
            received
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Peer(#[from] PeerError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A peer as the API shows it: no secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PeerView {
    pub name: String,
    pub url: String,
    /// The peer's node id, once it has answered.
    pub node_id: Option<String>,
    pub epoch: Option<u32>,
}

impl From<&Peer> for PeerView {
    fn from(p: &Peer) -> Self {
        PeerView {
            name: p.name.clone(),
            url: p.url.clone(),
            node_id: p.remote.map(|r| r.node.to_string()),
            epoch: p.remote.map(|r| r.epoch.0),
        }
    }
}

/// What one direction of a round moved.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepView {
    /// Requests sent to the peer.
    pub requests: u64,
    /// Body bytes sent and received.
    pub bytes: u64,
    /// Changes moved (on a first sync: the changes of the copied records).
    pub changes: u64,
    /// Of those, changes the receiving side did not have.
    pub applied: u64,
    /// Changes held by the receiver until their dependencies arrive.
    pub held: u64,
    /// Pushed changes the peer refused because their records are outside
    /// the scope of the token it gave this node.
    pub rejected: u64,
    /// Nothing is left to move in this direction.
    pub caught_up: bool,
}

impl From<StepReport> for StepView {
    fn from(s: StepReport) -> Self {
        StepView {
            requests: s.requests,
            bytes: s.bytes,
            changes: s.changes,
            applied: s.applied,
            held: s.held,
            rejected: s.rejected,
            caught_up: s.caught_up,
        }
    }
}

/// What an on-demand round did with one peer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoundResult {
    pub peer: String,
    pub ok: bool,
    /// From the peer to this node; absent when the round failed.
    pub pulled: Option<StepView>,
    /// From this node to the peer; absent when the round failed.
    pub pushed: Option<StepView>,
    pub error: Option<String>,
}

#[derive(Clone)]
pub struct Replication {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    kinds: KindSet,
    client: reqwest::Client,
    status: status::StatusBoard,
    workers: Mutex<HashMap<String, (String, String, CancellationToken)>>,
    /// Wakes the supervisor when this process changed the peer list.
    peers_changed: tokio::sync::Notify,
    /// Changes pulled from any peer since the last full-text upkeep.
    received_since_upkeep: ReceivedSinceUpkeep,
    /// Held while a caught-up pull runs (or waits for) that upkeep.
    upkeep: tokio::sync::Mutex<()>,
}

fn check_peer_name(name: &str) -> Result<(), ReplicationError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ReplicationError::Invalid(format!(
            "`{name}`: a peer or token name is 1-64 characters of letters, digits, '-', '_' and '.'"
        )))
    }
}

impl Replication {
    /// `trust`: the `peer_ca` certificates peers may also chain to.
    pub fn new(
        store: Store,
        kinds: KindSet,
        trust: &PeerTrust,
    ) -> Result<Replication, ReplicationError> {
        let builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("crm-node/", env!("CARGO_PKG_VERSION")));
        let client = trust
            .apply(builder)
            .map_err(|e| ReplicationError::Invalid(e.to_string()))?
            .build()
            .map_err(|e| ReplicationError::Invalid(format!("HTTP client: {e}")))?;
        Ok(Replication {
            inner: Arc::new(Inner {
                store,
                kinds,
                client,
                status: status::StatusBoard::default(),
                workers: Mutex::new(HashMap::new()),
                peers_changed: tokio::sync::Notify::new(),
                received_since_upkeep: ReceivedSinceUpkeep::default(),
                upkeep: tokio::sync::Mutex::new(()),
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn kinds(&self) -> &KindSet {
        &self.inner.kinds
    }

    fn replicator(&self, peer: &Peer) -> Replicator<HttpTransport> {
        Replicator::new(
            self.inner.store.clone(),
            peer.name.clone(),
            HttpTransport::new(self.inner.client.clone(), &peer.url, &peer.token),
            self.inner.kinds.clone(),
        )
    }

    pub async fn peers(&self) -> Result<Vec<Peer>, ReplicationError> {
        Ok(self.inner.store.read(peers::list).await?)
    }

    pub async fn add_peer(
        &self,
        name: &str,
        url: &str,
        token: &str,
    ) -> Result<Peer, ReplicationError> {
        check_peer_name(name)?;
        let url = parse_peer_url(url).map_err(ReplicationError::Invalid)?;
        let token = token.to_owned();
        if token.is_empty() || token.len() > 256 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ReplicationError::Invalid(
                "the token must be the secret printed by `crm-node token create` on the peer"
                    .into(),
            ));
        }
        let name = name.to_owned();
        let peer = self
            .inner
            .store
            .write(move |txn| {
                peers::add(txn.conn(), &name, &url, &token, crate::clock::now_ms())?;
                peers::get(txn.conn(), &name)?.ok_or(PeerError::NotFound(name))
            })
            .await?;
        self.inner.peers_changed.notify_one();
        Ok(peer)
    }

    pub async fn remove_peer(&self, name: &str) -> Result<(), ReplicationError> {
        let name = name.to_owned();
        self.inner
            .store
            .write(move |txn| peers::remove(txn.conn(), &name))
            .await?;
        self.inner.peers_changed.notify_one();
        Ok(())
    }

    /// Issues a token; `scope` (a checked [`ScopeSpec`]) limits what the
    /// peer holding it may see and change.
    pub async fn create_token(
        &self,
        name: &str,
        scope: Option<&ScopeSpec>,
    ) -> Result<String, ReplicationError> {
        check_peer_name(name)?;
        let name = name.to_owned();
        let scope = scope.filter(|s| !s.is_everything()).map(ScopeSpec::to_json);
        Ok(self
            .inner
            .store
            .write(move |txn| {
                tokens::create(txn.conn(), &name, scope.as_deref(), crate::clock::now_ms())
            })
            .await?)
    }

    pub async fn tokens(&self) -> Result<Vec<TokenInfo>, ReplicationError> {
        Ok(self.inner.store.read(tokens::list).await?)
    }

    pub async fn revoke_token(&self, name: &str) -> Result<(), ReplicationError> {
        let name = name.to_owned();
        self.inner
            .store
            .write(move |txn| tokens::revoke(txn.conn(), &name, crate::clock::now_ms()))
            .await?;
        Ok(())
    }

    /// The active token with this secret.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<tokens::Grant>, StoreError> {
        let secret = secret.to_owned();
        self.inner
            .store
            .read(move |conn| tokens::verify(conn, &secret))
            .await
    }

    /// Runs one round with `only` (or every peer) now and says what moved.
    /// `max_steps` bounds the pages per direction.
    pub async fn run_round(
        &self,
        only: Option<&str>,
        max_steps: Option<usize>,
    ) -> Result<Vec<RoundResult>, ReplicationError> {
        let peers = self.peers().await?;
        if let Some(name) = only {
            if !peers.iter().any(|p| p.name == name) {
                return Err(PeerError::NotFound(name.to_owned()).into());
            }
        }
        let started = Instant::now();
        let mut results = Vec::new();
        for peer in peers.iter().filter(|p| only.is_none_or(|n| n == p.name)) {
            let outcome = self
                .replicator(peer)
                .round_within(max_steps.unwrap_or(ROUND_STEPS), Some(ROUND_BUDGET))
                .await;
            self.record(&peer.name, outcome.as_ref().err()).await;
            if let Ok(report) = &outcome {
                self.after_pull(&report.pulled, Some(started + ROUND_ANSWER_BY))
                    .await;
            }
            results.push(match outcome {
                Ok(RoundReport { pulled, pushed }) => RoundResult {
                    peer: peer.name.clone(),
                    ok: true,
                    pulled: Some(pulled.into()),
                    pushed: Some(pushed.into()),
                    error: None,
                },
                Err(e) => RoundResult {
                    peer: peer.name.clone(),
                    ok: false,
                    pulled: None,
                    pushed: None,
                    error: Some(e.to_string()),
                },
            });
        }
        Ok(results)
    }

    /// Counts the changes a pull applied; when it caught up after a bulk of
    /// them, runs the full-text upkeep (until `answer_by`, the rest in the
    /// background). A caught-up pull also waits for
    /// an upkeep that another puller (a worker, a round) is running, so
    /// that a round that reports "caught up" leaves the index optimized.
    async fn after_pull(&self, pulled: &StepReport, answer_by: Option<Instant>) {
        let counter = &self.inner.received_since_upkeep;
        counter.add(pulled.applied);
        if !pulled.caught_up {
            return;
        }
        let lock = self.inner.upkeep.lock();
        let _one_at_a_time = match answer_by {
            Some(by) => match tokio::time::timeout_at(by.into(), lock).await {
                Ok(guard) => guard,
                Err(_) => return,
            },
            None => lock.await,
        };
        if let Some(received) = counter.take_bulk() {
            tracing::info!(received, "caught up after a bulk of received changes");
            crate::records::search_upkeep::after_bulk(&self.inner.store, answer_by).await;
        }
    }

    /// Notes a round's or step's outcome, in memory and in the peer's row.
    async fn record(&self, peer: &str, error: Option<&SyncError>) {
        self.inner.status.record(peer, error);
        let message = error.map(ToString::to_string);
        let name = peer.to_owned();
        let stored = self
            .inner
            .store
            .write(move |txn| {
                peers::record_outcome(
                    txn.conn(),
                    &name,
                    crate::clock::now_ms(),
                    message.as_deref(),
                )
            })
            .await;
        if let Err(e) = stored {
            tracing::warn!(peer, error = %e, "could not store the sync outcome");
        }
    }

    /// Notes a successful exchange of a worker: in memory each time, in the
    /// peer's row only when it ends a run of failures (a long-polling
    /// worker succeeds every few seconds).
    async fn note_success(&self, peer: &str) {
        if self.inner.status.record(peer, None) {
            tracing::info!(peer, "peer reachable again");
            self.record(peer, None).await;
        }
    }

    /// Per-peer status: state, last outcome, backlogs.
    pub async fn status(&self) -> Result<Vec<PeerStatus>, ReplicationError> {
        let peers = self.peers().await?;
        let mut out = Vec::with_capacity(peers.len());
        for peer in peers {
            out.push(self.inner.status.describe(&self.inner.store, peer).await?);
        }
        Ok(out)
    }

    /// Keeps one worker per configured peer until `shutdown`.
    pub async fn supervise(self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.reconcile(&shutdown).await {
                tracing::warn!(error = %e, "reading the peer list failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.inner.peers_changed.notified() => {}
                _ = tokio::time::sleep(RECONCILE_EVERY) => {}
            }
        }
        if let Ok(mut workers) = self.inner.workers.lock() {
            for (_, (_, _, stop)) in workers.drain() {
                stop.cancel();
            }
        }
    }

    async fn reconcile(&self, shutdown: &CancellationToken) -> Result<(), ReplicationError> {
        let peers = self.peers().await?;
        let mut start = Vec::new();
        {
            let mut workers = self
                .inner
                .workers
                .lock()
                .map_err(|_| ReplicationError::Invalid("worker table poisoned".into()))?;
            workers.retain(|name, (url, token, stop)| {
                let keep = peers
                    .iter()
                    .any(|p| &p.name == name && &p.url == url && &p.token == token);
                if !keep {
                    tracing::info!(peer = %name, "stopping replication worker");
                    stop.cancel();
                }
                keep
            });
            for peer in peers {
                if !workers.contains_key(&peer.name) {
                    let stop = shutdown.child_token();
                    workers.insert(
                        peer.name.clone(),
                        (peer.url.clone(), peer.token.clone(), stop.clone()),
                    );
                    start.push((peer, stop));
                }
            }
        }
        for (peer, stop) in start {
            tracing::info!(peer = %peer.name, url = %peer.url, "starting replication worker");
            let replicator = Arc::new(self.replicator(&peer));
            tokio::spawn(worker::run(self.clone(), replicator, stop));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages counted across pulls make a bulk only together, and a bulk
    /// taken starts the count again.
    #[test]
    fn received_changes_make_a_bulk_across_pulls() {
        let received = ReceivedSinceUpkeep::default();
        received.add(BULK_RECEIVED - 1_000);
        assert_eq!(received.take_bulk(), None, "not yet a bulk");
        received.add(999);
        assert_eq!(received.take_bulk(), None);
        received.add(1);
        assert_eq!(received.take_bulk(), Some(BULK_RECEIVED));
        assert_eq!(received.take_bulk(), None, "counted from zero again");
        received.add(BULK_RECEIVED + 7);
        assert_eq!(received.take_bulk(), Some(BULK_RECEIVED + 7));
    }
}
