//! Pulling into the cache: platforms, cache hits, `--pull`, digests.

use std::collections::BTreeSet;

use crate::harness::images::{self, Style};
use crate::harness::{Cache, Pusher, Registry, TestResult};

fn digests_of(index: &images::Index, platform: usize) -> BTreeSet<String> {
    let image = &index.images[platform];
    let mut blobs: BTreeSet<String> = image
        .layers
        .iter()
        .map(|l| l.blob.digest.to_string())
        .collect();
    blobs.insert(image.config.digest.to_string());
    blobs.insert(image.manifest.digest.to_string());
    blobs
}

#[test]
fn pulls_only_the_requested_platform_of_an_index() -> TestResult {
    let registry = Registry::start()?;
    let index = images::three_platform_index(1)?;
    Pusher::new(registry.addr()).index("multi", "v1", &index)?;
    let cache = Cache::new()?;
    let name = format!("{}/multi:v1", registry.addr());

    let run = cache
        .run(&["pull", "--platform", "linux/arm64", &name])?
        .ok()?;

    let mut expected = digests_of(&index, 1);
    expected.insert(index.blob.digest.to_string());
    assert_eq!(cache.blobs()?, expected);
    assert_eq!(cache.names()?, std::slice::from_ref(&name));
    assert!(
        run.stdout.contains(&index.blob.digest.to_string()),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("linux/arm64"), "{}", run.stdout);
    Ok(())
}

#[test]
fn second_pull_is_served_from_the_cache_without_the_registry() -> TestResult {
    let mut registry = Registry::start()?;
    let index = images::three_platform_index(2)?;
    Pusher::new(registry.addr()).index("multi", "v1", &index)?;
    let cache = Cache::new()?;
    let name = format!("{}/multi:v1", registry.addr());
    cache
        .run(&["pull", "--platform", "linux/amd64", &name])?
        .ok()?;
    let blobs_before = cache.blobs()?;

    // With the registry gone, any request at all would fail the pull.
    registry.stop();
    let run = cache
        .run(&["pull", "--platform", "linux/amd64", &name])?
        .ok()?;

    assert!(run.stdout.contains("cached"), "{}", run.stdout);
    assert_eq!(cache.blobs()?, blobs_before);
    Ok(())
}

#[test]
fn adds_a_missing_platform_to_a_cached_index_downloading_only_its_blobs() -> TestResult {
    let registry = Registry::start()?;
    let index = images::three_platform_index(3)?;
    Pusher::new(registry.addr()).index("multi", "v1", &index)?;
    let cache = Cache::new()?;
    let name = format!("{}/multi:v1", registry.addr());
    cache
        .run(&["pull", "--platform", "linux/amd64", &name])?
        .ok()?;

    let run = cache
        .run(&[
            "pull",
            "--platform",
            "linux/amd64",
            "--platform",
            "linux/arm/v7",
            &name,
        ])?
        .ok()?;

    // One manifest is fetched as a document; config and two layers are blobs.
    assert!(run.stdout.contains("pulled 3 blobs"), "{}", run.stdout);
    let mut expected = digests_of(&index, 0);
    expected.extend(digests_of(&index, 2));
    expected.insert(index.blob.digest.to_string());
    assert_eq!(cache.blobs()?, expected);
    Ok(())
}

#[test]
fn all_platforms_pulls_every_platform() -> TestResult {
    let registry = Registry::start()?;
    let index = images::three_platform_index(4)?;
    Pusher::new(registry.addr()).index("multi", "v1", &index)?;
    let cache = Cache::new()?;
    let name = format!("{}/multi:v1", registry.addr());

    cache.run(&["pull", "--all-platforms", &name])?.ok()?;

    let mut expected: BTreeSet<String> = (0..3).flat_map(|i| digests_of(&index, i)).collect();
    expected.insert(index.blob.digest.to_string());
    assert_eq!(cache.blobs()?, expected);
    Ok(())
}

