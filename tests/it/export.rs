//! `lkcache export`: OCI and Docker archives that skopeo reads with the
//! cache's digests, a flat root filesystem equal to what `umoci unpack`
//! makes of the same image, exact entries for whiteouts, opaque
//! directories, hard links and odd names, hostile layers, several images
//! in one filesystem, and outputs that never look complete after a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::harness::images::{self, Layer, Style};
use crate::harness::layers::{self, LayerBuilder, Tree};
use crate::harness::{Cache, Pusher, Registry, TestResult, require_tool};

/// Runs a tool, failing with its stderr unless it succeeds.
fn tool(name: &str, package: &str, args: &[&str]) -> TestResult<Vec<u8>> {
    let output = Command::new(require_tool(name, package)?)
        .args(args)
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "{name} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(output.stdout)
}

fn skopeo(args: &[&str]) -> TestResult<Vec<u8>> {
    tool("skopeo", "skopeo", args)
}

/// Pushes `layers` as a linux/amd64 image `repo:v1`, pulls it into a new
/// cache, and returns the cache, the image and its name.
fn cached_image(
    registry: &Registry,
    repo: &str,
    layers: Vec<Layer>,
) -> TestResult<(Cache, images::Image, String)> {
    let image = images::image(Style::Oci, "linux/amd64", layers);
    Pusher::new(registry.addr()).image(repo, "v1", &image)?;
    let cache = Cache::new()?;
    let name = format!("{}/{repo}:v1", registry.addr());
    cache
        .run(&["pull", "--platform", "linux/amd64", &name])?
        .ok()?;
    Ok((cache, image, name))
}

/// Exports to a file in `dir` and returns the file's path.
fn export_to(cache: &Cache, dir: &Path, file: &str, args: &[&str]) -> TestResult<String> {
    let path = dir.join(file).display().to_string();
    let mut all = vec!["export", "-o", &path];
    all.extend_from_slice(args);
    cache.run(&all)?.ok()?;
    Ok(path)
}

/// Returns the entries of a tar that come before an entry of their parent
/// directory: what an unpacker that makes no directories itself (the
/// kernel's initramfs loader, for one) would fail on.
fn entries_before_their_parents(tar: &[u8]) -> TestResult<Vec<String>> {
    let mut directories = BTreeSet::new();
    let mut early = Vec::new();
    for entry in tar::Archive::new(tar).entries()? {
        let entry = entry?;
        let path = String::from_utf8(entry.path_bytes().into_owned())?;
        let path = path.trim_end_matches('/').to_string();
        if let Some((parent, _)) = path.rsplit_once('/')
            && !directories.contains(parent)
        {
            early.push(path.clone());
        }
        if entry.header().entry_type().is_dir() {
            directories.insert(path);
        }
    }
    Ok(early)
}

/// Lists a flat tar: `f path=content` for files (hard links resolved to
/// their content), `d path`, `l path->target`, `c path major:minor`, `p
/// path`; and the groups of hard-linked paths.
fn listing(tar: &[u8]) -> TestResult<(Vec<String>, BTreeSet<BTreeSet<String>>)> {
    let mut lines = Vec::new();
    let mut contents = BTreeMap::new();
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = String::from_utf8(entry.path_bytes().into_owned())?;
        let path = path.trim_end_matches('/').to_string();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default();
        let header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        let line = match header.entry_type().as_byte() {
            b'0' => {
                let text = String::from_utf8_lossy(&data).into_owned();
                contents.insert(path.clone(), text.clone());
                format!("f {path}={text}")
            }
            b'1' => {
                let text = contents
                    .get(&link)
                    .ok_or("a link before its target")?
                    .clone();
                contents.insert(path.clone(), text.clone());
                groups
                    .entry(link.clone())
                    .or_insert_with(|| BTreeSet::from([link.clone()]))
                    .insert(path.clone());
                format!("f {path}={text}")
            }
            b'5' => format!("d {path}"),
            b'2' => format!("l {path}->{link}"),
            b'3' => format!(
                "c {path} {}:{}",
                header.device_major()?.unwrap_or(0),
                header.device_minor()?.unwrap_or(0)
            ),
            b'6' => format!("p {path}"),
            other => format!("? {path} {}", other as char),
        };
        lines.push(line);
    }
    lines.sort();
    Ok((lines, groups.into_values().collect()))
}

