//! Bad input and faults: each gives a clear error, and the cache is left
//! whole, with nothing half-written.

use std::fs;

use crate::harness::fake;
use crate::harness::images::{self, Style};
use crate::harness::permissions::{make_read_only, unprivileged};
use crate::harness::{Cache, Pusher, Registry, TestResult};

#[test]
fn malformed_reference_is_a_usage_error_and_creates_nothing() -> TestResult {
    let cache = Cache::new()?;

    let run = cache.run(&["pull", "Alpine:3!"])?.failed_with(2)?;

    assert!(
        run.stderr.contains("invalid image reference `Alpine:3!`"),
        "{}",
        run.stderr
    );
    assert!(!cache.root().exists());
    Ok(())
}

#[test]
fn malformed_platform_is_a_usage_error() -> TestResult {
    let cache = Cache::new()?;
    let run = cache
        .run(&["pull", "--platform", "linux/", "alpine"])?
        .failed_with(2)?;
    assert!(
        run.stderr.contains("invalid platform `linux/`"),
        "{}",
        run.stderr
    );
    Ok(())
}

#[test]
fn unknown_tag_names_the_full_reference() -> TestResult {
    let registry = Registry::start()?;
    let index = images::three_platform_index(20)?;
    Pusher::new(registry.addr()).index("multi", "v1", &index)?;
    let cache = Cache::new()?;

    let name = format!("{}/multi:nope", registry.addr());
    let run = cache.run(&["pull", &name])?.failed_with(1)?;

    assert!(
        run.stderr.contains(&format!("`{name}` was not found")),
        "{}",
        run.stderr
    );
    assert!(cache.names()?.is_empty());
    Ok(())
}

#[test]
fn missing_platform_lists_the_platforms_the_index_has() -> TestResult {
    let registry = Registry::start()?;
    let amd = images::image(
        Style::Docker,
        "linux/amd64",
        vec![images::layer(
            Style::Docker,
            &[("a", images::text(21, 100))],
        )?],
    );
    let arm = images::image(
        Style::Docker,
        "linux/arm/v7",
        vec![images::layer(
            Style::Docker,
            &[("b", images::text(22, 100))],
        )?],
    );
    let list = images::index(Style::Docker, vec![amd, arm]);
    Pusher::new(registry.addr()).index("list", "1", &list)?;
    let cache = Cache::new()?;

    let run = cache
        .run(&[
            "pull",
            "--platform",
            "linux/s390x",
            &format!("{}/list:1", registry.addr()),
        ])?
        .failed_with(1)?;

    assert!(
        run.stderr
            .contains("no image for linux/s390x (it has: linux/amd64, linux/arm/v7)"),
        "{}",
        run.stderr
    );
    assert!(cache.blobs()?.is_empty());
    Ok(())
}

#[test]
fn single_platform_image_for_another_platform_is_refused_naming_both() -> TestResult {
    let registry = Registry::start()?;
    let arm = images::image(
        Style::Oci,
        "linux/arm64",
        vec![images::layer(Style::Oci, &[("a", images::text(23, 100))])?],
    );
    Pusher::new(registry.addr()).image("armonly", "1", &arm)?;
    let cache = Cache::new()?;
    let name = format!("{}/armonly:1", registry.addr());

    let run = cache
        .run(&["pull", "--platform", "linux/amd64", &name])?
        .failed_with(1)?;
    assert!(
        run.stderr
            .contains("is an image for linux/arm64, not for linux/amd64"),
        "{}",
        run.stderr
    );
    assert!(cache.names()?.is_empty());

    cache
        .run(&["pull", "--platform", "linux/arm64", &name])?
        .ok()?;
    assert_eq!(cache.names()?, [name]);
    Ok(())
}

#[test]
fn unreachable_registry_is_reported() -> TestResult {
    let port = crate::harness::registry::free_port()?;
    let cache = Cache::new()?;

    let run = cache
        .run(&["pull", &format!("127.0.0.1:{port}/nothing:1")])?
        .failed_with(1)?;

    assert!(
        run.stderr
            .contains(&format!("cannot reach registry `127.0.0.1:{port}`")),
        "{}",
        run.stderr
    );
    Ok(())
}

