//! The subcommands other than `serve`: tokens, peers, a sync round, backup
//! and restore, certificates. Each works on a data folder, whether or not a
//! node serves it at the moment.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::cli::{
    BackupArgs, ExportArgs, ImportArgs, PeerCommand, RestoreArgs, SyncArgs, TlsCommand,
    TokenCommand,
};
use crate::config::{database_path, Config, Overrides};
use crate::node::Node;
use crate::records::scope::{PeerScope, ScopeSpec};
use crate::records::Author;
use crate::replication::{RoundResult, StepView};
use crate::running::{serving, serving_url, Serving};

async fn open(data: &Path) -> anyhow::Result<Node> {
    let config = Config::load(data, Overrides::default())?;
    Node::open(data, config, false)
        .await
        .with_context(|| format!("opening the node in {}", data.display()))
}

/// A client for the node serving `data` (it may serve HTTPS with a private
/// CA: the node's config says which certificates to trust).
fn local_client(data: &Path) -> anyhow::Result<reqwest::Client> {
    let config = Config::load(data, Overrides::default())?;
    Ok(crate::tls::local_client(data, &config)?)
}

/// A request to the node serving the folder `data`, as the admin session
/// it published for its tools (`DATA/serve.token`).
fn through(
    data: &Path,
    node: &Serving,
    method: reqwest::Method,
    path: &str,
) -> anyhow::Result<reqwest::RequestBuilder> {
    let request = local_client(data)?.request(method, format!("{}{path}", node.url));
    Ok(match &node.token {
        Some(token) => request.bearer_auth(token),
        None => request,
    })
}

/// Who a tool writes as without a running node: the node's (oldest)
/// active admin user, or the node itself when it has none yet.
async fn local_author(node: &Node) -> anyhow::Result<Author> {
    Ok(match node.auth().local_admin().await? {
        Some(admin) => admin.author(),
        None => Author::system(),
    })
}

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

pub async fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            name,
            kinds,
            filters,
            whole,
            data,
        } => {
            let spec = ScopeSpec::from_args(kinds.as_deref(), &filters, whole.as_deref())?;
            let node = open(&data.data).await?;
            let checked = PeerScope::new(node.records().shared_schema(), spec.clone());
            if let Err(e) = checked {
                node.close().await;
                return Err(e.into());
            }
            let secret = node.replication().create_token(&name, Some(&spec)).await;
            node.close().await;
            let secret = secret?;
            println!(
                "token `{name}` created. Give this secret to the peer; it is not shown again:"
            );
            println!("{secret}");
        }
        TokenCommand::List { data } => {
            let node = open(&data.data).await?;
            let tokens = node.replication().tokens().await;
            node.close().await;
            for t in tokens? {
                let state = match t.revoked_at {
                    Some(at) => format!("revoked {}", when(at)),
                    None => "active".to_owned(),
                };
                let scope = t.scope.as_deref().unwrap_or("everything");
                println!(
                    "{}\tcreated {}\t{state}\tscope {scope}",
                    t.name,
                    when(t.created_at)
                );
            }
        }
        TokenCommand::Revoke { name, data } => {
            let node = open(&data.data).await?;
            let revoked = node.replication().revoke_token(&name).await;
            node.close().await;
            revoked?;
            println!("token `{name}` revoked");
        }
    }
    Ok(())
}

pub async fn peer(command: PeerCommand) -> anyhow::Result<()> {
    match command {
        PeerCommand::Add {
            name,
            url,
            token,
            data,
        } => {
            let node = open(&data.data).await?;
            let added = node.replication().add_peer(&name, &url, &token).await;
            node.close().await;
            let peer = added?;
            println!("peer `{}` added: {}", peer.name, peer.url);
        }
        PeerCommand::List { data } => {
            let node = open(&data.data).await?;
            let peers = node.replication().peers().await;
            node.close().await;
            for p in peers? {
                let node_id = p
                    .remote
                    .map(|r| r.node.to_string())
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{}\t{}\tnode {}\tpulled to {}\tpushed to {}",
                    p.name, p.url, node_id, p.pull_since, p.push_acked
                );
            }
        }
        PeerCommand::Remove { name, data } => {
            let node = open(&data.data).await?;
            let removed = node.replication().remove_peer(&name).await;
            node.close().await;
            removed?;
            println!("peer `{name}` removed");
        }
    }
    Ok(())
}

fn describe(step: &StepView) -> String {
    format!(
        "{} changes ({} new) in {} requests, {} bytes",
        step.changes, step.applied, step.requests, step.bytes
    )
}