#[test]
fn oci_export_is_read_by_skopeo_with_the_caches_digests() -> TestResult {
    let registry = Registry::start()?;
    let index = images::three_platform_index(70)?;
    Pusher::new(registry.addr()).index("multi", "v1", &index)?;
    let cache = Cache::new()?;
    let name = format!("{}/multi:v1", registry.addr());
    cache
        .run(&["pull", "--platform", "linux/arm64", &name])?
        .ok()?;
    let out = tempfile::tempdir()?;

    let archive = export_to(
        &cache,
        out.path(),
        "oci.tar",
        &["--format", "oci", "--platform", "linux/arm64", &name],
    )?;

    let arm64 = &index.images[1];
    let transport = format!("oci-archive:{archive}");
    let manifest = skopeo(&["inspect", "--raw", &transport])?;
    let config = skopeo(&["inspect", "--config", "--raw", &transport])?;
    assert_eq!(manifest, arm64.manifest.bytes);
    assert_eq!(config, arm64.config.bytes);

    let copy = out.path().join("copy");
    skopeo(&[
        "copy",
        "--quiet",
        &transport,
        &format!("oci:{}:copied", copy.display()),
    ])?;
    let copied = crate::harness::blobs_in(&copy)?;
    assert!(copied.contains(&arm64.manifest.digest.to_string()));
    for layer in &arm64.layers {
        assert!(copied.contains(&layer.blob.digest.to_string()));
    }

    let index_json: Value = serde_json::from_slice(&tar_member(&archive, "index.json")?)?;
    let entry = &index_json["manifests"][0];
    assert_eq!(entry["digest"], arm64.manifest.digest.to_string());
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        name
    );
    assert_eq!(entry["annotations"]["io.containerd.image.name"], name);
    Ok(())
}

/// Reads one member of a tar file.
fn tar_member(archive: &str, member: &str) -> TestResult<Vec<u8>> {
    let mut reader = tar::Archive::new(std::fs::File::open(archive)?);
    for entry in reader.entries()? {
        let mut entry = entry?;
        if entry.path_bytes().as_ref() == member.as_bytes() {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            return Ok(bytes);
        }
    }
    Err(format!("`{archive}` has no `{member}`").into())
}

#[test]
fn oci_export_of_all_platforms_keeps_a_whole_index_and_trims_a_partial_one() -> TestResult {
    let registry = Registry::start()?;
    let index = images::three_platform_index(71)?;
    Pusher::new(registry.addr()).index("multi", "v1", &index)?;
    let name = format!("{}/multi:v1", registry.addr());
    let out = tempfile::tempdir()?;

    let whole = Cache::new()?;
    whole.run(&["pull", "--all-platforms", &name])?.ok()?;
    let archive = export_to(
        &whole,
        out.path(),
        "all.tar",
        &["--format", "oci", "--all-platforms", &name],
    )?;
    let transport = format!("oci-archive:{archive}");
    assert_eq!(skopeo(&["inspect", "--raw", &transport])?, index.blob.bytes);
    skopeo(&[
        "copy",
        "--quiet",
        "--all",
        &transport,
        &format!("oci:{}:all", out.path().join("all").display()),
    ])?;

    let partial = Cache::new()?;
    partial
        .run(&[
            "pull",
            "--platform",
            "linux/amd64",
            "--platform",
            "linux/arm/v7",
            &name,
        ])?
        .ok()?;
    let path = out.path().join("partial.tar").display().to_string();
    let run = partial
        .run(&[
            "export",
            "-o",
            &path,
            "--format",
            "oci",
            "--all-platforms",
            &name,
        ])?
        .ok()?;
    assert!(run.stderr.contains("1 platform(s)"), "{}", run.stderr);
    let raw = skopeo(&["inspect", "--raw", &format!("oci-archive:{path}")])?;
    let trimmed: Value = serde_json::from_slice(&raw)?;
    let digests: Vec<&str> = trimmed["manifests"]
        .as_array()
        .ok_or("manifests")?
        .iter()
        .filter_map(|d| d["digest"].as_str())
        .collect();
    let expected = [
        index.images[0].manifest.digest.to_string(),
        index.images[2].manifest.digest.to_string(),
    ];
    assert_eq!(digests, expected);
    skopeo(&[
        "copy",
        "--quiet",
        "--all",
        &format!("oci-archive:{path}"),
        &format!("oci:{}:partial", out.path().join("partial").display()),
    ])?;
    Ok(())
}

