//! New documents made outside the writer. Building a document, saving it
//! and encoding its first change is most of the cost of a create; doing it
//! on the caller's thread lets creates run in parallel, while the writer
//! only stores the result.

use automerge::transaction::{Transactable, Transaction};
use std::collections::HashMap;

use automerge::{hydrate, ActorId, Automerge, Change, ChangeHash, ReadDoc, ROOT};

use crate::projector::DocRef;
use crate::writer::ChangeMeta;
use crate::{DocId, Store, StoreError};

/// A document with its first change, ready for
/// [`crate::WriteTxn::insert_prepared`].
pub struct PreparedDoc {
    pub(crate) id: DocId,
    pub(crate) kind: String,
    /// The built document, until [`PreparedDoc::release_doc`]. A document
    /// fresh from a transaction holds about 50 KB of working buffers, one
    /// loaded from its bytes about 1 KB: the store keeps neither the built
    /// one nor a cached copy, and loads the document when it is edited.
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

    /// A document whose first change puts `root` (plus `kind`) at its root
    /// in one batch: much cheaper than a `put` per key (see
    /// [`Store::prepare_root`]).
    pub(crate) fn from_root(
        actor: ActorId,
        kind: &str,
        meta: &ChangeMeta,
        mut root: HashMap<String, hydrate::Value>,
    ) -> Result<PreparedDoc, StoreError> {
        root.insert("kind".to_owned(), kind.into());
        let mut doc = Automerge::new().with_actor(actor);
        let mut tx = doc.transaction();
        // Only ever on an empty document: the batch appends its ops after
        // whatever the op set holds, so keys put earlier would be out of
        // order.
        tx.init_root_from_hydrate(&root.into())?;
        let (hash, _) = tx.commit_with(meta.options());
        PreparedDoc::committed(doc, hash, kind)
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

    /// The document, e.g. to render its rows before it is stored; `None`
    /// once released.
    pub fn doc_ref(&self) -> Option<DocRef<'_>> {
        self.doc.as_ref().map(|doc| DocRef {
            id: self.id,
            kind: &self.kind,
            doc,
        })
    }

    /// Drops the built document once its rows are rendered: what waits for
    /// the writer (an import's thousands of rows) is then only bytes.
    pub fn release_doc(&mut self) {
        self.doc = None;
    }
}

impl Store {
    /// Builds a new document of `kind` whose root holds `root`, on the
    /// calling thread; store it with [`crate::WriteTxn::insert_prepared`].
    /// Automerge inserts the whole tree in one batch, where a `put` per key
    /// (as [`crate::WriteTxn::create`] makes them) splices the op set each
    /// time.
    pub fn prepare_root(
        &self,
        kind: &str,
        meta: &ChangeMeta,
        root: HashMap<String, hydrate::Value>,
    ) -> Result<PreparedDoc, StoreError> {
        PreparedDoc::from_root(self.identity().actor(), kind, meta, root)
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
