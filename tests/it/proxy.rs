//! Proxies from the environment: a real forwarding proxy (tinyproxy, see
//! `harness/tinyproxy.rs`) sees lkcache's connections when
//! `HTTPS_PROXY` or `HTTP_PROXY` names it for the registry's scheme, and
//! none when `NO_PROXY` names the registry or only the other scheme's
//! variable is set.

use crate::harness::images;
use crate::harness::tinyproxy::TinyProxy;
use crate::harness::{Cache, Pusher, Registry, Run, TestResult, run_of};
use crate::tls::SecureRegistry;

fn pull_with_env(cache: &Cache, image: &str, envs: &[(&str, &str)]) -> TestResult<Run> {
    let mut command = cache.command(&["pull", "--platform", "linux/amd64", image]);
    command.envs(envs.iter().copied());
    Ok(run_of(command.output()?))
}

#[test]
fn https_proxy_carries_requests_unless_no_proxy_names_the_registry() -> TestResult {
    let secure = SecureRegistry::start(500, false)?;
    let proxy = TinyProxy::start()?;
    let proxy_url = proxy.url();
    let tunnel = format!("CONNECT {}", secure.addr());

    let cache = Cache::new()?;
    secure.trust_with_docker_ca(&cache)?;
    pull_with_env(&cache, &secure.image(), &[("HTTPS_PROXY", &proxy_url)])?.ok()?;
    let seen = proxy.requests();
    assert!(seen.contains(&tunnel), "{seen:?}");
    assert_eq!(cache.names()?, [secure.image()]);

    let direct = Cache::new()?;
    secure.trust_with_docker_ca(&direct)?;
    let no_proxy = format!("localhost, {}", secure.addr());
    pull_with_env(
        &direct,
        &secure.image(),
        &[("https_proxy", &proxy_url), ("no_proxy", &no_proxy)],
    )?
    .ok()?;
    assert_eq!(
        proxy.requests(),
        seen,
        "no new connection through the proxy"
    );
    assert_eq!(direct.names()?, [secure.image()]);
    Ok(())
}

#[test]
fn http_proxy_carries_plain_http_requests_and_https_proxy_does_not() -> TestResult {
    let registry = Registry::start()?;
    Pusher::new(registry.addr()).index("app", "v1", &images::three_platform_index(501)?)?;
    let image = format!("{}/app:v1", registry.addr());
    let proxy = TinyProxy::start()?;
    let proxy_url = proxy.url();

    let cache = Cache::new()?;
    pull_with_env(&cache, &image, &[("HTTP_PROXY", &proxy_url)])?.ok()?;
    let seen = proxy.requests();
    assert!(
        seen.contains(&format!("CONNECT {}", registry.addr())),
        "{seen:?}"
    );

    let other_scheme = Cache::new()?;
    pull_with_env(&other_scheme, &image, &[("HTTPS_PROXY", &proxy_url)])?.ok()?;
    assert_eq!(proxy.requests(), seen, "HTTPS_PROXY is for HTTPS only");

    let excluded = Cache::new()?;
    pull_with_env(
        &excluded,
        &image,
        &[("http_proxy", &proxy_url), ("NO_PROXY", "127.0.0.0/8")],
    )?
    .ok()?;
    assert_eq!(proxy.requests(), seen, "NO_PROXY takes CIDR ranges");
    Ok(())
}
