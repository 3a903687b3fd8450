//! Settings: defaults, then `crm-node.toml` in the data folder, then `CRM_*`
//! environment variables, then command-line flags. Checked at start-up with
//! messages that say what to fix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// The config file's name inside the data folder.
pub const CONFIG_FILE: &str = "crm-node.toml";
pub const DATABASE_FILE: &str = "crm.sqlite3";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the API listens on.
    pub listen: SocketAddr,
    /// Human name of this node (the office or laptop).
    pub name: String,
    /// Loaded documents the writer keeps in memory.
    pub cache_capacity: usize,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Read connections to the database.
    pub read_connections: u32,
    /// Log filter (tracing's EnvFilter syntax), e.g. "info" or "crm_node=debug".
    /// Automerge's own spans stay off (`automerge=warn` is added) unless the
    /// filter names `automerge`.
    pub log: String,
    /// Largest replication batch a peer may push, in bytes.
    pub max_batch_bytes: usize,
    /// Largest CSV file `POST /api/v1/import` accepts, in bytes.
    pub max_import_bytes: usize,
    /// A folder of kind definitions (`*.toml`, the format of
    /// `schema/kinds/`) that extend or replace the built-in kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kinds_dir: Option<PathBuf>,
    /// Replicate with every peer continuously while serving. When false,
    /// peers sync only when asked (`crm-node sync`, `POST /api/v1/sync/run`),
    /// e.g. on a metered connection.
    pub auto_sync: bool,
    /// Shifts this node's clock by this many seconds. For testing that
    /// replication does not depend on clocks; leave at 0.
    pub clock_offset_secs: i64,
    /// PEM certificate chain to serve HTTPS with (the node's certificate
    /// first); relative to the data folder. Goes with `tls_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`; relative to the data folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// PEM bundle of extra CA certificates that peers' certificates are
    /// verified against, besides the public web roots; relative to the data
    /// folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_ca: Option<PathBuf>,
    /// How long a login session lasts, in seconds.
    pub session_ttl_secs: u64,
    /// The password of the `admin` user the node creates when it has no
    /// active admin (usually from `CRM_ADMIN_PASSWORD`). Unset: a password
    /// is generated and printed once on standard error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<Secret>,
    /// The largest the database may grow, in bytes (a storage quota). At
    /// the limit, writes fail with 503 as on a full disk; reads go on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_database_bytes: Option<u64>,
}

/// A secret setting: shown as `***` in `Debug` (logs, error reports).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8640)),
            name: "crm-node".into(),
            cache_capacity: 2048,
            max_body_bytes: 1024 * 1024,
            read_connections: 8,
            log: "info".into(),
            max_batch_bytes: 32 * 1024 * 1024,
            max_import_bytes: 256 * 1024 * 1024,
            kinds_dir: None,
            clock_offset_secs: 0,
            auto_sync: true,
            tls_cert: None,
            tls_key: None,
            peer_ca: None,
            session_ttl_secs: 12 * 3600,
            admin_password: None,
            max_database_bytes: None,
        }
    }
}

