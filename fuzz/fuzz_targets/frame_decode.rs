//! Fuzz target: `Frame::decode` on arbitrary bytes, a peer's feed page or
//! pushed batch. It must return an error rather than panic or allocate
//! beyond the input, and a frame it accepts must survive a re-encode.
//! `sync/tests/fuzz_corpus.rs` replays the seeds and regressions the same way.

#![no_main]

use crm_sync::frame::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(frame) = Frame::decode(bytes) {
        // Not byte-for-byte: the kinds list may repeat or be unordered on
        // the wire, while encode writes the set sorted.
        assert_eq!(Frame::decode(&frame.encode()), Ok(frame));
    }
});
