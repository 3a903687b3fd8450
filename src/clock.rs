//! The node's wall clock: the time written into changes (history, created
//! and updated times) and into its own bookkeeping (peer outcomes, tokens).
//! Merges never depend on it (Automerge orders changes
//! causally), which the clock-skew tests check by shifting it with the
//! `clock_offset_secs` setting.

use std::sync::atomic::{AtomicI64, Ordering};

static OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// Shifts the clock; set once at start-up from the configuration.
pub fn set_offset_secs(secs: i64) {
    OFFSET_MS.store(secs.saturating_mul(1000), Ordering::Relaxed);
}

/// Now, in milliseconds since the Unix epoch, as this node sees it.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis() + OFFSET_MS.load(Ordering::Relaxed)
}