#[test]
fn docker_export_is_read_by_skopeo_with_its_tag_config_and_layers() -> TestResult {
    let registry = Registry::start()?;
    let layers = vec![
        images::layer(Style::Docker, &[("etc/os-release", images::text(72, 3000))])?,
        images::layer(Style::Docker, &[("usr/bin/app", images::text(73, 90_000))])?,
    ];
    let image = images::image(Style::Docker, "linux/amd64", layers);
    Pusher::new(registry.addr()).image("app", "v1", &image)?;
    let cache = Cache::new()?;
    let name = format!("{}/app:v1", registry.addr());
    cache
        .run(&["pull", "--platform", "linux/amd64", &name])?
        .ok()?;
    let out = tempfile::tempdir()?;

    let archive = export_to(
        &cache,
        out.path(),
        "docker.tar",
        &["--format", "docker", &name],
    )?;

    let transport = format!("docker-archive:{archive}");
    let config = skopeo(&["inspect", "--config", "--raw", &transport])?;
    assert_eq!(config, image.config.bytes);
    let inspected: Value = serde_json::from_slice(&skopeo(&["inspect", &transport])?)?;
    let layers: Vec<&str> = inspected["Layers"]
        .as_array()
        .ok_or("layers")?
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    // The docker-archive transport names layers by their uncompressed
    // digests, the config's diff IDs.
    let expected: Vec<String> = image.layers.iter().map(|l| l.diff_id.to_string()).collect();
    assert_eq!(layers, expected);
    let manifest: Value = serde_json::from_slice(&tar_member(&archive, "manifest.json")?)?;
    assert_eq!(manifest[0]["RepoTags"][0], name);
    assert_eq!(
        manifest[0]["Config"],
        format!("blobs/sha256/{}", image.config.digest.hex())
    );
    skopeo(&[
        "copy",
        "--quiet",
        &transport,
        &format!("oci:{}:copied", out.path().join("copy").display()),
    ])?;
    Ok(())
}

#[test]
fn filesystem_export_equals_what_umoci_unpacks_from_the_same_image() -> TestResult {
    let umoci = require_tool("umoci", "umoci")?;
    let registry = Registry::start()?;
    // umoci 0.4 reads neither zstd nor mislabelled layers: gzip here.
    let layers = layers::special_layers(Style::Oci, false)?;
    let (cache, _, name) = cached_image(&registry, "special", layers)?;
    let out = tempfile::tempdir()?;
    let archive = export_to(
        &cache,
        out.path(),
        "fs.tar",
        &["--format", "filesystem", &name],
    )?;

    let layout = out.path().join("layout");
    skopeo(&[
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        &format!("docker://{name}"),
        &format!("oci:{}:v1", layout.display()),
    ])?;
    // As root, umoci keeps owners, setuid bits and device nodes, so every
    // path is compared whole. Without root it must unpack rootless, which
    // maps every owner to the caller and cannot make devices: owners and
    // device nodes are then left out of the comparison.
    let is_root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self")?) == 0;
    let bundle = out.path().join("bundle");
    let mut unpack = Command::new(umoci);
    unpack.arg("unpack");
    if !is_root {
        unpack.arg("--rootless");
    }
    let status = unpack
        .arg("--image")
        .arg(format!("{}:v1", layout.display()))
        .arg(&bundle)
        .output()?;
    if !status.status.success() {
        return Err(format!(
            "umoci unpack failed: {}",
            String::from_utf8_lossy(&status.stderr)
        )
        .into());
    }

    let flat = std::fs::read(&archive)?;
    assert_eq!(entries_before_their_parents(&flat)?, Vec::<String>::new());
    let mut ours = Tree::of_tar(&flat)?;
    let mut theirs = Tree::of_dir(&bundle.join("rootfs"))?;
    if !is_root {
        for tree in [&mut ours, &mut theirs] {
            tree.nodes.retain(|_, node| !matches!(node.kind, 'c' | 'b'));
            tree.nodes.values_mut().for_each(|node| node.owner = (0, 0));
        }
    }
    let differences = ours.differences(&theirs);
    assert!(differences.is_empty(), "{differences:#?}");
    assert!(ours.nodes.len() > 30, "{:?}", ours.nodes.keys());
    Ok(())
}

