//! `lkcache import`: OCI archives and Docker archives that skopeo wrote
//! from images in the real registry, hand-made variants of them, and
//! hostile archives that must leave the cache as it was.

use std::io::Write;
use std::process::Stdio;

use serde_json::json;

use lkcache::manifest::ANNOTATION_REF_NAME;
use lkcache::{Platform, Store, media_type};

use crate::harness::archives::{self, Entry, Kind, skopeo, skopeo_copy};
use crate::harness::images::{self, Style};
use crate::harness::{Cache, Pusher, Registry, Run, TestResult};

/// A single-platform OCI image with two layers, pushed as `repo:v1`.
fn push_single(registry: &Registry, repo: &str, seed: u64) -> TestResult<images::Image> {
    let base = images::layer(Style::Oci, &[("etc/os-release", images::text(seed, 3000))])?;
    let app = images::layer(
        Style::Oci,
        &[("usr/bin/app", images::text(seed + 1, 40_000))],
    )?;
    let image = images::image(Style::Oci, "linux/amd64", vec![base, app]);
    Pusher::new(registry.addr()).image(repo, "v1", &image)?;
    Ok(image)
}

/// Makes an OCI archive of `repo:v1` with skopeo, its ref name `ref_name`
/// (none when empty), and returns its bytes.
fn skopeo_oci_archive(registry: &Registry, repo: &str, ref_name: &str) -> TestResult<Vec<u8>> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("image.tar");
    let mut destination = format!("oci-archive:{}", file.display());
    if !ref_name.is_empty() {
        destination = format!("{destination}:{ref_name}");
    }
    skopeo_copy(
        &format!("{}/{repo}:v1", registry.addr()),
        &destination,
        false,
    )?;
    Ok(std::fs::read(file)?)
}

/// `index.json` and the blobs, to show that a failed import changed
/// nothing.
#[derive(Debug, PartialEq)]
struct Snapshot {
    index_json: Vec<u8>,
    blobs: std::collections::BTreeSet<String>,
    ingest_files: usize,
}

fn snapshot(cache: &Cache) -> TestResult<Snapshot> {
    let ingest = cache.root().join(".lkcache/ingest");
    Ok(Snapshot {
        index_json: std::fs::read(cache.root().join("index.json"))?,
        blobs: cache.blobs()?,
        ingest_files: std::fs::read_dir(ingest).map_or(0, |entries| entries.count()),
    })
}

/// A cache that already holds one image, for the hostile tests to leave
/// alone.
fn cache_holding_an_image() -> TestResult<Cache> {
    let cache = Cache::new()?;
    let image = images::image(
        Style::Oci,
        "linux/amd64",
        vec![images::layer(
            Style::Oci,
            &[("kept", images::text(90, 500))],
        )?],
    );
    let entries = archives::oci_layout(
        &image.manifest,
        json!({ANNOTATION_REF_NAME: "example.com/kept:1"}),
        &archives::image_blobs(&image),
    );
    import_bytes(&cache, &archives::write_tar(&entries)?, &[])?.ok()?;
    Ok(cache)
}

/// Runs `lkcache import` on `bytes`, written to a file first.
fn import_bytes(cache: &Cache, bytes: &[u8], extra: &[&str]) -> TestResult<Run> {
    let dir = tempfile::tempdir()?;
    let file = archives::write_file(dir.path(), "archive.tar", bytes)?;
    let mut args = vec!["import", file.as_str()];
    args.extend(extra);
    cache.run(&args)
}

/// Imports a hostile archive into a cache holding an image, and checks
/// that it fails with `expected` in its message and changes nothing.
fn refuse(bytes: &[u8], expected: &str) -> TestResult<Run> {
    let cache = cache_holding_an_image()?;
    let before = snapshot(&cache)?;
    let run = import_bytes(&cache, bytes, &[])?.failed_with(1)?;
    assert!(run.stderr.contains(expected), "{}", run.stderr);
    assert_eq!(snapshot(&cache)?, before);
    assert_eq!(cache.names()?, ["example.com/kept:1"]);
    Ok(run)
}

