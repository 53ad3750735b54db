//! A forwarding proxy for the tests: a test double of an HTTP proxy such
//! as squid (none ships with the tools the tests install). It answers
//! `CONNECT host:port` by opening a tunnel to that host, only on loopback,
//! and records every request line it is sent, so that a test can tell
//! whether lkcache went through it.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::TestResult;

/// A running proxy; stops accepting when dropped.
pub struct ConnectProxy {
    addr: String,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<String>>>,
}

impl ConnectProxy {
    /// Starts the proxy on a free loopback port.
    pub fn start() -> TestResult<ConnectProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stopped, requests) = (Arc::clone(&stop), Arc::clone(&log));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let requests = Arc::clone(&requests);
                std::thread::spawn(move || {
                    let _ = serve(stream, &requests);
                });
            }
        });
        Ok(ConnectProxy { addr, stop, log })
    }

    /// Returns `http://127.0.0.1:PORT`, as proxy variables name it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Returns the request lines received so far (`CONNECT host:port`).
    pub fn requests(&self) -> Vec<String> {
        self.log.lock().expect("lock poisoned").clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn serve(client: TcpStream, log: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? <= 2 {
            break;
        }
    }
    let mut words = request_line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    log.lock()
        .expect("lock poisoned")
        .push(format!("{method} {target}"));

    let mut client_writer = client.try_clone()?;
    let is_loopback = target.starts_with("127.0.0.1:") || target.starts_with("localhost:");
    if method != "CONNECT" || !is_loopback {
        client_writer.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")?;
        return Ok(());
    }
    let upstream = match TcpStream::connect(target) {
        Ok(upstream) => upstream,
        Err(_) => {
            client_writer.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")?;
            return Ok(());
        }
    };
    client_writer.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")?;

    let mut upstream_reader = upstream.try_clone()?;
    let mut upstream_writer = upstream;
    let downstream = std::thread::spawn(move || {
        let _ = std::io::copy(&mut upstream_reader, &mut client_writer);
        let _ = client_writer.shutdown(Shutdown::Write);
    });
    // The reader may hold bytes that came after the request's head.
    let _ = std::io::copy(&mut reader, &mut upstream_writer);
    let _ = upstream_writer.shutdown(Shutdown::Write);
    let _ = downstream.join();
    Ok(())
}