#[test]
fn filesystem_export_applies_whiteouts_opaque_dirs_and_hard_links_exactly() -> TestResult {
    let registry = Registry::start()?;
    let layers = layers::special_layers(Style::Oci, true)?;
    let (cache, _, name) = cached_image(&registry, "special", layers)?;
    let out = tempfile::tempdir()?;

    let archive = export_to(
        &cache,
        out.path(),
        "fs.tar",
        &["--format", "filesystem", &name],
    )?;

    let bytes = std::fs::read(&archive)?;
    assert_eq!(entries_before_their_parents(&bytes)?, Vec::<String>::new());
    let (lines, groups) = listing(&bytes)?;
    let gnu = layers::gnu_long_name();
    let long_dir = layers::long_dir_name();
    let pax = layers::pax_long_name();
    let mut expected = vec![
        "d .".to_string(),
        "d bin".into(),
        "f bin/tool=tool v2".into(),
        "f bin/tool2=tool v1".into(),
        "f usr/bin-link=tool v1".into(),
        "f bin/ping=ping".into(),
        "d etc".into(),
        "f etc/passwd=root:x:0:0:new".into(),
        "f etc/shadow-a=shadow v2".into(),
        "f etc/shadow-b=shadow v1".into(),
        "d usr".into(),
        "d usr/lib".into(),
        "f usr/lib/liba.so=liba".into(),
        "l lib->usr/lib".into(),
        "d opt".into(),
        "d opt/old".into(),
        "f opt/old/fresh=fresh".into(),
        // A stand-in before `data/new`, then the base layer's own entry.
        "d data".into(),
        "d data".into(),
        "f data/secret=secret".into(),
        "f data/new=new".into(),
        "d dev".into(),
        "c dev/null 1:3".into(),
        "d run".into(),
        "d long".into(),
        format!("f {gnu}=gnu"),
        format!("d {long_dir}"),
        format!("f {long_dir}/file=in a long dir"),
        format!("f {pax}=pax"),
        "d usr/share".into(),
        "d usr/share/zoneinfo".into(),
        "d usr/share/zoneinfo/Amérique".into(),
        "f usr/share/zoneinfo/Amérique/Bogotá=co".into(),
    ];
    expected.sort();
    assert_eq!(lines, expected);
    let expected_groups: BTreeSet<BTreeSet<String>> = [BTreeSet::from([
        "bin/tool2".to_string(),
        "usr/bin-link".to_string(),
    ])]
    .into();
    assert_eq!(groups, expected_groups);

    let tree = Tree::of_tar(&bytes)?;
    assert_eq!(tree.nodes["bin/ping"].mode, 0o4755);
    assert_eq!(tree.nodes["data"].owner, (1000, 1000));
    assert_eq!(tree.nodes["data"].mode, 0o700);
    assert_eq!(tree.nodes["etc/shadow-b"].owner, (0, 42));
    assert!(xattrs_of(&bytes, "bin/ping")?.contains(&("user.lkcache".into(), "caps".into())));
    Ok(())
}

/// Returns the extended attributes a tar gives `path`.
fn xattrs_of(tar: &[u8], path: &str) -> TestResult<Vec<(String, String)>> {
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path_bytes().as_ref() != path.as_bytes() {
            continue;
        }
        let Some(records) = entry.pax_extensions()? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for record in records {
            let record = record?;
            if let Some(key) = record.key()?.strip_prefix("SCHILY.xattr.") {
                out.push((key.to_string(), record.value()?.to_string()));
            }
        }
        return Ok(out);
    }
    Err(format!("no `{path}`").into())
}

