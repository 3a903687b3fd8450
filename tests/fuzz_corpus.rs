//! The record checks' fuzz inputs, replayed on stable in `cargo test`: the
//! committed seeds (`fuzz/seeds/<target>`) and the minimal inputs of past
//! crashes (`fuzz/regressions/<target>`) of the `record_body` and
//! `csv_import` targets go through the same checks as the targets, so a
//! fixed crash stays fixed without a fuzzer installed. The ignored test
//! `write_seeds` makes the seeds.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use crm_node::records::csv_io::{parse_rows, ColumnMap};
use crm_node::records::input::{check_rules, parse_body, Mode};
use crm_node::records::value::parse_input;
use crm_schema::{KindDef, Schema};
use serde_json::Value as Json;

fn fuzz_dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target)
}

/// Every file in the target's seed and regression folders.
fn committed_inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut inputs = Vec::new();
    for dir in [fuzz_dir("seeds", target), fuzz_dir("regressions", target)] {
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

/// The built-in kinds plus `fuzz/kinds` (one field of each type), as the
/// `record_body` target checks them.
fn kinds() -> Vec<KindDef> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/kinds");
    Schema::with_kinds_dir(&dir)
        .expect("fuzz/kinds holds valid kinds")
        .kinds()
        .iter()
        .map(|k| (**k).clone())
        .collect()
}