/// Flags given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    pub fn load(data_dir: &Path, overrides: Overrides) -> Result<Config, ConfigError> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(data_dir.join(CONFIG_FILE)))
            .merge(Env::prefixed("CRM_").only(&[
                "listen",
                "name",
                "cache_capacity",
                "max_body_bytes",
                "read_connections",
                "log",
                "max_batch_bytes",
                "max_import_bytes",
                "kinds_dir",
                "clock_offset_secs",
                "auto_sync",
                "tls_cert",
                "tls_key",
                "peer_ca",
                "session_ttl_secs",
                "admin_password",
                "max_database_bytes",
            ]))
            .merge(Serialized::defaults(overrides))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.name.trim().is_empty() {
            return invalid(
                "name is empty: give the node a name (--name, CRM_NAME or name = \"...\")",
            );
        }
        if self.cache_capacity == 0 {
            return invalid("cache_capacity must be at least 1");
        }
        if self.max_body_bytes < 1024 {
            return invalid("max_body_bytes must be at least 1024");
        }
        if self.max_batch_bytes < 64 * 1024 {
            return invalid("max_batch_bytes must be at least 65536");
        }
        if self.max_database_bytes.is_some_and(|b| b < 1024 * 1024) {
            return invalid("max_database_bytes must be at least 1048576 (1 MiB)");
        }
        if self.read_connections == 0 {
            return invalid("read_connections must be at least 1");
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return invalid("tls_cert is set but tls_key is not: give both (PEM files) to serve HTTPS, or neither")
            }
            (None, Some(_)) => {
                return invalid("tls_key is set but tls_cert is not: give both (PEM files) to serve HTTPS, or neither")
            }
            _ => {}
        }
        if !(1..=366 * 24 * 3600).contains(&self.session_ttl_secs) {
            return invalid("session_ttl_secs must be from 1 second to 366 days (31622400)");
        }
        if let Some(Secret(password)) = &self.admin_password {
            if password.chars().count() < crate::records::password::MIN_LEN {
                return invalid(&format!(
                    "admin_password (CRM_ADMIN_PASSWORD) must be at least {} characters",
                    crate::records::password::MIN_LEN
                ));
            }
        }
        Ok(())
    }
}

pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DATABASE_FILE)
}

#[cfg(test)]
#[allow(
    clippy::result_large_err,
    reason = "figment::Jail fixes the closure's error type to figment::Error"
)]
mod tests {
    use figment::Jail;

    use super::*;

    // Every test runs in a figment Jail: it serializes them and isolates the
    // process environment, which `Config::load` reads.

    #[test]
    fn file_then_flags_override_defaults() {
        Jail::expect_with(|jail| {
            jail.create_file(
                CONFIG_FILE,
                "name = \"Kazan office\"\ncache_capacity = 10\nlisten = \"127.0.0.1:9000\"\n",
            )?;
            let dir = jail.directory().to_owned();
            let config = Config::load(&dir, Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(config.name, "Kazan office");
            assert_eq!(config.cache_capacity, 10);
            assert_eq!(config.read_connections, Config::default().read_connections);
            let flags = Overrides {
                listen: Some(SocketAddr::from(([127, 0, 0, 1], 9100))),
                name: Some("Laptop".into()),
            };
            let config = Config::load(&dir, flags).map_err(|e| e.to_string())?;
            assert_eq!(config.listen.port(), 9100);
            assert_eq!(config.name, "Laptop");
            Ok(())
        });
    }

    #[test]
    fn environment_sits_between_file_and_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(CONFIG_FILE, "name = \"from file\"\nread_connections = 3")?;
            jail.set_env("CRM_NAME", "from env");
            jail.set_env("CRM_CACHE_CAPACITY", "7");
            jail.set_env("CRM_UNRELATED", "ignored");
            let dir = jail.directory().to_owned();
            let config = Config::load(&dir, Overrides::default()).map_err(|e| e.to_string())?;
            assert_eq!(config.name, "from env");
            assert_eq!(config.cache_capacity, 7);
            assert_eq!(config.read_connections, 3);
            let flags = Overrides {
                listen: None,
                name: Some("from flag".into()),
            };
            let config = Config::load(&dir, flags).map_err(|e| e.to_string())?;
            assert_eq!(config.name, "from flag");
            Ok(())
        });
    }

    #[test]
    fn bad_files_are_refused_with_the_key_named() {
        Jail::expect_with(|jail| {
            let dir = jail.directory().to_owned();
            for (text, key) in [
                ("cache_capacity = 0", "cache_capacity"),
                ("session_ttl_secs = 0", "session_ttl_secs"),
                ("admin_password = \"short\"", "admin_password"),
                ("colour = \"red\"", "colour"),
                ("listen = \"nowhere\"", "listen"),
                ("tls_cert = \"node.crt\"", "tls_key"),
                ("tls_key = \"node.key\"", "tls_cert"),
            ] {
                jail.create_file(CONFIG_FILE, text)?;
                let error = Config::load(&dir, Overrides::default())
                    .expect_err("refused")
                    .to_string();
                assert!(error.contains(key), "{error}");
            }
            Ok(())
        });
    }
}
