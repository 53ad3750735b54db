//! Concurrency: sixteen processes at once on one cache, round after round,
//! pulling images that share layers and the same image twice, removing,
//! collecting garbage, importing and exporting, beside a LinuxKit-style
//! writer that rewrites `index.json` in place under a POSIX `fcntl` lock.

use std::fs;
use std::process::{Child, Command, Stdio};

use crate::harness::images::{self, Style};
use crate::harness::{Cache, Pusher, Registry, TestResult, require_tool};

use super::{Rng, check_cache, count};

/// LinuxKit's way of changing `index.json`: a POSIX write lock on
/// `<cache>/.lock` (Python's `lockf` is `fcntl(F_SETLKW)`), then the file
/// rewritten in place (truncated and written). Adds the name
/// `linuxkit.test/writer:N`, pointing at the root of `SOURCE`, and removes
/// `linuxkit.test/writer:N-1`.
const LINUXKIT_WRITER: &str = r#"
import fcntl, json, os, sys
cache, n, source = sys.argv[1], int(sys.argv[2]), sys.argv[3]
key = "org.opencontainers.image.ref.name"
name = lambda d: d.get("annotations", {}).get(key)
with open(os.path.join(cache, ".lock"), "a") as lock:
    fcntl.lockf(lock, fcntl.LOCK_EX)
    with open(os.path.join(cache, "index.json"), "r+") as f:
        index = json.load(f)
        gone = ("linuxkit.test/writer:%d" % (n - 1), "linuxkit.test/writer:%d" % n)
        kept = [d for d in index["manifests"] if name(d) not in gone]
        root = dict(next(d for d in kept if name(d) == source))
        root["annotations"] = dict(root["annotations"], **{key: gone[1]})
        index["manifests"] = kept + [root]
        f.seek(0)
        f.truncate()
        f.write(json.dumps(index, indent=2))
        f.flush()
        os.fsync(f.fileno())
    fcntl.lockf(lock, fcntl.LOCK_UN)
"#;

/// The names of the test's images.
struct Names {
    a: String,
    b: String,
    c: String,
    multi: String,
    fixed: String,
    imported: String,
}

impl Names {
    fn of(registry: &Registry) -> Names {
        let at = |repo: &str| format!("{}/{repo}", registry.addr());
        Names {
            a: at("conc/a:1"),
            b: at("conc/b:1"),
            c: at("conc/c:1"),
            multi: at("conc/multi:1"),
            fixed: at("conc/fixed:1"),
            imported: at("conc/imported:1"),
        }
    }

    /// Returns the names no process removes.
    fn kept(&self) -> [&str; 4] {
        [&self.b, &self.multi, &self.fixed, &self.imported]
    }
}

/// Pushes three images sharing a base layer, an index of three platforms,
/// an image to export and one to import.
fn push_images(registry: &Registry) -> TestResult {
    let pusher = Pusher::new(registry.addr());
    let base = images::layer(Style::Oci, &[("base", images::noise(900, 400_000))])?;
    for (i, repo) in ["conc/a", "conc/b", "conc/c"].iter().enumerate() {
        let top = images::layer(Style::Oci, &[("top", images::text(901 + i as u64, 30_000))])?;
        let image = images::image(Style::Oci, "linux/amd64", vec![base.clone(), top]);
        pusher.image(repo, "1", &image)?;
    }
    pusher.index("conc/multi", "1", &images::three_platform_index(905)?)?;
    for (seed, repo) in [(906, "conc/fixed"), (907, "conc/imported")] {
        let own = images::layer(Style::Oci, &[("own", images::text(seed, 60_000))])?;
        let image = images::image(Style::Oci, "linux/amd64", vec![base.clone(), own]);
        pusher.image(repo, "1", &image)?;
    }
    Ok(())
}

