//! A real forwarding proxy for the tests: Debian's tinyproxy, started on a
//! free loopback port with its own configuration and log. Its log records
//! every request line it is sent (`CONNECT host:port HTTP/1.1`), so that a
//! test can tell whether lkcache went through it.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::registry::free_port;
use super::{TestResult, require_tool};

/// How long tinyproxy may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running tinyproxy; stopped when dropped.
pub struct TinyProxy {
    child: Child,
    addr: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TinyProxy {
    /// Starts tinyproxy on a free loopback port, accepting loopback clients
    /// and tunnelling to any port.
    pub fn start() -> TestResult<TinyProxy> {
        let binary = require_tool("tinyproxy", "tinyproxy")?;
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("tinyproxy.log");
        let mut failures = Vec::new();
        // Another process may take the free port before tinyproxy binds it.
        for _ in 0..5 {
            let addr = format!("127.0.0.1:{}", free_port()?);
            let mut child = spawn(&binary, dir.path(), &addr, &log)?;
            match wait_until_listening(&mut child, &addr) {
                Ok(()) => {
                    return Ok(TinyProxy {
                        child,
                        addr,
                        log,
                        _dir: dir,
                    });
                }
                Err(failure) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push(failure);
                }
            }
        }
        let output = std::fs::read_to_string(dir.path().join("tinyproxy.out")).unwrap_or_default();
        Err(format!("tinyproxy did not start: {}\n{output}", failures.join("; ")).into())
    }

    /// Returns `http://127.0.0.1:PORT`, as proxy variables name it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Returns the request lines received so far, without the protocol
    /// (`CONNECT host:port`).
    pub fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter_map(|line| {
                line.split_once("): ")
                    .filter(|_| line.contains("]: Request "))
            })
            .map(|(_, request)| request.trim_end_matches(" HTTP/1.1").to_string())
            .collect()
    }
}

impl Drop for TinyProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts tinyproxy in the foreground with a configuration for `addr`.
fn spawn(binary: &Path, dir: &Path, addr: &str, log: &Path) -> TestResult<Child> {
    let config = dir.join("tinyproxy.conf");
    std::fs::write(&config, configuration(addr, log))?;
    let output = std::fs::File::create(dir.join("tinyproxy.out"))?;
    Ok(Command::new(binary)
        .arg("-d")
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output)
        .spawn()?)
}

fn wait_until_listening(child: &mut Child, addr: &str) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("it exited with {status}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!(
        "it did not listen on {addr} within {START_TIMEOUT:?}"
    ))
}

fn configuration(addr: &str, log: &Path) -> String {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    // Without `ConnectPort` lines tinyproxy tunnels to every port; the
    // registries of the tests listen on random ones.
    format!(
        "Port {port}\nListen {host}\nAllow 127.0.0.1\nTimeout 60\nMaxClients 64\n\
         LogFile \"{}\"\nLogLevel Info\nDisableViaHeader Yes\n",
        log.display()
    )
}