#[test]
fn imports_a_skopeo_oci_archive_under_its_name_with_the_registrys_digests() -> TestResult {
    let registry = Registry::start()?;
    let image = push_single(&registry, "single", 1)?;
    let name = format!("{}/single:v1", registry.addr());
    let archive = skopeo_oci_archive(&registry, "single", &name)?;
    let cache = Cache::new()?;

    let run = import_bytes(&cache, &archive, &[])?.ok()?;
    let listed = cache.run(&["ls"])?.ok()?;

    assert_eq!(
        run.stdout,
        format!("{name} {} imported [linux/amd64]\n", image.manifest.digest)
    );
    assert!(listed.stdout.contains(&name), "{}", listed.stdout);
    let store = Store::open(cache.root())?;
    let read = store.image(&name, &Platform::parse("linux/amd64")?)?;
    assert_eq!(read.descriptor.digest, image.manifest.digest);
    assert_eq!(read.config_bytes, image.config.bytes);
    let layers: Vec<_> = read.layers().iter().map(|l| &l.digest).collect();
    let pushed: Vec<_> = image.layers.iter().map(|l| &l.blob.digest).collect();
    assert_eq!(layers, pushed);
    Ok(())
}

#[test]
fn imports_every_platform_of_a_skopeo_archive_made_with_all() -> TestResult {
    let registry = Registry::start()?;
    let index = images::three_platform_index(2)?;
    Pusher::new(registry.addr()).index("multi", "v1", &index)?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("multi.tar");
    let destination = format!("oci-archive:{}:library/multi:v2", file.display());
    skopeo_copy(&format!("{}/multi:v1", registry.addr()), &destination, true)?;
    let cache = Cache::new()?;

    let run = cache.run(&["import", &file.display().to_string()])?.ok()?;

    let name = "docker.io/library/multi:v2";
    assert_eq!(
        run.stdout,
        format!(
            "{name} {} imported [linux/amd64,linux/arm64,linux/arm/v7]\n",
            index.blob.digest
        )
    );
    let store = Store::open(cache.root())?;
    for (platform, image) in ["linux/amd64", "linux/arm64", "linux/arm/v7"]
        .iter()
        .zip(&index.images)
    {
        let read = store.image(name, &Platform::parse(platform)?)?;
        assert_eq!(read.descriptor.digest, image.manifest.digest, "{platform}");
    }
    assert_eq!(cache.names()?, [name]);
    Ok(())
}

#[test]
fn imports_a_docker_archive_with_layers_stored_under_their_diff_ids() -> TestResult {
    let registry = Registry::start()?;
    let image = push_single(&registry, "dock", 3)?;
    let name = format!("{}/dock:v1", registry.addr());
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("docker.tar");
    skopeo_copy(
        &name,
        &format!("docker-archive:{}:{name}", file.display()),
        false,
    )?;
    let cache = Cache::new()?;

    let run = cache.run(&["import", &file.display().to_string()])?.ok()?;

    let store = Store::open(cache.root())?;
    let read = store.image(&name, &Platform::parse("linux/amd64")?)?;
    assert_eq!(
        run.stdout,
        format!("{name} {} imported [linux/amd64]\n", read.descriptor.digest)
    );
    let config: serde_json::Value = serde_json::from_slice(&read.config_bytes)?;
    let diff_ids: Vec<String> = image.layers.iter().map(|l| l.diff_id.to_string()).collect();
    assert_eq!(config["rootfs"]["diff_ids"], json!(diff_ids));
    let stored: Vec<String> = read.layers().iter().map(|l| l.digest.to_string()).collect();
    assert_eq!(stored, diff_ids);
    assert!(
        read.layers()
            .iter()
            .all(|l| l.media_type == media_type::OCI_LAYER_TAR)
    );

    let layout = format!("oci:{}:{name}", cache.root().display());
    let inspected: serde_json::Value = serde_json::from_str(&skopeo(&["inspect", &layout])?)?;
    assert_eq!(inspected["Digest"], read.descriptor.digest.to_string());
    assert_eq!(inspected["Layers"], json!(diff_ids));
    Ok(())
}

#[test]
fn imports_entries_whose_names_start_with_dot_slash() -> TestResult {
    let registry = Registry::start()?;
    let image = push_single(&registry, "dotted", 4)?;
    let archive = skopeo_oci_archive(&registry, "dotted", "example.com/dotted:v1")?;
    let dotted: Vec<Entry> = archives::read_tar(&archive)?
        .into_iter()
        .map(|entry| Entry {
            name: format!("./{}", entry.name),
            ..entry
        })
        .collect();
    let cache = Cache::new()?;

    let run = import_bytes(&cache, &archives::write_tar(&dotted)?, &[])?.ok()?;

    assert!(
        run.stdout
            .starts_with(&format!("example.com/dotted:v1 {}", image.manifest.digest)),
        "{}",
        run.stdout
    );
    Ok(())
}

