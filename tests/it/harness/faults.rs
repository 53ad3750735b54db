//! A fault-injecting proxy between lkcache and the real registry: a test
//! double, since no real registry misbehaves on demand. It passes requests
//! through (one per connection), and spoils the answers to blob downloads
//! in the ways networks and registries do: resets, errors, rate limits,
//! truncated and stalled bodies, wrong bytes, redirects to another host.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::TestResult;

/// What the proxy does to blob downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Send half the body, then reset the connection.
    ResetMidBody,
    /// Answer `500` instead.
    ServerError,
    /// Answer `429` with `Retry-After: 1` instead.
    RateLimited,
    /// Promise the whole body, send half, close cleanly.
    TruncateBody,
    /// Like `TruncateBody`, from a server that ignores `Range` requests.
    TruncateWithoutRanges,
    /// Send half the body, then send nothing more.
    StallMidBody,
    /// Flip one byte of the body.
    WrongBytes,
    /// Answer `404` instead.
    NotFound,
    /// Redirect to the same blob at `localhost` (another host name).
    RedirectElsewhere,
}

/// A running proxy; stops accepting when dropped.
pub struct FaultProxy {
    addr: String,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
}

struct Config {
    upstream: String,
    own_port: u16,
    fault: Fault,
    /// The `Authorization` the "blob storage" side (requests to
    /// `localhost`) uses upstream, as a signed URL would stand for it.
    storage_auth: Option<String>,
    remaining: AtomicUsize,
    log: Arc<Mutex<Vec<String>>>,
}

impl FaultProxy {
    /// Proxies to `upstream`, spoiling the first `times` blob downloads
    /// with `fault` (`usize::MAX` for all of them).
    pub fn start(upstream: &str, fault: Fault, times: usize) -> TestResult<FaultProxy> {
        FaultProxy::start_with(upstream, fault, times, None)
    }

    /// Like [`FaultProxy::start`]; requests that arrive as blob storage
    /// (host `localhost`, after [`Fault::RedirectElsewhere`]) are sent
    /// upstream with `storage_auth`, whatever they carried.
    pub fn start_with(
        upstream: &str,
        fault: Fault,
        times: usize,
        storage_auth: Option<String>,
    ) -> TestResult<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let own_port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let config = Arc::new(Config {
            upstream: upstream.to_string(),
            own_port,
            fault,
            storage_auth,
            remaining: AtomicUsize::new(times),
            log: Arc::clone(&log),
        });
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let (Ok(client), config) = (client, Arc::clone(&config)) else {
                    continue;
                };
                std::thread::spawn(move || {
                    let _ = serve(client, &config);
                });
            }
        });
        Ok(FaultProxy {
            addr: format!("127.0.0.1:{own_port}"),
            stop,
            log,
        })
    }

    /// Returns `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Returns the requests seen, as `METHOD PATH [range] -> what was done`.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("lock poisoned").clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Handles one connection: one request, one (possibly spoiled) answer.
fn serve(client: TcpStream, config: &Config) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let is_end = line == "\r\n";
        let lower = line.to_ascii_lowercase();
        let is_dropped = lower.starts_with("connection:")
            || (config.fault == Fault::TruncateWithoutRanges && lower.starts_with("range:"));
        if !is_dropped {
            head.push(line);
        }
        if is_end {
            break;
        }
    }
    let request_line = head[0].trim().to_string();
    let is_storage = head
        .iter()
        .any(|l| l.to_ascii_lowercase().starts_with("host: localhost"));
    if is_storage {
        return serve_as_storage(client, config, head, &request_line);
    }
    let range = head
        .iter()
        .find(|l| l.to_ascii_lowercase().starts_with("range:"))
        .map(|l| l.trim().to_string());
    let is_blob_get = request_line.starts_with("GET ") && request_line.contains("/blobs/sha256:");
    let spoil = is_blob_get && take_one(&config.remaining);

    let response = fetch_upstream(&config.upstream, &head)?;
    let action = if spoil {
        format!("{:?}", config.fault)
    } else {
        "passed".to_string()
    };
    let entry = format!("{request_line} {} -> {action}", range.unwrap_or_default());
    config.log.lock().expect("lock poisoned").push(entry);
    if spoil {
        spoil_answer(client, &response, config, &request_line)
    } else {
        let mut client = client;
        client.write_all(&response)
    }
}

