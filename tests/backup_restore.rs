//! A backup restored into a mesh: node B of three is backed up online
//! (`crm-node backup`) while it serves writes and syncs, the mesh goes on
//! writing, then B is stopped and the old backup restored into it. B must
//! come back with a new epoch, and the mesh must converge without losing
//! anything written anywhere, B's own writes after the backup included
//! (the other nodes hand them back).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use common::cluster::{epoch_of, Cluster, NodeState, Topology};
use common::storage::integrity_check;
use common::{create, id_of, TestNode};

const MANUAL: &str = "auto_sync = false\n";
const B: usize = 1;
/// The load on B during the backup stops after this many writes.
const MAX_LOAD_WRITES: usize = 2_000;

/// Creates and edits on `node` until `stop`; returns the acknowledged ids.
async fn load(node: &TestNode, stop: &AtomicBool) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for n in 0..MAX_LOAD_WRITES {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        if n % 3 == 2 {
            let id = &ids[n % ids.len()];
            node.patch_json(
                &format!("/api/v1/clients/{id}"),
                &json!({"city": format!("During backup {n}")}),
                None,
            )
            .await
            .expect_status(200, "edit during the backup");
        } else {
            let body = json!({"name": format!("During backup {n}")});
            ids.push(id_of(&create(node, "clients", body).await));
        }
    }
    ids
}

/// A few creates and an edit on node `i` of the cluster, named by `tag`.
async fn write_some(cluster: &Cluster, i: usize, tag: &str) -> Vec<String> {
    let node = &cluster.nodes[i];
    let mut ids = Vec::new();
    for k in 0..3 {
        let body = json!({"name": format!("{tag} node{i} #{k}"), "city": tag});
        ids.push(id_of(&create(node, "clients", body).await));
    }
    node.patch_json(
        &format!("/api/v1/clients/{}", ids[0]),
        &json!({"notes": format!("{tag}: edited on node{i}")}),
        None,
    )
    .await
    .expect_status(200, "edit");
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_backup_restored_into_a_mesh_loses_nothing_written_anywhere() {
    let mut cluster = Cluster::with_topology(3, Topology::Mesh, MANUAL).await;
    for i in 0..3 {
        write_some(&cluster, i, "Before").await;
    }
    cluster.quiesce().await;
    let epoch_before = epoch_of(&cluster.nodes[B]).await;

    // The backup, online: B takes writes and syncs while it is copied.
    let backups = tempfile::TempDir::new().expect("a folder for the backup");
    let backup = backups.path().join("b.sqlite3");
    let backup_arg = backup.to_str().expect("a UTF-8 path").to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let during = {
        let (b, stop) = (&cluster.nodes[B], Arc::clone(&stop));
        let backing_up = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let args = ["backup", backup_arg.as_str()];
            let (answer, _) = tokio::join!(b.cli(&args), cluster.sync_pair(0, B));
            stop.store(true, Ordering::SeqCst);
            answer
        };
        let ((ok, stdout, stderr), ids) = tokio::join!(backing_up, load(b, &stop));
        assert!(ok, "backup failed: {stdout}\n{stderr}");
        ids
    };
    assert!(!during.is_empty(), "no write ran during the backup");
    assert_eq!(integrity_check(&backup), "ok", "the backup is not sound");

    // The mesh goes on; everything reaches everyone, B's new writes too.
    let mut after = Vec::new();
    for i in 0..3 {
        after.extend(write_some(&cluster, i, "After backup").await);
    }
    cluster.quiesce().await;
    // Written on A and C after the last sync with B: B never saw them.
    for i in [0, 2] {
        after.extend(write_some(&cluster, i, "Unseen by B").await);
    }
    cluster.sync_pair(0, 2).await;
    let everything = NodeState::read(&cluster.nodes[0]).await;

    cluster.nodes[B].terminate().await;
    let (ok, stdout, stderr) = cluster.nodes[B].cli(&["restore", &backup_arg]).await;
    assert!(ok, "restore failed: {stdout}\n{stderr}");
    cluster.nodes[B].restart_same_port().await;
    assert_eq!(
        epoch_of(&cluster.nodes[B]).await,
        epoch_before + 1,
        "the restored node has no new epoch"
    );
    let restored = NodeState::read(&cluster.nodes[B]).await;
    assert!(
        restored.ids("clients").len() < everything.ids("clients").len(),
        "the restore did not bring back the old state"
    );

    let states = cluster.quiesce().await;
    assert!(
        states[B] == everything,
        "the mesh lost or changed something through the restore:\n{}",
        everything.diff(&states[B])
    );
    for id in during.iter().chain(&after) {
        let resp = cluster.nodes[B].get(&format!("/api/v1/clients/{id}")).await;
        assert_eq!(resp.status, StatusCode::OK, "{id} on the restored node");
    }

    // B writes on in its new epoch; the mesh still converges.
    let mut last = write_some(&cluster, B, "After restore").await;
    last.extend(write_some(&cluster, 2, "After restore").await);
    let states = cluster.quiesce().await;
    for id in &last {
        assert!(
            states[0].ids("clients").contains(id),
            "{id} written after the restore did not spread"
        );
    }
    let edited: Vec<&Value> = states[0].records["clients"]
        .values()
        .filter(|r| r["notes"] == json!("After restore: edited on node1"))
        .collect();
    assert_eq!(edited.len(), 1, "B's edit in its new epoch");
}
