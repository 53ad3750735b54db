//! A test double of a registry that serves one chosen manifest for every
//! manifest request. It exists only for behaviour that a real registry
//! refuses to show: Distribution will not store a schema 1 manifest from a
//! current client, nor accept a manifest above its own size limit.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::TestResult;

/// A fake registry serving `body` as every manifest; stops when dropped.
pub struct FakeRegistry {
    addr: String,
    stop: Arc<AtomicBool>,
}

impl FakeRegistry {
    /// Starts serving `body` with `content_type` for every manifest GET;
    /// with `declare_length` false, the body runs until the connection
    /// closes, so only the bytes received can tell its size.
    pub fn serving(
        content_type: &str,
        body: Vec<u8>,
        declare_length: bool,
    ) -> TestResult<FakeRegistry> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let content_type = content_type.to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = answer(stream, &content_type, &body, declare_length);
                }
            }
        });
        Ok(FakeRegistry { addr, stop })
    }

    /// Returns `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

fn answer(
    stream: TcpStream,
    content_type: &str,
    body: &[u8],
    declare_length: bool,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut stream = stream;
    if request_line.contains("/manifests/") {
        let length = if declare_length {
            format!("Content-Length: {}\r\n", body.len())
        } else {
            String::new()
        };
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n{length}Connection: close\r\n\r\n"
        )?;
        stream.write_all(body)?;
    } else {
        write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        )?;
    }
    stream.flush()
}
