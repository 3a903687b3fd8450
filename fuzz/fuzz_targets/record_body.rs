//! Fuzz target: a request body, as arbitrary bytes, through the record
//! checks of `POST` and `PATCH` for every built-in kind and for
//! `fuzz/kinds/every_type.toml` (one field of each type): the JSON parse the
//! API does, `parse_body` in both modes, then the cross-field rules. Bad
//! input must come back as field errors, never a panic; and every value
//! accepted must read back from its JSON form unchanged, because that JSON
//! is what clients receive and send again. `tests/fuzz_corpus.rs` replays
//! the seeds and regressions the same way.

#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use crm_node::records::input::{check_rules, parse_body, Mode};
use crm_node::records::value::parse_input;
use crm_schema::{KindDef, Schema};
use libfuzzer_sys::fuzz_target;
use serde_json::Value as Json;

static KINDS: LazyLock<Vec<std::sync::Arc<KindDef>>> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("kinds");
    Schema::with_kinds_dir(&dir)
        .expect("fuzz/kinds holds valid kinds")
        .kinds()
        .to_vec()
});

fuzz_target!(|bytes: &[u8]| {
    // The same parse as `api::body::json_object`.
    let Ok(Json::Object(body)) = serde_json::from_slice::<Json>(bytes) else {
        return;
    };
    for kind in KINDS.iter() {
        for mode in [Mode::Create, Mode::Patch] {
            let Ok(assignments) = parse_body(kind, &body, mode) else {
                continue;
            };
            let value_of = |name: &str| {
                assignments
                    .iter()
                    .find(|(i, _)| kind.fields[*i].name == name)
                    .and_then(|(_, v)| v.as_ref())
            };
            let _ = check_rules(kind, value_of);
            for (index, value) in &assignments {
                let Some(value) = value else { continue };
                let field = &kind.fields[*index];
                assert_eq!(
                    parse_input(field, &value.to_json()).as_ref(),
                    Ok(&Some(value.clone())),
                    "{} of {} does not read back from its JSON",
                    field.name,
                    kind.collection
                );
            }
        }
    }
});
