//! Interoperability with a real OCI tool: skopeo reads the caches lkcache
//! writes, and lkcache reads the layouts skopeo writes.

use std::process::Command;

use crate::harness::images;
use crate::harness::{Cache, Pusher, Registry, TestResult, blobs_in, require_tool};

fn skopeo(args: &[&str]) -> TestResult<String> {
    let output = Command::new(require_tool("skopeo", "skopeo")?)
        .args(args)
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "skopeo {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

#[test]
fn skopeo_reads_an_image_out_of_a_cache_lkcache_wrote() -> TestResult {
    let registry = Registry::start()?;
    let index = images::three_platform_index(30)?;
    Pusher::new(registry.addr()).index("multi", "v1", &index)?;
    let cache = Cache::new()?;
    let name = format!("{}/multi:v1", registry.addr());
    cache
        .run(&["pull", "--platform", "linux/arm64", &name])?
        .ok()?;
    let layout = format!("oci:{}:{name}", cache.root().display());

    let raw = skopeo(&["inspect", "--raw", &layout])?;
    let inspected = skopeo(&[
        "--override-os",
        "linux",
        "--override-arch",
        "arm64",
        "inspect",
        &layout,
    ])?;
    let out = tempfile::tempdir()?;
    let copy_target = format!("oci:{}:copy", out.path().display());
    skopeo(&[
        "--override-os",
        "linux",
        "--override-arch",
        "arm64",
        "copy",
        "--quiet",
        &layout,
        &copy_target,
    ])?;

    assert_eq!(raw.as_bytes(), index.blob.bytes.as_slice());
    let inspected: serde_json::Value = serde_json::from_str(&inspected)?;
    assert_eq!(inspected["Digest"], index.blob.digest.to_string());
    assert_eq!(inspected["Architecture"], "arm64");
    let copied = blobs_in(out.path())?;
    assert!(copied.contains(&index.images[1].manifest.digest.to_string()));
    assert!(copied.contains(&index.images[1].layers[1].blob.digest.to_string()));
    Ok(())
}

#[test]
fn lkcache_reads_a_layout_skopeo_wrote_without_asking_the_registry() -> TestResult {
    let mut registry = Registry::start()?;
    let index = images::three_platform_index(31)?;
    Pusher::new(registry.addr()).index("multi", "v1", &index)?;
    let cache = Cache::new()?;
    let name = format!("{}/multi:v1", registry.addr());
    let source = format!("docker://{name}");
    let layout = format!("oci:{}:{name}", cache.root().display());
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--all",
        &source,
        &layout,
    ])?;

    registry.stop();
    let pulled = cache
        .run(&["pull", "--platform", "linux/arm/v7", &name])?
        .ok()?;
    let listed = cache.run(&["ls"])?.ok()?;

    assert!(pulled.stdout.contains("cached"), "{}", pulled.stdout);
    assert!(listed.stdout.contains(&name), "{}", listed.stdout);
    assert!(
        listed
            .stdout
            .contains("linux/amd64,linux/arm64,linux/arm/v7"),
        "{}",
        listed.stdout
    );
    Ok(())
}
