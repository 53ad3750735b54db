//! The cache's lifecycle: removing names, sweeping, collecting garbage,
//! verifying and repairing, and all of it beside concurrent pulls.

use std::collections::BTreeSet;
use std::fs;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::harness::images::{self, Image, Style};
use crate::harness::{Cache, Pusher, Registry, TestResult};

/// Pushes two images that share a base layer, as `base-a:1` and `base-b:1`.
fn two_images_sharing_a_base(registry: &Registry, seed: u64) -> TestResult<(Image, Image)> {
    let pusher = Pusher::new(registry.addr());
    let base = images::layer(Style::Oci, &[("base", images::text(seed, 40_000))])?;
    let mut built = Vec::new();
    for (i, repo) in ["base-a", "base-b"].iter().enumerate() {
        let top = images::layer(
            Style::Oci,
            &[("top", images::text(seed + 1 + i as u64, 5_000))],
        )?;
        let image = images::image(Style::Oci, "linux/amd64", vec![base.clone(), top]);
        pusher.image(repo, "1", &image)?;
        built.push(image);
    }
    let b = built.pop().ok_or("two images")?;
    let a = built.pop().ok_or("two images")?;
    Ok((a, b))
}

fn digests(image: &Image) -> BTreeSet<String> {
    let mut all: BTreeSet<String> = image
        .layers
        .iter()
        .map(|l| l.blob.digest.to_string())
        .collect();
    all.insert(image.config.digest.to_string());
    all.insert(image.manifest.digest.to_string());
    all
}

#[test]
fn removing_one_of_two_images_sharing_a_base_leaves_the_other_whole() -> TestResult {
    let registry = Registry::start()?;
    let (a, b) = two_images_sharing_a_base(&registry, 100)?;
    let cache = Cache::new()?;
    let name_a = format!("{}/base-a:1", registry.addr());
    let name_b = format!("{}/base-b:1", registry.addr());
    cache
        .run(&["pull", "--platform", "linux/amd64", &name_a, &name_b])?
        .ok()?;

    let removed = cache.run(&["rm", &name_a])?.ok()?;

    assert!(
        removed.stdout.contains(&format!("removed {name_a}")),
        "{}",
        removed.stdout
    );
    assert_eq!(cache.blobs()?, digests(&b));
    assert_eq!(cache.names()?, std::slice::from_ref(&name_b));
    cache.run(&["verify", &name_b])?.ok()?;
    let only_a: Vec<String> = digests(&a).difference(&digests(&b)).cloned().collect();
    assert_eq!(
        only_a.len(),
        3,
        "manifest, config and top layer are a's own"
    );

    cache.run(&["rm", &name_b])?.ok()?;
    assert!(
        cache.blobs()?.is_empty(),
        "the last user of the base layer is gone"
    );
    assert!(cache.names()?.is_empty());
    Ok(())
}

#[test]
fn ls_shows_the_bytes_two_images_share() -> TestResult {
    let registry = Registry::start()?;
    let (a, _) = two_images_sharing_a_base(&registry, 110)?;
    let cache = Cache::new()?;
    let names = [
        format!("{}/base-a:1", registry.addr()),
        format!("{}/base-b:1", registry.addr()),
    ];
    cache
        .run(&["pull", "--platform", "linux/amd64", &names[0], &names[1]])?
        .ok()?;

    let json = cache.run(&["ls", "--json"])?.ok()?;
    let text = cache.run(&["ls"])?.ok()?;

    let entries: serde_json::Value = serde_json::from_str(&json.stdout)?;
    let base_size = a.layers[0].blob.bytes.len() as u64;
    for entry in entries.as_array().ok_or("array")? {
        assert_eq!(entry["shared_bytes"].as_u64(), Some(base_size), "{entry}");
    }
    assert!(text.stdout.contains("2 images,"), "{}", text.stdout);
    Ok(())
}

#[test]
fn clean_empties_the_cache_and_leaves_a_valid_layout() -> TestResult {
    let registry = Registry::start()?;
    two_images_sharing_a_base(&registry, 120)?;
    let cache = Cache::new()?;
    cache
        .run(&[
            "pull",
            &format!("{}/base-a:1", registry.addr()),
            &format!("{}/base-b:1", registry.addr()),
        ])?
        .ok()?;

    cache.run(&["clean"])?.ok()?;

    assert!(cache.blobs()?.is_empty());
    assert_eq!(cache.index_json()?["manifests"], serde_json::json!([]));
    assert!(cache.root().join("oci-layout").exists());
    cache.run(&["verify"])?.ok()?;
    Ok(())
}

#[test]
fn published_only_keeps_names_whose_tag_moved_and_says_why() -> TestResult {
    let registry = Registry::start()?;
    let (_, b) = two_images_sharing_a_base(&registry, 130)?;
    let cache = Cache::new()?;
    let moved = format!("{}/base-a:1", registry.addr());
    let unchanged = format!("{}/base-b:1", registry.addr());
    cache.run(&["pull", &moved, &unchanged])?.ok()?;
    Pusher::new(registry.addr()).image("base-a", "1", &b)?;

    let run = cache
        .run(&["rm", "--published-only", &moved, &unchanged])?
        .ok()?;

    let why = format!("kept {moved}: the registry serves {}", b.manifest.digest);
    assert!(run.stdout.contains(&why), "{}", run.stdout);
    assert!(
        run.stdout.contains(&format!("removed {unchanged}")),
        "{}",
        run.stdout
    );
    assert_eq!(cache.names()?, [moved]);
    Ok(())
}

