//! Docker credential helpers for the tests. The real one is Debian's
//! `docker-credential-pass` (golang-docker-credential-helpers) over a
//! throwaway GnuPG home and password store; shell scripts named
//! `docker-credential-lkcache*` are test doubles, for what a real helper
//! cannot be made to do on demand (hang, fail, count its runs).
//!
//! Declared by `tests/it/auth.rs` with `#[path]`, so it names the rest of
//! the harness by absolute paths.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::{Cache, Run, TestResult, require_tool};

const GPG_KEY_PARAMS: &str = "%no-protection
Key-Type: EDDSA
Key-Curve: ed25519
Subkey-Type: ECDH
Subkey-Curve: cv25519
Name-Real: lkcache test
Name-Email: test@lkcache.invalid
Expire-Date: 0
%commit
";

/// A password store for `docker-credential-pass`, with its own key; the
/// GnuPG agent it starts is stopped when dropped.
pub struct PassStore {
    dir: tempfile::TempDir,
}

impl PassStore {
    /// Creates a key without a passphrase and a store encrypted to it.
    pub fn new() -> TestResult<PassStore> {
        require_tool("docker-credential-pass", "golang-docker-credential-helpers")?;
        require_tool("pass", "pass")?;
        require_tool("gpg", "gnupg")?;
        let dir = tempfile::tempdir()?;
        let store = PassStore { dir };
        std::fs::create_dir(store.gnupg_home())?;
        std::fs::set_permissions(
            store.gnupg_home(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
        let params = store.dir.path().join("key-params");
        std::fs::write(&params, GPG_KEY_PARAMS)?;
        store.tool("gpg", &["--batch", "--quiet", "--gen-key"], Some(&params))?;
        let keys = store.tool("gpg", &["--batch", "--list-keys", "--with-colons"], None)?;
        let fingerprint = keys
            .lines()
            .find_map(|line| line.strip_prefix("fpr:"))
            .and_then(|rest| rest.split(':').find(|field| !field.is_empty()))
            .ok_or("gpg listed no key fingerprint")?
            .to_string();
        store.tool("pass", &["init", &fingerprint], None)?;
        Ok(store)
    }

    fn gnupg_home(&self) -> PathBuf {
        self.dir.path().join("gnupg")
    }

    /// Returns the environment a process needs to use this store.
    pub fn envs(&self) -> Vec<(&'static str, OsString)> {
        vec![
            ("GNUPGHOME", self.gnupg_home().into_os_string()),
            (
                "PASSWORD_STORE_DIR",
                self.dir.path().join("store").into_os_string(),
            ),
        ]
    }

    /// Stores credentials for `server_url` with the helper itself, as
    /// `docker login` would.
    pub fn store(&self, server_url: &str, username: &str, secret: &str) -> TestResult {
        let input =
            serde_json::json!({"ServerURL": server_url, "Username": username, "Secret": secret});
        let mut child = Command::new("docker-credential-pass")
            .arg("store")
            .envs(self.envs())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .ok_or("no stdin")?
            .write_all(input.to_string().as_bytes())?;
        let output = child.wait_with_output()?;
        if !output.status.success() {
            return Err(format!(
                "docker-credential-pass store failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        Ok(())
    }

    /// Runs `gpg` or `pass` on this store, with `input` as stdin.
    fn tool(&self, program: &str, args: &[&str], input: Option<&Path>) -> TestResult<String> {
        let stdin = match input {
            Some(path) => Stdio::from(std::fs::File::open(path)?),
            None => Stdio::null(),
        };
        let output = Command::new(program)
            .args(args)
            .envs(self.envs())
            .stdin(stdin)
            .output()?;
        if !output.status.success() {
            return Err(format!(
                "`{program} {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

impl Drop for PassStore {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .envs(self.envs())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A directory of helper scripts (test doubles), to put first on PATH.
pub struct ScriptHelpers {
    dir: tempfile::TempDir,
}

impl ScriptHelpers {
    /// Creates an empty directory.
    pub fn new() -> TestResult<ScriptHelpers> {
        Ok(ScriptHelpers {
            dir: tempfile::tempdir()?,
        })
    }

    /// Writes `docker-credential-NAME`, a `sh` script with `body`.
    pub fn add(&self, name: &str, body: &str) -> TestResult {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.dir.path().join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        Ok(())
    }

    /// Returns a file in the directory, for scripts to leave traces in.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Returns `PATH` with this directory first.
    pub fn path_env(&self) -> TestResult<(&'static str, OsString)> {
        let inherited = std::env::var_os("PATH").unwrap_or_default();
        let dirs =
            std::iter::once(self.dir.path().to_path_buf()).chain(std::env::split_paths(&inherited));
        Ok(("PATH", std::env::join_paths(dirs)?))
    }
}

/// Writes the Docker configuration a cache's runs use.
pub fn write_docker_config(cache: &Cache, config: &serde_json::Value) -> TestResult {
    std::fs::write(
        cache.docker_config().join("config.json"),
        config.to_string(),
    )?;
    Ok(())
}

/// Runs `lkcache` on `cache` with more environment.
pub fn run_with(
    cache: &Cache,
    args: &[&str],
    envs: &[(&'static str, OsString)],
) -> TestResult<Run> {
    let output = cache
        .command(args)
        .envs(envs.iter().map(|(key, value)| (key, value)))
        .output()?;
    Ok(Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}
