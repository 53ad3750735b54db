//! Removing names and collecting garbage (design invariant 4).
//!
//! Deletion is by reachability: mark every blob that a name in
//! `index.json` reaches, sweep every other blob. Removing a name therefore
//! never takes a blob that another name still uses. The sweep runs under
//! the exclusive sweep lock, which pulls and imports hold shared from their
//! first blob until their name is written, so blobs that are written but
//! not yet named are never swept. A manifest that cannot be read stops the
//! sweep: what it names is unknown, and guessing could delete live blobs.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::digest::Digest;

use super::graph::Holding;
use super::{INGEST, Store, StoreError, blob};

/// What a sweep removed, or would remove in a dry run.
#[derive(Debug, Default, Clone)]
pub struct Sweep {
    /// Unreachable blobs, with their sizes.
    pub blobs: Vec<(Digest, u64)>,
    /// Temporary files left by processes that are gone, with their sizes.
    pub temp_files: Vec<(PathBuf, u64)>,
}

impl Sweep {
    /// Returns the bytes the removed files took.
    pub fn freed_bytes(&self) -> u64 {
        let blobs: u64 = self.blobs.iter().map(|(_, size)| size).sum();
        let temps: u64 = self.temp_files.iter().map(|(_, size)| size).sum();
        blobs + temps
    }
}

impl Store {
    /// Removes every entry of `index.json` that carries no name.
    pub fn remove_unnamed(&self) -> Result<usize, StoreError> {
        let _lock = self.lock()?;
        let mut index = self.read_index_locked()?;
        let before = index.manifests.len();
        index
            .manifests
            .retain(|descriptor| descriptor.ref_name().is_some());
        let removed = before - index.manifests.len();
        if removed > 0 {
            self.write_index(&index)?;
        }
        Ok(removed)
    }

    /// Removes `names` from `index.json`; returns those that were there.
    /// Blobs stay until the next [`Store::sweep`].
    pub fn remove_names(&self, names: &[String]) -> Result<Vec<String>, StoreError> {
        let _lock = self.lock()?;
        let mut index = self.read_index_locked()?;
        let mut removed = Vec::new();
        index
            .manifests
            .retain(|descriptor| match descriptor.ref_name() {
                Some(name) if names.iter().any(|n| n == name) => {
                    if !removed.iter().any(|r| r == name) {
                        removed.push(name.to_string());
                    }
                    false
                }
                _ => true,
            });
        if !removed.is_empty() {
            self.write_index(&index)?;
        }
        Ok(removed)
    }

    /// Removes every blob no name reaches, and the temporary files of
    /// processes that are gone; with `dry_run`, only reports them.
    pub fn sweep(&self, dry_run: bool) -> Result<Sweep, StoreError> {
        let _guard = self.sweep_guard()?;
        let live = self.marked()?;
        let mut sweep = Sweep {
            blobs: self.unreachable_blobs(&live)?,
            temp_files: self.abandoned_temp_files()?,
        };
        if !dry_run {
            self.remove_swept(&mut sweep)?;
        }
        Ok(sweep)
    }

    /// Returns the digest of every blob a name reaches.
    fn marked(&self) -> Result<HashSet<Digest>, StoreError> {
        let index = self.read_index()?;
        let mut live = HashSet::new();
        for root in &index.manifests {
            for reached in self.reach(root) {
                if let Holding::Broken(err) = reached.holding {
                    return Err(StoreError::Unsweepable {
                        name: root.ref_name().unwrap_or("(unnamed)").to_string(),
                        source: Box::new(err),
                    });
                }
                live.insert(reached.descriptor.digest);
            }
        }
        Ok(live)
    }

    fn unreachable_blobs(&self, live: &HashSet<Digest>) -> Result<Vec<(Digest, u64)>, StoreError> {
        let mut dead = Vec::new();
        for (digest, path) in self.blob_files()? {
            if live.contains(&digest) {
                continue;
            }
            let size = fs::metadata(&path).map_or(0, |m| m.len());
            dead.push((digest, size));
        }
        dead.sort();
        Ok(dead)
    }

