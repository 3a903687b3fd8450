//! Crash durability: 16 concurrent writers create clients as fast as they
//! can, the node is killed with SIGKILL in the middle of the burst, and after
//! a restart on the same data directory every create that was acknowledged
//! with 201 must be readable with the data that was sent.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::Instant;

use common::{create, list_all, TestNode};

const WRITERS: usize = 16;
/// Bounds the burst by count as well as by time.
const MAX_PER_WRITER: usize = 400;
const BURST: Duration = Duration::from_millis(1_500);
/// The kill comes at this point of the burst, or at half the count cap.
const KILL_AFTER: Duration = Duration::from_millis(750);

/// A create the node acknowledged with 201.
struct Acked {
    id: String,
    body: Value,
}

/// What one writer saw: acknowledged creates and unexpected statuses.
#[derive(Default)]
struct WriterLog {
    acked: Vec<Acked>,
    unexpected: Vec<String>,
}

async fn writer(
    client: reqwest::Client,
    url: String,
    writer_no: usize,
    end: Instant,
    acked: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
) -> WriterLog {
    let mut log = WriterLog::default();
    for i in 0..MAX_PER_WRITER {
        if Instant::now() >= end {
            break;
        }
        let body = json!({
            "name": format!("Durable {writer_no}-{i}"),
            "city": format!("City {writer_no}"),
            "tags": [format!("w{writer_no}")],
        });
        let response = match client.post(&url).json(&body).send().await {
            Ok(response) => response,
            // The node is gone (killed): this request was never acknowledged.
            Err(_) => break,
        };
        if response.status() != StatusCode::CREATED {
            log.unexpected
                .push(format!("{body}: {}", response.status()));
            continue;
        }
        // The 201 status line is the acknowledgement; the id is in Location.
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok());
        match location.and_then(|l| l.rsplit('/').next()) {
            Some(id) => {
                log.acked.push(Acked {
                    id: id.to_owned(),
                    body,
                });
                acked.fetch_add(1, Ordering::SeqCst);
            }
            None => log.unexpected.push(format!("{body}: 201 without Location")),
        }
    }
    running.fetch_sub(1, Ordering::SeqCst);
    log
}

/// Checks a slice of acknowledged creates against the restarted node.
async fn verify(node: &TestNode, acked: &[Acked]) -> Vec<String> {
    let mut failures = Vec::new();
    for Acked { id, body } in acked {
        let resp = node.get(&format!("/api/v1/clients/{id}")).await;
        if resp.status != StatusCode::OK {
            failures.push(format!(
                "{id} ({}): {} {}",
                body["name"], resp.status, resp.text
            ));
            continue;
        }
        for field in ["name", "city", "tags"] {
            if resp.json[field] != body[field] {
                failures.push(format!(
                    "{id}: {field} is {} but {} was acknowledged",
                    resp.json[field], body[field]
                ));
            }
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_creates_survive_kill_9() {
    let mut node = TestNode::start().await;
    let acked_count = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicUsize::new(WRITERS));
    let started = Instant::now();
    let mut writers = JoinSet::new();
    for writer_no in 0..WRITERS {
        writers.spawn(writer(
            node.client().clone(),
            node.url("/api/v1/clients"),
            writer_no,
            started + BURST,
            Arc::clone(&acked_count),
            Arc::clone(&running),
        ));
    }

    // Wait for the middle of the burst: enough time passed or half the cap acknowledged.
    let half_cap = WRITERS * MAX_PER_WRITER / 2;
    let give_up = started + Duration::from_secs(10);
    while started.elapsed() < KILL_AFTER && acked_count.load(Ordering::SeqCst) < half_cap {
        assert!(
            Instant::now() < give_up,
            "the burst never reached its middle"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let running_at_kill = running.load(Ordering::SeqCst);
    node.kill9().await;
    assert!(
        running_at_kill > 0,
        "all writers had finished before the kill: not mid-burst"
    );

    let mut acked = Vec::new();
    let mut unexpected = Vec::new();
    let joined = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(log) = writers.join_next().await {
            let log = log.expect("writer task panicked");
            acked.extend(log.acked);
            unexpected.extend(log.unexpected);
        }
    })
    .await;
    assert!(
        joined.is_ok(),
        "writers did not stop after the node was killed"
    );
    assert!(
        unexpected.is_empty(),
        "non-201 answers during the burst:\n{}",
        unexpected.join("\n")
    );
    assert!(
        acked.len() >= WRITERS,
        "only {} creates acknowledged before the kill",
        acked.len()
    );
    eprintln!(
        "{} creates acknowledged in {:?}; {running_at_kill} writers running at the kill",
        acked.len(),
        started.elapsed()
    );
    let ids: HashSet<String> = acked.iter().map(|a| a.id.clone()).collect();
    assert_eq!(ids.len(), acked.len(), "the node acknowledged one id twice");

    node.restart().await;
    let acked = Arc::new(acked);
    let node = Arc::new(node);
    let mut checkers = JoinSet::new();
    let chunk = acked.len().div_ceil(8);
    for start in (0..acked.len()).step_by(chunk) {
        let (node, acked) = (Arc::clone(&node), Arc::clone(&acked));
        checkers.spawn(async move {
            verify(&node, &acked[start..(start + chunk).min(acked.len())]).await
        });
    }
    let mut failures = Vec::new();
    while let Some(found) = checkers.join_next().await {
        failures.extend(found.expect("checker task panicked"));
    }
    assert!(
        failures.is_empty(),
        "{} of {} acknowledged creates lost or changed after kill -9:\n{}",
        failures.len(),
        acked.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );

    let listed = list_all(&node, "clients", &[("limit", "200")]).await;
    let listed_ids: HashSet<String> = listed.iter().map(common::id_of).collect();
    assert_eq!(listed_ids.len(), listed.len(), "a record is listed twice");
    assert!(
        ids.is_subset(&listed_ids),
        "an acknowledged record is missing from the list"
    );
    create(&node, "clients", json!({"name": "After the crash"})).await;
}
