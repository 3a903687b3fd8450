//! Fuzz target: a CSV import file, as arbitrary bytes, through the row
//! checks of `POST /api/v1/import/{collection}` for every built-in kind,
//! with columns mapped by name. A bad file must be refused with an error,
//! never a panic. `tests/fuzz_corpus.rs` replays the seeds and regressions
//! the same way.

#![no_main]

use std::sync::LazyLock;

use crm_node::records::csv_io::{parse_rows, ColumnMap};
use crm_schema::{KindDef, Schema};
use libfuzzer_sys::fuzz_target;

static KINDS: LazyLock<Vec<std::sync::Arc<KindDef>>> = LazyLock::new(|| {
    Schema::builtin()
        .expect("the built-in schema is checked by its own tests")
        .kinds()
        .to_vec()
});

fuzz_target!(|bytes: &[u8]| {
    for kind in KINDS.iter() {
        let _ = parse_rows(kind, bytes, &ColumnMap::default());
    }
});
