//! A real registry for the tests: Debian's `docker-registry` (CNCF
//! Distribution), on a free loopback port, with its own temporary storage.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TestResult;

const INSTALL_HINT: &str = "the tests need CNCF Distribution's registry: \
     install it with `apt-get install -y docker-registry` (Debian) or put \
     `docker-registry` (or `registry`) on PATH, or set LKCACHE_TEST_REGISTRY to its path";

/// A running registry; stopped when dropped.
pub struct Registry {
    child: Option<Child>,
    addr: String,
    dir: tempfile::TempDir,
    config: PathBuf,
}

/// How the registry authenticates clients.
pub enum Auth {
    /// Anyone may pull and push.
    None,
    /// HTTP basic auth against an htpasswd file with one user.
    Htpasswd {
        user: &'static str,
        password: &'static str,
    },
}

impl Registry {
    /// Starts a registry that anyone may pull from and push to.
    pub fn start() -> TestResult<Registry> {
        Registry::start_with(Auth::None)
    }

    /// Starts a registry with the given authentication.
    pub fn start_with(auth: Auth) -> TestResult<Registry> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let auth_yaml = match auth {
            Auth::None => String::new(),
            Auth::Htpasswd { user, password } => {
                let path = dir.path().join("htpasswd");
                let hash = bcrypt::hash(password, 4)?;
                std::fs::write(&path, format!("{user}:{hash}\n"))?;
                format!(
                    "auth:\n  htpasswd:\n    realm: lkcache-test\n    path: {}\n",
                    path.display()
                )
            }
        };
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: {addr}\n{auth_yaml}",
                dir.path().join("storage").display()
            ),
        )?;
        let mut registry = Registry {
            child: None,
            addr,
            dir,
            config,
        };
        registry.resume()?;
        Ok(registry)
    }

    /// Returns `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Returns the registry's storage directory.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Returns where the registry keeps the blob `hex` (a sha256).
    pub fn blob_data_path(&self, hex: &str) -> PathBuf {
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Stops the registry process; its storage stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the registry again on the same port and storage.
    pub fn resume(&mut self) -> TestResult<()> {
        let child = Command::new(registry_binary()?)
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> TestResult<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = format!("http://{}/v2/", self.addr);
        while Instant::now() < deadline {
            if ureq::get(&url).call().is_ok() {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.as_mut().and_then(|c| c.stderr.take()) {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Err(format!("the registry exited with {status}: {stderr}").into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("the registry at {} did not answer within 20 s", self.addr).into())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Finds the registry binary, or fails saying how to install it.
fn registry_binary() -> TestResult<PathBuf> {
    if let Some(path) = std::env::var_os("LKCACHE_TEST_REGISTRY") {
        return Ok(PathBuf::from(path));
    }
    for name in ["docker-registry", "registry"] {
        if let Some(path) = find_on_path(name) {
            return Ok(path);
        }
    }
    Err(INSTALL_HINT.into())
}

/// Finds an executable on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Returns a loopback port that was free a moment ago.
pub fn free_port() -> TestResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