#[test]
fn force_pull_follows_a_moved_tag_and_fetches_no_unchanged_blob() -> TestResult {
    let registry = Registry::start()?;
    let pusher = Pusher::new(registry.addr());
    let base = images::layer(Style::Docker, &[("base", images::text(50, 10_000))])?;
    let first = images::image(Style::Docker, "linux/amd64", vec![base.clone()]);
    pusher.image("app", "latest", &first)?;
    let cache = Cache::new()?;
    let name = format!("{}/app", registry.addr());
    cache
        .run(&["pull", "--platform", "linux/amd64", &name])?
        .ok()?;

    let top = images::layer(Style::Docker, &[("top", images::text(51, 10_000))])?;
    let second = images::image(Style::Docker, "linux/amd64", vec![base, top]);
    pusher.image("app", "latest", &second)?;

    let stale = cache
        .run(&["pull", "--platform", "linux/amd64", &name])?
        .ok()?;
    assert!(
        stale.stdout.contains(&first.manifest.digest.to_string()),
        "{}",
        stale.stdout
    );

    let fresh = cache
        .run(&["pull", "--pull", "--platform", "linux/amd64", &name])?
        .ok()?;
    assert!(
        fresh.stdout.contains(&second.manifest.digest.to_string()),
        "{}",
        fresh.stdout
    );
    // The new config and the new layer; the shared base stays.
    assert!(fresh.stdout.contains("pulled 2 blobs"), "{}", fresh.stdout);
    assert_eq!(cache.names()?, [format!("{name}:latest")]);

    let again = cache
        .run(&["pull", "--pull", "--platform", "linux/amd64", &name])?
        .ok()?;
    assert!(again.stdout.contains("up to date"), "{}", again.stdout);
    Ok(())
}

#[test]
fn pulls_by_digest_and_by_tag_plus_digest_under_the_digest_name() -> TestResult {
    let registry = Registry::start()?;
    let index = images::three_platform_index(5)?;
    Pusher::new(registry.addr()).index("multi", "v1", &index)?;
    let cache = Cache::new()?;
    let digest = index.blob.digest.to_string();
    let by_digest = format!("{}/multi@{digest}", registry.addr());
    let tag_and_digest = format!("{}/multi:v1@{digest}", registry.addr());

    cache
        .run(&["pull", "--platform", "linux/amd64", &by_digest])?
        .ok()?;
    cache
        .run(&["pull", "--platform", "linux/amd64", &tag_and_digest])?
        .ok()?;

    assert_eq!(cache.names()?, [by_digest]);
    Ok(())
}

#[test]
fn pulls_several_images_sharing_a_base_layer_in_one_command() -> TestResult {
    let registry = Registry::start()?;
    let pusher = Pusher::new(registry.addr());
    let base = images::layer(Style::Oci, &[("base", images::text(60, 100_000))])?;
    let mut expected = BTreeSet::new();
    let mut names = Vec::new();
    for i in 0..2 {
        let top = images::layer(Style::Oci, &[("top", images::text(61 + i, 20_000))])?;
        let image = images::image(Style::Oci, "linux/amd64", vec![base.clone(), top.clone()]);
        pusher.image(&format!("shared{i}"), "1", &image)?;
        expected.extend(
            [
                &image.manifest.digest,
                &image.config.digest,
                &base.blob.digest,
                &top.blob.digest,
            ]
            .map(|d| d.to_string()),
        );
        names.push(format!("{}/shared{i}:1", registry.addr()));
    }
    let cache = Cache::new()?;

    let mut args = vec!["pull", "--platform", "linux/amd64"];
    args.extend(names.iter().map(String::as_str));
    cache.run(&args)?.ok()?;

    assert_eq!(cache.blobs()?, expected);
    let mut cached = cache.names()?;
    cached.sort();
    assert_eq!(cached, names);
    Ok(())
}