#[test]
fn a_bare_tag_needs_name_and_joins_its_repository() -> TestResult {
    let registry = Registry::start()?;
    let image = push_single(&registry, "tagged", 5)?;
    let archive = skopeo_oci_archive(&registry, "tagged", "v1")?;
    let cache = Cache::new()?;
    let dir = tempfile::tempdir()?;
    let file = archives::write_file(dir.path(), "tagged.tar", &archive)?;

    let without = cache.run(&["import", &file])?.failed_with(2)?;
    let names_after_refusal = cache.names()?;
    let with = cache
        .run(&["import", "--name", "example.com/team/app", &file])?
        .ok()?;

    assert!(without.stderr.contains("--name"), "{}", without.stderr);
    assert!(without.stderr.contains("`v1`"), "{}", without.stderr);
    assert!(names_after_refusal.is_empty());
    assert_eq!(
        with.stdout,
        format!(
            "example.com/team/app:v1 {} imported [linux/amd64]\n",
            image.manifest.digest
        )
    );
    Ok(())
}

#[test]
fn reports_an_archive_without_names_by_digest() -> TestResult {
    let registry = Registry::start()?;
    let image = push_single(&registry, "anonymous", 6)?;
    let archive = skopeo_oci_archive(&registry, "anonymous", "")?;
    let cache = Cache::new()?;

    let unnamed = import_bytes(&cache, &archive, &[])?.ok()?;
    let names_after_unnamed = cache.names()?;
    cache.run(&["gc"])?.ok()?;
    let listed = cache.run(&["ls", "--json"])?.ok()?;
    let named = import_bytes(&cache, &archive, &["--name", "example.com/anonymous"])?.ok()?;

    let digest = &image.manifest.digest;
    assert_eq!(unnamed.stdout, format!("{digest} imported [linux/amd64]\n"));
    assert!(names_after_unnamed.is_empty());
    assert!(
        cache.blobs()?.contains(&digest.to_string()),
        "gc keeps an unnamed import"
    );
    assert!(
        listed.stdout.contains(&format!("\"@{digest}\"")),
        "{}",
        listed.stdout
    );
    assert_eq!(
        named.stdout,
        format!("example.com/anonymous:latest {digest} imported [linux/amd64]\n")
    );
    Ok(())
}