#[test]
fn tampered_blob_is_not_stored_and_the_name_is_not_added() -> TestResult {
    let registry = Registry::start()?;
    let pusher = Pusher::new(registry.addr());
    let good = images::layer(Style::Oci, &[("good", images::text(24, 5000))])?;
    let bad = images::layer(Style::Oci, &[("bad", images::text(25, 5000))])?;
    let image = images::image(Style::Oci, "linux/amd64", vec![good.clone(), bad.clone()]);
    pusher.image("tampered", "1", &image)?;
    let data = registry.blob_data_path(bad.blob.digest.hex());
    let mut bytes = fs::read(&data)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&data, bytes)?;
    let cache = Cache::new()?;

    let run = cache
        .run(&[
            "pull",
            "--platform",
            "linux/amd64",
            &format!("{}/tampered:1", registry.addr()),
        ])?
        .failed_with(1)?;

    assert!(
        run.stderr.contains("does not match its descriptor"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("expected `{}`", bad.blob.digest)),
        "{}",
        run.stderr
    );
    let blobs = cache.blobs()?;
    assert!(!blobs.contains(&bad.blob.digest.to_string()));
    assert!(!blobs.contains(&image.manifest.digest.to_string()));
    assert!(cache.names()?.is_empty());
    let leftovers = fs::read_dir(cache.root().join(".lkcache/ingest"))?.count();
    assert_eq!(leftovers, 0);
    Ok(())
}

#[test]
fn manifest_over_the_size_limit_is_refused() -> TestResult {
    let mut huge = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"annotations":{"pad":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 4 * 1024 * 1024));
    huge.extend_from_slice(br#""}}"#);
    for declare_length in [true, false] {
        let server = fake::serving(lkcache::media_type::OCI_INDEX, huge.clone(), declare_length)?;
        let cache = Cache::new()?;

        let run = cache
            .run(&["pull", &format!("{}/huge:1", server.addr())])?
            .failed_with(1)?;

        assert!(
            run.stderr.contains("more than the limit of 4194304"),
            "{}",
            run.stderr
        );
        assert!(cache.blobs()?.is_empty());
    }
    Ok(())
}

#[test]
fn schema1_manifest_is_refused_as_unsupported() -> TestResult {
    let schema1 = br#"{"schemaVersion":1,"name":"old","tag":"1","architecture":"amd64","fsLayers":[],"history":[]}"#;
    let server = fake::serving(
        lkcache::media_type::DOCKER_SCHEMA1_SIGNED,
        schema1.to_vec(),
        true,
    )?;
    let cache = Cache::new()?;

    let run = cache
        .run(&["pull", &format!("{}/old:1", server.addr())])?
        .failed_with(1)?;

    assert!(
        run.stderr
            .contains("manifest schema 1, which lkcache does not support"),
        "{}",
        run.stderr
    );
    assert!(cache.names()?.is_empty());
    Ok(())
}

#[test]
fn invalid_index_json_is_reported_and_left_untouched() -> TestResult {
    let registry = Registry::start()?;
    let index = images::three_platform_index(26)?;
    Pusher::new(registry.addr()).index("multi", "v1", &index)?;
    let cache = Cache::new()?;
    cache.run(&["ls"])?.ok()?;
    fs::write(cache.root().join("index.json"), b"{\"manifests\": [")?;

    let pull = cache
        .run(&["pull", &format!("{}/multi:v1", registry.addr())])?
        .failed_with(1)?;
    let ls = cache.run(&["ls"])?.failed_with(1)?;

    for run in [pull, ls] {
        assert!(
            run.stderr
                .contains("is not a valid OCI image index; it was left untouched"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(
        fs::read(cache.root().join("index.json"))?,
        b"{\"manifests\": ["
    );
    Ok(())
}

#[test]
fn unwritable_cache_gives_a_clear_error_and_stays_as_it_was() -> TestResult {
    let registry = Registry::start()?;
    let pusher = Pusher::new(registry.addr());
    let first = images::image(
        Style::Oci,
        "linux/amd64",
        vec![images::layer(Style::Oci, &[("1", images::text(27, 100))])?],
    );
    let second = images::image(
        Style::Oci,
        "linux/amd64",
        vec![images::layer(Style::Oci, &[("2", images::text(28, 100))])?],
    );
    pusher.image("first", "1", &first)?;
    pusher.image("second", "1", &second)?;
    let cache = Cache::new()?;
    cache
        .run(&[
            "pull",
            "--platform",
            "linux/amd64",
            &format!("{}/first:1", registry.addr()),
        ])?
        .ok()?;
    let index_before = fs::read(cache.root().join("index.json"))?;
    let blobs_before = cache.blobs()?;
    make_read_only(&cache)?;

    let mut pull = unprivileged(cache.command(&[
        "pull",
        "--platform",
        "linux/amd64",
        &format!("{}/second:1", registry.addr()),
    ]))?;
    let output = pull.output()?;
    let mut ls = unprivileged(cache.command(&["ls"]))?;
    let listed = ls.output()?;

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("make the cache directory writable, or choose another with --cache"),
        "{stderr}"
    );
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(String::from_utf8_lossy(&listed.stdout).contains("/first:1"));
    assert_eq!(fs::read(cache.root().join("index.json"))?, index_before);
    assert_eq!(cache.blobs()?, blobs_before);
    Ok(())
}
