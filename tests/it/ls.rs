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

#[test]
fn stops_quietly_when_the_reader_goes_away() -> TestResult {
    use std::io::BufRead;
    let cache = Cache::new()?;
    cache.run(&["ls"])?.ok()?;
    // Far more rows than a pipe holds, so that writing outlives the reader.
    let root = lkcache::manifest::Descriptor::of_bytes(lkcache::media_type::OCI_MANIFEST, b"{}");
    let manifests: Vec<serde_json::Value> = (0..5000)
        .map(|i| {
            let mut entry = serde_json::to_value(&root)?;
            entry["annotations"] = serde_json::json!({
                lkcache::manifest::ANNOTATION_REF_NAME: format!("example.com/app-{i}:v1")
            });
            Ok(entry)
        })
        .collect::<Result<_, serde_json::Error>>()?;
    let index = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
    std::fs::write(cache.root().join("index.json"), serde_json::to_vec(&index)?)?;

    let mut ls = cache
        .command(&["ls"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut first = String::new();
    std::io::BufReader::new(ls.stdout.take().ok_or("stdout")?).read_line(&mut first)?;
    let output = ls.wait_with_output()?;

    assert!(first.starts_with("NAME"), "{first}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
    assert!(stderr.is_empty(), "{stderr}");
    Ok(())
}
