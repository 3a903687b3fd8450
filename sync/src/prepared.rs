//! New documents made outside the writer. Encoding a new document's first
//! change is most of the cost of a create; doing it on the caller's thread
//! lets creates run in parallel, while the writer only stores the result.

use automerge::transaction::{Transactable, Transaction};
use std::collections::HashMap;

use automerge::{hydrate, ActorId, Automerge, Change, ChangeHash, ReadDoc, ROOT};

use crate::writer::ChangeMeta;
use crate::{first_change, DocId, Store, StoreError};

/// A document with its first change, ready for
/// [`crate::WriteTxn::insert_prepared`].
pub struct PreparedDoc {
    pub(crate) id: DocId,
    pub(crate) kind: String,
    /// The document, when it was built by a transaction (the writer's
    /// `create` projects it). A document fresh from a transaction holds
    /// about 50 KB of working buffers, one loaded from its bytes about 1 KB:
    /// the store does not cache the built one, and loads the document when
    /// it is edited.
    pub(crate) doc: Option<Automerge>,
    /// The first and only change. Its bytes are both the feed entry and
    /// the `docs` row: a document of one change loads from them whole.
    pub(crate) change: Change,
}

impl PreparedDoc {
    pub(crate) fn build<E>(
        actor: ActorId,
        kind: &str,
        meta: &ChangeMeta,
        build: impl FnOnce(&mut Transaction<'_>) -> Result<(), E>,
    ) -> Result<PreparedDoc, E>
    where
        E: From<StoreError>,
    {
        let mut doc = Automerge::new().with_actor(actor);
        let mut tx = doc.transaction();
        tx.put(ROOT, "kind", kind).map_err(StoreError::from)?;
        if let Err(e) = build(&mut tx) {
            tx.rollback();
            return Err(e);
        }
        let (hash, _) = tx.commit_with(meta.options());
        Ok(PreparedDoc::committed(doc, hash, kind)?)
    }

    /// A document whose first change puts `root` (plus `kind`) at its root,
    /// encoded without building the document (see [`crate::first_change`]).
    pub(crate) fn from_root(
        actor: &ActorId,
        kind: &str,
        meta: &ChangeMeta,
        root: &HashMap<String, hydrate::Value>,
    ) -> PreparedDoc {
        PreparedDoc {
            id: DocId::new(),
            kind: kind.to_owned(),
            doc: None,
            change: first_change::encode(actor, meta, kind, root),
        }
    }

    fn committed(
        doc: Automerge,
        hash: Option<ChangeHash>,
        kind: &str,
    ) -> Result<PreparedDoc, StoreError> {
        let id = DocId::new();
        // The `kind` put guarantees a change.
        let change = committed_change(&doc, hash, &id)?;
        Ok(PreparedDoc {
            id,
            kind: kind.to_owned(),
            doc: Some(doc),
            change,
        })
    }

    pub fn id(&self) -> DocId {
        self.id
    }

    /// The document's one change: its heads once stored.
    pub fn hash(&self) -> ChangeHash {
        self.change.hash()
    }
}

impl Store {
    /// A new document of `kind` whose root holds `root`, made on the
    /// calling thread; store it with [`crate::WriteTxn::insert_prepared`].
    /// Only its change is encoded: the writer stores those bytes, and the
    /// caller knows the record from `root` (a projection renders its rows
    /// from there), so the document itself is never built. The ops are the
    /// ones Automerge's batch insertion would make, where a `put` per key
    /// (as [`crate::WriteTxn::create`] makes them) splices the op set each
    /// time.
    pub fn prepare_root(
        &self,
        kind: &str,
        meta: &ChangeMeta,
        root: &HashMap<String, hydrate::Value>,
    ) -> PreparedDoc {
        PreparedDoc::from_root(&self.identity().actor(), kind, meta, root)
    }
}

/// The change a commit just made.
pub(crate) fn committed_change(
    doc: &Automerge,
    hash: Option<ChangeHash>,
    id: &DocId,
) -> Result<Change, StoreError> {
    hash.and_then(|h| doc.get_change_by_hash(&h))
        .ok_or_else(|| StoreError::NoSuchDoc(id.to_string()))
}
