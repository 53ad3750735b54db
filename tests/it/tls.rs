//! TLS against the real registry serving HTTPS with certificates the tests
//! make: an unknown authority refused with a clear error, an extra CA from
//! `hosts.toml` or Docker's `ca.crt`, `skip_verify`, and client
//! certificates from `hosts.toml` or Docker's `client.cert`/`client.key`
//! for a registry that requires them.

use std::path::Path;

use crate::harness::certs::Pki;
use crate::harness::images;
use crate::harness::{Cache, Pusher, Registry, Run, TestResult, run_of};

/// A registry serving `app:v1` over HTTPS only, and its certificates.
pub struct SecureRegistry {
    pub registry: Registry,
    pub pki: Pki,
    _dir: tempfile::TempDir,
}

impl SecureRegistry {
    /// Starts it; with `require_client_cert`, only clients with a
    /// certificate of the client CA get through.
    pub fn start(seed: u64, require_client_cert: bool) -> TestResult<SecureRegistry> {
        let mut registry = Registry::start()?;
        Pusher::new(registry.addr()).index("app", "v1", &images::three_platform_index(seed)?)?;
        let dir = tempfile::tempdir()?;
        let pki = Pki::generate(dir.path())?;
        registry.restart_with_tls(pki.registry_tls(require_client_cert))?;
        Ok(SecureRegistry {
            registry,
            pki,
            _dir: dir,
        })
    }

    pub fn addr(&self) -> &str {
        self.registry.addr()
    }

    pub fn image(&self) -> String {
        format!("{}/app:v1", self.addr())
    }

    /// Puts the CA into the cache's host directory as Docker's `ca.crt`.
    pub fn trust_with_docker_ca(&self, cache: &Cache) -> TestResult {
        std::fs::copy(&self.pki.ca, cache.host_dir(self.addr())?.join("ca.crt"))?;
        Ok(())
    }
}

fn write_hosts_toml(cache: &Cache, registry: &str, text: &str) -> TestResult {
    std::fs::write(cache.host_dir(registry)?.join("hosts.toml"), text)?;
    Ok(())
}

fn pull(cache: &Cache, image: &str) -> TestResult<Run> {
    cache.run(&["pull", "--platform", "linux/amd64", image])
}

fn toml_path(path: &Path) -> String {
    path.display().to_string().replace('\\', "\\\\")
}

#[test]
fn refuses_a_certificate_of_an_unknown_authority_naming_the_registry() -> TestResult {
    let secure = SecureRegistry::start(400, false)?;
    let cache = Cache::new()?;
    let server = format!("server = \"https://{}\"\n", secure.addr());
    write_hosts_toml(&cache, secure.addr(), &server)?;

    let output = cache
        .command(&["pull", "--platform", "linux/amd64", &secure.image()])
        .env("LKCACHE_LOG", "lkcache=debug")
        .output()?;
    let run = run_of(output).failed_with(1)?;

    assert!(run.stderr.contains(secure.addr()), "{}", run.stderr);
    assert!(run.stderr.contains("UnknownIssuer"), "{}", run.stderr);
    let where_to_put_the_ca = format!("`{}/ca.crt` under", secure.addr());
    assert!(run.stderr.contains(&where_to_put_the_ca), "{}", run.stderr);
    assert!(
        !run.stderr.contains("trying again"),
        "a refused certificate is final: {}",
        run.stderr
    );
    assert!(cache.names().is_err() || cache.names()?.is_empty());
    Ok(())
}

#[test]
fn trusts_a_ca_named_in_hosts_toml() -> TestResult {
    let secure = SecureRegistry::start(401, false)?;
    let cache = Cache::new()?;
    // A relative path is relative to the host directory.
    std::fs::copy(
        &secure.pki.ca,
        cache.host_dir(secure.addr())?.join("registry-ca.pem"),
    )?;
    let text = format!(
        "server = \"https://{}\"\nca = \"registry-ca.pem\"\n",
        secure.addr()
    );
    write_hosts_toml(&cache, secure.addr(), &text)?;

    pull(&cache, &secure.image())?.ok()?;

    assert_eq!(cache.names()?, [secure.image()]);
    Ok(())
}

#[test]
fn trusts_dockers_ca_crt_and_speaks_https_to_a_loopback_registry_for_it() -> TestResult {
    let secure = SecureRegistry::start(402, false)?;
    let cache = Cache::new()?;
    secure.trust_with_docker_ca(&cache)?;

    pull(&cache, &secure.image())?.ok()?;

    assert_eq!(cache.names()?, [secure.image()]);
    Ok(())
}

#[test]
fn skip_verify_accepts_a_certificate_of_an_unknown_authority() -> TestResult {
    let secure = SecureRegistry::start(403, false)?;
    let cache = Cache::new()?;
    let text = format!(
        "server = \"https://{}\"\nskip_verify = true\n",
        secure.addr()
    );
    write_hosts_toml(&cache, secure.addr(), &text)?;

    pull(&cache, &secure.image())?.ok()?;

    assert_eq!(cache.names()?, [secure.image()]);
    Ok(())
}

#[test]
fn presents_a_client_certificate_only_where_configured() -> TestResult {
    let secure = SecureRegistry::start(404, true)?;

    let without = Cache::new()?;
    secure.trust_with_docker_ca(&without)?;
    let run = pull(&without, &secure.image())?.failed_with(1)?;
    let where_to_put_it = format!("`{}/client.cert` and `client.key`", secure.addr());
    assert!(run.stderr.contains(&where_to_put_it), "{}", run.stderr);

    let with_hosts_toml = Cache::new()?;
    let text = format!(
        "server = \"https://{}\"\nca = \"{}\"\nclient = [[\"{}\", \"{}\"]]\n",
        secure.addr(),
        toml_path(&secure.pki.ca),
        toml_path(&secure.pki.client_cert),
        toml_path(&secure.pki.client_key),
    );
    write_hosts_toml(&with_hosts_toml, secure.addr(), &text)?;
    pull(&with_hosts_toml, &secure.image())?.ok()?;
    assert_eq!(with_hosts_toml.names()?, [secure.image()]);

    let with_docker_files = Cache::new()?;
    secure.trust_with_docker_ca(&with_docker_files)?;
    let dir = with_docker_files.host_dir(secure.addr())?;
    std::fs::copy(&secure.pki.client_cert, dir.join("client.cert"))?;
    std::fs::copy(&secure.pki.client_key, dir.join("client.key"))?;
    pull(&with_docker_files, &secure.image())?.ok()?;
    assert_eq!(with_docker_files.names()?, [secure.image()]);
    Ok(())
}
