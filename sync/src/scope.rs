//! Replication scopes: a peer (a sales rep's laptop, say) that may read and
//! change only some documents. The store asks a [`DocScope`] whether a
//! document is inside; what makes it so (a field's value, a reference) is
//! the node's business, not this crate's.

use automerge::Automerge;
use rusqlite::Connection;

use crate::{DocId, StoreError};

/// Which documents a scoped peer may see and change.
pub trait DocScope: Send + Sync {
    /// Whether stored document `doc` of `kind` is inside the scope, as it
    /// stands on this node now.
    fn admits(&self, conn: &Connection, doc: &DocId, kind: &str) -> Result<bool, StoreError>;

    /// Whether a document this node does not have yet, as the peer's
    /// changes make it (`doc`), would be inside the scope.
    fn admits_new(
        &self,
        conn: &Connection,
        kind: &str,
        doc: &Automerge,
    ) -> Result<bool, StoreError>;
}
