//! Authentication against the real registry: anonymous bearer tokens,
//! tokens and basic auth with credentials from the Docker configuration,
//! from a real credential helper (`docker-credential-pass`), and identity
//! tokens traded at the token server (a test double) by the OAuth2
//! refresh-token grant.

use base64::Engine as _;
use serde_json::json;

use crate::harness::images;
use crate::harness::registry::Auth;
use crate::harness::token::TokenServer;
use crate::harness::{Cache, Pusher, Registry, TestResult};

use crate::harness::credhelper::{PassStore, ScriptHelpers, run_with, write_docker_config};

const USER: &str = "builder";
const PASSWORD: &str = "s3cret-pw";

/// Starts a registry holding the three-platform index as `multi:v1`.
fn registry_with_image(seed: u64) -> TestResult<Registry> {
    let registry = Registry::start()?;
    Pusher::new(registry.addr()).index("multi", "v1", &images::three_platform_index(seed)?)?;
    Ok(registry)
}

#[test]
fn pulls_with_an_anonymous_token_shared_by_all_requests() -> TestResult {
    let mut registry = registry_with_image(90)?;
    let dir = tempfile::tempdir()?;
    let tokens = TokenServer::start(dir.path(), None)?;
    registry.restart_with(Auth::Token {
        realm: &tokens.realm(),
        cert_bundle: tokens.cert_bundle(),
    })?;
    let cache = Cache::new()?;

    cache
        .run(&[
            "pull",
            "--all-platforms",
            &format!("{}/multi:v1", registry.addr()),
        ])?
        .ok()?;

    // One index, three manifests and nine blobs, all under one token.
    assert_eq!(tokens.issued(), 1);
    assert_eq!(cache.blobs()?.len(), 13);
    Ok(())
}

#[test]
fn fetches_tokens_with_credentials_from_the_docker_config() -> TestResult {
    let mut registry = registry_with_image(91)?;
    let dir = tempfile::tempdir()?;
    let tokens = TokenServer::start(dir.path(), Some((USER, PASSWORD)))?;
    registry.restart_with(Auth::Token {
        realm: &tokens.realm(),
        cert_bundle: tokens.cert_bundle(),
    })?;
    let cache = Cache::new()?;
    let name = format!("{}/multi:v1", registry.addr());

    let anonymous = cache.run(&["pull", &name])?.failed_with(1)?;
    assert!(
        anonymous.stderr.contains("cannot get a token"),
        "{}",
        anonymous.stderr
    );
    assert!(cache.names()?.is_empty());

    cache.log_in(registry.addr(), USER, PASSWORD)?;
    cache.run(&["pull", &name])?.ok()?;
    assert_eq!(cache.names()?, [name]);
    Ok(())
}

#[test]
fn uses_basic_auth_with_credentials_from_the_docker_config() -> TestResult {
    let mut registry = registry_with_image(92)?;
    registry.restart_with(Auth::Htpasswd {
        user: USER,
        password: PASSWORD,
    })?;
    let cache = Cache::new()?;
    let name = format!("{}/multi:v1", registry.addr());

    let anonymous = cache.run(&["pull", &name])?.failed_with(1)?;
    assert!(
        anonymous.stderr.contains("log in with `docker login`"),
        "{}",
        anonymous.stderr
    );

    cache.log_in(&format!("http://{}/", registry.addr()), USER, "wrong")?;
    let wrong = cache.run(&["pull", &name])?.failed_with(1)?;
    assert!(
        wrong.stderr.contains("check the credentials"),
        "{}",
        wrong.stderr
    );
    assert!(
        !wrong.stderr.contains("wrong"),
        "the password leaked: {}",
        wrong.stderr
    );

    cache.log_in(&format!("http://{}/", registry.addr()), USER, PASSWORD)?;
    cache.run(&["pull", &name])?.ok()?;
    assert_eq!(cache.names()?, [name]);
    Ok(())
}

/// Starts a registry with the three-platform index that wants `USER` by
/// basic auth.
fn htpasswd_registry(seed: u64) -> TestResult<Registry> {
    let mut registry = registry_with_image(seed)?;
    registry.restart_with(Auth::Htpasswd {
        user: USER,
        password: PASSWORD,
    })?;
    Ok(registry)
}

