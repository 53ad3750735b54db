//! Regression tests for the fuzz targets in `fuzz/`: every input a target
//! crashed on, and a handful of the most complex inputs the fuzzer made,
//! replayed through the same property checks the targets run.
//!
//! The checks live in `fuzz/src/lib.rs`, included here by path, so a test
//! checks exactly what the fuzzer checked and needs no nightly toolchain.
//! Crash inputs are written out below, minimised, in a test named after the
//! defect they pin (a long one as found sits in `tests/data/fuzz/crashes/`).
//! The generated inputs worth keeping (archives, caches, documents) are
//! files under `tests/data/fuzz/<target>/`, all of which are replayed; to
//! keep a new crash quickly, copy it from `fuzz/artifacts/<target>/` there.

#[path = "../fuzz/src/lib.rs"]
mod fuzz_checks;

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use fuzz_checks::{
    check_import, check_index_json, check_manifest, check_platform, check_reference,
};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Runs `check` on every input, and fails naming each input that failed
/// and why, rather than stopping at the first.
fn check_all<I: AsRef<[u8]>>(check: fn(&[u8]), inputs: impl IntoIterator<Item = (String, I)>) {
    let mut failures = Vec::new();
    for (name, input) in inputs {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| check(input.as_ref())));
        if let Err(payload) = outcome {
            let message = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            failures.push(format!("{name}: {message}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} inputs fail:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Checks each string input; its name is the string itself.
fn check_strings(check: fn(&[u8]), inputs: &[&str]) {
    check_all(
        check,
        inputs.iter().map(|s| (format!("`{s}`"), s.as_bytes())),
    );
}

/// Replays every file under `tests/data/fuzz/<target>/`.
fn replay_saved(target: &str, check: fn(&[u8])) -> TestResult {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz")
        .join(target);
    let mut inputs = Vec::new();
    for entry in fs::read_dir(&dir)? {
        let path = entry?.path();
        let name = format!(
            "tests/data/fuzz/{target}/{}",
            path.file_name().unwrap_or_default().display()
        );
        inputs.push((name, fs::read(&path)?));
    }
    inputs.sort();
    assert!(!inputs.is_empty(), "no saved inputs in `{}`", dir.display());
    check_all(check, inputs);
    Ok(())
}

#[test]
fn replays_saved_reference_inputs() -> TestResult {
    replay_saved("reference", check_reference)
}

#[test]
fn replays_saved_platform_inputs() -> TestResult {
    replay_saved("platform", check_platform)
}

#[test]
fn replays_saved_manifest_inputs() -> TestResult {
    replay_saved("manifest", check_manifest)
}

#[test]
fn replays_saved_index_json_inputs() -> TestResult {
    replay_saved("index_json", check_index_json)
}

#[test]
fn replays_saved_import_inputs() -> TestResult {
    replay_saved("import", check_import)
}

/// A Docker Hub repository whose first path component looks like a host
/// (`docker.io/localhost/a`) must not be shortened to a familiar form that
/// names that host's registry: `docker export` writes the familiar form
/// into `RepoTags`.
#[test]
fn familiar_form_of_hub_repository_named_like_a_host_names_the_same_image() {
    check_strings(
        check_reference,
        &[
            "docker.io/a.b/c",
            "docker.io/localhost/a",
            "index.docker.io/a.b/c:1",
            // As the fuzzer found them.
            "docker.io/ocker.io/foo",
            "docker.io/fodocker.io/fooo",
        ],
    );
}

/// `.` and `..` pass the component grammar, but printing cleans them away
/// like path elements, so the printed platform is another one, or none.
#[test]
fn platform_with_dot_components_prints_as_a_specifier_of_itself() {
    check_strings(
        check_platform,
        &[
            "l/.",
            "l/..",
            "linux/amd64/.",
            "linux/arm/..",
            "l/./v7",
            "3/9mcaos/.",
        ],
    );
}

/// An OS version or feature may be percent-encoded to any UTF-8; its
/// `format_all` form must encode it again so that it parses back.
#[test]
fn platform_options_outside_the_grammar_survive_format_all() {
    check_strings(
        check_platform,
        &[
            "a(%24)/b",
            "linux(%20)/amd64",
            "linux(+%C3%A9)/amd64",
            "windows(10.0.1776d.24+win32k+a%28b%24)/amd64/v1",
        ],
    );
}

/// Fields lkcache does not interpret are kept as they were, numbers
/// included: serde_json's default float parser can be off by one unit in
/// the last place, so `9.9999e119` reads as `9.999900000000001e119` and
/// changes each time a document is written back.
#[test]
fn unknown_numeric_fields_survive_a_round_trip() {
    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    // The first byte picks the declared media type: 1 an OCI index, 2 an
    // OCI manifest (`DECLARED_MEDIA_TYPES`).
    let index = |doc: String| [&[1u8][..], doc.as_bytes()].concat();
    let manifest = |doc: String| [&[2u8][..], doc.as_bytes()].concat();
    let descriptor =
        |extra: &str| format!(r#"{{"mediaType":"a/b","digest":"{EMPTY}","size":0,"x":{extra}}}"#);
    check_all(
        check_manifest,
        [
            (
                "index field",
                index(r#"{"schemaVersion":2,"manifests":[],"x":9.9999e119}"#.to_string()),
            ),
            (
                "index entry field",
                index(format!(
                    r#"{{"schemaVersion":2,"manifests":[{}]}}"#,
                    descriptor("9.9999e119")
                )),
            ),
            (
                "config field",
                manifest(format!(
                    r#"{{"schemaVersion":2,"config":{}}}"#,
                    descriptor("[3e-6,9.9999e119]")
                )),
            ),
            (
                "as the fuzzer found it",
                include_bytes!("data/fuzz/crashes/manifest-float-in-unknown-field").to_vec(),
            ),
        ]
        .map(|(name, input)| (name.to_string(), input)),
    );
}

#[test]
fn empty_and_malformed_inputs_are_refused_without_panicking() {
    let inputs: [&[u8]; 6] = [b"", b"\xff", b"{", b"\0\0\0\0", b"[]", b"null"];
    for check in [
        check_reference,
        check_platform,
        check_manifest,
        check_index_json,
        check_import,
    ] {
        check_all(check, inputs.iter().map(|i| (format!("{i:?}"), *i)));
    }
}
