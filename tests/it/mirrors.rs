//! Pulling through mirrors: a real pull-through cache (Distribution in
//! proxy mode) in front of the registry, named in `hosts.toml` or with
//! `--mirror`; falling back to the registry when the mirror is gone or
//! lacks the image; asking a pull-only mirror for content by digest but
//! never for tags; pushes never going to a mirror.

use crate::harness::http::{Answer, Server};
use crate::harness::images::{self, Index};
use crate::harness::{Cache, Pusher, Registry, Run, TestResult};

/// Starts a registry holding the three-platform index as `app:v1`.
fn upstream_with_image(seed: u64) -> TestResult<(Registry, Index)> {
    let registry = Registry::start()?;
    let index = images::three_platform_index(seed)?;
    Pusher::new(registry.addr()).index("app", "v1", &index)?;
    Ok((registry, index))
}

/// Names `mirror` in the host directory of `upstream`, with the
/// capabilities given (`"pull", "resolve"`).
fn configure_mirror(cache: &Cache, upstream: &str, mirror: &str, capabilities: &str) -> TestResult {
    let text = format!(
        "server = \"http://{upstream}\"\n\n[host.\"http://{mirror}\"]\n  capabilities = [{capabilities}]\n"
    );
    std::fs::write(cache.host_dir(upstream)?.join("hosts.toml"), text)?;
    Ok(())
}

fn pull_amd64(cache: &Cache, name: &str, extra: &[&str]) -> TestResult<Run> {
    let mut args = vec!["pull", "--platform", "linux/amd64"];
    args.extend_from_slice(extra);
    args.push(name);
    cache.run(&args)
}

/// Returns the digests of the amd64 image's config and layers.
fn amd64_blobs(index: &Index) -> Vec<String> {
    let image = &index.images[0];
    let mut digests: Vec<String> = image
        .layers
        .iter()
        .map(|l| l.blob.digest.to_string())
        .collect();
    digests.push(image.config.digest.to_string());
    digests
}

fn has_request(requests: &[String], prefix: &str) -> bool {
    requests
        .iter()
        .any(|r| r.starts_with(prefix) && r.ends_with(" 200"))
}

#[test]
fn pulls_through_a_configured_mirror_and_falls_back_when_it_stops() -> TestResult {
    let (upstream, index) = upstream_with_image(300)?;
    let mut mirror = Registry::start_proxy(upstream.addr())?;
    let cache = Cache::new()?;
    configure_mirror(
        &cache,
        upstream.addr(),
        mirror.addr(),
        "\"pull\", \"resolve\"",
    )?;
    let name = format!("{}/app:v1", upstream.addr());
    let pushed = upstream.requests()?.len();

    pull_amd64(&cache, &name, &[])?.ok()?;

    assert_eq!(cache.names()?, std::slice::from_ref(&name), "upstream name");
    // lkcache asked the mirror, naming the registry it stands in for...
    let ns = format!("ns={}", upstream.addr());
    let asked = mirror.requests()?;
    assert!(
        has_request(&asked, &format!("GET /v2/app/manifests/v1?{ns}")),
        "{asked:?}"
    );
    for digest in amd64_blobs(&index) {
        let blob = format!("GET /v2/app/blobs/{digest}?{ns}");
        assert!(has_request(&asked, &blob), "{blob}: {asked:?}");
    }
    // ...and the mirror fetched from the registry; lkcache never did.
    let fetched = &upstream.requests()?[pushed..];
    assert!(
        fetched.iter().any(|r| r.contains("/v2/app/manifests/")),
        "{fetched:?}"
    );
    assert!(fetched.iter().all(|r| !r.contains("ns=")), "{fetched:?}");

    mirror.stop();
    let fresh = Cache::new()?;
    configure_mirror(
        &fresh,
        upstream.addr(),
        mirror.addr(),
        "\"pull\", \"resolve\"",
    )?;
    let run = pull_amd64(&fresh, &name, &[])?.ok()?;

    let warning = format!(
        "mirror `{}` failed for manifest {name}: unreachable",
        mirror.addr()
    );
    assert!(run.stderr.contains(&warning), "{}", run.stderr);
    assert!(run.stderr.contains("WARN"), "{}", run.stderr);
    assert_eq!(fresh.blobs()?, cache.blobs()?);
    assert_eq!(fresh.names()?, std::slice::from_ref(&name));
    Ok(())
}

#[test]
fn mirror_flag_pulls_through_a_mirror_without_a_file() -> TestResult {
    let (upstream, index) = upstream_with_image(301)?;
    let mut mirror = Registry::start_proxy(upstream.addr())?;
    let cache = Cache::new()?;
    let name = format!("{}/app:v1", upstream.addr());
    let flag = format!("{}=http://{}", upstream.addr(), mirror.addr());

    pull_amd64(&cache, &name, &["--mirror", &flag])?.ok()?;

    let asked = mirror.requests()?;
    let ns = format!("ns={}", upstream.addr());
    assert!(
        has_request(&asked, &format!("GET /v2/app/manifests/v1?{ns}")),
        "{asked:?}"
    );
    let layer = &amd64_blobs(&index)[0];
    assert!(
        has_request(&asked, &format!("GET /v2/app/blobs/{layer}?{ns}")),
        "{asked:?}"
    );
    assert_eq!(cache.names()?, std::slice::from_ref(&name));

    mirror.stop();
    let fresh = Cache::new()?;
    let run = pull_amd64(&fresh, &name, &["--mirror", &flag])?.ok()?;
    assert!(
        run.stderr
            .contains(&format!("mirror `{}` failed", mirror.addr())),
        "{}",
        run.stderr
    );
    assert_eq!(fresh.blobs()?, cache.blobs()?);
    Ok(())
}

