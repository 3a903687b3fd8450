//! Sessions this process has checked recently, so that a request does not
//! read the session row and the user's record again (two database reads
//! halved GET throughput). An entry is valid only while no user record has
//! changed since it was checked (the store's feed position for the users
//! kind): a user deactivated here or received from another office empties
//! it in effect, so access still ends at the next request, while writes to
//! other records leave it alone. Logouts and deleted sessions, which do not
//! touch the feed, remove their entries themselves.

use std::collections::HashMap;
use std::sync::Mutex;

use super::Principal;

/// Entries kept at most; beyond, the map starts over (a burst of distinct
/// sessions is rare: each is a logged-in user).
const CAPACITY: usize = 10_000;

struct Known {
    principal: Principal,
    expires_at_ms: i64,
    /// The users kind's feed position when the session was checked.
    seq: i64,
}

#[derive(Default)]
pub struct KnownSessions {
    by_digest: Mutex<HashMap<Vec<u8>, Known>>,
}

impl KnownSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Known>> {
        // The map holds no invariant a panic could break.
        self.by_digest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The principal of `digest` if checked at users position `seq` and not
    /// expired at `now_ms`.
    pub fn get(&self, digest: &[u8], seq: i64, now_ms: i64) -> Option<Principal> {
        self.lock()
            .get(digest)
            .filter(|k| k.seq == seq && k.expires_at_ms > now_ms)
            .map(|k| k.principal.clone())
    }

    pub fn remember(&self, digest: Vec<u8>, principal: Principal, expires_at_ms: i64, seq: i64) {
        let mut map = self.lock();
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(
            digest,
            Known {
                principal,
                expires_at_ms,
                seq,
            },
        );
    }

    pub fn forget(&self, digest: &[u8]) {
        self.lock().remove(digest);
    }

    pub fn forget_all(&self) {
        self.lock().clear();
    }
}
