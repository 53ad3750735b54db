//! Pushing from the cache to the real registry: digests kept, only what is
//! missing sent, mounts between repositories, credentials, interruptions.

use std::process::Stdio;
use std::time::Duration;

use crate::harness::images::{self, Image, Style};
use crate::harness::registry::Auth;
use crate::harness::{Cache, Pusher, Registry, TestResult};

/// Counts the requests in `requests` whose method is one of `methods`.
fn count(requests: &[String], methods: &[&str]) -> usize {
    requests
        .iter()
        .filter(|r| methods.iter().any(|m| r.starts_with(&format!("{m} "))))
        .count()
}

/// Requests the registry logged since `before` of them were logged.
fn requests_since(registry: &Registry, before: usize) -> TestResult<Vec<String>> {
    Ok(registry.requests()?.split_off(before))
}

/// Pulls `name` into a fresh cache and returns its blob digests.
fn pull_back(name: &str, platform_args: &[&str]) -> TestResult<std::collections::BTreeSet<String>> {
    let cache = Cache::new()?;
    let mut args = vec!["pull"];
    args.extend_from_slice(platform_args);
    args.push(name);
    cache.run(&args)?.ok()?;
    cache.blobs()
}

#[test]
fn pushes_a_multi_platform_index_and_it_pulls_back_with_the_same_digests() -> TestResult {
    let source = Registry::start()?;
    let target = Registry::start()?;
    let index = images::three_platform_index(200)?;
    Pusher::new(source.addr()).index("multi", "v1", &index)?;
    let cache = Cache::new()?;
    let name = format!("{}/multi:v1", source.addr());
    cache.run(&["pull", "--all-platforms", &name])?.ok()?;
    let remote = format!("{}/copy/multi:v1", target.addr());

    let run = cache
        .run(&["push", &name, "--remote-name", &remote, "--with-arch-tags"])?
        .ok()?;

    assert!(
        run.stdout.contains(&format!(
            "{remote} {} pushed: 9 blobs uploaded",
            index.blob.digest
        )),
        "{}",
        run.stdout
    );
    assert_eq!(pull_back(&remote, &["--all-platforms"])?, cache.blobs()?);
    for tag in ["v1-amd64", "v1-arm64", "v1-arm-v7"] {
        assert!(
            run.stdout.contains(&format!("tagged {tag}")),
            "{}",
            run.stdout
        );
        pull_back(
            &format!("{}/copy/multi:{tag}", target.addr()),
            &["--all-platforms"],
        )?;
    }
    Ok(())
}

#[test]
fn pushes_a_single_platform_image_and_a_second_push_sends_nothing() -> TestResult {
    let source = Registry::start()?;
    let target = Registry::start()?;
    let image = images::image(
        Style::Docker,
        "linux/amd64",
        vec![images::layer(
            Style::Docker,
            &[("a", images::text(210, 50_000))],
        )?],
    );
    Pusher::new(source.addr()).image("single", "1", &image)?;
    let cache = Cache::new()?;
    let name = format!("{}/single:1", source.addr());
    cache.run(&["pull", &name])?.ok()?;
    let remote = format!("{}/single:1", target.addr());
    cache
        .run(&["push", &name, "--remote-name", &remote])?
        .ok()?;

    let before = target.requests()?.len();
    let again = cache
        .run(&["push", &name, "--remote-name", &remote])?
        .ok()?;
    let quiet = requests_since(&target, before)?;
    let forced = cache
        .run(&["push", &name, "--remote-name", &remote, "--override"])?
        .ok()?;
    let overridden = requests_since(&target, before + quiet.len())?;

    assert!(again.stdout.contains("up to date"), "{}", again.stdout);
    assert_eq!(quiet.len(), 1, "only the manifest is asked for: {quiet:?}");
    assert!(
        forced
            .stdout
            .contains("0 blobs uploaded, 0 mounted, 2 already there"),
        "{}",
        forced.stdout
    );
    assert_eq!(count(&overridden, &["POST", "PATCH"]), 0, "{overridden:?}");
    assert_eq!(pull_back(&remote, &[])?, cache.blobs()?);
    Ok(())
}

/// Pushes two images sharing a base layer into repositories of `registry`.
fn images_sharing_a_base(seed: u64) -> TestResult<(Image, Image)> {
    let base = images::layer(Style::Oci, &[("base", images::text(seed, 60_000))])?;
    let a = images::image(
        Style::Oci,
        "linux/amd64",
        vec![
            base.clone(),
            images::layer(Style::Oci, &[("a", images::text(seed + 1, 500))])?,
        ],
    );
    let b = images::image(
        Style::Oci,
        "linux/amd64",
        vec![
            base,
            images::layer(Style::Oci, &[("b", images::text(seed + 2, 500))])?,
        ],
    );
    Ok((a, b))
}

#[test]
fn mounts_a_base_layer_from_another_repository_of_the_same_registry() -> TestResult {
    let source = Registry::start()?;
    let target = Registry::start()?;
    let (a, b) = images_sharing_a_base(220)?;
    Pusher::new(target.addr()).image("base-a", "1", &a)?;
    Pusher::new(source.addr()).image("base-b", "1", &b)?;
    let cache = Cache::new()?;
    let name_b = format!("{}/base-b:1", source.addr());
    cache
        .run(&["pull", &format!("{}/base-a:1", target.addr()), &name_b])?
        .ok()?;
    let before = target.requests()?.len();

    let run = cache
        .run(&[
            "push",
            &name_b,
            "--remote-name",
            &format!("{}/base-b:1", target.addr()),
        ])?
        .ok()?;

    assert!(
        run.stdout.contains("2 blobs uploaded, 1 mounted"),
        "{}",
        run.stdout
    );
    let requests = requests_since(&target, before)?;
    let mount = format!(
        "POST /v2/base-b/blobs/uploads/?mount={}&from=base-a 201",
        b.layers[0].blob.digest
    );
    assert!(requests.contains(&mount), "{requests:?}");
    Ok(())
}

