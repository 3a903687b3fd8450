//! The hook through which the node keeps its query tables in step with the
//! documents. Rendering (reading the document, building rows) is separate
//! from storing them, so that new documents can be rendered on any thread
//! and only the SQL runs in the write transaction.

use automerge::Automerge;
use rusqlite::Connection;

use crate::DocId;

/// A document as the projector sees it.
pub struct DocRef<'a> {
    pub id: DocId,
    pub kind: &'a str,
    pub doc: &'a Automerge,
}

pub type ProjectError = Box<dyn std::error::Error + Send + Sync>;

/// A write put off to the end of the transaction.
pub type DeferredWrite = Box<dyn FnOnce(&Connection) -> Result<(), ProjectError>>;

/// Writes a projection defers: all removals of a group commit run, then all
/// additions, after the group's last job. A full-text index buffers its
/// writes but flushes the buffer whenever a statement opens a savepoint,
/// which in a group commit is after nearly every statement; deferred and run
/// together, its writes are buffered and flushed once.
#[derive(Default)]
pub struct Deferred {
    pub remove: Option<DeferredWrite>,
    pub add: Option<DeferredWrite>,
}

/// What a projector derived from one document, ready to be stored.
pub trait Rendered: Send {
    /// Writes the rows of the document whose local key is `rid` and returns
    /// the writes to defer. `new`: the document was just inserted, so it
    /// has no rows to replace.
    fn store(
        self: Box<Self>,
        conn: &Connection,
        rid: i64,
        new: bool,
    ) -> Result<Deferred, ProjectError>;
}

/// Derives tables from documents. Must be deterministic in the document
/// alone, so that projections can be rebuilt and converged nodes agree.
pub trait Projector: Send + Sync + 'static {
    fn render(&self, doc: &DocRef<'_>) -> Result<Box<dyn Rendered>, ProjectError>;

    /// Runs in the transaction right after deferred writes, with the number
    /// of additions among them: upkeep whose cost should come in small
    /// shares with the writes that cause it, instead of all at once inside
    /// one commit (the node merges its full-text index's segments here).
    fn after_deferred(&self, _conn: &Connection, _added: usize) -> Result<(), ProjectError> {
        Ok(())
    }
}

/// A projector for a store whose documents need no derived tables (tools,
/// benchmarks of the store alone): it renders nothing and stores nothing.
pub struct NoProjection;

impl Projector for NoProjection {
    fn render(&self, _: &DocRef<'_>) -> Result<Box<dyn Rendered>, ProjectError> {
        Ok(Box::new(NoProjection))
    }
}

impl Rendered for NoProjection {
    fn store(self: Box<Self>, _: &Connection, _: i64, _: bool) -> Result<Deferred, ProjectError> {
        Ok(Deferred::default())
    }
}
