//! One `crm-node serve` process: where its binary is (building the release
//! binary when missing), starting it on a data folder and a loopback port,
//! timing start-up to a ready `/healthz`, reading its memory from
//! `/proc/PID/status`, issuing tokens on it, and stopping it with SIGTERM.
//! The process is killed when the value is dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::api::Api;

const LISTENING_PREFIX: &str = "crm-node listening on ";
/// The password of the `admin` user each benchmark node creates at its
/// first start; the harness logs in with it.
const ADMIN_PASSWORD: &str = "bench-admin-password";
/// How long a node may take from spawn to a ready `/healthz`.
const START_DEADLINE: Duration = Duration::from_secs(600);
/// How long a node may take to exit after SIGTERM.
const STOP_DEADLINE: Duration = Duration::from_secs(120);
/// How long a tool subcommand (`crm-node token create`) may take.
const TOOL_DEADLINE: Duration = Duration::from_secs(120);
/// How often `/healthz` is polled while the node starts.
const HEALTH_POLL: Duration = Duration::from_millis(5);

/// The cargo profile whose `crm-node` a mode uses by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

/// The workspace this harness belongs to: found from the running
/// executable (`<root>/target/<profile>/crm-bench`), else the source tree
/// it was built from.
pub fn workspace_root() -> PathBuf {
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors()
            .find(|dir| dir.join("Cargo.toml").is_file() && dir.join("bench").is_dir())
            .map(Path::to_path_buf)
    });
    from_exe.unwrap_or_else(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        manifest.parent().unwrap_or(manifest).to_path_buf()
    })
}

/// The `crm-node` binary to benchmark: `explicit` when given, else
/// `target/<profile>/crm-node` of the workspace. A missing release binary
/// is built (`cargo build --release --bin crm-node`).
pub fn locate(explicit: Option<PathBuf>, profile: Profile) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!("--node {}: no such file", path.display());
        }
        return Ok(path);
    }
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let path = target.join(profile.dir()).join("crm-node");
    if path.is_file() {
        return Ok(path);
    }
    if profile == Profile::Debug {
        bail!(
            "{} is missing: build it with `cargo build --bin crm-node` (or pass --node PATH)",
            path.display()
        );
    }
    eprintln!(
        "crm-bench: {} is missing; building it with `cargo build --release --bin crm-node`",
        path.display()
    );
    let status = std::process::Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()))
        .args(["build", "--release", "--bin", "crm-node"])
        .current_dir(&root)
        .status()
        .context("running cargo build --release --bin crm-node")?;
    if !status.success() || !path.is_file() {
        bail!("cargo build --release --bin crm-node failed ({status})");
    }
    Ok(path)
}

/// `crm-node --version`, e.g. "crm-node 0.1.0".
pub async fn version(bin: &Path) -> anyhow::Result<String> {
    let output = tool(bin, &["--version"]).await?;
    Ok(output.trim().to_owned())
}

/// Runs `crm-node ARGS` to completion and returns its stdout.
async fn tool(bin: &Path, args: &[&str]) -> anyhow::Result<String> {
    let mut command = Command::new(bin);
    command.args(args).stdin(Stdio::null()).kill_on_drop(true);
    clear_crm_env(&mut command);
    let output = tokio::time::timeout(TOOL_DEADLINE, command.output())
        .await
        .with_context(|| format!("crm-node {args:?} did not finish within {TOOL_DEADLINE:?}"))?
        .with_context(|| format!("running crm-node {args:?}"))?;
    if !output.status.success() {
        bail!(
            "crm-node {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The node's settings come only from its flags and its `crm-node.toml`.
fn clear_crm_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CRM_") {
            command.env_remove(key);
        }
    }
}

/// Resident memory of a process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// VmRSS, bytes.
    pub rss: u64,
    /// VmHWM (peak RSS), bytes.
    pub peak: u64,
}

/// The text after `key` on the line of a `/proc` file that starts with it.
fn proc_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    Some(line[key.len()..].trim())
}

fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    let kb = proc_field(status, key)?.trim_end_matches("kB").trim();
    kb.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// Bytes process `pid` has sent to storage so far (`write_bytes` of
/// `/proc/PID/io`): counted when a page is first dirtied, so a page written
/// again before it reaches the disk counts once, as it costs the disk once.
pub fn storage_writes_of(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/io");
    let io = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_write_bytes(&io).with_context(|| format!("{path} has no write_bytes"))
}

fn parse_write_bytes(io: &str) -> Option<u64> {
    proc_field(io, "write_bytes:")?.parse().ok()
}

/// The resident memory of process `pid` now.
pub fn memory_of(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    match (
        parse_status_kb(&status, "VmRSS:"),
        parse_status_kb(&status, "VmHWM:"),
    ) {
        (Some(rss), Some(peak)) => Ok(Memory { rss, peak }),
        _ => bail!("{path} has no VmRSS/VmHWM"),
    }
}

/// A running (or stopped, restartable) `crm-node serve`.
pub struct NodeProcess {
    bin: PathBuf,
    data: PathBuf,
    name: String,
    /// Port 0 until the first start; the same port on restarts, so that
    /// peers configured with the node's URL reach it again.
    listen: String,
    child: Option<Child>,
    api: Api,
}

impl NodeProcess {
    /// Starts a node on `data` (created if missing) with `auto_sync` set in
    /// its `crm-node.toml`.
    pub async fn start(
        bin: &Path,
        data: &Path,
        name: &str,
        auto_sync: bool,
    ) -> anyhow::Result<NodeProcess> {
        std::fs::create_dir_all(data)
            .with_context(|| format!("creating the data folder {}", data.display()))?;
        let mut node = NodeProcess {
            bin: bin.to_path_buf(),
            data: data.to_path_buf(),
            name: name.to_owned(),
            listen: "127.0.0.1:0".to_owned(),
            child: None,
            api: Api::new("http://127.0.0.1:0")?,
        };
        node.spawn(auto_sync).await?;
        Ok(node)
    }

