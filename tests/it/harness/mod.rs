//! Helpers shared by the integration tests: a real registry, images built
//! here, and a runner for the `lkcache` binary against a temporary cache.

pub mod archives;
pub mod certs;
pub mod credhelper;
pub mod fake;
pub mod faults;
pub mod http;
pub mod images;
pub mod layers;
pub mod permissions;
pub mod registry;
pub mod tinyproxy;
pub mod token;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use images::Pusher;
pub use registry::Registry;

/// What every test returns.
pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// A temporary cache directory and a way to run `lkcache` on it.
pub struct Cache {
    dir: tempfile::TempDir,
    envs: Vec<(String, String)>,
}

/// What one run of `lkcache` printed, and how it exited.
#[derive(Debug)]
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Fails unless the command succeeded.
    pub fn ok(self) -> TestResult<Run> {
        if self.status == 0 {
            Ok(self)
        } else {
            Err(format!(
                "lkcache failed ({}): {}\n{}",
                self.status, self.stdout, self.stderr
            )
            .into())
        }
    }

    /// Fails unless the command failed with `status`.
    pub fn failed_with(self, status: i32) -> TestResult<Run> {
        if self.status == status {
            Ok(self)
        } else {
            Err(format!(
                "expected exit {status}, got {}: {}\n{}",
                self.status, self.stdout, self.stderr
            )
            .into())
        }
    }
}

impl Cache {
    /// Creates an empty cache in a new temporary directory; the Docker
    /// configuration points at an empty directory, so that the user's own
    /// never leaks into a test.
    pub fn new() -> TestResult<Cache> {
        let dir = tempfile::tempdir()?;
        let docker_config = dir.path().join("docker-config");
        std::fs::create_dir(&docker_config)?;
        let hosts_dir = dir.path().join("certs.d");
        std::fs::create_dir(&hosts_dir)?;
        let envs = vec![
            (
                "DOCKER_CONFIG".to_string(),
                docker_config.display().to_string(),
            ),
            (
                "LKCACHE_HOSTS_DIR".to_string(),
                hosts_dir.display().to_string(),
            ),
        ];
        Ok(Cache { dir, envs })
    }

    /// Returns the host directory the runs search first (`certs.d`, in
    /// place of the user's own).
    pub fn hosts_dir(&self) -> PathBuf {
        self.dir.path().join("certs.d")
    }

    /// Returns the host directory of `registry` (`certs.d/HOST:PORT`),
    /// created.
    pub fn host_dir(&self, registry: &str) -> TestResult<PathBuf> {
        let dir = self.hosts_dir().join(registry);
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Returns the cache directory (which `lkcache` creates on first use).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// Returns the directory of the Docker configuration the runs use.
    pub fn docker_config(&self) -> PathBuf {
        self.dir.path().join("docker-config")
    }

    /// Writes a Docker configuration holding credentials for `registry`
    /// (an `auths` key, spelled any way Docker spells them).
    pub fn log_in(&self, registry: &str, user: &str, password: &str) -> TestResult {
        use base64::Engine as _;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let config = serde_json::json!({"auths": {registry: {"auth": auth}}});
        std::fs::write(self.docker_config().join("config.json"), config.to_string())?;
        Ok(())
    }

    /// Runs `lkcache --cache ROOT ARGS…`.
    pub fn run(&self, args: &[&str]) -> TestResult<Run> {
        let output = self.command(args).output()?;
        Ok(run_of(output))
    }

    /// Returns the command that [`Cache::run`] runs, to adjust it.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lkcache"));
        command.arg("--cache").arg(self.root()).args(args);
        command
            .env_remove("LKCACHE_CACHE")
            .env_remove("LKCACHE_LOG");
        for proxy in ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"] {
            command
                .env_remove(proxy)
                .env_remove(proxy.to_ascii_lowercase());
        }
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        command
    }

    /// Returns the digests (`sha256:…`) of every file under `blobs/`.
    pub fn blobs(&self) -> TestResult<BTreeSet<String>> {
        blobs_in(&self.root())
    }

    /// Returns `index.json`, parsed.
    pub fn index_json(&self) -> TestResult<serde_json::Value> {
        Ok(serde_json::from_slice(&std::fs::read(
            self.root().join("index.json"),
        )?)?)
    }

    /// Returns the names in `index.json`.
    pub fn names(&self) -> TestResult<Vec<String>> {
        let index = self.index_json()?;
        let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        Ok(manifests
            .iter()
            .filter_map(|d| d["annotations"]["org.opencontainers.image.ref.name"].as_str())
            .map(str::to_string)
            .collect())
    }
}

/// Returns the digests of every blob of the OCI layout at `root`.
pub fn blobs_in(root: &Path) -> TestResult<BTreeSet<String>> {
    let mut blobs = BTreeSet::new();
    let dir = root.join("blobs");
    if !dir.exists() {
        return Ok(blobs);
    }
    for algorithm in std::fs::read_dir(dir)? {
        let algorithm = algorithm?;
        for blob in std::fs::read_dir(algorithm.path())? {
            let name = algorithm.file_name().to_string_lossy().to_string();
            blobs.insert(format!("{name}:{}", blob?.file_name().to_string_lossy()));
        }
    }
    Ok(blobs)
}

/// Collects what a finished `lkcache` process printed and how it exited.
pub fn run_of(output: Output) -> Run {
    Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Finds a tool the tests need, or fails saying how to install it.
pub fn require_tool(name: &str, package: &str) -> TestResult<PathBuf> {
    registry::find_on_path(name).ok_or_else(|| {
        format!("the tests need `{name}`: install it with `apt-get install -y {package}`").into()
    })
}
