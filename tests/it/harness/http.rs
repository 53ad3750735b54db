//! A minimal HTTP/1.1 server for the tests' doubles: one request per
//! connection, answered by a handler, on a loopback port; stopped when
//! dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::TestResult;

/// A request: method, path with query, and headers with lower-case names.
pub struct Request {
    pub path: String,
    pub headers: HashMap<String, String>,
}

/// An answer to send back.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Whether to send `Content-Length`; without it the body runs until
    /// the connection closes.
    pub declare_length: bool,
}

impl Answer {
    /// Returns a `200` with a JSON body.
    pub fn json(body: &serde_json::Value) -> Answer {
        Answer::with_status(
            200,
            "application/json",
            serde_json::to_vec(body).expect("json"),
        )
    }

    /// Returns an answer with a status, content type and body.
    pub fn with_status(status: u16, content_type: &str, body: Vec<u8>) -> Answer {
        Answer {
            status,
            content_type: content_type.to_string(),
            body,
            declare_length: true,
        }
    }
}

/// A running server.
pub struct Server {
    addr: String,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Serves every request with `handler` until dropped.
    pub fn start<H>(handler: H) -> TestResult<Server>
    where
        H: Fn(&Request) -> Answer + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(stream) = stream {
                    let _ = serve_one(stream, &handler);
                }
            }
        });
        Ok(Server { addr, stop })
    }

    /// Returns `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

fn serve_one(stream: TcpStream, handler: &dyn Fn(&Request) -> Answer) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? <= 2 {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let answer = handler(&Request { path, headers });
    let length = if answer.declare_length {
        format!("Content-Length: {}\r\n", answer.body.len())
    } else {
        String::new()
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {} X\r\nContent-Type: {}\r\n{length}Connection: close\r\n\r\n",
        answer.status, answer.content_type
    )?;
    stream.write_all(&answer.body)?;
    stream.flush()
}
