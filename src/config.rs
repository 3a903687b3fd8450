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
    pub log: String,
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
        if self.read_connections == 0 {
            return invalid("read_connections must be at least 1");
        }
        Ok(())
    }
}

pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DATABASE_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags_override_defaults() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "name = \"Kazan office\"\ncache_capacity = 10\nlisten = \"127.0.0.1:9000\"\n",
        )
        .expect("config written");
        let config = Config::load(dir.path(), Overrides::default()).expect("loads");
        assert_eq!(config.name, "Kazan office");
        assert_eq!(config.cache_capacity, 10);
        assert_eq!(config.read_connections, Config::default().read_connections);
        let flags = Overrides {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9100))),
            name: Some("Laptop".into()),
        };
        let config = Config::load(dir.path(), flags).expect("loads");
        assert_eq!(config.listen.port(), 9100);
        assert_eq!(config.name, "Laptop");
    }

    #[test]
    fn bad_files_are_refused_with_the_key_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        for (text, key) in [
            ("cache_capacity = 0", "cache_capacity"),
            ("colour = \"red\"", "colour"),
            ("listen = \"nowhere\"", "listen"),
        ] {
            std::fs::write(dir.path().join(CONFIG_FILE), text).expect("config written");
            let error = Config::load(dir.path(), Overrides::default())
                .expect_err("refused")
                .to_string();
            assert!(error.contains(key), "{error}");
        }
    }
}
