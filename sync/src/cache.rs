//! The writer's bounded cache of loaded documents. A loaded document costs
//! tens of kilobytes, so only recently written ones stay in memory.

use std::num::NonZeroUsize;

use automerge::Automerge;
use lru::LruCache;

use crate::DocId;

pub(crate) struct LoadedDoc {
    pub rid: i64,
    pub kind: String,
    pub doc: Automerge,
    /// Changes appended to the stored row since its snapshot.
    pub tail_changes: i64,
}

pub(crate) struct DocCache {
    docs: LruCache<DocId, LoadedDoc>,
}

impl DocCache {
    pub fn new(capacity: usize) -> DocCache {
        DocCache {
            docs: LruCache::new(NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN)),
        }
    }

    pub fn get_mut(&mut self, id: &DocId) -> Option<&mut LoadedDoc> {
        self.docs.get_mut(id)
    }

    pub fn insert(&mut self, id: DocId, doc: LoadedDoc) -> &mut LoadedDoc {
        self.docs.get_or_insert_mut(id, || doc)
    }

    /// Forgets a document whose cached state may be ahead of the database
    /// (its transaction rolled back); the next use reloads it.
    pub fn evict(&mut self, id: &DocId) {
        self.docs.pop(id);
    }
}
