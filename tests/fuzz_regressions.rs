//! Regression tests for the fuzz targets in `fuzz/`: every input a target
//! crashed on, and a handful of the most complex inputs the fuzzer made,
//! replayed through the same property checks the targets run.
//!
//! The checks live in `fuzz/src/lib.rs`, included here by path, so a test
//! checks exactly what the fuzzer checked and needs no nightly toolchain.
//! Short inputs are written out below, each test named after the defect it
//! pins; longer ones (archives, caches) are files under
//! `tests/data/fuzz/<target>/`, all of which are replayed. To keep a new
//! crash, copy it from `fuzz/artifacts/<target>/` into that directory.

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
