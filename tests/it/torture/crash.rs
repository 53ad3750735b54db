//! Crash points: `pull`, `push`, `import`, `rm` and `gc` killed with
//! SIGKILL after a random delay spread over a whole run, then the cache
//! checked and the command run again; a cache on a full disk; a read-only
//! cache.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::images::{self, Image, Index, Style};
use crate::harness::permissions::{make_read_only, make_writable, unprivileged};
use crate::harness::{Cache, Pusher, Registry, Run, TestResult, run_of};

use super::{Rng, check_cache, copy_dir, count, snapshot};

/// Kills per command kind.
fn kills() -> usize {
    count(8, 100)
}

/// Pushes an index of three platforms with incompressible layers (so that
/// a pull takes long enough to be killed in every phase) as `crash/idx:1`.
fn push_crash_index(registry: &Registry, seed: u64) -> TestResult<Index> {
    let mut built = Vec::new();
    for (i, platform) in ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]
        .iter()
        .enumerate()
    {
        let seed = seed + i as u64 * 10;
        let base = images::layer(Style::Oci, &[("base", images::noise(seed, 600_000))])?;
        let app = images::layer(Style::Oci, &[("app", images::noise(seed + 1, 900_000))])?;
        let small = images::layer(Style::Oci, &[("etc/x", images::text(seed + 2, 300))])?;
        built.push(images::image(Style::Oci, platform, vec![base, app, small]));
    }
    let index = images::index(Style::Oci, built);
    Pusher::new(registry.addr()).index("crash/idx", "1", &index)?;
    Ok(index)
}

/// Pushes two images that share a base layer as `share/a:1`, `share/b:1`.
fn push_sharing(registry: &Registry, seed: u64) -> TestResult<(Image, Image)> {
    let pusher = Pusher::new(registry.addr());
    let base = images::layer(Style::Oci, &[("base", images::noise(seed, 500_000))])?;
    let mut built = Vec::new();
    for (i, repo) in ["share/a", "share/b"].iter().enumerate() {
        let top = images::layer(
            Style::Oci,
            &[("top", images::text(seed + 1 + i as u64, 20_000))],
        )?;
        let image = images::image(Style::Oci, "linux/amd64", vec![base.clone(), top]);
        pusher.image(repo, "1", &image)?;
        built.push(image);
    }
    let b = built.pop().ok_or("two images")?;
    let a = built.pop().ok_or("two images")?;
    Ok((a, b))
}

/// Runs `command` to its end and returns how long it took.
fn timed(cache: &Cache, args: &[&str]) -> TestResult<Duration> {
    let start = Instant::now();
    cache.run(args)?.ok()?;
    Ok(start.elapsed())
}

/// Runs `args` to its end on three copies of `template` and returns the
/// last copy and the median time: a short command's first run is often an
/// outlier, which would put most kill points after its end.
fn timed_on_copies(template: &Cache, args: &[&str]) -> TestResult<(Cache, Duration)> {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let copy = Cache::new()?;
        copy_dir(&template.root(), &copy.root())?;
        times.push(timed(&copy, args)?);
        last = Some(copy);
    }
    times.sort();
    Ok((last.ok_or("three copies")?, times[1]))
}

/// Starts `command`, kills it with SIGKILL after `delay` (unless it ended
/// first) and returns whether it was still running when killed.
fn kill_after(mut command: Command, delay: Duration) -> TestResult<bool> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(1).min(deadline - Instant::now()));
    }
    let killed = child.try_wait()?.is_none();
    child.kill()?;
    child.wait()?;
    Ok(killed)
}

/// Returns a delay in `[0, full]`.
fn random_delay(rng: &mut Rng, full: Duration) -> Duration {
    let micros = full.as_micros().max(1) as u64;
    Duration::from_micros(rng.next_u64() % (micros + 1))
}

