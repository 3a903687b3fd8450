//! A node whose storage refuses writes: at its size limit
//! (`max_database_bytes`, a real `SQLITE_FULL`), on a full file system (a
//! small tmpfs, when this process may mount one) and with a read-only
//! database (`chattr +i`, when the file system and rights allow). Writes must
//! fail with 503 problem+json naming the cause, with `Retry-After`; reads go
//! on; the database stays sound; every acknowledged write stays; and writes
//! succeed again once there is room, without a restart (a larger limit read
//! on SIGHUP, space freed on the disk, the file writable again).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use common::cluster::{add_peer, issue_token, run_sync, wait_for};
use common::seeded::Rng;
use common::storage::{database_of, integrity_check};
use common::{Resp, TestNode};

const WRITERS: usize = 4;
/// A writer gives up after this many requests: the limit comes far sooner.
const MAX_WRITES: usize = 3_000;
/// Refusals a writer collects before it stops.
const REFUSALS: usize = 3;
const RECOVERY_DEADLINE: Duration = Duration::from_secs(30);

/// Text that does not compress, so that every record takes its space.
fn noise(seed: usize, len: usize) -> String {
    Rng::new(seed as u64).letters(len)
}

/// A client that takes about 1.5 KB, in plain string fields (cheap to write
/// even in a debug build, unlike long `text`).
fn bulky(tag: &str, seed: usize) -> (Value, String) {
    let address = noise(seed, 500);
    let body = json!({
        "name": format!("{tag} {seed} {}", noise(seed + 1, 200)),
        "full_name": noise(seed + 2, 500),
        "website": noise(seed + 3, 300),
        "address": address,
    });
    (body, address)
}

/// What the writers saw: acknowledged creates (id, address) and refusals.
#[derive(Default)]
struct Fill {
    acked: Vec<(String, String)>,
    refused: Vec<Resp>,
}

/// Creates large clients from several tasks until each has been refused
/// [`REFUSALS`] times.
async fn fill(node: &Arc<TestNode>, tag: &str) -> Fill {
    let mut tasks = JoinSet::new();
    for w in 0..WRITERS {
        let node = Arc::clone(node);
        let tag = tag.to_owned();
        tasks.spawn(async move {
            let mut fill = Fill::default();
            for n in 0..MAX_WRITES {
                let (body, address) = bulky(&tag, w * MAX_WRITES + n);
                let resp = node.post_json("/api/v1/clients", &body).await;
                match resp.status {
                    StatusCode::CREATED => fill.acked.push((common::id_of(&resp.json), address)),
                    _ => fill.refused.push(resp),
                }
                if fill.refused.len() >= REFUSALS {
                    break;
                }
            }
            fill
        });
    }
    let mut all = Fill::default();
    while let Some(done) = tasks.join_next().await {
        let done = done.expect("a writer task panicked");
        all.acked.extend(done.acked);
        all.refused.extend(done.refused);
    }
    all
}

/// Every refusal is the storage problem, saying `cause`.
fn assert_refusals(node: &TestNode, fill: &Fill, cause: &str) {
    assert!(!fill.refused.is_empty(), "no write was refused");
    for resp in &fill.refused {
        assert_eq!(
            resp.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}\nnode log:\n{}",
            resp.text,
            node.log_tail()
        );
        assert_eq!(resp.content_type(), "application/problem+json");
        assert_eq!(
            resp.json["type"],
            json!("urn:crm-node:problem:storage-unavailable")
        );
        let detail = resp.json["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(cause), "detail without {cause:?}: {detail}");
        assert!(resp.header("retry-after").is_some(), "no Retry-After");
    }
}

/// Reads work, and every acknowledged create is there with its data.
async fn assert_acked(node: &TestNode, acked: &[(String, String)]) {
    for (id, address) in acked {
        let resp = node.get(&format!("/api/v1/clients/{id}")).await;
        resp.expect_status(200, "an acknowledged create");
        assert_eq!(resp.json["address"], json!(address), "{id}");
    }
    let list = node.get("/api/v1/clients?limit=5").await;
    list.expect_status(200, "a list while the storage refuses writes");
}

async fn create_one(node: &TestNode, name: &str) -> Resp {
    node.post_json("/api/v1/clients", &json!({"name": name}))
        .await
}

/// Retries one create (bounded) until the node takes it: recovery needs no
/// restart.
async fn write_until_accepted(node: &TestNode, name: &str) {
    wait_for(RECOVERY_DEADLINE, name, || async {
        let resp = create_one(node, name).await;
        match resp.status {
            StatusCode::CREATED => Ok(()),
            _ => Err(resp.text),
        }
    })
    .await;
}

fn config_with_quota(bytes: u64) -> String {
    format!("auto_sync = false\nmax_database_bytes = {bytes}\n")
}

fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_size_limit_writes_get_503_and_room_lets_them_through() {
    let mut node = TestNode::start_with_config("quota", "auto_sync = false\n").await;
    node.terminate().await;
    let database = database_of(node.data_dir());
    let quota = (size_of(&database) + 512 * 1024).max(1024 * 1024);
    std::fs::write(
        node.data_dir().join("crm-node.toml"),
        config_with_quota(quota),
    )
    .expect("write the config");
    node.restart().await;
    let token = issue_token(&node, "peer").await;

    let node = Arc::new(node);
    let full = fill(&node, "Quota").await;
    assert_refusals(&node, &full, "disk is full");
    assert!(!full.acked.is_empty(), "nothing fitted under the limit");

    // A peer pushing to the full node is told why, and can retry later.
    let peer = TestNode::start_with_config("peer", "auto_sync = false\n").await;
    for n in 0..40 {
        let (body, _) = bulky("From the peer", n);
        peer.post_json("/api/v1/clients", &body)
            .await
            .expect_status(201, "a write on the peer");
    }
    add_peer(&peer, "full", node.base_url(), &token).await;
    let round = run_sync(&peer, "full", None).await;
    assert_eq!(round["ok"], json!(false), "a push to a full node: {round}");
    let error = round.to_string();
    assert!(
        error.contains("503") && error.contains("disk is full"),
        "the peer is not told why: {error}"
    );
    assert_acked(&node, &full.acked).await;
    assert_eq!(integrity_check(&database), "ok", "at the limit");

    // Room again: a larger limit, read on SIGHUP; no restart.
    std::fs::write(
        node.data_dir().join("crm-node.toml"),
        config_with_quota(quota * 4),
    )
    .expect("write the config");
    node.hang_up().await;
    write_until_accepted(&node, "After the limit grew").await;
    assert_acked(&node, &full.acked).await;
    let mut node = Arc::into_inner(node).expect("the writers are done");
    node.terminate().await;
    assert_eq!(integrity_check(&database), "ok", "after the stop");
}

/// A small tmpfs mounted for one test; unmounted on drop.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(size: &str) -> Result<Mount, String> {
        let dir = tempfile::TempDir::new().map_err(|e| e.to_string())?.keep();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Mount(dir))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Fills the file system of `dir` but for `leave` bytes with a file.
fn fill_disk(dir: &Path, leave: u64) -> PathBuf {
    let stat = rustix::fs::statvfs(dir).expect("statvfs of the mount");
    let free = stat.f_bavail * stat.f_frsize;
    let filler = dir.join("filler");
    let chunk = vec![0x5a_u8; 64 * 1024];
    let mut file = std::fs::File::create(&filler).expect("create the filler");
    let mut written = 0;
    while written + (chunk.len() as u64) < free.saturating_sub(leave) {
        if std::io::Write::write_all(&mut file, &chunk).is_err() {
            break;
        }
        written += chunk.len() as u64;
    }
    filler
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_full_disk_writes_get_503_and_resume_by_themselves_when_space_returns() {
    let mount = match Mount::tmpfs("24m") {
        Ok(mount) => mount,
        Err(reason) => {
            eprintln!("SKIPPED: cannot mount a tmpfs to fill ({reason}); the size-limit test covers SQLITE_FULL");
            return;
        }
    };
    let data = tempfile::TempDir::new_in(&mount.0).expect("a data folder on the tmpfs");
    let config = data.path().join("crm-node.toml");
    std::fs::write(&config, "auto_sync = false\n").expect("write the config");
    let node = Arc::new(TestNode::start_in(data).await);
    let filler = fill_disk(&mount.0, 1024 * 1024);

    let full = fill(&node, "Disk").await;
    assert_refusals(&node, &full, "disk is full");
    assert_acked(&node, &full.acked).await;
    let database = database_of(node.data_dir());
    assert_eq!(integrity_check(&database), "ok", "on the full disk");

    // Space returns: the same node takes writes again, without a restart.
    std::fs::remove_file(&filler).expect("remove the filler");
    write_until_accepted(&node, "After space returned").await;
    assert_acked(&node, &full.acked).await;
    drop(node);
    drop(mount);
}

/// `chattr` on files; undone on drop so that the folder can be removed.
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn set(files: Vec<PathBuf>) -> Result<Immutable, String> {
        let out = Command::new("chattr")
            .arg("+i")
            .args(&files)
            .output()
            .map_err(|e| format!("cannot run chattr: {e}"))?;
        let guard = Immutable(files);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(guard)
    }

    fn lift(&self) {
        let _ = Command::new("chattr").arg("-i").args(&self.0).status();
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        self.lift();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_read_only_database_writes_get_503_and_resume_when_writable() {
    let node = TestNode::start_with_config("read-only", "auto_sync = false\n").await;
    let before = create_one(&node, "Before read-only").await;
    before.expect_status(201, "a write before");
    let database = database_of(node.data_dir());
    let mut wal = database.clone().into_os_string();
    wal.push("-wal");
    let immutable = match Immutable::set(vec![database.clone(), PathBuf::from(wal)]) {
        Ok(guard) => guard,
        Err(reason) => {
            eprintln!("SKIPPED: cannot make the database immutable ({reason})");
            return;
        }
    };

    let mut refused = Vec::new();
    for n in 0..5 {
        let resp = create_one(&node, &format!("Read-only {n}")).await;
        refused.push(resp);
    }
    let fill = Fill {
        acked: Vec::new(),
        refused,
    };
    assert_refusals(&node, &fill, "read-only");
    let path = format!("/api/v1/clients/{}", common::id_of(&before.json));
    node.get(&path)
        .await
        .expect_status(200, "a read while read-only");

    immutable.lift();
    write_until_accepted(&node, "Writable again").await;
    drop(immutable);
    assert_eq!(integrity_check(&database), "ok");
    let listed: Vec<Value> = common::list_all(&node, "clients", &[]).await;
    assert_eq!(listed.len(), 2, "only the acknowledged writes are there");
}
