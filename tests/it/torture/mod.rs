//! Torture suites (issue 8): commands killed at random moments, a full disk
//! and a read-only cache; many processes at once beside a LinuxKit-style
//! writer; hostile registries, references and archives. Each suite checks
//! the promises of the design notes as a whole: a cache never holds a wrong
//! byte and never loses a name.
//!
//! Counts scale with `LKCACHE_TORTURE`: the default run is short enough for
//! every `cargo test`; `LKCACHE_TORTURE=long` (see `scripts/torture`) runs
//! the full counts. `LKCACHE_TORTURE_SEED` replays a run's random choices;
//! every failure message names the seed it used.

mod concurrency;
mod crash;
mod hostile;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use lkcache::Digest;

use crate::harness::{Cache, TestResult};

/// Returns whether the long form was asked for.
pub fn is_long() -> bool {
    std::env::var("LKCACHE_TORTURE").is_ok_and(|mode| mode == "long")
}

/// Returns `long` in the long form, else `fast`.
pub fn count(fast: usize, long: usize) -> usize {
    if is_long() { long } else { fast }
}

/// A small xorshift generator: enough randomness for kill delays and byte
/// strings, and replayable from its seed.
pub struct Rng {
    state: u64,
    pub seed: u64,
}

impl Rng {
    /// Seeds from `LKCACHE_TORTURE_SEED`, else from the clock.
    pub fn new() -> Rng {
        let seed = std::env::var("LKCACHE_TORTURE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        Rng {
            state: seed | 1,
            seed,
        }
    }

    /// Returns the next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    /// Returns a number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// `index.json` and the blobs, to show that a failed command changed
/// nothing.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    pub index_json: Vec<u8>,
    pub blobs: BTreeSet<String>,
}

/// Takes a snapshot of `cache`.
pub fn snapshot(cache: &Cache) -> TestResult<Snapshot> {
    Ok(Snapshot {
        index_json: fs::read(cache.root().join("index.json"))?,
        blobs: cache.blobs()?,
    })
}

/// Checks every promise a cache keeps after any interruption: `verify`
/// passes, `index.json` parses, every name in it is complete, and every
/// blob hashes to its name. A cache that was never created passes.
pub fn check_cache(cache: &Cache, context: &str) -> TestResult {
    let root = cache.root();
    if !root.join("index.json").exists() {
        return check_blobs(&root).map_err(|e| format!("{context}: {e}").into());
    }
    let verify = cache.run(&["verify"])?;
    if verify.status != 0 {
        return Err(format!(
            "{context}: verify failed: {}\n{}",
            verify.stdout, verify.stderr
        )
        .into());
    }
    check_blobs(&root).map_err(|e| format!("{context}: {e}"))?;
    check_names_complete(&root).map_err(|e| format!("{context}: {e}"))?;
    Ok(())
}

/// Checks that every file under `blobs/` holds exactly the bytes its name
/// is the digest of.
pub fn check_blobs(root: &Path) -> TestResult {
    for digest in crate::harness::blobs_in(root)? {
        let (algorithm, hex) = digest.split_once(':').ok_or("blob name")?;
        let bytes = fs::read(root.join("blobs").join(algorithm).join(hex))?;
        let actual = Digest::sha256_of(&bytes).to_string();
        if actual != digest {
            return Err(format!("blob {digest} holds bytes of {actual}").into());
        }
    }
    Ok(())
}

/// Checks that every name in `index.json` reaches a complete image: its
/// root blob, and for each manifest present its config and layers; an
/// index must hold at least one of its manifests.
pub fn check_names_complete(root: &Path) -> TestResult {
    let index: Value = serde_json::from_slice(&fs::read(root.join("index.json"))?)?;
    let descriptors = index["manifests"].as_array().ok_or("no manifests array")?;
    for descriptor in descriptors {
        let name = descriptor["annotations"]["org.opencontainers.image.ref.name"].clone();
        let digest = descriptor["digest"].as_str().ok_or("descriptor digest")?;
        let document =
            read_json_blob(root, digest).map_err(|e| format!("name {name}: root {digest}: {e}"))?;
        if let Some(children) = document["manifests"].as_array() {
            let mut present = 0;
            for child in children {
                let child_digest = child["digest"].as_str().ok_or("child digest")?;
                let Ok(manifest) = read_json_blob(root, child_digest) else {
                    continue;
                };
                present += 1;
                check_manifest_content(root, &manifest)
                    .map_err(|e| format!("name {name}: {child_digest}: {e}"))?;
            }
            if present == 0 {
                return Err(format!("name {name}: no manifest of its index is cached").into());
            }
        } else {
            check_manifest_content(root, &document).map_err(|e| format!("name {name}: {e}"))?;
        }
    }
    Ok(())
}

fn check_manifest_content(root: &Path, manifest: &Value) -> TestResult {
    let mut wanted = vec![manifest["config"].clone()];
    wanted.extend(manifest["layers"].as_array().cloned().unwrap_or_default());
    for descriptor in wanted {
        let digest = descriptor["digest"]
            .as_str()
            .ok_or("descriptor without digest")?;
        if !blob_path(root, digest).exists() {
            return Err(format!("{digest} is missing").into());
        }
    }
    Ok(())
}

fn blob_path(root: &Path, digest: &str) -> std::path::PathBuf {
    let (algorithm, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    root.join("blobs").join(algorithm).join(hex)
}

fn read_json_blob(root: &Path, digest: &str) -> TestResult<Value> {
    Ok(serde_json::from_slice(&fs::read(blob_path(root, digest))?)?)
}

/// Copies the directory `from` (a cache) to `to`, keeping modes.
pub fn copy_dir(from: &Path, to: &Path) -> TestResult {
    fs::create_dir_all(to)?;
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()?;
    if !status.success() {
        return Err(format!("cp -a {} failed", from.display()).into());
    }
    Ok(())
}
