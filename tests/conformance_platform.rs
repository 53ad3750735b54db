//! Conformance of `lkcache::platform` with containerd/platforms, checked against
//! `tests/data/conformance/platform-vectors.json` (read its `conventions` block
//! for the meaning of each field and placeholder).
//!
//! Every group is run in full except for these, which are skipped on purpose:
//! - `matchers`, 11 entries: TestMatchComparerMatch_WCOW/0-6,
//!   TestMatchComparerMatch_LCOW/0 and /2, TestDefaultMatchComparer/0-1. They
//!   need `{host_default_spec}` or `{host_os_version}`, which only a Windows
//!   host's build number defines. The other Windows os.version entries
//!   (ABICheckWCOW, FallbackOnOSVersion, LCOW/1, /3 and /4) are run.
//! - `ordering`, 4 entries: TestWindowsMatchComparerLess/0 and
//!   Test_PlatformOrder/0-2 test `windowsMatchComparer`, the comparer
//!   `NewMatcher` returns only on a Windows host. lkcache's ordering is
//!   `Only(p).Less`, which does not rank by os.version.
//! - `internal`, 10 entries: TestGetCPUVariantFromArch tests an unexported
//!   cpuinfo helper. The unit test `machine_names_map_like_containerd_cpuinfo`
//!   in `src/platform/host.rs` runs these vectors. The other 12 `internal` entries
//!   (Test_PlatformCompat) are run here through `Platform::is_exact`.
//! - `host_properties`, 5 entries: statements about Go's host detection, not
//!   data to compare.
//!
//! The 3 `parse` wildcard cases that upstream skips are checked as rejected,
//! which is what containerd does today.
//!
//! containerd's `Format` is `FormatAll` without the OS options, so it is
//! checked as `format_all` of the platform with `os.version` and `os.features`
//! cleared. In TestCompareOSFeatures, the `Ordered` and `Any` comparers are
//! checked with `Matcher::Strict`: with a single platform they order exactly
//! as `OnlyStrict` does.

use std::cmp::Ordering;

use lkcache::Platform;
use lkcache::platform::{Matcher, PlatformError};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/conformance/platform-vectors.json"
    );
    let text = std::fs::read_to_string(path).expect("read platform vectors");
    serde_json::from_str(&text).expect("parse platform vectors")
}

fn group<'a>(vectors: &'a Value, name: &str) -> &'a [Value] {
    vectors[name]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("no `{name}` group"))
}

/// Collects every mismatch of a group so one run reports them all.
#[derive(Default)]
struct Mismatches(Vec<String>);

impl Mismatches {
    fn check(&mut self, ok: bool, describe: impl FnOnce() -> String) {
        if !ok {
            self.0.push(describe());
        }
    }

    fn finish(self, group: &str) {
        if !self.0.is_empty() {
            panic!(
                "{} `{group}` mismatches:\n{}",
                self.0.len(),
                self.0.join("\n")
            );
        }
    }
}

/// The values of the `{host_*}` placeholders, from `Platform::host()`.
struct Host {
    os: String,
    arch: String,
    /// `{host_variant}`: empty unless a 32-bit ARM host is not v7.
    variant: String,
    normalized: Platform,
}

fn host() -> Host {
    let normalized = Platform::host();
    let variant = match normalized.variant.as_deref() {
        Some(v) if normalized.architecture == "arm" && v != "v7" => v.to_string(),
        _ => String::new(),
    };
    Host {
        os: normalized.os.clone(),
        arch: normalized.architecture.clone(),
        variant,
        normalized,
    }
}

fn needs_windows_host(entry: &Value) -> bool {
    let text = entry.to_string();
    text.contains("{host_default_spec}") || text.contains("{host_os_version}")
}

/// Replaces placeholders and evaluates `{"path_join": [...]}` as Go's
/// `path.Join` of clean parts: the non-empty parts joined with `/`.
fn resolve(value: &Value, host: &Host) -> Value {
    match value {
        Value::String(s) => Value::String(
            s.replace("{host_os}", &host.os)
                .replace("{host_arch}", &host.arch)
                .replace("{host_variant}", &host.variant),
        ),
        Value::Object(map) if map.contains_key("path_join") => {
            let parts: Vec<String> = map["path_join"]
                .as_array()
                .expect("path_join parts")
                .iter()
                .map(|part| {
                    resolve(part, host)
                        .as_str()
                        .expect("path_join part")
                        .to_string()
                })
                .collect();
            Value::String(join_non_empty(parts.iter().map(String::as_str)))
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), resolve(v, host)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve(v, host)).collect()),
        other => other.clone(),
    }
}

