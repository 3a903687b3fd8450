//! Looking at a node's database from the outside: `PRAGMA integrity_check`
//! on a file opened read-only, as a kill, a backup or a full disk left it.

use std::path::Path;

/// The rows of `PRAGMA integrity_check` on `database` (WAL included),
/// joined: `"ok"` when the database is sound.
pub fn integrity_check(database: &Path) -> String {
    let conn = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap_or_else(|e| panic!("open {} read-only: {e}", database.display()));
    let rows: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()
        })
        .unwrap_or_else(|e| panic!("integrity_check on {}: {e}", database.display()));
    rows.join("\n")
}

/// The database file of the node whose data folder is `data`.
pub fn database_of(data: &Path) -> std::path::PathBuf {
    data.join("crm.sqlite3")
}