#[test]
fn uses_the_cred_helper_named_for_the_registry() -> TestResult {
    let registry = htpasswd_registry(93)?;
    let pass = PassStore::new()?;
    pass.store(registry.addr(), USER, PASSWORD)?;
    let cache = Cache::new()?;
    // `credHelpers` wins over `credsStore`, whose helper does not exist.
    write_docker_config(
        &cache,
        &json!({"credsStore": "lkcache-absent", "credHelpers": {registry.addr(): "pass"}}),
    )?;
    let name = format!("{}/multi:v1", registry.addr());

    run_with(&cache, &["pull", &name], &pass.envs())?.ok()?;
    assert_eq!(cache.names()?, [name]);
    Ok(())
}

#[test]
fn uses_the_creds_store_once_per_process() -> TestResult {
    let registry = htpasswd_registry(94)?;
    let pass = PassStore::new()?;
    pass.store(registry.addr(), USER, PASSWORD)?;
    // The real helper, behind a wrapper (a test double) that counts runs.
    let helpers = ScriptHelpers::new()?;
    let runs = helpers.file("runs");
    helpers.add(
        "lkcachecount",
        &format!(
            "echo \"$1\" >> '{}'\nexec docker-credential-pass \"$@\"",
            runs.display()
        ),
    )?;
    let cache = Cache::new()?;
    write_docker_config(&cache, &json!({"credsStore": "lkcachecount"}))?;
    let mut envs = pass.envs();
    envs.push(helpers.path_env()?);

    let name = format!("{}/multi:v1", registry.addr());
    run_with(&cache, &["pull", "--all-platforms", &name], &envs)?.ok()?;

    // Thirteen requests, every one with basic auth, one helper run.
    assert_eq!(cache.blobs()?.len(), 13);
    assert_eq!(std::fs::read_to_string(&runs)?, "get\n");
    Ok(())
}

#[test]
fn falls_back_to_auths_when_the_helper_holds_nothing() -> TestResult {
    let registry = htpasswd_registry(95)?;
    let pass = PassStore::new()?;
    let cache = Cache::new()?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    write_docker_config(
        &cache,
        &json!({"credsStore": "pass", "auths": {registry.addr(): {"auth": auth}}}),
    )?;
    let name = format!("{}/multi:v1", registry.addr());

    run_with(&cache, &["pull", &name], &pass.envs())?.ok()?;
    assert_eq!(cache.names()?, [name]);
    Ok(())
}

#[test]
fn fetches_tokens_with_credentials_from_a_helper() -> TestResult {
    let mut registry = registry_with_image(96)?;
    let dir = tempfile::tempdir()?;
    let tokens = TokenServer::start(dir.path(), Some((USER, PASSWORD)))?;
    registry.restart_with(Auth::Token {
        realm: &tokens.realm(),
        cert_bundle: tokens.cert_bundle(),
    })?;
    let pass = PassStore::new()?;
    pass.store(registry.addr(), USER, PASSWORD)?;
    let cache = Cache::new()?;
    write_docker_config(&cache, &json!({"credsStore": "pass"}))?;
    let name = format!("{}/multi:v1", registry.addr());

    run_with(&cache, &["pull", "--all-platforms", &name], &pass.envs())?.ok()?;
    assert_eq!(cache.names()?, [name]);
    assert_eq!(tokens.issued(), 1);
    Ok(())
}

/// Starts a registry in token mode whose token server takes only
/// `refresh_token`, by the refresh-token grant.
fn identity_token_registry(
    seed: u64,
    dir: &std::path::Path,
    refresh_token: &str,
) -> TestResult<(Registry, TokenServer)> {
    let mut registry = registry_with_image(seed)?;
    let tokens = TokenServer::with_refresh_token(dir, refresh_token)?;
    registry.restart_with(Auth::Token {
        realm: &tokens.realm(),
        cert_bundle: tokens.cert_bundle(),
    })?;
    Ok((registry, tokens))
}

#[test]
fn trades_an_identity_token_once_for_a_whole_pull() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (registry, tokens) = identity_token_registry(97, dir.path(), "refresh-abc-123")?;
    let cache = Cache::new()?;
    let name = format!("{}/multi:v1", registry.addr());

    write_docker_config(
        &cache,
        &json!({"auths": {registry.addr(): {"auth": "", "identitytoken": "refresh-stale-9"}}}),
    )?;
    let stale = cache.run(&["-vv", "pull", &name])?.failed_with(1)?;
    assert!(stale.stderr.contains("log in again"), "{}", stale.stderr);
    assert!(
        !stale.stderr.contains("refresh-stale-9"),
        "{}",
        stale.stderr
    );

    write_docker_config(
        &cache,
        &json!({"auths": {registry.addr(): {"identitytoken": "refresh-abc-123"}}}),
    )?;
    cache.run(&["pull", "--all-platforms", &name])?.ok()?;

    // One index, three manifests and nine blobs, all under one token.
    assert_eq!(cache.blobs()?.len(), 13);
    assert_eq!((tokens.refreshed(), tokens.issued()), (1, 1));
    Ok(())
}

