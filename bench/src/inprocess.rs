//! The limit HTTP creates are compared with: the raw pipeline "create an
//! Automerge document (its first change) + save + SQLite insert (document
//! row and feed entry)"
//! run in this process on a `crm_sync::Store`, with the same durability as
//! the node (WAL, `synchronous=FULL`, group commit) and 32 concurrent
//! writers, but no HTTP, no validation and no projection (a no-op
//! `Projector`).

use std::sync::Arc;

use anyhow::Context;
use std::collections::HashMap;

use crm_sync::automerge::{hydrate, ScalarValue};
use crm_sync::{ChangeMeta, NoProjection, Store, StoreConfig, StoreError};
use serde_json::Value;

use crate::generator;
use crate::load::{self, LoadResult, Stop};

/// The scalar fields of a generated record, as a new document's root.
fn scalar_root(record: &Value) -> HashMap<String, hydrate::Value> {
    let Some(fields) = record.as_object() else {
        return HashMap::new();
    };
    fields
        .iter()
        .filter_map(|(name, value)| {
            let scalar = match value {
                Value::String(s) => ScalarValue::Str(s.as_str().into()),
                Value::Number(n) => ScalarValue::Int(n.as_i64()?),
                Value::Bool(b) => ScalarValue::Boolean(*b),
                _ => return None,
            };
            Some((name.clone(), scalar.into()))
        })
        .collect()
}

/// Creates `count` generated clients in a fresh store in `dir` with
/// `concurrency` concurrent writers (documents built in parallel, stored by
/// the one writer with group commit, no projection); the load's throughput
/// is the limit.
pub async fn create_limit(
    dir: &std::path::Path,
    seed: u64,
    count: u64,
    concurrency: usize,
) -> anyhow::Result<LoadResult> {
    let config = StoreConfig {
        path: dir.join("inprocess.sqlite3"),
        cache_capacity: 2048,
        readers: 2,
        node_name: Some("crm-bench".to_owned()),
        max_database_bytes: None,
    };
    let store = Store::open(&config, "bench", &[], Arc::new(NoProjection)) // the limit leaves out the node's query tables
        .context("opening the in-process store")?;
    let writer = store.clone();
    let result = load::run(concurrency, Stop::Count(count), move |i| {
        let store = writer.clone();
        async move {
            let record = generator::client(seed, i);
            let meta = ChangeMeta {
                author: "crm-bench".to_owned(),
                time_ms: chrono::Utc::now().timestamp_millis(),
            };
            // As the node does: the first change is encoded on a blocking
            // thread, the writer only stores it.
            let builder = store.clone();
            let prepared = tokio::task::spawn_blocking(move || {
                builder.prepare_root("clients", &meta, &scalar_root(&record))
            })
            .await
            .map_err(|e| e.to_string())?;
            store
                .write(move |txn| txn.insert_prepared(prepared, Some(Box::new(NoProjection))))
                .await
                .map(drop)
                .map_err(|e: StoreError| e.to_string())
        }
    })
    .await;
    store.close().await;
    result
}