#[test]
fn hostile_layers_are_dropped_with_messages_and_nothing_leaves_the_root() -> TestResult {
    let registry = Registry::start()?;
    let hostile = layers::hostile_layers()?;
    let (base, top) = (
        hostile[0].blob.digest.to_string(),
        hostile[1].blob.digest.to_string(),
    );
    let (cache, _, name) = cached_image(&registry, "hostile", hostile)?;
    let out = tempfile::tempdir()?;
    let path = out.path().join("fs.tar").display().to_string();

    let run = cache
        .run(&["export", "-o", &path, "--format", "filesystem", &name])?
        .ok()?;

    let (lines, _) = listing(&std::fs::read(&path)?)?;
    assert_eq!(
        lines,
        [
            "d etc",
            "d evil",
            "f evil/passwd=owned",
            "f ok=fine",
            "l sneaky->/etc",
        ]
    );
    for (layer, entry) in [
        (&top, "`../../escape`"),
        (&top, "`/abs/file`"),
        (&top, "`a/../../b`"),
        (&top, "`hl`"),
        (&top, "`sneaky/x`"),
        (&base, "`evil`"),
    ] {
        let warned = run
            .stderr
            .lines()
            .any(|line| line.contains(layer.as_str()) && line.contains(entry));
        assert!(
            warned,
            "no warning names {layer} and {entry}:\n{}",
            run.stderr
        );
    }

    // GNU tar unpacks the result without anything landing outside.
    let sandbox = out.path().join("sandbox");
    let root = sandbox.join("root");
    std::fs::create_dir_all(&root)?;
    tool(
        "tar",
        "tar",
        &["-xf", &path, "-C", &root.display().to_string()],
    )?;
    let outside: Vec<_> = std::fs::read_dir(&sandbox)?.collect::<Result<_, _>>()?;
    assert_eq!(outside.len(), 1);
    assert_eq!(std::fs::read(root.join("evil/passwd"))?, b"owned");
    Ok(())
}

#[test]
fn failed_export_to_a_file_leaves_no_file_and_no_temporary_file() -> TestResult {
    let registry = Registry::start()?;
    let layers = vec![
        images::layer(Style::Oci, &[("base", images::text(74, 400_000))])?,
        images::layer(Style::Oci, &[("top", images::noise(75, 2_000_000))])?,
    ];
    let base = layers[0].blob.digest.clone();
    let (cache, _, name) = cached_image(&registry, "broken", layers)?;
    let out = tempfile::tempdir()?;
    let existing = out.path().join("existing.tar");
    std::fs::write(&existing, b"the previous archive")?;

    // Damage the base layer in place, same size: the flattener writes the
    // top layer (read first) before it meets the damage.
    let blob = cache.root().join("blobs/sha256").join(base.hex());
    let mut bytes = std::fs::read(&blob)?;
    let middle = bytes.len() / 2;
    bytes[middle..middle + 64].fill(0xff);
    std::fs::write(&blob, &bytes)?;
    for format in ["filesystem", "oci"] {
        let new = out
            .path()
            .join(format!("{format}.tar"))
            .display()
            .to_string();
        let run = cache.run(&["export", "-o", &new, "--format", format, &name])?;
        let run = run.failed_with(1)?;
        assert!(run.stderr.contains(&base.to_string()), "{}", run.stderr);
        let overwrite = existing.display().to_string();
        cache
            .run(&["export", "-o", &overwrite, "--format", format, &name])?
            .failed_with(1)?;
    }

    // A layer removed from the cache: nothing is written either.
    std::fs::remove_file(&blob)?;
    let new = out.path().join("missing.tar").display().to_string();
    let run = cache.run(&["export", "-o", &new, "--format", "filesystem", &name])?;
    let run = run.failed_with(1)?;
    assert!(run.stderr.contains("cannot export"), "{}", run.stderr);

    let left: Vec<String> = std::fs::read_dir(out.path())?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<TestResult<_>>()?;
    assert_eq!(left, ["existing.tar"]);
    assert_eq!(std::fs::read(&existing)?, b"the previous archive");
    Ok(())
}

