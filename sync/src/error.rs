//! Errors of the store.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(rusqlite::Error),
    /// The database cannot take writes right now (disk full, storage quota
    /// reached, read-only data folder, a failing disk). Nothing of the
    /// failed write was kept; the store goes on and recovers by itself once
    /// the cause is gone.
    #[error("storage unavailable: {problem} ({message})")]
    Unavailable {
        problem: StorageProblem,
        message: String,
    },
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

/// Why the storage refuses writes; decides what the user is told to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageProblem {
    /// `SQLITE_FULL`: the disk is full, or the database reached
    /// `max_database_bytes`.
    Full,
    /// `SQLITE_READONLY*`, or a write the file system refused for want of
    /// permission (an immutable file, a read-only mount).
    ReadOnly,
    /// Any other `SQLITE_IOERR*`: the disk failed a read or a write.
    Io,
    /// Another process holds the database (`SQLITE_BUSY`/`SQLITE_LOCKED`
    /// beyond the busy timeout).
    Busy,
}

impl fmt::Display for StorageProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StorageProblem::Full => {
                "the disk is full or the database reached its size limit (max_database_bytes)"
            }
            StorageProblem::ReadOnly => "the data folder is read-only",
            StorageProblem::Io => "the disk failed a read or a write",
            StorageProblem::Busy => "another process holds the database",
        })
    }
}

impl StorageProblem {
    /// The storage problem behind an SQLite error code, if it is one.
    pub fn of_code(code: rusqlite::ErrorCode) -> Option<StorageProblem> {
        use rusqlite::ErrorCode as C;
        match code {
            C::DiskFull => Some(StorageProblem::Full),
            C::ReadOnly => Some(StorageProblem::ReadOnly),
            C::SystemIoFailure | C::CannotOpen => Some(StorageProblem::Io),
            C::DatabaseBusy | C::DatabaseLocked => Some(StorageProblem::Busy),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    /// Storage failures get their own variant here, once, so that every
    /// layer above can tell "try again later" from a bug.
    fn from(e: rusqlite::Error) -> Self {
        let problem = match &e {
            rusqlite::Error::SqliteFailure(code, _) => StorageProblem::of_code(code.code),
            _ => None,
        };
        match problem {
            Some(problem) => StoreError::Unavailable {
                problem,
                message: e.to_string(),
            },
            None => StoreError::Sqlite(e),
        }
    }
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
        self.storage_problem().is_some() || matches!(self, StoreError::Closed | StoreError::Pool(_))
    }

    /// The storage problem behind this error, if it is one.
    pub fn storage_problem(&self) -> Option<StorageProblem> {
        match self {
            StoreError::Unavailable { problem, .. } => Some(*problem),
            StoreError::Migration { source, .. } => match source.as_ref() {
                rusqlite::Error::SqliteFailure(code, _) => StorageProblem::of_code(code.code),
                _ => None,
            },
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{StorageProblem, StoreError};

    /// Errors travel through every `Result` of the write path: keep them
    /// small enough to pass in registers' worth of bytes.
    #[test]
    fn store_error_stays_small() {
        assert!(std::mem::size_of::<super::StoreError>() <= 64);
    }

    #[test]
    fn storage_failures_are_told_apart_from_bugs() {
        let failure = |code| {
            StoreError::from(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        use rusqlite::ffi;
        for (code, problem) in [
            (ffi::SQLITE_FULL, Some(StorageProblem::Full)),
            (ffi::SQLITE_READONLY, Some(StorageProblem::ReadOnly)),
            (ffi::SQLITE_READONLY_DBMOVED, Some(StorageProblem::ReadOnly)),
            (ffi::SQLITE_IOERR_WRITE, Some(StorageProblem::Io)),
            (ffi::SQLITE_IOERR_FSYNC, Some(StorageProblem::Io)),
            (ffi::SQLITE_BUSY, Some(StorageProblem::Busy)),
            (ffi::SQLITE_CONSTRAINT, None),
            (ffi::SQLITE_CORRUPT, None),
        ] {
            let error = failure(code);
            assert_eq!(error.storage_problem(), problem, "code {code}: {error}");
            assert_eq!(error.is_unavailable(), problem.is_some(), "code {code}");
        }
    }
}