pub async fn sync(args: SyncArgs) -> anyhow::Result<()> {
    let results = match serving(&args.data.data)? {
        Some(node) => sync_through(&args.data.data, &node, args.peer.as_deref()).await?,
        None => {
            let node = open(&args.data.data).await?;
            let results = node
                .replication()
                .run_round(args.peer.as_deref(), None)
                .await;
            node.close().await;
            results?
        }
    };
    if results.is_empty() {
        println!("no peers configured; add one with `crm-node peer add`");
    }
    let mut failed = false;
    for r in &results {
        match (&r.pulled, &r.pushed, &r.error) {
            (Some(pulled), Some(pushed), _) => println!(
                "{}: pulled {}; pushed {}",
                r.peer,
                describe(pulled),
                describe(pushed)
            ),
            (_, _, error) => {
                failed = true;
                println!(
                    "{}: failed: {}",
                    r.peer,
                    error.as_deref().unwrap_or("unknown error")
                );
            }
        }
    }
    if failed {
        bail!("some peers could not be synced");
    }
    Ok(())
}

/// Asks the node serving the folder to run the round: only its writer may
/// apply changes while it runs.
async fn sync_through(
    data: &Path,
    node: &Serving,
    peer: Option<&str>,
) -> anyhow::Result<Vec<RoundResult>> {
    #[derive(serde::Deserialize)]
    struct Answer {
        results: Vec<RoundResult>,
    }
    let url = &node.url;
    let response = through(data, node, reqwest::Method::POST, "/api/v1/sync/run")?
        .json(&serde_json::json!({ "peer": peer }))
        .timeout(Duration::from_secs(3600))
        .send()
        .await
        .with_context(|| format!("asking the running node at {url} to sync"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        bail!("the running node refused the sync ({status}): {body}");
    }
    let answer: Answer = response.json().await.context("reading the sync result")?;
    Ok(answer.results)
}

pub async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let csv =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let started = std::time::Instant::now();
    let outcome = match serving(&args.data.data)? {
        Some(node) => import_through(&node, &args, csv).await?,
        None => {
            let node = open(&args.data.data).await?;
            let map = crate::records::csv_io::ColumnMap::parse(&args.map)?;
            let result = match local_author(&node).await {
                Ok(author) => {
                    node.records()
                        .import_csv(&args.kind, csv.into(), map, args.dry_run, &author)
                        .await
                }
                Err(e) => {
                    node.close().await;
                    return Err(e);
                }
            };
            node.close().await;
            match result {
                Ok(n) => Ok(n),
                Err(crate::records::RecordError::ImportRejected { rejected, count }) => {
                    Err((serde_json::to_value(rejected)?, count))
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    match outcome {
        Ok(rows) => {
            let secs = started.elapsed().as_secs_f64();
            let verb = if args.dry_run {
                "checked (dry run)"
            } else {
                "imported"
            };
            println!(
                "{verb} {rows} {} in {secs:.1} s ({:.0} rows/s)",
                args.kind,
                rows as f64 / secs.max(1e-9)
            );
            Ok(())
        }
        Err((rejected, count)) => {
            for row in rejected.as_array().into_iter().flatten() {
                let errors = row["errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        format!(
                            "{} {}",
                            e["field"].as_str().unwrap_or("?"),
                            e["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                println!("line {}: {errors}", row["row"]);
            }
            bail!("{count} rows do not pass; nothing was imported")
        }
    }
}

/// Imports through the running node; `Err` carries the rejected rows.
async fn import_through(
    node: &Serving,
    args: &ImportArgs,
    csv: Vec<u8>,
) -> anyhow::Result<Result<u64, (serde_json::Value, u64)>> {
    let mut query: Vec<(&str, String)> = args.map.iter().map(|m| ("map", m.clone())).collect();
    query.push(("dry_run", args.dry_run.to_string()));
    let url = &node.url;
    let response = through(
        &args.data.data,
        node,
        reqwest::Method::POST,
        &format!("/api/v1/import/{}", args.kind),
    )?
    .query(&query)
    .header(reqwest::header::CONTENT_TYPE, "text/csv")
    .body(csv)
    .timeout(Duration::from_secs(3600))
    .send()
    .await
    .with_context(|| format!("sending the file to the running node at {url}"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.context("reading the answer")?;
    if status.is_success() {
        return Ok(Ok(body["imported"].as_u64().unwrap_or(0)));
    }
    if status == reqwest::StatusCode::UNPROCESSABLE_ENTITY && body.get("rejected").is_some() {
        let count = body["rejected_count"].as_u64().unwrap_or(0);
        return Ok(Err((body["rejected"].clone(), count)));
    }
    bail!(
        "the node refused the import ({status}): {}",
        body["detail"].as_str().unwrap_or_default()
    )
}

pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let file = std::fs::File::create(&args.file)
        .with_context(|| format!("creating {}", args.file.display()))?;
    let mut out = std::io::BufWriter::new(file);
    match serving(&args.data.data)? {
        Some(node) => {
            let url = &node.url;
            let mut response = through(
                &args.data.data,
                &node,
                reqwest::Method::GET,
                &format!("/api/v1/export/{}", args.kind),
            )?
            .send()
            .await
            .with_context(|| format!("asking the running node at {url}"))?;
            if !response.status().is_success() {
                bail!("the node refused the export ({})", response.status());
            }
            while let Some(chunk) = response.chunk().await.context("reading the export")? {
                out.write_all(&chunk)?;
            }
        }
        None => {
            let node = open(&args.data.data).await?;
            let written = export_direct(&node, &args.kind, &mut out).await;
            node.close().await;
            written?;
        }
    }
    out.flush()?;
    println!("exported {} to {}", args.kind, args.file.display());
    Ok(())
}

async fn export_direct(
    node: &Node,
    kind: &str,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    use crate::records::csv_io::export_rows;
    let def = node.records().kind_def(kind)?;
    out.write_all(&export_rows(&def, &[], true)?)?;
    let mut after = 0;
    loop {
        let (page, last) = node.records().export_page(kind, after, 5000).await?;
        if page.is_empty() {
            return Ok(());
        }
        out.write_all(&export_rows(&def, &page, false)?)?;
        after = last;
    }
}

pub fn backup(args: BackupArgs) -> anyhow::Result<()> {
    if args.dest.exists() {
        bail!("{} exists; give a new file name", args.dest.display());
    }
    let source = database_path(&args.data.data);
    if !source.exists() {
        bail!("no database in {}", args.data.data.display());
    }
    let src =
        rusqlite::Connection::open_with_flags(&source, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("opening {}", source.display()))?;
    let mut dst = rusqlite::Connection::open(&args.dest)
        .with_context(|| format!("creating {}", args.dest.display()))?;
    {
        let backup = rusqlite::backup::Backup::new(&src, &mut dst)?;
        // Small steps let the running node keep writing during the copy.
        backup.run_to_completion(256, Duration::from_millis(5), None)?;
    }
    dst.pragma_update(None, "journal_mode", "DELETE")?;
    println!("backup written to {}", args.dest.display());
    Ok(())
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let data = &args.data.data;
    if let Some(url) = serving_url(data)? {
        bail!(
            "a node serves {} at {url}; stop it before restoring",
            data.display()
        );
    }
    let check = rusqlite::Connection::open_with_flags(
        &args.src,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .with_context(|| format!("opening {}", args.src.display()))?;
    let node_id: String = check
        .query_row("SELECT value FROM meta WHERE key = 'node_id'", [], |r| {
            r.get(0)
        })
        .with_context(|| format!("{} is not a crm-node backup", args.src.display()))?;
    drop(check);
    std::fs::create_dir_all(data)?;
    let target = database_path(data);
    for suffix in ["-wal", "-shm"] {
        let side = target.with_file_name(format!(
            "{}{suffix}",
            target
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
        ));
        if side.exists() {
            std::fs::remove_file(&side).with_context(|| format!("removing {}", side.display()))?;
        }
    }
    std::fs::copy(&args.src, &target)
        .with_context(|| format!("copying {} to {}", args.src.display(), target.display()))?;
    let conn = rusqlite::Connection::open(&target)?;
    let epoch = crm_sync::bump_epoch(&conn)?;
    drop(conn);
    println!(
        "restored node {node_id} from {}; it now writes as epoch {}, and its peers will sync it again from the start",
        args.src.display(),
        epoch.0
    );
    Ok(())
}

pub fn tls(command: TlsCommand) -> anyhow::Result<()> {
    match command {
        TlsCommand::SelfSigned { name, ip, data } => {
            let written = crate::tls::self_signed::write(&data.data, &name, &ip)?;
            for file in &written.files {
                println!("wrote {}", file.display());
            }
            println!(
                "Add these lines to {} (paths are relative to the data folder):\n",
                data.data.join(crate::config::CONFIG_FILE).display()
            );
            print!("{}", written.config);
            println!(
                "\nPeers that connect to this node need tls/ca.crt in their peer_ca \
                 (concatenate several CA files into one bundle). Keep ca.key private, or \
                 delete it: it signs certificates every holder of ca.crt trusts."
            );
        }
    }
    Ok(())
}