    pub fn api(&self) -> &Api {
        &self.api
    }

    pub fn url(&self) -> &str {
        self.api.base()
    }

    fn log_path(&self) -> PathBuf {
        self.data.with_extension("stderr.log")
    }

    fn write_config(&self, auto_sync: bool) -> anyhow::Result<()> {
        let path = self.data.join("crm-node.toml");
        std::fs::write(&path, format!("auto_sync = {auto_sync}\n"))
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Starts the process; answers the time from spawn to a ready `/healthz`.
    async fn spawn(&mut self, auto_sync: bool) -> anyhow::Result<Duration> {
        self.write_config(auto_sync)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .with_context(|| format!("opening {}", self.log_path().display()))?;
        let mut command = Command::new(&self.bin);
        command
            .arg("serve")
            .arg("--data")
            .arg(&self.data)
            .args(["--listen", &self.listen, "--name", &self.name])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true);
        clear_crm_env(&mut command);
        command.env("CRM_ADMIN_PASSWORD", ADMIN_PASSWORD);
        let began = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let stdout = child.stdout.take().context("the node's stdout")?;
        // From here on the child is owned by `self`, so it is killed on drop
        // whatever fails below.
        self.child = Some(child);
        let mut lines = BufReader::new(stdout).lines();
        let listening = tokio::time::timeout(START_DEADLINE, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix(LISTENING_PREFIX) {
                    return Ok(Some(url.trim().to_owned()));
                }
            }
            std::io::Result::Ok(None)
        })
        .await;
        let url = match listening {
            Ok(Ok(Some(url))) => url,
            Ok(Ok(None)) => bail!(
                "{} exited without a listening line; {}",
                self.name,
                self.log_tail()
            ),
            Ok(Err(e)) => bail!("reading {}'s stdout: {e}", self.name),
            Err(_) => bail!(
                "{} printed no listening line within {START_DEADLINE:?}",
                self.name
            ),
        };
        // Keep draining stdout so that the node never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.listen = url
            .strip_prefix("http://")
            .with_context(|| format!("listening line names no http URL: {url}"))?
            .to_owned();
        self.api = Api::new(&url)?;
        self.wait_ready(began).await?;
        let ready = began.elapsed();
        self.api = self.api.logged_in("admin", ADMIN_PASSWORD).await?;
        Ok(ready)
    }

    async fn wait_ready(&self, began: Instant) -> anyhow::Result<()> {
        let url = self.api.url("/healthz", &[])?;
        while began.elapsed() < START_DEADLINE {
            let answer = self.api.client().get(url.clone()).send().await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(HEALTH_POLL).await;
        }
        bail!("{} not ready within {START_DEADLINE:?}", self.name)
    }

    /// Stops the node with SIGTERM and waits for it to exit.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let Some(pid) = child.id() else {
            return Ok(()); // already exited and reaped
        };
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .context("running kill -TERM")?;
        if !sent.success() {
            bail!("kill -TERM {pid} failed ({sent})");
        }
        match tokio::time::timeout(STOP_DEADLINE, child.wait()).await {
            Ok(status) => {
                let status = status.context("waiting for the node to exit")?;
                if !status.success() {
                    bail!(
                        "{} exited with {status} after SIGTERM; {}",
                        self.name,
                        self.log_tail()
                    );
                }
                Ok(())
            }
            Err(_) => {
                // Best effort; the error below is the report.
                let _ = child.start_kill();
                bail!(
                    "{} did not exit within {STOP_DEADLINE:?} of SIGTERM",
                    self.name
                )
            }
        }
    }

    /// Stops the node and starts it again on the same data and port, with
    /// `auto_sync` set; returns the start-up time.
    pub async fn restart(&mut self, auto_sync: bool) -> anyhow::Result<Duration> {
        self.stop().await?;
        self.spawn(auto_sync).await
    }

    /// The process id while the node runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// The node's resident memory now.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        memory_of(self.pid().context("the node is not running")?)
    }

    /// Bytes the node has sent to storage since it started.
    pub fn storage_writes(&self) -> anyhow::Result<u64> {
        storage_writes_of(self.pid().context("the node is not running")?)
    }

    /// Issues an access token on this node (`crm-node token create NAME`)
    /// and returns its secret, the last line printed.
    pub async fn issue_token(&self, name: &str) -> anyhow::Result<String> {
        let data = self.data.to_string_lossy();
        let out = tool(&self.bin, &["token", "create", name, "--data", &data]).await?;
        out.lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_owned)
            .context("crm-node token create printed no secret")
    }

    /// The last lines of the node's standard error, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n");
        format!("stderr tail:\n{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_status() {
        let status = "Name:\tcrm-node\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS:"), Some(100 * 1024 * 1024));
        assert_eq!(parse_status_kb(status, "VmHWM:"), Some(200 * 1024 * 1024));
        assert_eq!(parse_status_kb(status, "VmSwap:"), None);
    }

    #[test]
    fn storage_writes_are_read_from_proc_io() {
        let io = "rchar: 10\nwchar: 20\nwrite_bytes: 4096\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_write_bytes(io), Some(4096));
        assert_eq!(parse_write_bytes("rchar: 10\nwchar: 20\n"), None);
        assert!(storage_writes_of(std::process::id()).is_ok());
    }

    #[test]
    fn finds_the_workspace() {
        assert!(workspace_root().join("Cargo.toml").is_file());
    }
}
