//! Running commands without the privileges that would make permission
//! bits meaningless: read-only caches for tests that run as root.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use super::{Cache, TestResult, require_tool};

/// Takes write permission away from every directory of the cache, and
/// opens the way to it for an unprivileged user.
pub fn make_read_only(cache: &Cache) -> TestResult {
    let mut dir = cache.root();
    while let Some(parent) = dir.parent() {
        if parent == std::env::temp_dir() || parent.as_os_str().is_empty() {
            break;
        }
        fs::set_permissions(parent, fs::Permissions::from_mode(0o755))?;
        dir = parent.to_path_buf();
    }
    let status = Command::new("chmod")
        .arg("-R")
        .arg("a-w,a+rX")
        .arg(cache.root())
        .status()?;
    if !status.success() {
        return Err("chmod failed".into());
    }
    Ok(())
}

/// Gives write permission back, so that the temporary directory goes.
pub fn make_writable(cache: &Cache) -> TestResult {
    let status = Command::new("chmod")
        .arg("-R")
        .arg("u+w")
        .arg(cache.root())
        .status()?;
    if !status.success() {
        return Err("chmod failed".into());
    }
    Ok(())
}

/// Runs `command` as an unprivileged user when the tests run as root, for
/// whom permission bits mean nothing.
pub fn unprivileged(command: Command) -> TestResult<Command> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(command);
    }
    let setpriv = require_tool("setpriv", "util-linux")?;
    let mut wrapped = Command::new(setpriv);
    wrapped.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
    wrapped.arg(command.get_program()).args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    Ok(wrapped)
}
