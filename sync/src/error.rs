//! Errors of the store.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("read connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("automerge: {0}")]
    Automerge(Box<automerge::AutomergeError>),
    #[error("stored document {id} does not load: {message}")]
    Corrupt { id: String, message: String },
    #[error("projection of {id}: {message}")]
    Projection { id: String, message: String },
    #[error("no document {0}")]
    NoSuchDoc(String),
    #[error("migration {scope}/{version} ({name}): {source}")]
    Migration {
        scope: String,
        version: u32,
        name: &'static str,
        source: Box<rusqlite::Error>,
    },
    #[error("the database was written by a newer crm-node ({scope} migration {version} is unknown here)")]
    TooNew { scope: String, version: u32 },
    #[error("the store is closed")]
    Closed,
    #[error("background task failed: {0}")]
    TaskFailed(String),
}

impl From<automerge::AutomergeError> for StoreError {
    fn from(e: automerge::AutomergeError) -> Self {
        StoreError::Automerge(Box::new(e))
    }
}

impl StoreError {
    /// Whether the failure comes from the disk or database being unable to
    /// take writes (full, read-only, locked) rather than from the request.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::CannotOpen
            ),
            StoreError::Closed | StoreError::Pool(_) => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    /// Errors travel through every `Result` of the write path: keep them
    /// small enough to pass in registers' worth of bytes.
    #[test]
    fn store_error_stays_small() {
        assert!(std::mem::size_of::<super::StoreError>() <= 64);
    }
}