#[test]
fn takes_identity_tokens_from_a_helper() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (registry, tokens) = identity_token_registry(98, dir.path(), "refresh-from-pass")?;
    let pass = PassStore::new()?;
    // The helper protocol marks identity tokens by this user name.
    pass.store(registry.addr(), "<token>", "refresh-from-pass")?;
    let cache = Cache::new()?;
    write_docker_config(&cache, &json!({"credHelpers": {registry.addr(): "pass"}}))?;
    let name = format!("{}/multi:v1", registry.addr());

    run_with(&cache, &["pull", &name], &pass.envs())?.ok()?;
    assert_eq!(cache.names()?, [name]);
    assert_eq!(tokens.refreshed(), 1);
    Ok(())
}

/// A helper that hangs is a test double: no real helper hangs on demand.
#[test]
fn stops_a_helper_that_hangs() -> TestResult {
    let registry = htpasswd_registry(99)?;
    let helpers = ScriptHelpers::new()?;
    helpers.add("lkcachetest", "sleep 600")?;
    let cache = Cache::new()?;
    write_docker_config(&cache, &json!({"credsStore": "lkcachetest"}))?;
    let envs = [
        helpers.path_env()?,
        ("LKCACHE_CREDENTIAL_HELPER_TIMEOUT_SECS", "1".into()),
    ];

    let name = format!("{}/multi:v1", registry.addr());
    let hung = run_with(&cache, &["pull", &name], &envs)?.failed_with(1)?;
    for expected in [
        "docker-credential-lkcachetest",
        "did not answer",
        "LKCACHE_CREDENTIAL_HELPER_TIMEOUT_SECS",
    ] {
        assert!(
            hung.stderr.contains(expected),
            "{expected}: {}",
            hung.stderr
        );
    }
    assert!(cache.names()?.is_empty());
    Ok(())
}

/// Helpers that fail are test doubles: a real one fails only when its
/// store breaks.
#[test]
fn names_a_failing_helper_and_never_shows_secrets() -> TestResult {
    let registry = htpasswd_registry(100)?;
    let helpers = ScriptHelpers::new()?;
    helpers.add("lkcachetest", "echo 'the vault is sealed' >&2\nexit 1")?;
    helpers.add(
        "lkcacheleaky",
        r#"echo '{"ServerURL":"x","Username":"builder","Secret":"leaky-s3cret"}'; exit 2"#,
    )?;
    let cache = Cache::new()?;
    let name = format!("{}/multi:v1", registry.addr());
    let envs = [helpers.path_env()?];

    write_docker_config(&cache, &json!({"credsStore": "lkcachetest"}))?;
    let failed = run_with(&cache, &["pull", &name], &envs)?.failed_with(1)?;
    for expected in [
        "docker-credential-lkcachetest",
        "the vault is sealed",
        "credsStore",
    ] {
        assert!(
            failed.stderr.contains(expected),
            "{expected}: {}",
            failed.stderr
        );
    }

    write_docker_config(&cache, &json!({"credsStore": "lkcacheleaky"}))?;
    let leaky = run_with(&cache, &["-vv", "pull", &name], &envs)?.failed_with(1)?;
    assert!(
        leaky.stderr.contains("docker-credential-lkcacheleaky"),
        "{}",
        leaky.stderr
    );
    assert!(
        !leaky.stderr.contains("leaky-s3cret"),
        "the secret leaked: {}",
        leaky.stderr
    );

    // A real helper with a wrong password: refused, and the password
    // shows neither in the error nor in the debug log.
    let pass = PassStore::new()?;
    pass.store(registry.addr(), USER, "wrong-pass-s3cret")?;
    write_docker_config(&cache, &json!({"credsStore": "pass"}))?;
    let wrong = run_with(&cache, &["-vv", "pull", &name], &pass.envs())?.failed_with(1)?;
    assert!(
        wrong.stderr.contains("check the credentials"),
        "{}",
        wrong.stderr
    );
    assert!(
        !wrong.stderr.contains("wrong-pass-s3cret"),
        "the secret leaked: {}",
        wrong.stderr
    );
    assert!(cache.names()?.is_empty());
    Ok(())
}
