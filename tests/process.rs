//! The node's process itself: on Linux with glibc it caps the allocator's
//! arenas by starting itself again once, and the process that answers is
//! still the one that was started, and its log is plain text off a
//! terminal.

mod common;

use common::TestNode;

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[tokio::test]
async fn the_serving_process_runs_with_two_allocator_arenas_per_core() {
    let node = TestNode::start().await;
    let pid = node.pid().expect("the node runs");
    // The process the harness started answers, after its restart.
    node.get("/api/v1/auth/me")
        .await
        .expect_status(200, "the node answers");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("the node's environment");
    let arenas = environ
        .split(|b| *b == 0)
        .find_map(|var| var.strip_prefix(b"MALLOC_ARENA_MAX="))
        .map(|v| String::from_utf8_lossy(v).into_owned());
    // A value the node inherits is left alone.
    let expected = std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        (2 * cores).to_string()
    });
    assert_eq!(arenas, Some(expected));
}

/// A log that goes to a file (here the harness's, as under a service
/// manager) is plain text, without a terminal's colour codes.
#[tokio::test]
async fn a_log_written_to_a_file_has_no_colour_codes() {
    let node = TestNode::start().await;
    node.get("/api/v1/auth/me")
        .await
        .expect_status(200, "the node answers");
    let log = node.log_tail();
    assert!(log.contains("INFO"), "the node logged nothing: {log:?}");
    assert!(!log.contains('\u{1b}'), "colour codes in the log: {log:?}");
}