#[test]
fn several_images_are_laid_one_over_the_other_in_the_order_given() -> TestResult {
    let registry = Registry::start()?;
    let first = LayerBuilder::new()
        .dir("etc", 0o755)
        .file("etc/os-release", b"first")
        .file("etc/remove-me", b"from first")
        .dir("bin", 0o755)
        .file("bin/a", b"a")
        .build(Style::Oci, layers::Compression::Gzip)?;
    let second = LayerBuilder::new()
        .dir("etc", 0o755)
        .file("etc/os-release", b"second")
        .whiteout("etc/remove-me")
        .dir("bin", 0o755)
        .file("bin/b", b"b")
        .build(Style::Oci, layers::Compression::Zstd)?;
    let (cache, _, first_name) = cached_image(&registry, "first", vec![first])?;
    let second_image = images::image(Style::Oci, "linux/amd64", vec![second]);
    Pusher::new(registry.addr()).image("second", "v1", &second_image)?;
    let second_name = format!("{}/second:v1", registry.addr());
    cache
        .run(&["pull", "--platform", "linux/amd64", &second_name])?
        .ok()?;
    let out = tempfile::tempdir()?;

    let over = export_to(
        &cache,
        out.path(),
        "over.tar",
        &[
            "--format",
            "filesystem",
            "--platform",
            "linux/amd64",
            &first_name,
            &second_name,
        ],
    )?;
    let under = export_to(
        &cache,
        out.path(),
        "under.tar",
        &[
            "--format",
            "filesystem",
            "--platform",
            "linux/amd64",
            &second_name,
            &first_name,
        ],
    )?;

    let (over, _) = listing(&std::fs::read(over)?)?;
    assert_eq!(
        over,
        [
            "d bin",
            "d etc",
            "f bin/a=a",
            "f bin/b=b",
            "f etc/os-release=second"
        ]
    );
    let (under, _) = listing(&std::fs::read(under)?)?;
    assert_eq!(
        under,
        [
            "d bin",
            "d etc",
            "f bin/a=a",
            "f bin/b=b",
            "f etc/os-release=first",
            "f etc/remove-me=from first",
        ]
    );
    Ok(())
}

#[test]
fn writes_the_same_archive_to_stdout_as_to_a_file() -> TestResult {
    let registry = Registry::start()?;
    let layers = vec![images::layer(
        Style::Oci,
        &[("etc/motd", images::text(76, 5000))],
    )?];
    let (cache, _, name) = cached_image(&registry, "plain", layers)?;
    let out = tempfile::tempdir()?;

    for format in ["oci", "docker", "filesystem"] {
        let file = export_to(&cache, out.path(), "file.tar", &["--format", format, &name])?;
        let streamed = cache
            .command(&["export", "-o", "-", "--format", format, &name])
            .output()?;
        assert!(
            streamed.status.success(),
            "{}",
            String::from_utf8_lossy(&streamed.stderr)
        );
        assert_eq!(streamed.stdout, std::fs::read(&file)?, "{format}");
        assert!(streamed.stdout.len() % 512 == 0 && !streamed.stdout.is_empty());
    }
    Ok(())
}

#[test]
fn renames_with_name_and_refuses_wrong_arguments() -> TestResult {
    let registry = Registry::start()?;
    let layers = vec![images::layer(
        Style::Oci,
        &[("etc/motd", images::text(77, 500))],
    )?];
    let (cache, _, name) = cached_image(&registry, "renamed", layers)?;
    let out = tempfile::tempdir()?;

    let oci = export_to(
        &cache,
        out.path(),
        "oci.tar",
        &[
            "--format",
            "oci",
            "--name",
            "example.com/team/app:2.0",
            &name,
        ],
    )?;
    let index: Value = serde_json::from_slice(&tar_member(&oci, "index.json")?)?;
    let annotations = &index["manifests"][0]["annotations"];
    assert_eq!(
        annotations["org.opencontainers.image.ref.name"],
        "example.com/team/app:2.0"
    );
    assert_eq!(
        annotations["io.containerd.image.name"],
        "example.com/team/app:2.0"
    );
    let docker = export_to(
        &cache,
        out.path(),
        "docker.tar",
        &["--format", "docker", "--name", "app", &name],
    )?;
    let manifest: Value = serde_json::from_slice(&tar_member(&docker, "manifest.json")?)?;
    assert_eq!(manifest[0]["RepoTags"][0], "app:latest");

    let target = out.path().join("never.tar").display().to_string();
    for args in [
        vec!["--format", "zip", &name],
        vec!["--format", "docker", "--all-platforms", &name],
        vec!["--format", "oci", "--name", "x", &name, &name],
        vec!["--format", "oci", "--platform", "linux/amd64/v9/x", &name],
        vec!["--format", "oci", "not a reference"],
    ] {
        let mut all = vec!["export", "-o", &target];
        all.extend(args);
        cache.run(&all)?.failed_with(2)?;
    }
    let run = cache
        .run(&[
            "export",
            "-o",
            &target,
            "--format",
            "oci",
            "example.com/absent:1",
        ])?
        .failed_with(1)?;
    assert!(run.stderr.contains("not in the cache"), "{}", run.stderr);
    assert!(!Path::new(&target).exists());
    Ok(())
}