#[test]
fn refuses_an_index_with_missing_platforms_and_pushes_a_new_one_with_platform() -> TestResult {
    let source = Registry::start()?;
    let target = Registry::start()?;
    let index = images::three_platform_index(230)?;
    Pusher::new(source.addr()).index("multi", "v1", &index)?;
    let cache = Cache::new()?;
    let name = format!("{}/multi:v1", source.addr());
    cache
        .run(&[
            "pull",
            "--platform",
            "linux/arm64",
            "--platform",
            "linux/arm/v7",
            &name,
        ])?
        .ok()?;
    let remote = format!("{}/multi:v1", target.addr());

    let refused = cache
        .run(&["push", &name, "--remote-name", &remote])?
        .failed_with(1)?;
    let pushed = cache
        .run(&[
            "push",
            &name,
            "--remote-name",
            &remote,
            "--platform",
            "linux/arm64",
            "--platform",
            "linux/arm/v7",
        ])?
        .ok()?;

    assert!(
        refused
            .stderr
            .contains("the cache lacks linux/amd64 of its index"),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains("(linux/arm64, linux/arm/v7) as a new index with --platform"),
        "{}",
        refused.stderr
    );
    assert!(
        pushed.stdout.contains("(new index) pushed"),
        "{}",
        pushed.stdout
    );
    let digest = pushed
        .stdout
        .split_whitespace()
        .nth(1)
        .ok_or("digest")?
        .to_string();
    assert!(cache.run(&["ls"])?.stdout.contains(&remote));
    let back = Cache::new()?;
    back.run(&["pull", "--all-platforms", &remote])?.ok()?;
    let mut expected = cache.blobs()?;
    expected.remove(&index.blob.digest.to_string());
    assert_eq!(back.blobs()?, expected);
    assert!(back.blobs()?.contains(&digest));
    Ok(())
}

#[test]
fn pushes_with_basic_auth_and_refuses_without_credentials() -> TestResult {
    let source = Registry::start()?;
    let mut target = Registry::start()?;
    target.restart_with(Auth::Htpasswd {
        user: "pusher",
        password: "pw-123",
    })?;
    let index = images::three_platform_index(240)?;
    Pusher::new(source.addr()).index("multi", "v1", &index)?;
    let cache = Cache::new()?;
    let name = format!("{}/multi:v1", source.addr());
    cache.run(&["pull", "--all-platforms", &name])?.ok()?;
    let remote = format!("{}/multi:v1", target.addr());

    let refused = cache
        .run(&["push", &name, "--remote-name", &remote])?
        .failed_with(1)?;
    cache.log_in(target.addr(), "pusher", "pw-123")?;
    cache
        .run(&["push", &name, "--remote-name", &remote])?
        .ok()?;

    assert!(
        refused.stderr.contains("refused access"),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("log in with `docker login`"),
        "{}",
        refused.stderr
    );
    assert_eq!(
        pull_back_with_login(&remote, target.addr())?,
        cache.blobs()?
    );
    Ok(())
}

fn pull_back_with_login(
    name: &str,
    registry: &str,
) -> TestResult<std::collections::BTreeSet<String>> {
    let cache = Cache::new()?;
    cache.log_in(registry, "pusher", "pw-123")?;
    cache.run(&["pull", "--all-platforms", name])?.ok()?;
    cache.blobs()
}

#[test]
fn a_killed_push_repeated_completes_and_the_registry_serves_the_image() -> TestResult {
    let source = Registry::start()?;
    let target = Registry::start()?;
    let big = images::layer(Style::Oci, &[("big", images::noise(250, 40_000_000))])?;
    let image = images::image(Style::Oci, "linux/amd64", vec![big]);
    Pusher::new(source.addr()).image("big", "1", &image)?;
    let cache = Cache::new()?;
    let name = format!("{}/big:1", source.addr());
    cache.run(&["pull", &name])?.ok()?;

    let remote = kill_a_push_halfway(&cache, &name, &target)?;
    let run = cache
        .run(&["push", &name, "--remote-name", &remote])?
        .ok()?;

    assert!(run.stdout.contains(" pushed: "), "{}", run.stdout);
    assert!(
        count(&target.requests()?, &["PATCH"]) >= 3,
        "a 40 MB blob goes up in chunks"
    );
    assert_eq!(pull_back(&remote, &[])?, cache.blobs()?);
    Ok(())
}

/// Kills pushes of `name` after growing delays, each to a new repository,
/// until one dies before the image is complete; returns that repository.
fn kill_a_push_halfway(cache: &Cache, name: &str, target: &Registry) -> TestResult<String> {
    for attempt in 0..30u64 {
        let remote = format!("{}/big{attempt}:1", target.addr());
        let mut push = cache
            .command(&["push", name, "--remote-name", &remote])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        std::thread::sleep(Duration::from_millis(30 + attempt * 20));
        push.kill()?;
        let status = push.wait()?;
        if !status.success() && cache.run(&["pull", "--pull", "-q", &remote])?.status != 0 {
            return Ok(remote);
        }
    }
    Err("no push was killed halfway in 30 attempts".into())
}
