//! A running node: opens the store with the schema's projections, serves
//! the API on a listener and replicates with its peers until told to stop,
//! then closes the store after in-flight requests finished.

use std::path::Path;
use std::sync::Arc;

use axum::serve::Listener;
use axum::Router;
use crm_schema::Schema;
use crm_sync::{Migration, Store, StoreConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{self, AppState, ClientAddr};
use crate::auth::{Auth, AuthError};
use crate::config::{database_path, Config};
use crate::records::projection::{self, RecordProjector, SetupError};
use crate::records::Records;
use crate::replication::{Replication, ReplicationError};
use crate::tls::listener::TlsListener;
use crate::tls::{PeerTrust, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("schema: {0}")]
    Schema(#[from] crm_schema::SchemaError),
    #[error("store: {0}")]
    Store(#[from] crm_sync::StoreError),
    #[error("projections: {0}")]
    Setup(#[from] SetupError),
    #[error("replication: {0}")]
    Replication(#[from] ReplicationError),
    #[error("users: {0}")]
    Auth(#[from] AuthError),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Tls(#[from] TlsError),
}

/// Where the node answers: plain HTTP, or HTTPS with `tls_cert`.
pub enum Endpoint {
    Http(TcpListener),
    Https(TlsListener),
}

impl Endpoint {
    /// The base URL, as printed on stdout and published in `serve.url`.
    pub fn url(&self) -> std::io::Result<String> {
        Ok(match self {
            Endpoint::Http(listener) => format!("http://{}", listener.local_addr()?),
            Endpoint::Https(listener) => format!("https://{}", listener.local_addr()?),
        })
    }
}

pub struct Node {
    store: Store,
    records: Records,
    replication: Replication,
    auth: Auth,
    config: Config,
}

pub(crate) fn node_migrations() -> Vec<Migration> {
    crm_schema::MIGRATIONS
        .iter()
        .map(|m| Migration {
            version: m.version,
            name: m.name,
            sql: m.sql,
        })
        .collect()
}

/// The schema: built in, plus the kinds folder when configured (relative
/// paths are taken from the data folder).
fn load_schema(data_dir: &Path, config: &Config) -> Result<Schema, crm_schema::SchemaError> {
    match &config.kinds_dir {
        Some(dir) => Schema::with_kinds_dir(&data_dir.join(dir)),
        None => Schema::builtin(),
    }
}

impl Node {
    /// Opens the node's data. `rename` stores the configured name as the
    /// node's name (serve does; tools that open the data folder do not).
    pub async fn open(data_dir: &Path, config: Config, rename: bool) -> Result<Node, NodeError> {
        std::fs::create_dir_all(data_dir)?;
        let schema = Arc::new(load_schema(data_dir, &config)?);
        let store_config = StoreConfig {
            path: database_path(data_dir),
            cache_capacity: config.cache_capacity,
            readers: config.read_connections,
            node_name: rename.then(|| config.name.clone()),
            max_database_bytes: config.max_database_bytes,
        };
        let projector = Arc::new(RecordProjector::new(schema.clone()));
        let migrations = node_migrations();
        let store_projector = projector.clone();
        let store = tokio::task::spawn_blocking(move || {
            Store::open(&store_config, "crm", &migrations, store_projector)
        })
        .await
        .map_err(|e| crm_sync::StoreError::TaskFailed(e.to_string()))??;
        let prepared_schema = schema.clone();
        store
            .write(move |txn| {
                projection::prepare(txn, &prepared_schema)?;
                txn.optimize().map_err(SetupError::from)
            })
            .await?;
        let identity = store.identity();
        tracing::info!(node_id = %identity.node_id, epoch = identity.epoch.0, name = %identity.name, "store open");
        let kinds = schema
            .kinds()
            .iter()
            .map(|k| k.collection.clone())
            .collect();
        let peer_trust = PeerTrust::load(data_dir, &config)?;
        let replication = Replication::new(store.clone(), kinds, &peer_trust)?;
        let records = Records::new(store.clone(), schema, projector);
        let auth = Auth::new(
            store.clone(),
            records.clone(),
            std::time::Duration::from_secs(config.session_ttl_secs),
        );
        Ok(Node {
            store,
            records,
            replication,
            auth,
            config,
        })
    }

    pub fn records(&self) -> &Records {
        &self.records
    }

    pub fn replication(&self) -> &Replication {
        &self.replication
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Makes sure someone can log in: creates the `admin` user when the
    /// node has no active admin (with the configured password, else a
    /// generated one, returned to be shown once).
    pub async fn ensure_admin(&self) -> Result<Option<String>, NodeError> {
        let configured = self.config.admin_password.as_ref().map(|s| s.0.as_str());
        Ok(self.auth.ensure_admin(configured).await?)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Closes the store (tools that opened the node without serving).
    pub async fn close(self) {
        self.store.close().await;
    }

    /// Serves and replicates until `shutdown` is cancelled, then waits for
    /// in-flight requests and closes the store.
    pub async fn serve(
        self,
        endpoint: Endpoint,
        shutdown: CancellationToken,
    ) -> Result<(), NodeError> {
        let app = api::router(
            AppState::new(
                self.records.clone(),
                self.replication.clone(),
                self.auth.clone(),
                shutdown.clone(),
                matches!(endpoint, Endpoint::Https(_)),
            ),
            api::BodyLimits {
                api: self.config.max_body_bytes,
                sync_batch: self.config.max_batch_bytes,
                import: self.config.max_import_bytes,
            },
        );
        let workers = self
            .config
            .auto_sync
            .then(|| tokio::spawn(self.replication.clone().supervise(shutdown.clone())));
        tokio::spawn(refresh_planner_statistics(
            self.store.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(crate::records::search_upkeep::resume(self.store.clone()));
        let result = match endpoint {
            Endpoint::Http(listener) => serve_until(listener, app, &shutdown).await,
            Endpoint::Https(listener) => serve_until(listener, app, &shutdown).await,
        };
        shutdown.cancel();
        if let Some(workers) = workers {
            if workers.await.is_err() {
                tracing::error!("the replication supervisor ended abnormally");
            }
        }
        if let Err(e) = self.auth.close_node_sessions().await {
            tracing::warn!(error = %e, "could not end the tools' session");
        }
        self.store.close().await;
        result.map_err(NodeError::from)
    }
}

/// Serves until `shutdown`, then lets in-flight requests finish.
async fn serve_until<L>(
    listener: L,
    app: Router,
    shutdown: &CancellationToken,
) -> std::io::Result<()>
where
    L: Listener,
    L::Addr: std::fmt::Debug,
    ClientAddr: for<'a> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    // The peer address reaches handlers: login attempts are limited per
    // client address.
    let app = app.into_make_service_with_connect_info::<ClientAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
}

/// How often the query planner's statistics are refreshed while serving:
/// lists pick their index by them, and data grows by replication too.
const OPTIMIZE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

async fn refresh_planner_statistics(store: Store, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(OPTIMIZE_EVERY) => {}
        }
        if let Err(e) = store.write(|txn| txn.optimize()).await {
            tracing::warn!(error = %e, "refreshing planner statistics failed");
        }
    }
}