#[test]
fn imports_from_standard_input() -> TestResult {
    let registry = Registry::start()?;
    let image = push_single(&registry, "piped", 7)?;
    let archive = skopeo_oci_archive(&registry, "piped", "example.com/piped:v1")?;
    let cache = Cache::new()?;

    let mut child = cache
        .command(&["import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child.stdin.take().ok_or("stdin")?.write_all(&archive)?;
    let output = child.wait_with_output()?;

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8(output.stdout)?,
        format!(
            "example.com/piped:v1 {} imported [linux/amd64]\n",
            image.manifest.digest
        )
    );
    Ok(())
}

#[test]
fn an_oci_export_imports_into_an_empty_cache_with_the_same_names_and_digests() -> TestResult {
    let registry = Registry::start()?;
    let index = images::three_platform_index(15)?;
    Pusher::new(registry.addr()).index("multi", "v1", &index)?;
    let docker_style = images::image(
        Style::Docker,
        "linux/amd64",
        vec![images::layer(
            Style::Docker,
            &[("d", images::text(16, 700))],
        )?],
    );
    Pusher::new(registry.addr()).image("docker", "v1", &docker_style)?;
    let multi = format!("{}/multi:v1", registry.addr());
    let docker = format!("{}/docker:v1", registry.addr());
    let source = Cache::new()?;
    // Every platform, so that the export writes the registry's own index.
    source.run(&["pull", "--all-platforms", &multi])?.ok()?;
    source
        .run(&["pull", "--platform", "linux/amd64", &docker])?
        .ok()?;
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("export.tar").display().to_string();
    source
        .run(&[
            "export",
            "--format",
            "oci",
            "--all-platforms",
            "-o",
            &file,
            &multi,
            &docker,
        ])?
        .ok()?;
    let target = Cache::new()?;

    target.run(&["import", &file])?.ok()?;

    let roots = |cache: &Cache| -> TestResult<Vec<(String, String)>> {
        let index = cache.index_json()?;
        let mut roots: Vec<(String, String)> = index["manifests"]
            .as_array()
            .ok_or("manifests")?
            .iter()
            .map(|d| {
                let name = d["annotations"][ANNOTATION_REF_NAME]
                    .as_str()
                    .unwrap_or_default();
                (
                    name.to_string(),
                    d["digest"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        roots.sort();
        Ok(roots)
    };
    assert_eq!(roots(&target)?, roots(&source)?);
    assert_eq!(target.blobs()?, source.blobs()?);
    let listed = target.run(&["ls"])?.ok()?;
    assert!(
        listed
            .stdout
            .contains("linux/amd64,linux/arm64,linux/arm/v7"),
        "{}",
        listed.stdout
    );
    Ok(())
}

/// Docker 25 and later `docker save` an OCI layout with a `manifest.json`
/// beside it; made by hand here, as the tests have no Docker daemon.
#[test]
fn prefers_the_oci_layout_of_a_docker_archive_and_takes_its_repo_tags() -> TestResult {
    let image = images::image(
        Style::Oci,
        "linux/arm64",
        vec![images::layer(
            Style::Oci,
            &[("bin/tool", images::text(8, 4000))],
        )?],
    );
    let mut entries =
        archives::oci_layout(&image.manifest, json!({}), &archives::image_blobs(&image));
    let manifest_json = json!([{
        "Config": archives::blob_entry(&image.config),
        "RepoTags": ["tool:1.0"],
        "Layers": [archives::blob_entry(&image.layers[0].blob)],
    }]);
    entries.push(Entry::file(
        "manifest.json",
        serde_json::to_vec(&manifest_json)?,
    ));
    let cache = Cache::new()?;

    let run = import_bytes(&cache, &archives::write_tar(&entries)?, &[])?.ok()?;

    assert_eq!(
        run.stdout,
        format!(
            "docker.io/library/tool:1.0 {} imported [linux/arm64]\n",
            image.manifest.digest
        )
    );
    Ok(())
}

/// An index whose archive holds only some platforms, as a cache holds
/// them and `lkcache export --all-platforms` writes them.
#[test]
fn imports_the_platforms_an_archive_holds_of_an_index() -> TestResult {
    let index = images::three_platform_index(14)?;
    let absent = archives::image_blobs(&index.images[1]);
    let held: Vec<&images::Blob> = archives::index_blobs(&index)
        .into_iter()
        .filter(|blob| !absent.iter().any(|a| a.digest == blob.digest))
        .collect();
    let entries = archives::oci_layout(
        &index.blob,
        json!({ANNOTATION_REF_NAME: "example.com/partial:1"}),
        &held,
    );
    let cache = Cache::new()?;

    let run = import_bytes(&cache, &archives::write_tar(&entries)?, &[])?.ok()?;

    assert_eq!(
        run.stdout,
        format!(
            "example.com/partial:1 {} imported [linux/amd64,linux/arm/v7]\n",
            index.blob.digest
        )
    );
    let blobs = cache.blobs()?;
    assert!(!blobs.contains(&index.images[1].manifest.digest.to_string()));
    assert!(blobs.contains(&index.images[2].layers[1].blob.digest.to_string()));
    Ok(())
}

#[test]
fn a_blob_whose_name_lies_imports_nothing() -> TestResult {
    let registry = Registry::start()?;
    let image = push_single(&registry, "liar", 9)?;
    let archive = skopeo_oci_archive(&registry, "liar", "example.com/liar:v1")?;
    let target = archives::blob_entry(&image.layers[1].blob);
    let mut entries = archives::read_tar(&archive)?;
    let lying = entries
        .iter_mut()
        .find(|e| e.name == target)
        .ok_or("the archive lacks the layer")?;
    let Kind::File(content) = &mut lying.kind else {
        return Err("the layer is not a file".into());
    };
    content[100] ^= 0xff;

    let run = refuse(&archives::write_tar(&entries)?, &target)?;

    assert!(run.stderr.contains("hashes to"), "{}", run.stderr);
    Ok(())
}

#[test]
fn a_truncated_archive_imports_nothing() -> TestResult {
    let registry = Registry::start()?;
    push_single(&registry, "cut", 10)?;
    let archive = skopeo_oci_archive(&registry, "cut", "example.com/cut:v1")?;

    let cut_inside = refuse(&archive[..archive.len() * 3 / 5], "truncated")?;
    let entries = archives::read_tar(&archive)?;
    let whole = archives::write_tar(&entries)?;
    let cut_between = refuse(&whole[..whole.len() - 1024], "truncated")?;

    assert!(cut_inside.stderr.contains("again"), "{}", cut_inside.stderr);
    assert!(
        cut_between.stderr.contains("end-of-archive"),
        "{}",
        cut_between.stderr
    );
    Ok(())
}

#[test]
fn a_missing_blob_is_named_and_imports_nothing() -> TestResult {
    let image = images::image(
        Style::Oci,
        "linux/amd64",
        vec![images::layer(Style::Oci, &[("a", images::text(11, 900))])?],
    );
    let missing = archives::blob_entry(&image.layers[0].blob);
    let entries: Vec<Entry> = archives::oci_layout(
        &image.manifest,
        json!({ANNOTATION_REF_NAME: "example.com/incomplete:1"}),
        &archives::image_blobs(&image),
    )
    .into_iter()
    .filter(|e| e.name != missing)
    .collect();

    refuse(&archives::write_tar(&entries)?, &missing)?;
    Ok(())
}

#[test]
fn entry_names_that_leave_the_archive_are_refused() -> TestResult {
    let image = images::image(
        Style::Oci,
        "linux/amd64",
        vec![images::layer(Style::Oci, &[("a", images::text(12, 900))])?],
    );
    let layout = archives::oci_layout(
        &image.manifest,
        json!({ANNOTATION_REF_NAME: "example.com/escape:1"}),
        &archives::image_blobs(&image),
    );
    let hostile = [
        Entry::file("../../escaped", "outside"),
        Entry::file("/absolute/escaped", "outside"),
        Entry {
            name: "link".to_string(),
            kind: Kind::Symlink("../../../etc/passwd".to_string()),
        },
    ];

    for entry in hostile {
        let mut entries = layout.clone();
        entries.insert(1, entry.clone());
        let expected = match entry.kind {
            Kind::Symlink(_) => "outside the archive",
            _ => "absolute path or a `..` component",
        };
        let run = refuse(&archives::write_tar(&entries)?, expected)?;
        assert!(run.stderr.contains(&entry.name), "{}", run.stderr);
    }
    Ok(())
}

#[test]
fn input_that_is_no_image_archive_is_refused() -> TestResult {
    let not_tar = images::text(13, 5000);
    let no_layout = archives::write_tar(&[Entry::file("hello.txt", "hello")])?;
    let oversized = archives::write_tar(&[
        Entry::file("oci-layout", r#"{"imageLayoutVersion":"1.0.0"}"#),
        Entry::file("index.json", vec![b' '; 5 << 20]),
    ])?;

    refuse(&not_tar, "not a tar archive")?;
    refuse(&[], "empty")?;
    refuse(&no_layout, "neither an OCI image layout")?;
    refuse(&oversized, "more than the 4194304 bytes")?;
    Ok(())
}

#[test]
fn an_image_listed_twice_is_one_image_under_all_its_names() -> TestResult {
    let image = images::image(
        Style::Oci,
        "linux/amd64",
        vec![images::layer(
            Style::Oci,
            &[("twice", images::text(95, 700))],
        )?],
    );
    let entry = |name: Option<&str>| {
        let mut descriptor = image.manifest.descriptor();
        if let Some(name) = name {
            descriptor["annotations"] = json!({ANNOTATION_REF_NAME: name});
        }
        descriptor
    };
    let layout_with = |manifests: serde_json::Value| -> TestResult<Vec<u8>> {
        let mut entries =
            archives::oci_layout(&image.manifest, json!({}), &archives::image_blobs(&image));
        let index = json!({"schemaVersion": 2, "manifests": manifests});
        entries[1] = Entry::file("index.json", serde_json::to_vec(&index)?);
        archives::write_tar(&entries)
    };
    let named_twice = layout_with(json!([
        entry(Some("example.com/a:1")),
        entry(Some("example.com/b:1")),
        entry(Some("example.com/a:1")),
    ]))?;
    let unnamed_twice = layout_with(json!([entry(None), entry(None)]))?;
    let digest = &image.manifest.digest;

    let cache = Cache::new()?;
    let named = import_bytes(&cache, &named_twice, &[])?.ok()?;
    assert_eq!(
        named.stdout,
        format!(
            "example.com/a:1 {digest} imported [linux/amd64]\n\
             example.com/b:1 {digest} imported [linux/amd64]\n"
        )
    );
    let mut names = cache.names()?;
    names.sort();
    assert_eq!(names, ["example.com/a:1", "example.com/b:1"]);

    let other = Cache::new()?;
    let unnamed = import_bytes(&other, &unnamed_twice, &["--name", "example.com/c:2"])?.ok()?;
    assert_eq!(
        unnamed.stdout,
        format!("example.com/c:2 {digest} imported [linux/amd64]\n")
    );
    assert_eq!(other.names()?, ["example.com/c:2"]);
    Ok(())
}