#[test]
fn killed_pulls_leave_a_sound_cache_and_a_rerun_completes() -> TestResult {
    let registry = Registry::start()?;
    push_crash_index(&registry, 800)?;
    let name = format!("{}/crash/idx:1", registry.addr());
    let pull = ["pull", "--all-platforms", name.as_str()];
    let full = timed(&Cache::new()?, &pull)?;
    let mut rng = Rng::new();

    let mut killed = 0;
    for attempt in 0..kills() {
        let context = format!("pull kill {attempt} (seed {})", rng.seed);
        let cache = Cache::new()?;
        let delay = random_delay(&mut rng, full);
        killed += usize::from(kill_after(cache.command(&pull), delay)?);
        check_cache(&cache, &context)?;

        let held = cache.blobs()?;
        let seen = registry.requests()?.len();
        cache.run(&pull)?.ok()?;
        check_cache(&cache, &context)?;
        assert_eq!(cache.names()?, std::slice::from_ref(&name), "{context}");
        let fetched_again: Vec<String> = registry.requests()?[seen..]
            .iter()
            .filter(|r| {
                r.starts_with("GET ")
                    && r.contains("/blobs/")
                    && held.iter().any(|d| r.contains(d.as_str()))
            })
            .cloned()
            .collect();
        assert!(fetched_again.is_empty(), "{context}: {fetched_again:?}");
    }
    eprintln!(
        "pull: {} kill points, {killed} while running, full run {full:?}",
        kills()
    );
    Ok(())
}

#[test]
fn killed_pushes_leave_a_sound_cache_and_a_rerun_publishes_the_image() -> TestResult {
    let source = Registry::start()?;
    let target = Registry::start()?;
    push_crash_index(&source, 810)?;
    let name = format!("{}/crash/idx:1", source.addr());
    let cache = Cache::new()?;
    cache.run(&["pull", "--all-platforms", &name])?.ok()?;
    let first = format!("{}/pushed/first:1", target.addr());
    let full = timed(&cache, &["push", &name, "--remote-name", &first])?;
    let mut rng = Rng::new();

    let mut killed = 0;
    for attempt in 0..kills() {
        let context = format!("push kill {attempt} (seed {})", rng.seed);
        let remote = format!("{}/pushed/n{attempt}:1", target.addr());
        let push = ["push", name.as_str(), "--remote-name", remote.as_str()];
        let delay = random_delay(&mut rng, full);
        killed += usize::from(kill_after(cache.command(&push), delay)?);
        check_cache(&cache, &context)?;

        cache.run(&push)?.ok()?;
        check_cache(&cache, &context)?;
        let back = Cache::new()?;
        back.run(&["pull", "--all-platforms", &remote])?.ok()?;
        check_cache(&back, &context)?;
    }
    eprintln!(
        "push: {} kill points, {killed} while running, full run {full:?}",
        kills()
    );
    Ok(())
}

/// Writes an OCI archive of `name` (every platform) from `cache` to `file`.
fn export_archive(cache: &Cache, name: &str, file: &Path) -> TestResult {
    let file = file.display().to_string();
    cache
        .run(&[
            "export",
            "--format",
            "oci",
            "--all-platforms",
            "-o",
            &file,
            name,
        ])?
        .ok()?;
    Ok(())
}

#[test]
fn killed_imports_leave_a_sound_cache_and_a_rerun_completes() -> TestResult {
    let registry = Registry::start()?;
    push_crash_index(&registry, 820)?;
    let name = format!("{}/crash/idx:1", registry.addr());
    let source = Cache::new()?;
    source.run(&["pull", "--all-platforms", &name])?.ok()?;
    let dir = tempfile::tempdir()?;
    let archive = dir.path().join("image.tar");
    export_archive(&source, &name, &archive)?;
    let archive = archive.display().to_string();
    let import = ["import", archive.as_str()];
    let full = timed(&Cache::new()?, &import)?;
    let mut rng = Rng::new();

    let mut killed = 0;
    for attempt in 0..kills() {
        let context = format!("import kill {attempt} (seed {})", rng.seed);
        let cache = Cache::new()?;
        let delay = random_delay(&mut rng, full);
        killed += usize::from(kill_after(cache.command(&import), delay)?);
        check_cache(&cache, &context)?;

        cache.run(&import)?.ok()?;
        check_cache(&cache, &context)?;
        assert_eq!(cache.names()?, std::slice::from_ref(&name), "{context}");
    }
    eprintln!(
        "import: {} kill points, {killed} while running, full run {full:?}",
        kills()
    );
    Ok(())
}