fn join_non_empty<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// Reads a platform: a specifier string goes through `Parse`, an object
/// through the OCI serde shape.
fn platform(value: &Value) -> Result<Platform, String> {
    match value {
        Value::String(spec) => Platform::parse(spec).map_err(|e| e.to_string()),
        object => serde_json::from_value(object.clone()).map_err(|e| e.to_string()),
    }
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("expected a string, got {value}"))
}

/// containerd's `Format`: `FormatAll` without os.version and os.features.
fn format(platform: &Platform) -> String {
    Platform {
        os_version: None,
        os_features: Vec::new(),
        ..platform.clone()
    }
    .format_all()
}

#[test]
fn conventions_and_counts_are_the_ones_this_test_reads() {
    let vectors = vectors();
    let conventions = &vectors["conventions"];
    for key in [
        "platform objects",
        "placeholders",
        "path_join",
        "matchers",
        "ordering",
    ] {
        assert!(conventions[key].is_string(), "conventions lack `{key}`");
    }
    assert_eq!(
        vectors["source"]["computed_on_host"]["default"],
        "linux/amd64"
    );
    let counts = vectors["counts"].as_object().expect("counts");
    for (name, count) in counts
        .iter()
        .filter(|(name, _)| *name != "matcher_assertions")
    {
        assert_eq!(
            group(&vectors, name).len() as u64,
            count.as_u64().unwrap(),
            "{name}"
        );
    }
    let assertions: usize = group(&vectors, "matchers")
        .iter()
        .map(|m| {
            let list = |key: &str| m[key].as_array().map_or(0, Vec::len);
            list("match") + list("no_match") + usize::from(m.get("candidate").is_some())
        })
        .sum();
    assert_eq!(
        assertions as u64,
        counts["matcher_assertions"].as_u64().unwrap()
    );
}

#[test]
fn parse_vectors() {
    let (vectors, host) = (vectors(), host());
    let mut mismatches = Mismatches::default();
    for entry in group(&vectors, "parse") {
        let (id, input) = (&entry["id"], text(&entry["input"]));
        let parsed = Platform::parse(input);
        if entry["skipped_upstream"] == true {
            let rejected = matches!(parsed, Err(PlatformError::Wildcard { .. }));
            mismatches.check(rejected, || {
                format!("{id}: `{input}` not rejected: {parsed:?}")
            });
            continue;
        }
        if entry["valid"] == false {
            mismatches.check(parsed.is_err(), || {
                format!("{id}: `{input}` accepted: {parsed:?}")
            });
            continue;
        }
        match parsed {
            Ok(parsed) => check_parsed(entry, &parsed, &host, &mut mismatches),
            Err(e) => mismatches.check(false, || format!("{id}: `{input}` rejected: {e}")),
        }
    }
    mismatches.finish("parse");
}

