//! Opening SQLite connections with the store's pragmas, and numbered
//! migrations.

use std::path::Path;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, OpenFlags};

use crate::StoreError;

/// One numbered SQL migration. Migrations are append-only: a shipped one is
/// never edited; a change of mind is the next number.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub(crate) const STORE_MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "documents and change feed",
        sql: include_str!("../migrations/0001_store.sql"),
    },
    Migration {
        version: 2,
        name: "replication: feed filters, held changes, peers, tokens",
        sql: include_str!("../migrations/0002_replication.sql"),
    },
    Migration {
        version: 3,
        name: "scopes of access tokens",
        sql: include_str!("../migrations/0003_token_scopes.sql"),
    },
];

const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The size the WAL file is cut back to after a checkpoint: above the
/// writer's checkpoint point ([`crate::checkpointer::WRITER_AUTOCHECKPOINT`]
/// pages of 4 KiB), so that a steady load reuses the file instead of
/// cutting it and growing it again at every restart of the WAL.
const WAL_FILE_KEPT_BYTES: i64 = 512 * 1024 * 1024;

/// The one write connection. WAL with `synchronous=FULL` while the store
/// opens (migrations, identity): a commit is on disk (WAL fsynced) before it
/// returns. The writer thread then leaves the sync to
/// [`crate::wal_sync`] ([`leave_sync_to_wal_sync`]).
pub(crate) fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    bound_writer_cache(&conn)?;
    // Savepoints journal the pages they touch; in memory, not a temp file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // The checkpoint thread keeps the WAL short; this is its backstop.
    conn.pragma_update(
        None,
        "wal_autocheckpoint",
        crate::checkpointer::WRITER_AUTOCHECKPOINT,
    )?;
    // A large import's transaction can grow the WAL file past that; once
    // checkpointed, the file is cut back to this instead of keeping that
    // size on disk.
    conn.pragma_update(None, "journal_size_limit", WAL_FILE_KEPT_BYTES)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            scope TEXT NOT NULL,
            version INTEGER NOT NULL,
            name TEXT NOT NULL,
            applied_at TEXT NOT NULL DEFAULT (datetime('now')),
            PRIMARY KEY (scope, version)
        )",
    )?;
    Ok(conn)
}

/// The writer's page cache, in KiB (`cache_size` takes a negative
/// number for KiB).
const WRITER_CACHE_KIB: i64 = 32_000;

/// Sets the writer's page cache to its size, and gives back what it holds
/// beyond: SQLite's cache keeps every page it ever held (a full one recycles
/// its oldest page for a new one, never shrinks), and a transaction whose
/// dirty pages outgrow it (an import) leaves it that large. Setting the size
/// evicts the least recently used pages down to it.
pub(crate) fn bound_writer_cache(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    Ok(())
}

/// Commits on `conn` write the WAL without syncing it: the caller syncs
/// the WAL itself before anyone hears that a commit happened (an
/// acknowledged write still survives power loss). A checkpoint still syncs
/// the WAL before copying it, and the database file after, so the database
/// stays whole after a power cut either way.
pub(crate) fn leave_sync_to_wal_sync(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

/// The checkpoint thread's connection (see [`crate::checkpointer`]); it
/// writes only the database file, with the writer's durability.
pub(crate) fn open_checkpointer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    // A connection closing last would checkpoint and drop the WAL itself;
    // that is the writer's job at shutdown.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    conn.pragma_update(None, "journal_size_limit", WAL_FILE_KEPT_BYTES)?;
    Ok(conn)
}

/// Read connections: read-only, so that no code path can write around the
/// writer.
pub(crate) fn reader_pool(
    path: &Path,
    size: u32,
) -> Result<r2d2::Pool<SqliteConnectionManager>, StoreError> {
    let manager = SqliteConnectionManager::file(path)
        .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .with_init(|conn| {
            conn.busy_timeout(BUSY_TIMEOUT)?;
            conn.pragma_update(None, "cache_size", -16_000)
        });
    Ok(r2d2::Pool::builder().max_size(size.max(1)).build(manager)?)
}

/// Applies the migrations of `scope` that this database has not seen, each
/// in its own transaction. Refuses a database that has a migration this
/// binary does not know (written by a newer version).
pub(crate) fn migrate(
    conn: &mut Connection,
    scope: &str,
    migrations: &[Migration],
) -> Result<(), StoreError> {
    let newest_known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    let applied: u32 = conn.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_migrations WHERE scope = ?1",
        params![scope],
        |row| row.get(0),
    )?;
    if applied > newest_known {
        return Err(StoreError::TooNew {
            scope: scope.to_owned(),
            version: applied,
        });
    }
    for migration in migrations.iter().filter(|m| m.version > applied) {
        let fail = |source| StoreError::Migration {
            scope: scope.to_owned(),
            version: migration.version,
            name: migration.name,
            source: Box::new(source),
        };
        let tx = conn.transaction()?;
        tx.execute_batch(migration.sql).map_err(fail)?;
        tx.execute(
            "INSERT INTO schema_migrations (scope, version, name) VALUES (?1, ?2, ?3)",
            params![scope, migration.version, migration.name],
        )?;
        tx.commit()?;
        tracing::info!(
            scope,
            version = migration.version,
            name = migration.name,
            "migrated"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bundled SQLite must be built without
    /// `SQLITE_ENABLE_MEMORY_MANAGEMENT` (`.cargo/config.toml` says why):
    /// with it, all connections share one page cache and the writer's
    /// grows past its `cache_size`.
    #[test]
    fn each_connection_has_its_own_page_cache() {
        let conn = Connection::open_in_memory().expect("open");
        let mut stmt = conn.prepare("PRAGMA compile_options").expect("prepare");
        let options = stmt
            .query_map([], |row| row.get::<_, String>(0))
            .expect("query")
            .collect::<Result<Vec<_>, _>>()
            .expect("rows");
        assert!(
            options.iter().any(|o| o.starts_with("THREADSAFE")),
            "{options:?}"
        );
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "SQLite was built with ENABLE_MEMORY_MANAGEMENT: {options:?}"
        );
    }
}