#[test]
fn killed_removals_never_damage_the_image_sharing_a_base() -> TestResult {
    let registry = Registry::start()?;
    push_sharing(&registry, 830)?;
    let a = format!("{}/share/a:1", registry.addr());
    let b = format!("{}/share/b:1", registry.addr());
    let template = Cache::new()?;
    template.run(&["pull", &a, &b])?.ok()?;
    let rm = ["rm", a.as_str()];
    let (measure, full) = timed_on_copies(&template, &rm)?;
    let mut rng = Rng::new();

    let mut killed = 0;
    for attempt in 0..kills() {
        let context = format!("rm kill {attempt} (seed {})", rng.seed);
        let cache = Cache::new()?;
        copy_dir(&template.root(), &cache.root())?;
        let delay = random_delay(&mut rng, full);
        killed += usize::from(kill_after(cache.command(&rm), delay)?);
        check_cache(&cache, &context)?;
        cache.run(&["verify", &b])?.ok()?;

        let rerun = cache.run(&rm)?;
        assert!(
            rerun.status == 0 || rerun.stderr.contains("is not in the cache"),
            "{context}: {rerun:?}"
        );
        check_cache(&cache, &context)?;
        assert_eq!(cache.names()?, std::slice::from_ref(&b), "{context}");
        assert_eq!(cache.blobs()?, measure.blobs()?, "{context}");
    }
    eprintln!(
        "rm: {} kill points, {killed} while running, full run {full:?}",
        kills()
    );
    Ok(())
}

/// Rewrites `index.json` of `cache` keeping only the name `keep`, as
/// another tool might, so that the other names' blobs become garbage.
fn keep_only(cache: &Cache, keep: &str) -> TestResult {
    let mut index = cache.index_json()?;
    let manifests = index["manifests"].as_array().ok_or("manifests")?;
    let kept: Vec<_> = manifests
        .iter()
        .filter(|d| d["annotations"]["org.opencontainers.image.ref.name"] == keep)
        .cloned()
        .collect();
    index["manifests"] = serde_json::Value::Array(kept);
    fs::write(cache.root().join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(())
}

#[test]
fn killed_collections_leave_a_sound_cache_and_a_rerun_completes() -> TestResult {
    let registry = Registry::start()?;
    push_sharing(&registry, 840)?;
    push_crash_index(&registry, 841)?;
    let a = format!("{}/share/a:1", registry.addr());
    let b = format!("{}/share/b:1", registry.addr());
    let multi = format!("{}/crash/idx:1", registry.addr());
    let template = Cache::new()?;
    template.run(&["pull", &a, &b])?.ok()?;
    template.run(&["pull", "--all-platforms", &multi])?.ok()?;
    keep_only(&template, &b)?;
    let (measure, full) = timed_on_copies(&template, &["gc"])?;
    let mut rng = Rng::new();

    let mut killed = 0;
    for attempt in 0..kills() {
        let context = format!("gc kill {attempt} (seed {})", rng.seed);
        let cache = Cache::new()?;
        copy_dir(&template.root(), &cache.root())?;
        let delay = random_delay(&mut rng, full);
        killed += usize::from(kill_after(cache.command(&["gc"]), delay)?);
        check_cache(&cache, &context)?;

        cache.run(&["gc"])?.ok()?;
        check_cache(&cache, &context)?;
        assert_eq!(cache.names()?, std::slice::from_ref(&b), "{context}");
        assert_eq!(cache.blobs()?, measure.blobs()?, "{context}");
    }
    eprintln!(
        "gc: {} kill points, {killed} while running, full run {full:?}",
        kills()
    );
    Ok(())
}

/// Runs a script in a new user and mount namespace, where an unprivileged
/// user is root and may mount a tmpfs; as root the same works.
/// (`unshare --user --map-root-user --mount` works on this kind of machine
/// both as root and as an ordinary user with unprivileged user namespaces.)
fn in_mount_namespace(cache: &Cache, script: &str, args: &[&str]) -> TestResult<Run> {
    let template = cache.command(&[]);
    let mut command = Command::new("unshare");
    command
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
        ])
        .args(args);
    for (key, value) in template.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    Ok(run_of(command.output()?))
}

