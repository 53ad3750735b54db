//! Authentication against the real registry: anonymous bearer tokens,
//! tokens and basic auth with credentials from the Docker configuration.

use crate::harness::images;
use crate::harness::registry::Auth;
use crate::harness::token::TokenServer;
use crate::harness::{Cache, Pusher, Registry, TestResult};

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
