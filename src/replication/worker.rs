//! The background worker of one peer: a puller that long-polls the peer's
//! feed and a pusher that sends our changes as soon as they exist. Failures
//! back off exponentially with jitter and never stop the node or the other
//! peers.

use std::sync::Arc;
use std::time::Duration;

use crm_sync::replicate::Replicator;
use tokio_util::sync::CancellationToken;

use super::http_transport::HttpTransport;
use super::Replication;

/// How long a pull may wait at the peer for something new.
const LONG_POLL: Duration = Duration::from_secs(25);
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// The pusher looks again this often even without local changes (e.g. once
/// the puller has learned who the peer is).
const PUSH_TICK: Duration = Duration::from_secs(1);

struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff {
            next: BACKOFF_FIRST,
        }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_FIRST;
    }

    /// The delay before the next attempt: the current step with full
    /// jitter in its upper half, so that many laptops coming back online
    /// at once do not retry in lockstep.
    fn delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(BACKOFF_CAP);
        step.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

/// Sleeps `delay` unless stopped first; returns false when stopped.
async fn pause(stop: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

pub(super) async fn run(
    replication: Replication,
    replicator: Arc<Replicator<HttpTransport>>,
    stop: CancellationToken,
) {
    let puller = tokio::spawn(pull_loop(
        replication.clone(),
        replicator.clone(),
        stop.clone(),
    ));
    let pusher = tokio::spawn(push_loop(replication, replicator, stop));
    let _ = tokio::join!(puller, pusher);
}

async fn pull_loop(
    replication: Replication,
    replicator: Arc<Replicator<HttpTransport>>,
    stop: CancellationToken,
) {
    let peer = replicator.peer_name().to_owned();
    let mut backoff = Backoff::new();
    loop {
        let step = tokio::select! {
            _ = stop.cancelled() => return,
            step = replicator.pull(LONG_POLL) => step,
        };
        match step {
            Ok(step) => {
                backoff.reset();
                if step.applied > 0 {
                    tracing::debug!(peer, applied = step.applied, "pulled");
                }
                replication.note_success(&peer).await;
                // Nobody waits on the worker: the upkeep runs here.
                replication.after_pull(&step, None).await;
            }
            Err(e) => {
                tracing::warn!(peer, error = %e, "pull failed");
                replication.record(&peer, Some(&e)).await;
                if !pause(&stop, backoff.delay()).await {
                    return;
                }
            }
        }
    }
}

async fn push_loop(
    replication: Replication,
    replicator: Arc<Replicator<HttpTransport>>,
    stop: CancellationToken,
) {
    let peer = replicator.peer_name().to_owned();
    let mut latest = replication.store().latest_seq();
    let mut backoff = Backoff::new();
    loop {
        latest.borrow_and_update();
        let step = tokio::select! {
            _ = stop.cancelled() => return,
            step = replicator.push() => step,
        };
        match step {
            Ok(step) if !step.caught_up => {
                backoff.reset();
                continue;
            }
            Ok(step) => {
                backoff.reset();
                if step.requests > 0 {
                    replication.note_success(&peer).await;
                }
            }
            Err(e) => {
                tracing::warn!(peer, error = %e, "push failed");
                replication.record(&peer, Some(&e)).await;
                if !pause(&stop, backoff.delay()).await {
                    return;
                }
                continue;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = latest.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(PUSH_TICK) => {}
        }
    }
}
