//! `lkcache ls`: names, digests, platforms and sizes, as text and JSON.

use crate::harness::images::{self, Style};
use crate::harness::{Cache, Pusher, Registry, TestResult};

#[test]
fn lists_names_sorted_with_platforms_and_sizes() -> TestResult {
    let registry = Registry::start()?;
    let pusher = Pusher::new(registry.addr());
    let index = images::three_platform_index(40)?;
    pusher.index("zeta", "1", &index)?;
    let single = images::image(
        Style::Docker,
        "linux/amd64",
        vec![images::layer(
            Style::Docker,
            &[("a", images::text(41, 1000))],
        )?],
    );
    pusher.image("alpha", "1", &single)?;
    let cache = Cache::new()?;
    let zeta = format!("{}/zeta:1", registry.addr());
    let alpha = format!("{}/alpha:1", registry.addr());
    cache
        .run(&[
            "pull",
            "--platform",
            "linux/arm64",
            "--platform",
            "linux/amd64",
            &zeta,
        ])?
        .ok()?;
    cache
        .run(&["pull", "--platform", "linux/amd64", &alpha])?
        .ok()?;

    let text = cache.run(&["ls"])?.ok()?;
    let json = cache.run(&["ls", "--json"])?.ok()?;

    let rows: Vec<&str> = text.stdout.lines().skip(1).collect();
    assert!(
        rows[0].starts_with(&alpha) && rows[1].starts_with(&zeta),
        "{}",
        text.stdout
    );
    let entries: serde_json::Value = serde_json::from_str(&json.stdout)?;
    assert_eq!(entries[0]["name"], alpha);
    assert_eq!(
        entries[0]["media_type"],
        lkcache::media_type::DOCKER_MANIFEST
    );
    assert_eq!(entries[0]["platforms"], serde_json::json!(["linux/amd64"]));
    assert_eq!(entries[1]["digest"], index.blob.digest.to_string());
    assert_eq!(
        entries[1]["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    let on_disk: u64 = cache
        .blobs()?
        .iter()
        .map(|digest| {
            std::fs::metadata(cache.root().join("blobs/sha256").join(&digest[7..])).map(|m| m.len())
        })
        .sum::<Result<u64, _>>()?;
    let listed = entries[0]["size_bytes"].as_u64().ok_or("size")?
        + entries[1]["size_bytes"].as_u64().ok_or("size")?;
    assert_eq!(listed, on_disk);
    Ok(())
}

#[test]
fn lists_an_empty_cache() -> TestResult {
    let cache = Cache::new()?;
    let json = cache.run(&["ls", "--json"])?.ok()?;
    assert_eq!(json.stdout.trim(), "[]");
    Ok(())
}