fn check_parsed(entry: &Value, parsed: &Platform, host: &Host, mismatches: &mut Mismatches) {
    let id = &entry["id"];
    let expected = platform(&resolve(&entry["expected"], host)).expect("expected platform");
    mismatches.check(*parsed == expected, || {
        format!("{id}: parsed {parsed:?} != {expected:?}")
    });
    let others = entry["matcher_matches"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    for other in std::iter::once(&entry["expected"]).chain(others) {
        let other = platform(&resolve(other, host)).expect("matcher_matches platform");
        let matched = parsed.is_exact(&other);
        mismatches.check(matched, || {
            format!("{id}: is_exact({parsed:?}, {other:?}) is false")
        });
    }
    let format_fn = match text(&entry["format_function"]) {
        "Format" => format,
        "FormatAll" => Platform::format_all,
        other => panic!("{id}: unknown format_function {other}"),
    };
    let formatted = resolve(&entry["formatted"], host);
    let got = format_fn(parsed);
    mismatches.check(got == text(&formatted), || {
        format!("{id}: formatted {got} != {formatted}")
    });
    let again = Platform::parse(&got).map(|p| format_fn(&p));
    mismatches.check(again.as_ref() == Ok(&got), || {
        format!("{id}: `{got}` re-formats {again:?}")
    });
}

#[test]
fn format_vectors() {
    let vectors = vectors();
    let mut mismatches = Mismatches::default();
    for entry in group(&vectors, "format") {
        let id = &entry["id"];
        assert_eq!(entry["function"], "FormatAll", "{id}");
        let platform = platform(&entry["platform"]).expect("format platform");
        let (got, expected) = (platform.format_all(), text(&entry["expected"]));
        mismatches.check(got == expected, || {
            format!("{id}: format_all {got} != {expected}")
        });
        if entry.get("roundtrip").is_none() {
            continue;
        }
        let back = Platform::parse(expected);
        let same = back.as_ref().is_ok_and(|back| {
            back.os_version == platform.os_version && back.os_features == platform.os_features
        });
        mismatches.check(same, || {
            format!("{id}: `{expected}` parses back as {back:?}")
        });
    }
    mismatches.finish("format");
}

fn run_matcher(kind: &str, wanted: &Platform, candidate: &Platform) -> bool {
    match kind {
        "Only" => wanted.is_compatible(candidate),
        "OnlyStrict" => Matcher::Strict.matches(wanted, candidate),
        "OnlyOS" => Matcher::SameOs.matches(wanted, candidate),
        "NewMatcher" => wanted.is_exact(candidate),
        other => panic!("unknown matcher {other}"),
    }
}

#[test]
fn matcher_vectors() {
    let (vectors, host) = (vectors(), host());
    let mut mismatches = Mismatches::default();
    let (mut entries, mut assertions) = (0, 0);
    for entry in group(&vectors, "matchers")
        .iter()
        .filter(|e| !needs_windows_host(e))
    {
        let (id, kind) = (&entry["id"], text(&entry["matcher"]));
        let wanted = platform(&resolve(&entry["platform"], &host)).expect("platform");
        let mut expectations: Vec<(&Value, bool)> = Vec::new();
        for (key, want) in [("match", true), ("no_match", false)] {
            let list = entry[key].as_array().map_or(&[][..], Vec::as_slice);
            expectations.extend(list.iter().map(|candidate| (candidate, want)));
        }
        if let Some(candidate) = entry.get("candidate") {
            expectations.push((candidate, entry["expected"] == true));
        }
        for (candidate, want) in expectations {
            let candidate = platform(&resolve(candidate, &host)).expect("candidate");
            let got = run_matcher(kind, &wanted, &candidate);
            mismatches.check(got == want, || {
                format!("{id}: {kind}({wanted:?}) on {candidate:?} gave {got}, want {want}")
            });
            assertions += 1;
        }
        entries += 1;
    }
    mismatches.finish("matchers");
    assert_eq!(
        (entries, assertions),
        (42, 311),
        "entries and assertions run"
    );
}

fn comparer(name: &str) -> Option<fn(&Platform, &Platform, &Platform) -> Ordering> {
    match name {
        "Only" => Some(Platform::preference),
        "OnlyStrict" | "Ordered" | "Any" => Some(|w, a, b| Matcher::Strict.compare(w, a, b)),
        "OnlyOS" => Some(|w, a, b| Matcher::SameOs.compare(w, a, b)),
        _ => None,
    }
}

#[test]
fn ordering_vectors() {
    let vectors = vectors();
    let mut mismatches = Mismatches::default();
    let mut sorts = 0;
    for entry in group(&vectors, "ordering") {
        let id = &entry["id"];
        let comparers = entry["comparers"].as_array().expect("comparers");
        if comparers
            .iter()
            .any(|c| text(c) == "windowsMatchComparer(NewMatcher)")
        {
            continue;
        }
        let wanted = platform(&entry["platform"]).expect("platform");
        let input: Vec<Platform> = entry["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| platform(p).unwrap())
            .collect();
        let expected: Vec<&str> = entry["expected_order"]
            .as_array()
            .unwrap()
            .iter()
            .map(text)
            .collect();
        for name in comparers.iter().map(text) {
            let compare = comparer(name).unwrap_or_else(|| panic!("{id}: unknown comparer {name}"));
            let mut sorted = input.clone();
            sorted.sort_by(|a, b| compare(&wanted, a, b));
            let got: Vec<String> = sorted.iter().map(Platform::format_all).collect();
            mismatches.check(got == expected, || {
                format!("{id} {name}: {got:?} != {expected:?}")
            });
            sorts += 1;
        }
    }
    mismatches.finish("ordering");
    assert_eq!(sorts, 27, "sorts run");
}

#[test]
fn windows_build_compatibility_vectors() {
    let vectors = vectors();
    let mut mismatches = Mismatches::default();
    let windows = |version: &Value| Platform {
        os: "windows".into(),
        architecture: "amd64".into(),
        variant: None,
        os_version: Some(format!(
            "{}.{}.{}",
            version["major"], version["minor"], version["build"]
        )),
        os_features: Vec::new(),
    };
    let cases: Vec<&Value> = group(&vectors, "internal")
        .iter()
        .filter(|e| e["test"] == "Test_PlatformCompat")
        .collect();
    for entry in &cases {
        let (host, container) = (windows(&entry["host"]), windows(&entry["container"]));
        let (got, want) = (host.is_exact(&container), entry["expected"] == true);
        mismatches.check(got == want, || {
            format!("{}: gave {got}, want {want}", entry["id"])
        });
    }
    mismatches.finish("internal Test_PlatformCompat");
    assert_eq!(cases.len(), 12);
}

/// Expected values of one `computed_parse` row, moved from the linux/amd64
/// host they were computed on to this one.
struct Computed {
    platform: Platform,
    format: String,
    format_all: String,
    normalized: Platform,
}

fn computed(row: &Value, vectors: &Value, host: &Host) -> Computed {
    let read = |key: &str| platform(&row[key]).unwrap_or_else(|e| panic!("{key}: {e}"));
    let mut c = Computed {
        platform: read("platform"),
        format: text(&row["format"]).to_string(),
        format_all: text(&row["format_all"]).to_string(),
        normalized: read("normalized"),
    };
    if row["host_dependent"] == true {
        let input = text(&row["input"])
            .split('(')
            .next()
            .unwrap()
            .to_lowercase();
        let named_os = if input == "macos" { "darwin" } else { &input };
        // A lone OS took the host's architecture; a lone architecture its OS.
        let os_given = c.platform.os == named_os;
        rehost(
            &mut c,
            os_given,
            &vectors["source"]["computed_on_host"],
            host,
        );
    }
    c
}

/// Swaps the computing host's architecture (for a lone OS) or OS (for a lone
/// architecture) for this host's.
fn rehost(c: &mut Computed, os_given: bool, computed_on: &Value, host: &Host) {
    let (computed_os, computed_arch) = (text(&computed_on["os"]), text(&computed_on["arch"]));
    for s in [&mut c.format, &mut c.format_all] {
        *s = if os_given {
            let rest = s
                .strip_suffix(&format!("/{computed_arch}"))
                .expect("arch suffix");
            format!(
                "{rest}/{}",
                join_non_empty([host.arch.as_str(), &host.variant])
            )
        } else {
            let rest = s
                .strip_prefix(&format!("{computed_os}/"))
                .expect("os prefix");
            format!("{}/{rest}", host.os)
        };
    }
    if os_given {
        c.platform.architecture = host.arch.clone();
        c.platform.variant = Some(host.variant.clone()).filter(|v| !v.is_empty());
        c.normalized.architecture = host.normalized.architecture.clone();
        c.normalized.variant = host.normalized.variant.clone();
    } else {
        c.platform.os = host.os.clone();
        c.normalized.os = host.os.clone();
    }
}

#[test]
fn computed_parse_vectors() {
    let (vectors, host) = (vectors(), host());
    let mut mismatches = Mismatches::default();
    for row in group(&vectors, "computed_parse") {
        let input = text(&row["input"]);
        if row["valid"] != true {
            let got = Platform::parse(input);
            mismatches.check(got.is_err(), || format!("`{input}` accepted: {got:?}"));
            continue;
        }
        let want = computed(row, &vectors, &host);
        let got = match Platform::parse(input) {
            Ok(got) => got,
            Err(e) => {
                mismatches.check(false, || format!("`{input}` rejected: {e}"));
                continue;
            }
        };
        let checks = [
            (got == want.platform, "parse"),
            (format(&got) == want.format, "format"),
            (got.format_all() == want.format_all, "format_all"),
            (got.normalize() == want.normalized, "normalize"),
            (
                input.parse::<Platform>().as_ref() == Ok(&want.normalized),
                "from_str",
            ),
            (got.to_string() == display(&want.normalized), "display"),
        ];
        for (ok, what) in checks {
            mismatches.check(ok, || format!("`{input}`: {what} differs (parsed {got:?})"));
        }
    }
    mismatches.finish("computed_parse");
}

/// What `Display` should print for a normalised platform: `os/arch[/variant]`.
fn display(normalized: &Platform) -> String {
    let variant = normalized.variant.as_deref().unwrap_or("");
    join_non_empty([normalized.os.as_str(), &normalized.architecture, variant])
}

#[test]
fn computed_normalize_vectors() {
    let (vectors, host) = (vectors(), host());
    let mut mismatches = Mismatches::default();
    for row in group(&vectors, "computed_normalize") {
        let input = platform(&row["input"]).expect("input platform");
        let mut want = platform(&row["normalized"]).expect("normalized platform");
        if row["host_dependent"] == true {
            want.os = host.os.clone();
        }
        let got = input.normalize();
        mismatches.check(got == want, || {
            format!("{input:?}: normalized {got:?} != {want:?}")
        });
    }
    mismatches.finish("computed_normalize");
}
