//! The fault matrix: pulls through a proxy that spoils blob downloads, in
//! front of the real registry. Each fault either heals (the pull completes
//! and every blob verifies) or fails with a clear error; the cache never
//! holds a wrong byte.

use crate::harness::faults::{Fault, FaultProxy};
use crate::harness::images;
use crate::harness::registry::Auth;
use crate::harness::{Cache, Pusher, Registry, Run, TestResult};

/// Spoils every matching download.
const ALWAYS: usize = usize::MAX;

struct Outcome {
    run: Run,
    log: Vec<String>,
    cache: Cache,
}

/// Pulls a two-platform index through a proxy that spoils `times` blob
/// downloads with `fault`.
fn pull_through(fault: Fault, times: usize, seed: u64) -> TestResult<Outcome> {
    let registry = Registry::start()?;
    Pusher::new(registry.addr()).index("multi", "v1", &images::three_platform_index(seed)?)?;
    let proxy = FaultProxy::start(registry.addr(), fault, times)?;
    let cache = Cache::new()?;
    let name = format!("{}/multi:v1", proxy.addr());
    let run = cache
        .command(&[
            "pull",
            "--platform",
            "linux/amd64",
            "--platform",
            "linux/arm64",
            &name,
        ])
        .env("LKCACHE_READ_TIMEOUT", "2")
        .output()?;
    Ok(Outcome {
        run: crate::harness::run_of(run),
        log: proxy.log(),
        cache,
    })
}

/// Checks that a pull healed: it succeeded and the cache verifies.
fn assert_healed(outcome: &Outcome) -> TestResult {
    assert_eq!(
        outcome.run.status,
        0,
        "{}\n{}",
        outcome.run.stderr,
        outcome.log.join("\n")
    );
    outcome.cache.run(&["verify"])?.ok()?;
    assert_eq!(
        outcome.cache.blobs()?.len(),
        1 + 2 * 4,
        "index, and two platforms of four blobs"
    );
    Ok(())
}

/// Checks that a pull failed cleanly: a clear error, no name, and no blob
/// that fails verification.
fn assert_failed_cleanly(outcome: &Outcome, message: &str) -> TestResult {
    assert_eq!(outcome.run.status, 1, "{}", outcome.run.stderr);
    assert!(
        outcome.run.stderr.contains(message),
        "{}",
        outcome.run.stderr
    );
    assert!(outcome.cache.names()?.is_empty());
    for digest in outcome.cache.blobs()? {
        let hex = &digest["sha256:".len()..];
        let bytes = std::fs::read(outcome.cache.root().join("blobs/sha256").join(hex))?;
        assert_eq!(
            lkcache::Digest::sha256_of(&bytes).to_string(),
            digest,
            "a wrong byte landed"
        );
    }
    Ok(())
}

fn resumed_with_range(log: &[String]) -> bool {
    log.iter()
        .any(|entry| entry.to_ascii_lowercase().contains("range: bytes="))
}

#[test]
fn connection_reset_mid_blob_heals() -> TestResult {
    assert_healed(&pull_through(Fault::ResetMidBody, 2, 300)?)
}

#[test]
fn truncated_body_resumes_with_a_range_request() -> TestResult {
    let outcome = pull_through(Fault::TruncateBody, 1, 301)?;
    assert_healed(&outcome)?;
    assert!(resumed_with_range(&outcome.log), "{:#?}", outcome.log);
    Ok(())
}

#[test]
fn truncated_body_from_a_server_without_ranges_starts_again() -> TestResult {
    let outcome = pull_through(Fault::TruncateWithoutRanges, 1, 309)?;
    assert_healed(&outcome)?;
    let spoiled = outcome
        .log
        .iter()
        .find(|e| e.ends_with("TruncateWithoutRanges"))
        .ok_or("no fault")?;
    let path = spoiled.split(' ').nth(1).ok_or("path")?;
    assert_eq!(
        outcome.log.iter().filter(|e| e.contains(path)).count(),
        2,
        "{:#?}",
        outcome.log
    );
    Ok(())
}

#[test]
fn stalled_body_times_out_and_resumes() -> TestResult {
    let outcome = pull_through(Fault::StallMidBody, 1, 302)?;
    assert_healed(&outcome)?;
    assert!(resumed_with_range(&outcome.log), "{:#?}", outcome.log);
    Ok(())
}

#[test]
fn server_errors_are_retried() -> TestResult {
    let outcome = pull_through(Fault::ServerError, 2, 303)?;
    assert_healed(&outcome)?;
    assert_eq!(
        outcome
            .log
            .iter()
            .filter(|e| e.ends_with("ServerError"))
            .count(),
        2
    );
    Ok(())
}

#[test]
fn rate_limits_are_retried_after_the_time_asked() -> TestResult {
    assert_healed(&pull_through(Fault::RateLimited, 1, 304)?)
}

#[test]
fn persistent_server_errors_fail_after_bounded_attempts() -> TestResult {
    let outcome = pull_through(Fault::ServerError, ALWAYS, 305)?;
    assert_failed_cleanly(&outcome, "answered 500 to blob")?;
    assert_failed_cleanly(&outcome, "(after 5 attempts)")
}

#[test]
fn wrong_bytes_are_refused_and_never_stored() -> TestResult {
    let outcome = pull_through(Fault::WrongBytes, ALWAYS, 306)?;
    assert_failed_cleanly(&outcome, "does not match its descriptor")
}

#[test]
fn not_found_fails_at_once() -> TestResult {
    let outcome = pull_through(Fault::NotFound, ALWAYS, 307)?;
    assert_failed_cleanly(&outcome, "was not found")?;
    let spoiled: Vec<&String> = outcome
        .log
        .iter()
        .filter(|e| e.ends_with("NotFound"))
        .collect();
    let mut paths: Vec<&str> = spoiled.iter().filter_map(|e| e.split(' ').nth(1)).collect();
    let requests = paths.len();
    paths.dedup();
    assert_eq!(requests, paths.len(), "a 404 is not retried: {spoiled:#?}");
    Ok(())
}

#[test]
fn redirects_to_blob_storage_never_carry_the_registry_credentials() -> TestResult {
    let mut registry = Registry::start()?;
    Pusher::new(registry.addr()).index("multi", "v1", &images::three_platform_index(308)?)?;
    registry.restart_with(Auth::Htpasswd {
        user: "u",
        password: "p",
    })?;
    let storage_auth = format!("Basic {}", base64_of("u:p"));
    let proxy = FaultProxy::start_with(
        registry.addr(),
        Fault::RedirectElsewhere,
        ALWAYS,
        Some(storage_auth),
    )?;
    let cache = Cache::new()?;
    cache.log_in(proxy.addr(), "u", "p")?;

    cache
        .run(&[
            "pull",
            "--platform",
            "linux/amd64",
            &format!("{}/multi:v1", proxy.addr()),
        ])?
        .ok()?;

    let log = proxy.log();
    let storage: Vec<&String> = log.iter().filter(|e| e.contains("-> storage")).collect();
    assert_eq!(storage.len(), 3, "config and two layers: {log:#?}");
    assert!(
        storage
            .iter()
            .all(|e| e.ends_with("authorization sent: false")),
        "{log:#?}"
    );
    cache.run(&["verify"])?.ok()?;
    Ok(())
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