#[test]
fn falls_back_to_the_registry_when_a_mirror_lacks_the_image() -> TestResult {
    let (upstream, index) = upstream_with_image(302)?;
    // An ordinary, empty registry as the mirror: it answers 404.
    let mirror = Registry::start()?;
    let cache = Cache::new()?;
    configure_mirror(
        &cache,
        upstream.addr(),
        mirror.addr(),
        "\"pull\", \"resolve\"",
    )?;
    let name = format!("{}/app:v1", upstream.addr());

    let run = pull_amd64(&cache, &name, &[])?.ok()?;

    assert!(
        run.stderr
            .contains(&format!("mirror `{}` failed", mirror.addr())),
        "{}",
        run.stderr
    );
    let warnings = run
        .stderr
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("it does not have it"))
        .count();
    assert_eq!(
        warnings, 1,
        "one warning for the image, none per blob: {}",
        run.stderr
    );
    assert!(
        has_request(&upstream.requests()?, "GET /v2/app/manifests/v1"),
        "the registry served it"
    );
    let expected = amd64_blobs(&index);
    let blobs = cache.blobs()?;
    assert!(expected.iter().all(|d| blobs.contains(d)), "{blobs:?}");
    Ok(())
}

#[test]
fn falls_back_to_the_registry_when_a_mirror_serves_the_wrong_manifest() -> TestResult {
    let (upstream, index) = upstream_with_image(305)?;
    // A test double: no real registry serves other bytes than a digest
    // names. It answers every manifest request with another manifest,
    // and has no blobs.
    let wrong = images::three_platform_index(306)?.blob;
    let double = Server::start(move |request| {
        if request.path.contains("/manifests/") {
            Answer::with_status(200, &wrong.media_type, wrong.bytes.clone())
        } else {
            Answer::with_status(404, "text/plain", Vec::new())
        }
    })?;
    let cache = Cache::new()?;
    let pinned = format!("{}/app@{}", upstream.addr(), index.blob.digest);
    let flag = format!("{}=http://{}", upstream.addr(), double.addr());

    let run = pull_amd64(&cache, &pinned, &["--mirror", &flag])?.ok()?;

    let warning = format!("mirror `{}` failed for manifest {pinned}", double.addr());
    assert!(run.stderr.contains(&warning), "{}", run.stderr);
    assert!(run.stderr.contains("hashes to"), "{}", run.stderr);
    assert_eq!(cache.names()?, [pinned]);
    let blobs = cache.blobs()?;
    assert!(blobs.contains(&index.blob.digest.to_string()), "{blobs:?}");
    assert!(
        amd64_blobs(&index).iter().all(|d| blobs.contains(d)),
        "{blobs:?}"
    );
    Ok(())
}

#[test]
fn asks_a_pull_only_mirror_for_content_by_digest_but_never_for_tags() -> TestResult {
    let (upstream, index) = upstream_with_image(303)?;
    let mirror = Registry::start_proxy(upstream.addr())?;
    let cache = Cache::new()?;
    configure_mirror(&cache, upstream.addr(), mirror.addr(), "\"pull\"")?;
    let name = format!("{}/app:v1", upstream.addr());

    pull_amd64(&cache, &name, &[])?.ok()?;

    let asked = mirror.requests()?;
    assert!(
        asked.iter().all(|r| !r.contains("/manifests/v1")),
        "{asked:?}"
    );
    let manifest = index.images[0].manifest.digest.to_string();
    assert!(
        has_request(&asked, &format!("GET /v2/app/manifests/{manifest}?")),
        "{asked:?}"
    );
    for digest in amd64_blobs(&index) {
        assert!(
            has_request(&asked, &format!("GET /v2/app/blobs/{digest}?")),
            "{asked:?}"
        );
    }
    assert!(has_request(
        &upstream.requests()?,
        "GET /v2/app/manifests/v1 "
    ));
    Ok(())
}

#[test]
fn pushes_go_to_the_registry_never_to_a_mirror() -> TestResult {
    let (upstream, _) = upstream_with_image(304)?;
    let mirror = Registry::start_proxy(upstream.addr())?;
    let cache = Cache::new()?;
    let name = format!("{}/app:v1", upstream.addr());
    cache.run(&["pull", "--all-platforms", &name])?.ok()?;
    configure_mirror(
        &cache,
        upstream.addr(),
        mirror.addr(),
        "\"pull\", \"resolve\"",
    )?;

    let copy = format!("{}/copy:v1", upstream.addr());
    let before = mirror.requests()?;
    cache.run(&["push", &name, "--remote-name", &copy])?.ok()?;

    assert_eq!(mirror.requests()?, before, "the mirror saw nothing");
    let pushed = upstream.requests()?;
    assert!(
        pushed
            .iter()
            .any(|r| r.starts_with("PUT /v2/copy/manifests/v1 201")),
        "{pushed:?}"
    );
    Ok(())
}
