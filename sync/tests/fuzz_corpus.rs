//! The frame decoder's fuzz inputs, replayed on stable in `cargo test`: the
//! committed seeds (`fuzz/seeds/frame_decode`) and the minimal inputs of
//! past crashes (`fuzz/regressions/frame_decode`) go through the same check
//! as the `frame_decode` fuzz target, so a fixed crash stays fixed without
//! a fuzzer installed. The ignored test `write_seeds` makes the seeds.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, ROOT};
use crm_sync::frame::{Entry, Frame, FrameType, Sender, MAX_ENTRIES};
use crm_sync::{DocId, Epoch, NodeId};
use uuid::Uuid;

const TARGET: &str = "frame_decode";

fn fuzz_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join(TARGET)
}

/// Every file in the target's seed and regression folders.
fn committed_inputs() -> Vec<(PathBuf, Vec<u8>)> {
    let mut inputs = Vec::new();
    for dir in [fuzz_dir("seeds"), fuzz_dir("regressions")] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("listing a fuzz input folder").path();
            let bytes = fs::read(&path).expect("reading a fuzz input");
            inputs.push((path, bytes));
        }
    }
    inputs.sort();
    inputs
}

/// What `fuzz/fuzz_targets/frame_decode.rs` checks: decoding answers, and
/// an accepted frame decodes equal after a re-encode.
fn check(bytes: &[u8]) {
    if let Ok(frame) = Frame::decode(bytes) {
        assert_eq!(Frame::decode(&frame.encode()), Ok(frame));
    }
}

#[test]
fn committed_inputs_decode_or_fail_cleanly() {
    let inputs = committed_inputs();
    assert!(
        inputs.len() >= 5,
        "the seeds in {} are missing",
        fuzz_dir("seeds").display()
    );
    let panicked: Vec<String> = inputs
        .iter()
        .filter(|(_, bytes)| catch_unwind(AssertUnwindSafe(|| check(bytes))).is_err())
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(panicked.is_empty(), "inputs that panic: {panicked:?}");
}

fn sender() -> Sender {
    Sender {
        node: NodeId(Uuid::from_u128(0x0196_0000_0000_7000_8000_0000_0000_0001)),
        epoch: Epoch(1),
    }
}

fn doc_id(n: u128) -> DocId {
    DocId::from_uuid(Uuid::from_u128(
        0x0196_0000_0000_7000_8000_0000_0000_1000 + n,
    ))
}

/// A real Automerge change and saved document, so that the seeds look like
/// what peers send even though the decoder does not open payloads.
fn payloads() -> (Vec<u8>, Vec<u8>) {
    let mut doc = AutoCommit::new().with_actor(ActorId::from(sender().to_bytes().to_vec()));
    doc.put(ROOT, "name", "Alpha")
        .expect("a fresh document takes a key");
    doc.commit_with(CommitOptions::default().with_time(1_767_225_600_000));
    let change = doc
        .get_last_local_change()
        .expect("a change was just committed")
        .raw_bytes()
        .to_vec();
    (change, doc.save())
}

fn frame(frame_type: FrameType, entries: Vec<Entry>) -> Frame {
    Frame {
        frame_type,
        sender: sender(),
        kinds: ["clients".to_owned(), "contacts".to_owned()].into(),
        through: 42,
        latest: 50,
        entries,
    }
}

fn entry(seq: i64, n: u128, kind: &str, payload: &[u8]) -> Entry {
    Entry {
        seq,
        doc: doc_id(n),
        kind: kind.to_owned(),
        payload: payload.to_vec(),
    }
}

/// Valid frames of both types, then hand-made edge cases around each
/// length check, named by what they exercise.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let (change, saved) = payloads();
    let changes = frame(
        FrameType::Changes,
        vec![
            entry(41, 1, "clients", &change),
            entry(42, 2, "contacts", &change),
        ],
    )
    .encode();
    let snapshots = frame(FrameType::Snapshots, vec![entry(0, 1, "clients", &saved)]).encode();
    let empty = frame(FrameType::Changes, Vec::new()).encode();
    // Offsets into `empty`: the kinds length sits after the fixed header.
    let kinds_at = 4 + 1 + 1 + 20 + 8 + 8;
    let count_at = kinds_at + 2 + "clients,contacts".len();
    let with = |base: &[u8], at: usize, patch: &[u8]| {
        let mut bytes = base.to_vec();
        bytes[at..at + patch.len()].copy_from_slice(patch);
        bytes
    };
    let entry_at = count_at + 4;
    let klen_at = entry_at + 8 + 16;
    let len_at = klen_at + 1 + "clients".len();
    vec![
        ("valid_changes", changes.clone()),
        ("valid_snapshots", snapshots),
        ("valid_empty", empty.clone()),
        ("truncated_header", changes[..kinds_at].to_vec()),
        ("truncated_payload", changes[..changes.len() - 1].to_vec()),
        ("trailing_byte", [changes.as_slice(), &[0]].concat()),
        ("bad_version", with(&empty, 4, &[2])),
        ("bad_type", with(&empty, 5, &[3])),
        // The same length as "clients,contacts", so they patch in place.
        (
            "kinds_unsorted",
            with(&empty, kinds_at + 2, b"contacts,clients"),
        ),
        (
            "kinds_repeated",
            with(&empty, kinds_at + 2, b"clients,,clients"),
        ),
        ("kinds_bad_char", with(&empty, kinds_at + 2, b"Clients")),
        (
            "count_too_large",
            with(&empty, count_at, &(MAX_ENTRIES as u32 + 1).to_be_bytes()),
        ),
        (
            "count_beyond_bytes",
            with(&empty, count_at, &(MAX_ENTRIES as u32).to_be_bytes()),
        ),
        ("kind_empty", with(&changes, klen_at, &[0])),
        ("kind_too_long", with(&changes, klen_at, &[65])),
        ("payload_empty", with(&changes, len_at, &0u32.to_be_bytes())),
        (
            "payload_too_large",
            with(&changes, len_at, &u32::MAX.to_be_bytes()),
        ),
    ]
}

#[test]
#[ignore = "writes fuzz/seeds/frame_decode; run it after the frame layout changes"]
fn write_seeds() {
    let dir = fuzz_dir("seeds");
    fs::create_dir_all(&dir).expect("creating the seed folder");
    for (name, bytes) in seeds() {
        fs::write(dir.join(name), bytes).expect("writing a seed");
    }
}
