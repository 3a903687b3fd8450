//! Which process serves a data folder: `serve` holds a lock on
//! `serve.lock` for its whole life and writes its URL to `serve.url`, so
//! that tools know whether to go through the running node (a sync round
//! must use the node's own writer) or may work on the files. It also
//! writes `serve.token` (mode 0600): an admin session token the tools
//! present, so that whoever may read the data folder may use its node.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

const LOCK_FILE: &str = "serve.lock";
const URL_FILE: &str = "serve.url";
const TOKEN_FILE: &str = "serve.token";

#[derive(Debug, thiserror::Error)]
pub enum RunningError {
    #[error("another crm-node already serves {0}")]
    AlreadyServing(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> RunningError + '_ {
    move |source| RunningError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Held by `serve`; released when dropped (or when the process dies, as the
/// OS drops the lock with the file descriptor).
pub struct ServeLock {
    _file: File,
    url_file: PathBuf,
    token_file: PathBuf,
}

fn open_lock(data_dir: &Path) -> Result<File, RunningError> {
    let path = data_dir.join(LOCK_FILE);
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error(&path))
}

impl ServeLock {
    pub fn acquire(data_dir: &Path) -> Result<ServeLock, RunningError> {
        std::fs::create_dir_all(data_dir).map_err(io_error(data_dir))?;
        let file = open_lock(data_dir)?;
        match file.try_lock() {
            Ok(()) => Ok(ServeLock {
                _file: file,
                url_file: data_dir.join(URL_FILE),
                token_file: data_dir.join(TOKEN_FILE),
            }),
            Err(TryLockError::WouldBlock) => Err(RunningError::AlreadyServing(data_dir.to_owned())),
            Err(TryLockError::Error(e)) => Err(io_error(&data_dir.join(LOCK_FILE))(e)),
        }
    }

    /// Tells tools where the node answers.
    pub fn publish(&self, url: &str) -> Result<(), RunningError> {
        std::fs::write(&self.url_file, url).map_err(io_error(&self.url_file))
    }

    /// Gives tools the node's admin session token; only the owner may
    /// read the file.
    pub fn publish_token(&self, token: &str) -> Result<(), RunningError> {
        use std::io::Write;
        let path = &self.token_file;
        // A stale file from a crash may have other permissions: start anew.
        let _ = std::fs::remove_file(path);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(io_error(path))?;
        file.write_all(token.as_bytes()).map_err(io_error(path))
    }
}

impl Drop for ServeLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.url_file);
        let _ = std::fs::remove_file(&self.token_file);
    }
}

/// The node that serves a folder: where it answers and the session token
/// its tools present (`None` when it published none: it has no admin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    pub url: String,
    pub token: Option<String>,
}

/// The node serving `data_dir`, if one runs.
pub fn serving(data_dir: &Path) -> Result<Option<Serving>, RunningError> {
    let Some(url) = serving_url(data_dir)? else {
        return Ok(None);
    };
    let path = data_dir.join(TOKEN_FILE);
    let token = match std::fs::read_to_string(&path) {
        Ok(token) => Some(token.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error(&path)(e)),
    };
    Ok(Some(Serving { url, token }))
}

/// The URL of the node serving `data_dir`, if one runs.
pub fn serving_url(data_dir: &Path) -> Result<Option<String>, RunningError> {
    if !data_dir.join(LOCK_FILE).exists() {
        return Ok(None);
    }
    let file = open_lock(data_dir)?;
    match file.try_lock() {
        Ok(()) => Ok(None),
        Err(TryLockError::WouldBlock) => {
            let path = data_dir.join(URL_FILE);
            let url = std::fs::read_to_string(&path).map_err(io_error(&path))?;
            Ok(Some(url.trim().to_owned()))
        }
        Err(TryLockError::Error(e)) => Err(io_error(&data_dir.join(LOCK_FILE))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_server_per_folder_and_tools_find_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(serving_url(dir.path()).ok().flatten(), None);
        let lock = ServeLock::acquire(dir.path()).expect("first lock");
        lock.publish("http://127.0.0.1:1").expect("publish");
        assert!(matches!(
            ServeLock::acquire(dir.path()),
            Err(RunningError::AlreadyServing(_))
        ));
        assert_eq!(
            serving_url(dir.path()).ok().flatten().as_deref(),
            Some("http://127.0.0.1:1")
        );
        lock.publish_token("crms_secret")
            .expect("publish the token");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
                .expect("token file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            serving(dir.path()).ok().flatten().and_then(|s| s.token),
            Some("crms_secret".to_owned())
        );
        drop(lock);
        assert_eq!(serving_url(dir.path()).ok().flatten(), None);
        assert!(!dir.path().join(TOKEN_FILE).exists());
    }
}
