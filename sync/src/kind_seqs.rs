//! The feed position of the last committed change to each kind of
//! document. A cache of something derived from one kind (the node's checked
//! sessions, derived from user records) stays valid while only other kinds
//! change; keyed on the whole feed, it would be emptied by every write.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub(crate) struct KindSeqs {
    by_kind: Mutex<HashMap<String, i64>>,
}

impl KindSeqs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        // Each entry is written whole: a panic leaves no half-updated map.
        self.by_kind
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The feed seq after the last commit that changed a document of
    /// `kind` since the store opened; 0 when none has.
    pub(crate) fn get(&self, kind: &str) -> i64 {
        self.lock().get(kind).copied().unwrap_or(0)
    }

    /// Called after a commit (never before: a reader that sees the new
    /// value must also see the committed data) with the kinds it changed
    /// and the feed's seq after it.
    pub(crate) fn committed(&self, kinds: &[String], seq: i64) {
        let mut by_kind = self.lock();
        for kind in kinds {
            match by_kind.get_mut(kind.as_str()) {
                Some(known) => *known = seq,
                None => {
                    by_kind.insert(kind.clone(), seq);
                }
            }
        }
    }
}
