//! The cache's write lock: an open-file-description record lock on
//! `<cache>/.lock`.
//!
//! LinuxKit serialises writers of `index.json` with a POSIX `fcntl` write
//! lock on the same file. On Linux an open-file-description lock
//! (`F_OFD_SETLKW`) conflicts with that lock, so the two tools exclude each
//! other; unlike a classic POSIX lock it belongs to the open file, not the
//! process, so it works between threads and is not dropped when some other
//! descriptor of the file is closed. `flock(2)` (Rust's `File::lock`) would
//! not exclude LinuxKit at all.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// A held write lock on a cache; released when dropped.
#[derive(Debug)]
pub struct CacheLock {
    // Closing the file releases the lock.
    _file: File,
}

impl CacheLock {
    /// Takes the write lock on `path`, waiting for other holders; tells the
    /// user (at `info`) when it has to wait.
    pub fn acquire(path: &Path) -> io::Result<CacheLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match set_write_lock(&file, libc::F_OFD_SETLK) {
            Ok(()) => {}
            Err(err) if is_contended(&err) => {
                tracing::info!("waiting for the cache lock `{}`", path.display());
                set_write_lock(&file, libc::F_OFD_SETLKW)?;
            }
            Err(err) => return Err(err),
        }
        tracing::trace!("took the cache lock");
        Ok(CacheLock { _file: file })
    }
}

fn is_contended(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES))
}

/// Sets a write lock over the whole file with `command` (`F_OFD_SETLK` or
/// `F_OFD_SETLKW`), retrying when a signal interrupts the wait.
fn set_write_lock(file: &File, command: libc::c_int) -> io::Result<()> {
    // SAFETY: `flock` is a plain C struct for which all-zero bytes are a
    // valid value; OFD locks require `l_pid` to be zero.
    let mut request: libc::flock = unsafe { std::mem::zeroed() };
    request.l_type = libc::F_WRLCK as libc::c_short;
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
    fn excludes_a_second_holder_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let first = CacheLock::acquire(&path).unwrap();

        let (tx, rx) = mpsc::channel();
        let waiter_path = path.clone();
        let waiter = std::thread::spawn(move || {
            let _second = CacheLock::acquire(&waiter_path).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());

        drop(first);
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        waiter.join().unwrap();
    }
}