/// What `fuzz/fuzz_targets/record_body.rs` checks: both modes answer for
/// every kind, and every accepted value reads back from its JSON.
fn check_body(kinds: &[KindDef], bytes: &[u8]) {
    let Ok(Json::Object(body)) = serde_json::from_slice::<Json>(bytes) else {
        return;
    };
    for kind in kinds {
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
}

/// What `fuzz/fuzz_targets/csv_import.rs` checks: every kind answers.
fn check_csv(kinds: &[KindDef], bytes: &[u8]) {
    for kind in kinds {
        let _ = parse_rows(kind, bytes, &ColumnMap::default());
    }
}

/// The inputs of `target` that panic in `check`, by path.
fn panicking(target: &str, check: impl Fn(&[KindDef], &[u8])) -> Vec<String> {
    let kinds = kinds();
    let inputs = committed_inputs(target);
    assert!(
        inputs.len() >= 5,
        "the seeds in {} are missing",
        fuzz_dir("seeds", target).display()
    );
    inputs
        .iter()
        .filter(|(_, bytes)| catch_unwind(AssertUnwindSafe(|| check(&kinds, bytes))).is_err())
        .map(|(path, _)| path.display().to_string())
        .collect()
}

#[test]
fn committed_record_bodies_pass_or_fail_cleanly() {
    let panicked = panicking("record_body", check_body);
    assert!(panicked.is_empty(), "inputs that panic: {panicked:?}");
}

#[test]
fn committed_csv_files_pass_or_fail_cleanly() {
    let panicked = panicking("csv_import", check_csv);
    assert!(panicked.is_empty(), "inputs that panic: {panicked:?}");
}

/// Valid bodies of each kind, then edge cases for each field type.
fn body_seeds() -> Vec<(&'static str, String)> {
    let client = r#"{"name": "ООО Ромашка", "full_name": "Общество с ограниченной ответственностью «Ромашка»", "client_type": "company", "tax_id": "7707083893", "phone": "+7 (912) 345-67-89", "email": "info@romashka.ru", "city": "Москва", "stage": "regular", "importance": "A", "tags": ["vip", "опт"], "notes": "line one\nline two"}"#;
    let person = r#"{"name": "Иванов И. И.", "client_type": "person", "tax_id": "500100732259", "phone": "8 912 345 67 89"}"#;
    let contact = r#"{"client_id": "01960000-0000-7000-8000-000000001001", "first_name": "Ivan", "last_name": "Petrov", "middle_name": "Sergeevich", "position": "CEO", "phone": "+44 20 7946 0958", "email": "ivan.petrov+crm@example.com", "birthday": "1980-02-29", "preferred_channel": "messenger"}"#;
    [
        ("valid_client", client),
        ("valid_person", person),
        ("valid_contact", contact),
        (
            "valid_every_type",
            r#"{"s": "x", "t": "y", "i": 5, "m": {"minor": 150, "currency": "RUB"}, "b": true, "d": "2026-02-28", "dt": "2026-01-31T09:30:00.123456+03:00", "e": "b", "r": "01960000-0000-7000-8000-000000001001", "set": ["a", "b"], "email": "a@example.ru", "phone": "+7 912 345-67-89"}"#,
        ),
        (
            "numbers_edge",
            r#"{"i": -9223372036854775808, "m": {"minor": 9223372036854775807, "currency": "RUB"}}"#,
        ),
        ("patch_clears", r#"{"phone": null, "tags": [], "notes": "  "}"#),
        (
            "inn_type_mismatch",
            r#"{"name": "X", "client_type": "person", "tax_id": "7707083893"}"#,
        ),
        ("inn_bad_digits", r#"{"name": "X", "tax_id": "77070838a3"}"#),
        (
            "read_only_and_unknown",
            r#"{"id": "x", "version": "y", "nope": 1}"#,
        ),
        (
            "wrong_types",
            r#"{"name": 5, "tags": "a", "client_type": ["company"], "birthday": 19800229}"#,
        ),
        (
            "dates_edge",
            r#"{"last_name": "X", "client_id": "01960000-0000-7000-8000-000000001001", "birthday": "+12345-01-01"}"#,
        ),
        (
            "control_chars",
            r#"{"name": "a\u0000b", "notes": "tab\there\u0007"}"#,
        ),
        (
            "phones_odd",
            r#"{"name": "X", "phone": "+0000000000000000000000000000000000000000000000000000000000"}"#,
        ),
        ("emails_odd", r#"{"name": "X", "email": "\"a b\"@[127.0.0.1]"}"#),
        ("numbers_big", r#"{"name": "X", "nope": 1e999, "n": -9223372036854775809}"#),
        ("not_an_object", r#"["name", "X"]"#),
    ]
    .into_iter()
    .map(|(name, text)| (name, text.to_owned()))
    .chain([
        // One character over `name`'s max_len of 300, in two-byte UTF-8.
        ("too_long", format!(r#"{{"name": "{}"}}"#, "Ж".repeat(301))),
        // Past serde_json's nesting limit.
        (
            "deep",
            format!(r#"{{"name": {}1{}}}"#, "[".repeat(200), "]".repeat(200)),
        ),
    ])
    .collect()
}

/// Valid files of each kind, then edge cases of the CSV and of the cells.
fn csv_seeds() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "valid_clients",
            "name,client_type,tax_id,phone,email,tags,stage\n\
             Alpha,company,7707083893,+7 912 345-67-89,a@example.ru,vip;опт,regular\n\
             \"Beta, Ltd\",person,500100732259,,,,\n",
        ),
        (
            "valid_contacts",
            "client_id,last_name,first_name,birthday\n\
             01960000-0000-7000-8000-000000001001,Petrov,Ivan,1980-02-29\n",
        ),
        ("header_only", "name\n"),
        ("empty", ""),
        ("ragged_rows", "name,city\nAlpha\nBeta,Moscow,extra\n"),
        ("duplicate_columns", "name,NAME\nAlpha,Beta\n"),
        ("unknown_column", "name,junk\nAlpha,x\n"),
        ("quotes_unclosed", "name\n\"Alpha\n"),
        ("crlf_and_bom", "\u{feff}name,city\r\nAlpha,Moscow\r\n"),
    ]
}

#[test]
#[ignore = "writes fuzz/seeds/record_body and csv_import; run it after the schema changes"]
fn write_seeds() {
    let bodies = body_seeds();
    let csvs = csv_seeds()
        .into_iter()
        .map(|(name, text)| (name, text.to_owned()));
    for (target, seeds) in [
        ("record_body", bodies),
        ("csv_import", csvs.collect::<Vec<_>>()),
    ] {
        let dir = fuzz_dir("seeds", target);
        fs::create_dir_all(&dir).expect("creating the seed folder");
        for (name, text) in seeds {
            fs::write(dir.join(name), text).expect("writing a seed");
        }
    }
}