#[test]
fn sixteen_processes_and_a_linuxkit_writer_keep_every_name_sound() -> TestResult {
    let python = require_tool("python3", "python3")?;
    let registry = Registry::start()?;
    push_images(&registry)?;
    let names = Names::of(&registry);
    let dir = tempfile::tempdir()?;
    let archive = dir.path().join("imported.tar").display().to_string();
    let source = Cache::new()?;
    source.run(&["pull", &names.imported])?.ok()?;
    source
        .run(&["export", "--format", "oci", "-o", &archive, &names.imported])?
        .ok()?;
    let cache = Cache::new()?;
    cache.run(&["pull", &names.b, &names.fixed])?.ok()?;
    cache
        .run(&["pull", "--all-platforms", &names.multi])?
        .ok()?;
    cache.run(&["import", &archive])?.ok()?;
    let reference = dir.path().join("reference.tar").display().to_string();
    cache
        .run(&["export", "--format", "oci", "-o", &reference, &names.fixed])?
        .ok()?;
    let reference = fs::read(&reference)?;
    let exports = [1, 2].map(|i| dir.path().join(format!("export-{i}.tar")));
    let exports = exports.map(|p| p.display().to_string());
    let root = cache.root().display().to_string();
    let rounds = count(5, 50);
    let mut rng = Rng::new();

    for round in 1..=rounds {
        let writer_round = round.to_string();
        let commands: Vec<Vec<&str>> = vec![
            vec!["pull", &names.a],
            vec!["pull", &names.a],
            vec!["pull", &names.b],
            vec!["pull", &names.c],
            vec!["pull", "--all-platforms", &names.multi],
            vec!["pull", "--all-platforms", &names.multi],
            vec!["pull", &names.fixed],
            vec!["rm", &names.a],
            vec!["rm", &names.c],
            vec!["gc"],
            vec!["gc"],
            vec!["import", &archive],
            vec!["export", "--format", "oci", "-o", &exports[0], &names.fixed],
            vec!["export", "--format", "oci", "-o", &exports[1], &names.fixed],
            vec!["verify", &names.b],
        ];
        let mut order: Vec<usize> = (0..=commands.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        let mut children: Vec<(String, Child)> = Vec::new();
        for i in order {
            let (label, mut command) = match commands.get(i) {
                Some(args) => (args.join(" "), cache.command(args)),
                None => {
                    let mut writer = Command::new(&python);
                    writer
                        .args(["-c", LINUXKIT_WRITER, &root, &writer_round])
                        .arg(&names.fixed);
                    ("linuxkit writer".to_string(), writer)
                }
            };
            let child = command
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            children.push((label, child));
        }
        for (label, child) in children {
            let output = child.wait_with_output()?;
            let stderr = String::from_utf8_lossy(&output.stderr);
            // `rm` of a name another round's process removed first is the
            // only failure expected.
            assert!(
                output.status.success() || stderr.contains("is not in the cache"),
                "round {round} (seed {}): `{label}` failed: {stderr}",
                rng.seed
            );
        }
        check_round(&cache, &names, round, &exports, &reference)?;
    }
    eprintln!("concurrency: {rounds} rounds of 16 processes");
    Ok(())
}

/// Checks the cache after a round: the names that are never removed are
/// there, the writer's name of this round is there and the last one's is
/// gone, everything verifies, and both exports equal the reference.
fn check_round(
    cache: &Cache,
    names: &Names,
    round: usize,
    exports: &[String; 2],
    reference: &[u8],
) -> TestResult {
    let context = format!("round {round}");
    let present = cache.names()?;
    for name in names.kept() {
        assert!(
            present.iter().any(|n| n == name),
            "{context}: {name} lost: {present:?}"
        );
    }
    let writer = format!("linuxkit.test/writer:{round}");
    let previous = format!("linuxkit.test/writer:{}", round - 1);
    assert!(
        present.contains(&writer),
        "{context}: the writer's {writer} lost: {present:?}"
    );
    assert!(
        !present.contains(&previous),
        "{context}: {previous} came back: {present:?}"
    );
    check_cache(cache, &context)?;
    for export in exports {
        assert!(
            fs::read(export)? == reference,
            "{context}: {export} differs from the reference"
        );
    }
    Ok(())
}
