//! crm-node: parse the command line, load the configuration, run.

use crm_node::{cli, clock, commands, config, node, running, tls};

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};
use config::{Config, Overrides};

/// Rust's allocations go to mimalloc: with glibc's allocator, a create
/// over HTTP spent an eighth of its CPU in malloc and free, and the node
/// made 25-35% fewer creates per second (BENCHMARKS.md, fifth round).
/// SQLite's page caches still come from glibc (see
/// `with_few_allocator_arenas`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// glibc's allocator, which SQLite's page caches use, gives each thread
/// that contends for it an arena of its own, up to eight per core, and
/// memory freed in one arena is not reused by another. Under a read load
/// with 100,000 records that left the node at 393 MB peak RSS; two arenas
/// per core gave 289 MB at the same speed (BENCHMARKS.md, measured before
/// Rust's allocations moved to mimalloc). The limit can only be set before
/// the allocator starts, from the environment, so the node starts itself
/// again once with `MALLOC_ARENA_MAX` set (same process id, same
/// arguments). A value already in the environment is left alone, and when
/// the restart fails the node goes on as it is.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn with_few_allocator_arenas() {
    use std::os::unix::process::CommandExt;
    const ARENAS: &str = "MALLOC_ARENA_MAX";
    if std::env::var_os(ARENAS).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    let error = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(ARENAS, (2 * cores).to_string())
        .exec();
    eprintln!("crm-node: could not restart with {ARENAS} set ({error}); going on without it");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn with_few_allocator_arenas() {}

fn main() -> anyhow::Result<()> {
    with_few_allocator_arenas();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let data = args.data.data;
            let config = Config::load(
                &data,
                Overrides {
                    listen: args.listen,
                    name: args.name,
                },
            )?;
            init_logging(&config.log);
            runtime()?.block_on(serve(data, config))
        }
        Command::Token(c) => tool_runtime()?.block_on(commands::token(c)),
        Command::Peer(c) => tool_runtime()?.block_on(commands::peer(c)),
        Command::Sync(args) => tool_runtime()?.block_on(commands::sync(args)),
        Command::Import(args) => {
            // An import's progress lines are worth seeing.
            init_logging(
                &std::env::var("CRM_LOG").unwrap_or_else(|_| "warn,crm_node::records=info".into()),
            );
            runtime()?.block_on(commands::import(args))
        }
        Command::Export(args) => tool_runtime()?.block_on(commands::export(args)),
        Command::Backup(args) => {
            quiet_logging();
            commands::backup(args)
        }
        Command::Restore(args) => {
            quiet_logging();
            commands::restore(args)
        }
        Command::Tls(c) => {
            quiet_logging();
            commands::tls(c)
        }
    }
}

/// Tools print their results on stdout; their logs stay quiet unless
/// `CRM_LOG` asks otherwise.
fn quiet_logging() {
    init_logging(&std::env::var("CRM_LOG").unwrap_or_else(|_| "warn".into()));
}

fn tool_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    quiet_logging();
    runtime()
}

/// Automerge opens an INFO span for every column of every change it parses
/// (`#[instrument]`): a twentieth of a first sync's CPU, for nothing worth a
/// log line. Its spans stay off unless the filter names automerge.
fn log_filter(configured: &str) -> String {
    if configured.contains("automerge") {
        configured.to_owned()
    } else {
        format!("{configured},automerge=warn")
    }
}

/// Colours only on a terminal: a log redirected to a file or a service
/// manager's journal stays plain text.
fn init_logging(filter: &str) {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(log_filter(filter)))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

async fn serve(data: std::path::PathBuf, config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    // Certificate files are checked before anything else starts.
    let tls = tls::server_config(&data, &config)?;
    let lock = running::ServeLock::acquire(&data)?;
    clock::set_offset_secs(config.clock_offset_secs);
    let node = node::Node::open(&data, config, true)
        .await
        .with_context(|| format!("opening the node in {}", data.display()))?;
    match node.ensure_admin().await {
        Ok(Some(password)) => eprintln!(
            "crm-node: created the user `admin` with password {password}\n\
             crm-node: it is shown only this once; log in and change it (PATCH /api/v1/users/ID with {{\"password\": ...}})"
        ),
        Ok(None) => {}
        // Someone else holds the login `admin`: serve anyway, the admins
        // that exist can still log in.
        Err(e) => tracing::warn!(error = %e, "could not create the first admin user"),
    }
    // Other offices learn this node's name from its record; serving goes
    // on without it (they show the id's start instead).
    if let Err(e) = node.records().record_this_node().await {
        tracing::warn!(error = %e, "could not write this node's record in the directory of nodes");
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let endpoint = match tls {
        Some(tls) => node::Endpoint::Https(
            tls::listener::TlsListener::new(listener, tls).context("starting HTTPS")?,
        ),
        None => node::Endpoint::Http(listener),
    };
    let url = endpoint.url().context("reading the bound address")?;
    // The one line on stdout: scripts and tests read the address from it.
    println!("crm-node listening on {url}");
    lock.publish(&url)?;
    match node.auth().open_node_session().await {
        Ok(Some(token)) => lock.publish_token(&token)?,
        Ok(None) => tracing::warn!("no active admin user: tools cannot go through this node"),
        Err(e) => tracing::warn!(error = %e, "could not open the tools' session"),
    }
    tracing::info!(%url, "serving");
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    #[cfg(unix)]
    {
        // Registered before serving: an unhandled SIGHUP would end the node.
        let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("listening for SIGHUP")?;
        tokio::spawn(reload_on_hangup(
            hangup,
            data.clone(),
            node.store().clone(),
            shutdown.clone(),
        ));
    }
    node.serve(endpoint, shutdown).await?;
    drop(lock);
    tracing::info!("stopped cleanly");
    Ok(())
}

/// On SIGHUP, reads `max_database_bytes` again from the configuration, so
/// that a node at its size limit takes writes again without a restart.
#[cfg(unix)]
async fn reload_on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    data: std::path::PathBuf,
    store: crm_sync::Store,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hangup.recv() => if got.is_none() { return },
        }
        let limit = match Config::load(&data, Overrides::default()) {
            Ok(config) => config.max_database_bytes,
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: configuration not reloaded");
                continue;
            }
        };
        match store.set_max_database_bytes(limit).await {
            Ok(()) => tracing::info!(max_database_bytes = ?limit, "SIGHUP: size limit reloaded"),
            Err(e) => tracing::error!(error = %e, "SIGHUP: size limit not changed"),
        }
    }
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = interrupt.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: finishing in-flight requests");
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn automerge_spans_stay_off_unless_the_filter_names_automerge() {
        assert_eq!(log_filter("info"), "info,automerge=warn");
        assert_eq!(
            log_filter("crm_node=debug,warn"),
            "crm_node=debug,warn,automerge=warn"
        );
        assert_eq!(log_filter("info,automerge=debug"), "info,automerge=debug");
    }
}
