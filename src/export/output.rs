//! Where an export goes when it goes to a file: written beside the file
//! under a temporary name, and renamed over it only once complete and
//! synced, so that the name never holds a partial archive. A failed or
//! abandoned export removes its temporary file and leaves whatever the name
//! held before.
//!
//! Only regular files (or names that do not exist yet) are replaced this
//! way. A name that is a device, a FIFO or a socket (`/dev/null`,
//! `/dev/stdout`, a named pipe) is opened and written directly: renaming
//! over it would replace the device node itself.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::ExportError;

/// An output file being written.
#[derive(Debug)]
pub struct OutputFile {
    file: File,
    path: PathBuf,
    temp_path: Option<PathBuf>,
}

impl OutputFile {
    /// Creates the output for `path`: a temporary file beside it, or, when
    /// `path` is not a regular file, `path` itself.
    pub fn create(path: &Path) -> Result<OutputFile, ExportError> {
        let error = |action, source| ExportError::Output {
            action,
            path: path.to_path_buf(),
            source,
        };
        match fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let source = io::Error::new(io::ErrorKind::IsADirectory, "it is a directory");
                return Err(error("write the archive to", source));
            }
            Ok(meta) if !meta.is_file() => {
                let file = OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(path)
                    .map_err(|e| error("open", e))?;
                return Ok(OutputFile {
                    file,
                    path: path.to_path_buf(),
                    temp_path: None,
                });
            }
            _ => {}
        }
        // Through a symlink, the file it points at is the one to replace.
        let target = match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                fs::canonicalize(path).map_err(|e| error("resolve", e))?
            }
            _ => path.to_path_buf(),
        };
        let temp_path = temp_path_beside(&target);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp_path)
            .map_err(|e| error("create a temporary file beside", e))?;
        Ok(OutputFile {
            file,
            path: target,
            temp_path: Some(temp_path),
        })
    }

    /// Returns the file the archive ends up in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the written archive durable and moves it into place.
    pub fn commit(mut self) -> Result<(), ExportError> {
        let error = |action, path: &Path, source| ExportError::Output {
            action,
            path: path.to_path_buf(),
            source,
        };
        self.file
            .flush()
            .map_err(|e| error("write", &self.path, e))?;
        let Some(temp_path) = self.temp_path.take() else {
            return Ok(());
        };
        let result = self
            .file
            .sync_all()
            .map_err(|e| error("sync", &temp_path, e))
            .and_then(|()| copy_permissions(&self.path, &temp_path))
            .and_then(|()| {
                fs::rename(&temp_path, &self.path).map_err(|e| error("replace", &self.path, e))
            });
        if result.is_err() {
            let _ = fs::remove_file(&temp_path);
            return result;
        }
        let parent = parent_dir(&self.path);
        File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| error("sync", parent, e))
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if let Some(temp_path) = &self.temp_path {
            // Not committed: the archive is incomplete and must not linger.
            let _ = fs::remove_file(temp_path);
        }
    }
}

/// Keeps the mode of the file being replaced, as truncating it would.
fn copy_permissions(from: &Path, to: &Path) -> Result<(), ExportError> {
    let Ok(meta) = fs::metadata(from) else {
        return Ok(());
    };
    fs::set_permissions(to, meta.permissions()).map_err(|source| ExportError::Output {
        action: "set the permissions of",
        path: to.to_path_buf(),
        source,
    })
}

/// Returns a fresh hidden name beside `path`:
/// `.NAME.lkcache-<pid>-<n>.tmp`.
fn temp_path_beside(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "export".into(), |n| n.to_string_lossy());
    parent_dir(path).join(format!(
        ".{name}.lkcache-{}-{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn appears_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.tar");
        let mut output = OutputFile::create(&path).unwrap();
        output.write_all(b"archive").unwrap();
        assert!(!path.exists());
        output.commit().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"archive");
        assert_eq!(names_in(dir.path()), ["out.tar"]);
    }

    #[test]
    fn leaves_nothing_and_the_old_file_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.tar");
        fs::write(&path, b"old").unwrap();
        let mut output = OutputFile::create(&path).unwrap();
        output.write_all(b"half an archive").unwrap();
        drop(output);
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(names_in(dir.path()), ["out.tar"]);
    }

    #[test]
    fn writes_through_a_symlink_and_into_devices() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.tar");
        fs::write(&real, b"old").unwrap();
        let link = dir.path().join("link.tar");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut output = OutputFile::create(&link).unwrap();
        output.write_all(b"new").unwrap();
        output.commit().unwrap();
        assert_eq!(fs::read(&real).unwrap(), b"new");
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );

        let mut null = OutputFile::create(Path::new("/dev/null")).unwrap();
        null.write_all(b"gone").unwrap();
        null.commit().unwrap();
        assert!(!fs::metadata("/dev/null").unwrap().is_file());
    }
}
