//! The storage's health: the size quota (`PRAGMA max_page_count`) and the
//! diagnosis of a write the disk refused, so that the user is told whether
//! the disk is full or the data folder read-only.

use std::io::ErrorKind;
use std::path::Path;

use rusqlite::Connection;

use crate::{StorageProblem, StoreError};

/// Below this much free space on the data folder's file system a failed
/// write is put down to a full disk.
const LOW_SPACE_BYTES: u64 = 4 * 1024 * 1024;
/// Within this many pages of the quota a failed write is put down to it.
const QUOTA_MARGIN_PAGES: i64 = 1024;

/// SQLite's largest page count: no limit but the disk.
const NO_QUOTA_PAGES: i64 = 0xFFFF_FFFE;

/// Caps the database at `bytes` (rounded down to whole pages; `None`: no
/// cap): a write that would grow it beyond fails with `SQLITE_FULL`, as on a
/// full disk. The limit holds for this connection only, and never below the
/// current size.
pub(crate) fn set_quota(conn: &Connection, bytes: Option<u64>) -> Result<(), StoreError> {
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let pages = match bytes {
        Some(bytes) => {
            (i64::try_from(bytes).unwrap_or(i64::MAX) / page_size.max(1)).min(NO_QUOTA_PAGES)
        }
        None => NO_QUOTA_PAGES,
    };
    let set: i64 = conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
        r.get(0)
    })?;
    if set > pages {
        tracing::warn!(
            quota_bytes = bytes,
            size_bytes = set * page_size,
            "the database is already larger than max_database_bytes: it may not grow further"
        );
    }
    Ok(())
}

/// Why the disk refused a write, found by looking at the storage after the
/// fact (SQLite rolled the transaction back and the error is gone).
pub(crate) fn diagnose(conn: &Connection) -> StorageProblem {
    let Some(path) = conn.path().filter(|p| !p.is_empty()).map(Path::new) else {
        return StorageProblem::Io;
    };
    if !writable(path) {
        return StorageProblem::ReadOnly;
    }
    if near_quota(conn) || low_space(path) {
        return StorageProblem::Full;
    }
    StorageProblem::Io
}

/// An I/O error says little (a write failing with EPERM on an immutable
/// file is `SQLITE_IOERR_WRITE`): look at the storage to tell the user why.
pub(crate) fn refine(conn: &Connection, error: StoreError) -> StoreError {
    match error {
        StoreError::Unavailable {
            problem: StorageProblem::Io,
            message,
        } => StoreError::Unavailable {
            problem: diagnose(conn),
            message,
        },
        other => other,
    }
}

/// Whether the database file and its WAL can still be opened for writing
/// (an immutable file or a read-only mount refuses that).
fn writable(database: &Path) -> bool {
    let mut wal = database.as_os_str().to_owned();
    wal.push("-wal");
    [database, Path::new(&wal)].iter().all(|file| {
        match std::fs::OpenOptions::new().append(true).open(file) {
            Ok(_) => true,
            Err(e) => !matches!(
                e.kind(),
                ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
            ),
        }
    })
}

fn near_quota(conn: &Connection) -> bool {
    let pragma = |name: &str| {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
            .ok()
    };
    match (pragma("page_count"), pragma("max_page_count")) {
        (Some(count), Some(max)) => max - count < QUOTA_MARGIN_PAGES.max(max / 10),
        _ => false,
    }
}

fn low_space(database: &Path) -> bool {
    let folder = database.parent().unwrap_or(Path::new("."));
    match rustix::fs::statvfs(folder) {
        Ok(stat) => stat.f_bavail.saturating_mul(stat.f_frsize) < LOW_SPACE_BYTES,
        Err(_) => false,
    }
}
