//! The hook through which the node keeps its query tables in step with the
//! documents: called inside the write transaction after every change.

use automerge::Automerge;
use rusqlite::Connection;

use crate::DocId;

/// A document as the projector sees it.
pub struct DocRef<'a> {
    pub id: DocId,
    /// The document's local key (docs.rid), stable for its life.
    pub rid: i64,
    pub kind: &'a str,
    pub doc: &'a Automerge,
}

pub type ProjectError = Box<dyn std::error::Error + Send + Sync>;

/// Refreshes whatever tables are derived from documents. Must be
/// deterministic in the document alone, so that projections can be rebuilt.
pub trait Projector: Send + Sync + 'static {
    fn project(&self, conn: &Connection, doc: &DocRef<'_>) -> Result<(), ProjectError>;
}
