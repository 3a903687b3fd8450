//! The hook through which the node keeps its query tables in step with the
//! documents. Rendering (reading the document, building rows) is separate
//! from storing them, so that new documents can be rendered on any thread
//! and only the SQL runs in the write transaction.

use std::collections::HashMap;

use automerge::{hydrate, Automerge, ChangeHash};
use rusqlite::Connection;

use crate::DocId;

/// A document as the projector sees it.
pub struct DocRef<'a> {
    pub id: DocId,
    pub kind: &'a str,
    pub doc: &'a Automerge,
}

/// A received document of one change, as that change's root: a first sync
/// renders most documents from this, without loading them.
pub struct NewDocRef<'a> {
    pub id: DocId,
    pub kind: &'a str,
    /// Everything the change put at the root, `kind` included.
    pub root: &'a HashMap<String, hydrate::Value>,
    /// The change's hash, the document's one head.
    pub hash: ChangeHash,
    /// The change's time, milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The document as stored: the change's bytes.
    pub bytes: &'a [u8],
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

    /// Renders a document of one change from its root. Must render what
    /// [`Projector::render`] renders for the loaded document, which is what
    /// this default does.
    fn render_new(&self, new: &NewDocRef<'_>) -> Result<Box<dyn Rendered>, ProjectError> {
        let doc = Automerge::load(new.bytes)?;
        self.render(&DocRef {
            id: new.id,
            kind: new.kind,
            doc: &doc,
        })
    }

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

    fn render_new(&self, _: &NewDocRef<'_>) -> Result<Box<dyn Rendered>, ProjectError> {
        Ok(Box::new(NoProjection))
    }
}

impl Rendered for NoProjection {
    fn store(self: Box<Self>, _: &Connection, _: i64, _: bool) -> Result<Deferred, ProjectError> {
        Ok(Deferred::default())
    }
}