#[test]
fn a_full_disk_fails_clearly_and_leaves_the_cache_as_it_was() -> TestResult {
    let registry = Registry::start()?;
    let pusher = Pusher::new(registry.addr());
    let small = images::image(
        Style::Oci,
        "linux/amd64",
        vec![images::layer(
            Style::Oci,
            &[("s", images::text(850, 3000))],
        )?],
    );
    pusher.image("disk/small", "1", &small)?;
    let big = images::image(
        Style::Oci,
        "linux/amd64",
        vec![
            images::layer(Style::Oci, &[("b1", images::noise(851, 900_000))])?,
            images::layer(Style::Oci, &[("b2", images::noise(852, 3_000_000))])?,
        ],
    );
    pusher.image("disk/big", "1", &big)?;
    let cache = Cache::new()?;
    let out = tempfile::tempdir()?;
    fs::create_dir(cache.root())?;
    let small_name = format!("{}/disk/small:1", registry.addr());
    let big_name = format!("{}/disk/big:1", registry.addr());
    let script = r#"set -e
lk="$1"; cache="$2"; out="$3"
mount -t tmpfs -o size=2m tmpfs "$cache"
"$lk" --cache "$cache" pull "$4" >/dev/null 2>&1
mkdir "$out/before" "$out/after"
cp -a "$cache/." "$out/before/"
set +e
"$lk" --cache "$cache" pull "$5" >/dev/null 2>"$out/stderr"
echo $? >"$out/status"
cp -a "$cache/." "$out/after/"
"#;
    let lk = env!("CARGO_BIN_EXE_lkcache");
    let root = cache.root().display().to_string();
    let out_dir = out.path().display().to_string();
    in_mount_namespace(
        &cache,
        script,
        &[lk, &root, &out_dir, &small_name, &big_name],
    )?
    .ok()?;

    let stderr = fs::read_to_string(out.path().join("stderr"))?;
    let status = fs::read_to_string(out.path().join("status"))?;
    assert_eq!(status.trim(), "1", "{stderr}");
    assert!(stderr.contains("space"), "{stderr}");
    let before = Cache::new()?;
    copy_dir(&out.path().join("before"), &before.root())?;
    let after = Cache::new()?;
    copy_dir(&out.path().join("after"), &after.root())?;
    assert_eq!(after.names()?, std::slice::from_ref(&small_name));
    assert_eq!(snapshot(&after)?.index_json, snapshot(&before)?.index_json);
    check_cache(&after, "after a full disk")?;
    let ingest = after.root().join(".lkcache/ingest");
    let left = fs::read_dir(ingest).map_or(0, |entries| entries.count());
    assert_eq!(left, 0, "temporary files left on the full disk");
    Ok(())
}

#[test]
fn a_read_only_cache_refuses_pull_rm_gc_and_import_and_stays_as_it_was() -> TestResult {
    let registry = Registry::start()?;
    let (a, _) = push_sharing(&registry, 860)?;
    let name_a = format!("{}/share/a:1", registry.addr());
    let name_b = format!("{}/share/b:1", registry.addr());
    let other = Cache::new()?;
    other.run(&["pull", &name_b])?.ok()?;
    let dir = tempfile::tempdir()?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
    let archive = dir.path().join("b.tar");
    export_archive(&other, &name_b, &archive)?;
    fs::set_permissions(&archive, fs::Permissions::from_mode(0o644))?;
    let archive = archive.display().to_string();
    let cache = Cache::new()?;
    cache.run(&["pull", &name_a])?.ok()?;
    // Something for gc to do, were it allowed to.
    let garbage = images::text(861, 100);
    let garbage_digest = lkcache::Digest::sha256_of(&garbage).to_string();
    let hex = garbage_digest.trim_start_matches("sha256:");
    fs::write(cache.root().join("blobs/sha256").join(hex), &garbage)?;
    let before = snapshot(&cache)?;
    make_read_only(&cache)?;

    let commands: [&[&str]; 4] = [
        &["pull", &name_b],
        &["rm", &name_a],
        &["gc"],
        &["import", &archive],
    ];
    let mut failures = Vec::new();
    for args in commands {
        let run = run_of(unprivileged(cache.command(args))?.output()?);
        if run.status != 1 || !run.stderr.contains("writable") {
            failures.push(format!("{args:?}: {run:?}"));
        }
    }
    make_writable(&cache)?;

    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(snapshot(&cache)?, before);
    check_cache(&cache, "read-only cache")?;
    assert_eq!(cache.names()?, [name_a]);
    assert_eq!(a.layers.len(), 2);
    Ok(())
}