#[test]
fn names_the_images_that_arrived_when_another_of_the_command_fails() -> TestResult {
    let registry = Registry::start()?;
    let pusher = Pusher::new(registry.addr());
    let mut names = Vec::new();
    for i in 0..3 {
        let layer = images::layer(Style::Oci, &[("f", images::text(65 + i, 5_000))])?;
        let image = images::image(Style::Oci, "linux/amd64", vec![layer]);
        pusher.image(&format!("batch{i}"), "1", &image)?;
        names.push(format!("{}/batch{i}:1", registry.addr()));
    }
    let missing = format!("{}/absent:1", registry.addr());
    let cache = Cache::new()?;

    let run = cache
        .run(&[
            "pull",
            "--platform",
            "linux/amd64",
            &names[0],
            &missing,
            &names[1],
            &names[2],
        ])?
        .failed_with(1)?;

    assert!(run.stderr.contains(&missing), "{}", run.stderr);
    let mut cached = cache.names()?;
    cached.sort();
    assert_eq!(cached, names);
    cache.run(&["verify"])?.ok()?;
    Ok(())
}

#[test]
fn keeps_the_attestations_of_the_chosen_platform() -> TestResult {
    let registry = Registry::start()?;
    let pusher = Pusher::new(registry.addr());
    let amd = images::image(
        Style::Docker,
        "linux/amd64",
        vec![images::layer(
            Style::Docker,
            &[("a", images::text(70, 3000))],
        )?],
    );
    let arm = images::image(
        Style::Docker,
        "linux/arm64",
        vec![images::layer(
            Style::Docker,
            &[("b", images::text(71, 3000))],
        )?],
    );
    let mut attestation = images::image(
        Style::Oci,
        "unknown/unknown",
        vec![images::layer(
            Style::Oci,
            &[("sbom", images::text(72, 300))],
        )?],
    );
    attestation.platform = serde_json::json!({"os": "unknown", "architecture": "unknown"});
    let mut list = images::index(
        Style::Oci,
        vec![amd.clone(), arm.clone(), attestation.clone()],
    );
    // Tie the attestation to the amd64 manifest, as BuildKit does.
    let mut document: serde_json::Value = serde_json::from_slice(&list.blob.bytes)?;
    document["manifests"][2]["annotations"] = serde_json::json!({
        "vnd.docker.reference.digest": amd.manifest.digest.to_string(),
        "vnd.docker.reference.type": "attestation-manifest",
    });
    list.blob = images::Blob::new(&list.blob.media_type, serde_json::to_vec(&document)?);
    pusher.index("attested", "1", &list)?;
    let cache = Cache::new()?;

    cache
        .run(&[
            "pull",
            "--platform",
            "linux/amd64",
            &format!("{}/attested:1", registry.addr()),
        ])?
        .ok()?;

    let blobs = cache.blobs()?;
    for digest in [
        &amd.manifest.digest,
        &attestation.manifest.digest,
        &attestation.layers[0].blob.digest,
    ] {
        assert!(blobs.contains(&digest.to_string()), "{digest} missing");
    }
    assert!(!blobs.contains(&arm.manifest.digest.to_string()));
    Ok(())
}

#[test]
fn library_reads_back_manifest_config_and_layers() -> TestResult {
    let registry = Registry::start()?;
    let index = images::three_platform_index(8)?;
    Pusher::new(registry.addr()).index("multi", "v1", &index)?;
    let cache = Cache::new()?;
    let store = lkcache::Store::open(cache.root())?;
    let client = lkcache::registry::Client::new(Default::default());
    let options = lkcache::PullOptions {
        platforms: vec!["linux/arm/v7".parse()?],
        ..Default::default()
    };
    let reference: lkcache::Reference = format!("{}/multi:v1", registry.addr()).parse()?;

    let report = lkcache::Puller::new(&store, &client, options, &lkcache::pull::NoProgress)
        .pull(&reference)?;
    let image = store.image(&report.name, &"linux/arm/v7".parse()?)?;

    let built = &index.images[2];
    assert_eq!(image.descriptor.digest, built.manifest.digest);
    assert_eq!(image.config_bytes, built.config.bytes);
    assert_eq!(image.config.architecture, "arm");
    let mut layer_bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut image.open_layer(&store, &image.layers()[1])?,
        &mut layer_bytes,
    )?;
    assert_eq!(layer_bytes, built.layers[1].blob.bytes);
    assert!(store.image(&report.name, &"linux/amd64".parse()?).is_err());
    Ok(())
}
