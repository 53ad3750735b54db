//! A real registry for the tests: Debian's `docker-registry` (CNCF
//! Distribution), on a free loopback port, with its own temporary storage.

use std::fs::OpenOptions;
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
    tls: Option<Tls>,
    /// For a pull-through cache, the registry it mirrors.
    remote: Option<String>,
}

/// The TLS a registry serves: its certificate and key, and the CA that
/// client certificates must come from, if it requires them.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// How the registry authenticates clients.
pub enum Auth<'a> {
    /// Anyone may pull and push.
    None,
    /// HTTP basic auth against an htpasswd file with one user.
    Htpasswd { user: &'a str, password: &'a str },
    /// Bearer tokens from a token server, verified against its certificate.
    Token {
        realm: &'a str,
        cert_bundle: &'a Path,
    },
}

impl Registry {
    /// Starts a registry that anyone may pull from and push to.
    pub fn start() -> TestResult<Registry> {
        Registry::create(None)
    }

    /// Starts a pull-through cache (Distribution's proxy mode) of the
    /// registry at `upstream` (`127.0.0.1:PORT`), which then fetches what
    /// it is asked for from there.
    pub fn start_proxy(upstream: &str) -> TestResult<Registry> {
        Registry::create(Some(format!("http://{upstream}")))
    }

    fn create(remote: Option<String>) -> TestResult<Registry> {
        let dir = tempfile::tempdir()?;
        let addr = format!("127.0.0.1:{}", free_port()?);
        let config = dir.path().join("config.yml");
        let mut registry = Registry {
            child: None,
            addr,
            dir,
            config,
            tls: None,
            remote,
        };
        registry.write_config(Auth::None)?;
        registry.resume()?;
        Ok(registry)
    }

    /// Restarts the registry, same port and storage, with other
    /// authentication: tests push openly, then lock the door.
    pub fn restart_with(&mut self, auth: Auth) -> TestResult<()> {
        self.stop();
        self.write_config(auth)?;
        self.resume()
    }

    /// Restarts the registry, same port and storage, serving HTTPS only.
    pub fn restart_with_tls(&mut self, tls: Tls) -> TestResult<()> {
        self.stop();
        self.tls = Some(tls);
        self.write_config(Auth::None)?;
        self.resume()
    }

    fn write_config(&self, auth: Auth) -> TestResult<()> {
        let auth_yaml = match auth {
            Auth::None => String::new(),
            Auth::Htpasswd { user, password } => {
                let path = self.dir.path().join("htpasswd");
                std::fs::write(&path, format!("{user}:{}\n", bcrypt::hash(password, 4)?))?;
                format!(
                    "auth:\n  htpasswd:\n    realm: lkcache-test\n    path: {}\n",
                    path.display()
                )
            }
            Auth::Token { realm, cert_bundle } => format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                super::token::SERVICE,
                super::token::ISSUER,
                cert_bundle.display()
            ),
        };
        let mut tls_yaml = String::new();
        if let Some(tls) = &self.tls {
            tls_yaml = format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                tls.cert.display(),
                tls.key.display()
            );
            if let Some(ca) = &tls.client_ca {
                tls_yaml.push_str(&format!("    clientcas:\n      - {}\n", ca.display()));
            }
        }
        let proxy_yaml = match &self.remote {
            Some(remote) => format!("proxy:\n  remoteurl: {remote}\n"),
            None => String::new(),
        };
        let yaml = format!(
            "version: 0.1\nlog:\n  level: error\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {}\n{tls_yaml}{auth_yaml}{proxy_yaml}",
            self.storage().display(),
            self.addr
        );
        std::fs::write(&self.config, yaml)?;
        Ok(())
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

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// Returns every request the registry has logged so far, as
    /// `METHOD PATH STATUS`, oldest first.
    pub fn requests(&self) -> TestResult<Vec<String>> {
        let log = std::fs::read_to_string(self.log_path())?;
        Ok(log.lines().filter_map(access_log_request).collect())
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
        // The access log goes to stdout, errors to stderr: both into one
        // file, which tests read to count requests.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let child = Command::new(registry_binary()?)
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> TestResult<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = format!("http://{}/v2/", self.addr);
        while Instant::now() < deadline {
            // Any HTTP answer, a 401 of a registry with auth included.
            if matches!(
                ureq::get(&url).call(),
                Ok(_) | Err(ureq::Error::StatusCode(_))
            ) {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
                return Err(format!("the registry exited with {status}: {log}").into());
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

/// Reads `METHOD PATH STATUS` out of an access log line in combined log
/// format: `... "GET /v2/ HTTP/1.1" 200 2 "" "agent"`.
fn access_log_request(line: &str) -> Option<String> {
    let (_, rest) = line.split_once('"')?;
    let (request, rest) = rest.split_once('"')?;
    let mut words = request.split(' ');
    let (method, path) = (words.next()?, words.next()?);
    let status = rest.split_whitespace().next()?;
    Some(format!("{method} {path} {status}"))
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