/// Serves a redirected blob request as blob storage would, noting whether
/// the client sent the registry's credentials along.
fn serve_as_storage(
    mut client: TcpStream,
    config: &Config,
    head: Vec<String>,
    request_line: &str,
) -> std::io::Result<()> {
    let had_auth = head
        .iter()
        .any(|l| l.to_ascii_lowercase().starts_with("authorization:"));
    let mut upstream_head: Vec<String> = head
        .into_iter()
        .filter(|l| !l.to_ascii_lowercase().starts_with("authorization:"))
        .collect();
    if let Some(auth) = &config.storage_auth {
        upstream_head.insert(1, format!("Authorization: {auth}\r\n"));
    }
    let entry = format!("{request_line} -> storage, authorization sent: {had_auth}");
    config.log.lock().expect("lock poisoned").push(entry);
    let response = fetch_upstream(&config.upstream, &upstream_head)?;
    client.write_all(&response)
}

fn take_one(remaining: &AtomicUsize) -> bool {
    remaining
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// Sends the request upstream with `Connection: close` and reads the whole
/// answer.
fn fetch_upstream(upstream: &str, head: &[String]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream)?;
    let (last, lines) = head.split_last().expect("a request has a head");
    for line in lines {
        stream.write_all(line.as_bytes())?;
    }
    stream.write_all(b"Connection: close\r\n")?;
    stream.write_all(last.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response)
}

fn spoil_answer(
    mut client: TcpStream,
    response: &[u8],
    config: &Config,
    request_line: &str,
) -> std::io::Result<()> {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |p| p + 4);
    let (head, body) = response.split_at(split);
    let half = body.len() / 2;
    match config.fault {
        Fault::ResetMidBody => {
            client.write_all(head)?;
            client.write_all(&body[..half])?;
            reset(client)
        }
        Fault::TruncateBody | Fault::TruncateWithoutRanges => {
            client.write_all(head)?;
            client.write_all(&body[..half])?;
            client.shutdown(Shutdown::Both)
        }
        Fault::StallMidBody => {
            client.write_all(head)?;
            client.write_all(&body[..half])?;
            client.flush()?;
            std::thread::sleep(Duration::from_secs(30));
            Ok(())
        }
        Fault::WrongBytes => {
            let mut spoiled = body.to_vec();
            if let Some(byte) = spoiled.get_mut(half) {
                *byte ^= 0x55;
            }
            client.write_all(head)?;
            client.write_all(&spoiled)
        }
        Fault::ServerError => client.write_all(&status_only(500, "")),
        Fault::RateLimited => client.write_all(&status_only(429, "Retry-After: 1\r\n")),
        Fault::NotFound => client.write_all(&status_only(404, "")),
        Fault::RedirectElsewhere => {
            let path = request_line.split(' ').nth(1).unwrap_or("/");
            let location = format!("Location: http://localhost:{}{path}\r\n", config.own_port);
            client.write_all(&status_only(307, &location))
        }
    }
}

fn status_only(status: u16, headers: &str) -> Vec<u8> {
    format!("HTTP/1.1 {status} Fault\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

/// Closes a connection with a reset rather than a clean end.
fn reset(client: TcpStream) -> std::io::Result<()> {
    // A zero linger time makes close send RST.
    let socket = socket_linger_zero(&client);
    drop(client);
    socket
}

fn socket_linger_zero(stream: &TcpStream) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is open for the call, and `linger` is a valid
    // value of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
