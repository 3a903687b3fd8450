//! Two nodes: a record made on each reaches the other in one round, and a
//! converged pair syncs with one request and no changes.

mod common;

use common::cluster::{Cluster, Topology};
use common::create;
use serde_json::json;

#[tokio::test]
async fn two_nodes_exchange_records_in_one_round() {
    let cluster = Cluster::with_topology(2, Topology::Chain, "auto_sync = false\n").await;
    create(
        &cluster.nodes[0],
        "clients",
        json!({"name": "Alpha", "client_type": "company"}),
    )
    .await;
    create(
        &cluster.nodes[1],
        "clients",
        json!({"name": "Beta", "client_type": "company"}),
    )
    .await;
    let states = cluster.quiesce().await;
    assert_eq!(states[0].ids("clients").len(), 2);

    let round = cluster.sync_pair(0, 1).await;
    assert_eq!(round["pulled"]["requests"], json!(1), "{round}");
    assert_eq!(round["pulled"]["changes"], json!(0), "{round}");
    assert_eq!(round["pushed"]["requests"], json!(0), "{round}");
}
