//! Coexistence with LinuxKit's lock: LinuxKit holds a POSIX `fcntl` write
//! lock on `<cache>/.lock` while it rewrites `index.json`; lkcache must wait
//! for it before it changes the index.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::process::Stdio;

use crate::harness::images;
use crate::harness::{Cache, Pusher, Registry, TestResult};

/// Takes a classic POSIX record lock, as LinuxKit's Go code does with
/// `F_SETLKW`; it is released when the file is closed.
fn linuxkit_style_lock(path: &std::path::Path) -> TestResult<std::fs::File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    // SAFETY: all-zero bytes are a valid `flock`.
    let mut request: libc::flock = unsafe { std::mem::zeroed() };
    request.l_type = libc::F_WRLCK as libc::c_short;
    request.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: the descriptor is open and `request` is valid for the call.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLKW, &mut request) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(file)
}

#[test]
fn waits_for_a_linuxkit_writer_before_naming_an_image() -> TestResult {
    let registry = Registry::start()?;
    Pusher::new(registry.addr()).index("multi", "v1", &images::three_platform_index(95)?)?;
    let cache = Cache::new()?;
    cache.run(&["ls"])?.ok()?;
    let held = linuxkit_style_lock(&cache.root().join(".lock"))?;

    let mut pull = cache
        .command(&["pull", &format!("{}/multi:v1", registry.addr())])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stderr = BufReader::new(pull.stderr.take().ok_or("no stderr")?);
    let mut line = String::new();
    stderr.read_line(&mut line)?;

    assert!(line.contains("waiting for the cache lock"), "{line}");
    assert!(cache.names()?.is_empty());
    drop(held);
    assert!(pull.wait()?.success());
    assert_eq!(cache.names()?.len(), 1);
    Ok(())
}
