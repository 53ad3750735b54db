//! Locks between processes sharing a cache: open-file-description record
//! locks (`F_OFD_SETLKW`).
//!
//! Two files are locked. `<cache>/.lock` guards `index.json`: LinuxKit
//! serialises its writers with a POSIX `fcntl` write lock on the same file.
//! `<cache>/.lkcache/sweep.lock` keeps garbage collection away from blobs
//! that are written but not yet named: pulls and imports hold it shared,
//! a sweep exclusively.
//!
//! On Linux an open-file-description lock
//! (`F_OFD_SETLKW`) conflicts with that lock, so the two tools exclude each
//! other; unlike a classic POSIX lock it belongs to the open file, not the
//! process, so it works between threads and is not dropped when some other
//! descriptor of the file is closed. `flock(2)` (Rust's `File::lock`) would
//! not exclude LinuxKit at all.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Whether a lock excludes everyone else, or only exclusive holders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// A read lock: many holders at once, none while an exclusive one holds.
    Shared,
    /// A write lock: one holder, and no shared ones.
    Exclusive,
}

impl LockMode {
    fn lock_type(self) -> libc::c_short {
        let lock_type = match self {
            LockMode::Shared => libc::F_RDLCK,
            LockMode::Exclusive => libc::F_WRLCK,
        };
        lock_type as libc::c_short
    }
}

/// A held lock on a file; released when dropped.
#[derive(Debug)]
pub struct FileLock {
    // Closing the file releases the lock.
    _file: File,
}

impl FileLock {
    /// Takes a lock on `path`, waiting for conflicting holders; tells the
    /// user (at `info`) that it waits, and for what.
    pub fn acquire(path: &Path, mode: LockMode, waiting_for: &str) -> io::Result<FileLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match set_lock(&file, mode, libc::F_OFD_SETLK) {
            Ok(()) => {}
            Err(err) if is_contended(&err) => {
                tracing::info!("waiting for {waiting_for} (`{}`)", path.display());
                set_lock(&file, mode, libc::F_OFD_SETLKW)?;
            }
            Err(err) => return Err(err),
        }
        tracing::trace!("locked `{}` ({mode:?})", path.display());
        Ok(FileLock { _file: file })
    }
}

fn is_contended(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES))
}

/// Sets a lock over the whole file with `command` (`F_OFD_SETLK` or
/// `F_OFD_SETLKW`), retrying when a signal interrupts the wait.
fn set_lock(file: &File, mode: LockMode, command: libc::c_int) -> io::Result<()> {
    // SAFETY: `flock` is a plain C struct for which all-zero bytes are a
    // valid value; OFD locks require `l_pid` to be zero.
    let mut request: libc::flock = unsafe { std::mem::zeroed() };
    request.l_type = mode.lock_type();
    request.l_whence = libc::SEEK_SET as libc::c_short;
    loop {
        // SAFETY: the descriptor is open for as long as `file` lives, and
        // `request` is a valid, initialised `flock` that outlives the call.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), command, &mut request) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn exclusive_holder_keeps_out_others_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let first = FileLock::acquire(&path, LockMode::Exclusive, "test").unwrap();

        let (tx, rx) = mpsc::channel();
        let waiter_path = path.clone();
        let waiter = std::thread::spawn(move || {
            let _second = FileLock::acquire(&waiter_path, LockMode::Shared, "test").unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());

        drop(first);
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        waiter.join().unwrap();
    }

    #[test]
    fn shared_holders_coexist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let _first = FileLock::acquire(&path, LockMode::Shared, "test").unwrap();
        let _second = FileLock::acquire(&path, LockMode::Shared, "test").unwrap();
    }
}