    /// Lists the files under `blobs/` whose names are digests; anything
    /// else there is not lkcache's to judge and is left alone.
    fn blob_files(&self) -> Result<Vec<(Digest, PathBuf)>, StoreError> {
        let blobs = self.root.join("blobs");
        let mut files = Vec::new();
        let algorithms = match fs::read_dir(&blobs) {
            Ok(dirs) => dirs,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
            Err(e) => return Err(StoreError::io("read", &blobs, e)),
        };
        for algorithm in algorithms.flatten() {
            let dir = algorithm.path();
            let algorithm = algorithm.file_name().to_string_lossy().into_owned();
            let entries = fs::read_dir(&dir).map_err(|e| StoreError::io("read", &dir, e))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                match format!("{algorithm}:{name}").parse::<Digest>() {
                    Ok(digest) => files.push((digest, entry.path())),
                    Err(_) => tracing::warn!(
                        "leaving `{}` alone: not a blob name",
                        entry.path().display()
                    ),
                }
            }
        }
        Ok(files)
    }

    /// Lists lkcache's temporary files whose writing process is gone.
    fn abandoned_temp_files(&self) -> Result<Vec<(PathBuf, u64)>, StoreError> {
        let mut abandoned = Vec::new();
        for dir in [self.root.join(INGEST), self.root.clone()] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let is_temp = dir != self.root || is_root_temp_file(&path);
                let pid = temp_file_pid(&path);
                if is_temp && pid.is_some_and(|pid| !is_process_alive(pid)) {
                    abandoned.push((path, entry.metadata().map_or(0, |m| m.len())));
                }
            }
        }
        abandoned.sort();
        Ok(abandoned)
    }

    fn remove_swept(&self, sweep: &mut Sweep) -> Result<(), StoreError> {
        let mut directories = HashSet::new();
        for (digest, _) in &sweep.blobs {
            let path = self.blob_path(digest);
            remove_if_present(&path)?;
            directories.insert(path.parent().map(Path::to_path_buf));
        }
        for (path, _) in &sweep.temp_files {
            remove_if_present(path)?;
        }
        for directory in directories.into_iter().flatten() {
            blob::sync_dir(&directory)?;
        }
        Ok(())
    }
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StoreError::io("remove", path, e))
        }
        _ => Ok(()),
    }
}

/// Tells whether `path` is one of the `.NAME.PID-N.tmp` files that atomic
/// replacement of `index.json` leaves behind when it is interrupted.
fn is_root_temp_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.starts_with('.') && name.ends_with(".tmp")
}

/// Reads the writer's process id out of a temporary file's name: ingest
/// files start with it (`PID-N-HEX`), replacement files carry it before
/// the counter (`.index.json.PID-N.tmp`).
fn temp_file_pid(path: &Path) -> Option<libc::pid_t> {
    let name = path.file_name()?.to_str()?;
    let tagged = match name.strip_suffix(".tmp") {
        Some(stem) => stem.rsplit('.').next()?,
        None => name,
    };
    tagged.split('-').next()?.parse().ok()
}

fn is_process_alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 performs only the existence and permission checks;
    // it sends nothing and touches no memory.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_writer_pid_from_temporary_file_names() {
        let cases = [
            ("ingest/1234-7-abcdef012345", Some(1234)),
            (".index.json.4321-0.tmp", Some(4321)),
            (".oci-layout.99-3.tmp", Some(99)),
            ("ingest/notapid", None),
        ];
        for (name, expected) in cases {
            assert_eq!(temp_file_pid(Path::new(name)), expected, "{name}");
        }
    }

    #[test]
    fn tells_live_processes_from_gone_ones() {
        assert!(is_process_alive(std::process::id() as libc::pid_t));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as libc::pid_t;
        child.wait().unwrap();
        assert!(!is_process_alive(pid));
    }
}