#[test]
fn verify_finds_a_flipped_byte_and_repair_mends_it() -> TestResult {
    let registry = Registry::start()?;
    let index = images::three_platform_index(140)?;
    Pusher::new(registry.addr()).index("multi", "v1", &index)?;
    let cache = Cache::new()?;
    let name = format!("{}/multi:v1", registry.addr());
    cache
        .run(&["pull", "--platform", "linux/arm64", &name])?
        .ok()?;
    let layer = &index.images[1].layers[1].blob;
    let path = cache.root().join("blobs/sha256").join(layer.digest.hex());
    let mut bytes = fs::read(&path)?;
    bytes[100] ^= 0x01;
    fs::write(&path, bytes)?;

    let found = cache.run(&["verify"])?.failed_with(1)?;
    let mended = cache.run(&["verify", "--repair"])?.ok()?;

    let report = format!("{name} (linux/arm64): layer `{}` is corrupt", layer.digest);
    assert!(found.stdout.contains(&report), "{}", found.stdout);
    assert!(
        mended.stdout.contains("moved corrupt blob"),
        "{}",
        mended.stdout
    );
    assert!(mended.stdout.contains("sound"), "{}", mended.stdout);
    assert_eq!(fs::read(&path)?, layer.bytes);
    cache.run(&["verify", &name])?.ok()?;
    Ok(())
}

#[test]
fn verify_reports_a_missing_layer_by_name_and_repair_fetches_it() -> TestResult {
    let registry = Registry::start()?;
    let (a, _) = two_images_sharing_a_base(&registry, 150)?;
    let cache = Cache::new()?;
    let name = format!("{}/base-a:1", registry.addr());
    cache.run(&["pull", &name])?.ok()?;
    let top = &a.layers[1].blob;
    fs::remove_file(cache.root().join("blobs/sha256").join(top.digest.hex()))?;

    let found = cache.run(&["verify", &name])?.failed_with(1)?;
    cache.run(&["verify", "--repair", &name])?.ok()?;

    assert!(
        found
            .stdout
            .contains(&format!("{name}: layer `{}` is missing", top.digest)),
        "{}",
        found.stdout
    );
    assert_eq!(cache.blobs()?, digests(&a));
    Ok(())
}

#[test]
fn gc_removes_what_killed_pulls_left_and_a_rerun_completes() -> TestResult {
    let registry = Registry::start()?;
    let big = images::layer(Style::Oci, &[("big", images::text(160, 40_000_000))])?;
    let image = images::image(Style::Oci, "linux/amd64", vec![big]);
    Pusher::new(registry.addr()).image("big", "1", &image)?;
    let cache = Cache::new()?;
    cache.run(&["ls"])?.ok()?;
    let name = format!("{}/big:1", registry.addr());

    let leftovers = kill_pulls_until_something_is_left(&cache, &name)?;
    let dry = cache.run(&["gc", "--dry-run"])?.ok()?;
    let gc = cache.run(&["gc"])?.ok()?;

    assert!(
        dry.stdout.contains("would remove leftover"),
        "{}",
        dry.stdout
    );
    assert!(gc.stdout.contains("removed leftover"), "{}", gc.stdout);
    for path in &leftovers {
        assert!(!path.exists(), "{} survived gc", path.display());
    }
    cache.run(&["pull", &name])?.ok()?;
    cache.run(&["verify"])?.ok()?;
    assert_eq!(cache.blobs()?, digests(&image));
    Ok(())
}

/// Kills pulls with SIGKILL after growing delays until one leaves a
/// temporary file behind, and returns the files left.
fn kill_pulls_until_something_is_left(
    cache: &Cache,
    name: &str,
) -> TestResult<Vec<std::path::PathBuf>> {
    let ingest = cache.root().join(".lkcache/ingest");
    for attempt in 0..40u64 {
        let mut pull = cache
            .command(&["pull", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        std::thread::sleep(Duration::from_millis(20 + attempt * 10));
        pull.kill()?;
        pull.wait()?;
        let left: Vec<_> = fs::read_dir(&ingest)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        if !left.is_empty() {
            return Ok(left);
        }
        cache.run(&["clean"])?.ok()?;
    }
    Err("no killed pull left a temporary file in 40 attempts".into())
}

#[test]
fn concurrent_pulls_and_removals_of_images_sharing_layers_keep_every_name_sound() -> TestResult {
    let registry = Registry::start()?;
    two_images_sharing_a_base(&registry, 170)?;
    Pusher::new(registry.addr()).index("multi", "v1", &images::three_platform_index(171)?)?;
    let cache = Cache::new()?;
    cache.run(&["ls"])?.ok()?;
    let a = format!("{}/base-a:1", registry.addr());
    let b = format!("{}/base-b:1", registry.addr());
    let multi = format!("{}/multi:v1", registry.addr());
    let commands: [&[&str]; 6] = [
        &["pull", &a],
        &["pull", &b],
        &["pull", "--all-platforms", &multi],
        &["rm", &a],
        &["rm", &multi],
        &["gc"],
    ];

    for round in 0..50 {
        let children: Vec<Child> = commands
            .iter()
            .map(|args| {
                cache
                    .command(args)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        for child in children {
            let output = child.wait_with_output()?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            // `rm` of a name another process removed first is the only expected failure.
            assert!(
                output.status.success() || stderr.contains("is not in the cache"),
                "round {round}: {stderr}"
            );
        }
        let verify = cache.run(&["verify"])?;
        assert_eq!(verify.status, 0, "round {round}: {}", verify.stdout);
        assert!(
            cache.names()?.contains(&b),
            "round {round}: {b} was never removed"
        );
    }
    Ok(())
}
