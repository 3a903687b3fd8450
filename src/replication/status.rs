//! What each peer's replication is doing, for `/api/v1/sync/status`: the
//! live state kept in memory by the workers, plus the backlogs read from
//! the checkpoints.

use std::collections::HashMap;
use std::sync::Mutex;

use crm_sync::peers::Peer;
use crm_sync::replicate::{SyncError, TransportError};
use crm_sync::{feed, held_count, Store, StoreError};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PeerState {
    /// No exchange since the node started.
    Idle,
    /// The last exchange succeeded.
    Connected,
    /// The peer could not be reached; retrying with backoff.
    Offline,
    /// The peer answered with a refusal (bad token, incompatible version,
    /// a batch this node refused); retrying with backoff.
    Failing,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PeerStatus {
    pub name: String,
    pub url: String,
    pub node_id: Option<String>,
    pub state: PeerState,
    /// Last successful exchange, RFC 3339.
    pub last_success: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// Our changes the peer has not taken yet.
    pub backlog: i64,
    /// Changes in the peer's feed we have not applied yet (as of the last
    /// page we read).
    pub behind: i64,
    /// Changes from this peer held here until their dependencies arrive.
    pub held: i64,
    /// A first sync is copying the peer's documents.
    pub copying: bool,
}

#[derive(Debug, Clone, Default)]
struct Live {
    state: Option<PeerState>,
    last_success: Option<i64>,
    last_error: Option<(String, i64)>,
}

#[derive(Default)]
pub(super) struct StatusBoard {
    live: Mutex<HashMap<String, Live>>,
}

fn rfc3339(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.to_rfc3339())
}

impl StatusBoard {
    /// Notes an outcome; returns whether the peer was failing before (so
    /// that a recovery gets stored).
    pub fn record(&self, peer: &str, error: Option<&SyncError>) -> bool {
        let Ok(mut live) = self.live.lock() else {
            return false;
        };
        let entry = live.entry(peer.to_owned()).or_default();
        let was_failing = matches!(entry.state, Some(PeerState::Offline | PeerState::Failing));
        let now = crate::clock::now_ms();
        match error {
            None => {
                entry.state = Some(PeerState::Connected);
                entry.last_success = Some(now);
            }
            Some(error) => {
                let unreachable =
                    matches!(error, SyncError::Transport(TransportError::Unreachable(_)));
                entry.state = Some(if unreachable {
                    PeerState::Offline
                } else {
                    PeerState::Failing
                });
                entry.last_error = Some((error.to_string(), now));
            }
        }
        was_failing
    }

    pub async fn describe(&self, store: &Store, peer: Peer) -> Result<PeerStatus, StoreError> {
        let live = self
            .live
            .lock()
            .ok()
            .and_then(|l| l.get(&peer.name).cloned())
            .unwrap_or_default();
        let remote = peer.remote;
        let since = peer.push_acked;
        let copying = peer.copying();
        let (backlog, held) = store
            .read(move |conn| {
                let backlog = if remote.is_some() {
                    feed::backlog_for(conn, since, remote)?
                } else {
                    feed::latest_seq(conn)?
                };
                let held = match remote {
                    Some(r) => held_count(conn, Some(r))?,
                    None => 0,
                };
                Ok::<_, StoreError>((backlog, held))
            })
            .await?;
        let last_success = live.last_success.or(peer.last_success);
        let last_error = live
            .last_error
            .clone()
            .or_else(|| peer.last_error.clone().zip(peer.last_error_at));
        Ok(PeerStatus {
            name: peer.name,
            url: peer.url,
            node_id: remote.map(|r| r.node.to_string()),
            state: live.state.unwrap_or(PeerState::Idle),
            last_success: last_success.and_then(rfc3339),
            last_error_at: last_error.as_ref().and_then(|(_, at)| rfc3339(*at)),
            last_error: last_error.map(|(m, _)| m),
            backlog,
            behind: (peer.remote_latest - peer.pull_since.max(0)).max(0),
            held,
            copying,
        })
    }
}
