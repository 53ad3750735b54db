//! A token server for the registry's token mode: a test double of the
//! Docker token service (Distribution verifies the JWTs it signs against a
//! certificate bundle). It issues ES256 tokens granting what each scope
//! asks, to anyone, only to one user (basic auth on a `GET`), or only for
//! one refresh token (the OAuth2 refresh-token grant, a form `POST`, as
//! Docker Hub's token service takes identity tokens), and counts what it
//! issued.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::json;

use super::TestResult;
use super::http::{self, Answer};

/// The service and issuer names the registry is configured with.
pub const SERVICE: &str = "lkcache-test-registry";
pub const ISSUER: &str = "lkcache-test-token-server";

/// The OAuth2 client id lkcache sends with a grant.
pub const CLIENT_ID: &str = "lkcache";

/// A running token server.
pub struct TokenServer {
    server: Server,
    cert_bundle: PathBuf,
    issued: Arc<AtomicUsize>,
    refreshed: Arc<AtomicUsize>,
}

/// Who gets tokens.
enum Policy {
    /// Anyone, by `GET`.
    Anyone,
    /// One user, by `GET` with this `Authorization` header.
    User(String),
    /// Whoever presents this refresh token in a grant.
    RefreshToken(String),
}

impl TokenServer {
    /// Starts a token server; with `user`, only that user (by basic auth)
    /// gets tokens. Its certificate is written into `dir`.
    pub fn start(dir: &Path, user: Option<(&str, &str)>) -> TestResult<TokenServer> {
        let policy = match user {
            Some((name, password)) => Policy::User(format!(
                "Basic {}",
                STANDARD.encode(format!("{name}:{password}"))
            )),
            None => Policy::Anyone,
        };
        TokenServer::start_with(dir, policy)
    }

    /// Starts a token server that issues tokens only through the
    /// refresh-token grant, for `refresh_token`, and refuses every `GET`.
    pub fn with_refresh_token(dir: &Path, refresh_token: &str) -> TestResult<TokenServer> {
        TokenServer::start_with(dir, Policy::RefreshToken(refresh_token.to_string()))
    }

    fn start_with(dir: &Path, policy: Policy) -> TestResult<TokenServer> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "cannot generate a key")?;
        let key_pair = rcgen::KeyPair::try_from(pkcs8.as_ref())?;
        let cert = rcgen::CertificateParams::new(vec!["token.lkcache.test".to_string()])?
            .self_signed(&key_pair)?;
        let cert_bundle = dir.join("token-ca.pem");
        std::fs::write(&cert_bundle, cert.pem())?;

        let signer =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .map_err(|_| "cannot load the key")?;
        let cert_der = STANDARD.encode(cert.der());
        let issued = Arc::new(AtomicUsize::new(0));
        let refreshed = Arc::new(AtomicUsize::new(0));
        let (issued_by_server, refreshed_by_server) = (Arc::clone(&issued), Arc::clone(&refreshed));
        let server = Server::start(move |request| {
            let scopes = match (&policy, request.method.as_str()) {
                (Policy::RefreshToken(known), "POST") => match grant_scopes(request, known) {
                    Ok(scopes) => {
                        refreshed_by_server.fetch_add(1, Ordering::Relaxed);
                        scopes
                    }
                    Err(error) => return oauth_error(error),
                },
                (Policy::RefreshToken(_), _) => return oauth_error("use the refresh-token grant"),
                (Policy::User(expected), _)
                    if request.head.headers.get("authorization") != Some(expected) =>
                {
                    return Answer::with_status(401, "text/plain", b"wrong credentials".to_vec());
                }
                _ => query_values(&request.head.path, "scope"),
            };
            issued_by_server.fetch_add(1, Ordering::Relaxed);
            let token = sign(&signer, &cert_der, &scopes);
            if request.method == "POST" {
                Answer::json(&json!({"access_token": token, "expires_in": 300,
                    "scope": scopes.join(" ")}))
            } else {
                Answer::json(&json!({"token": token, "expires_in": 300}))
            }
        })?;
        Ok(TokenServer {
            server,
            cert_bundle,
            issued,
            refreshed,
        })
    }

    /// Returns the realm URL for the registry's configuration.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.server.addr())
    }

    /// Returns the certificate bundle the registry verifies tokens with.
    pub fn cert_bundle(&self) -> &Path {
        &self.cert_bundle
    }

    /// Returns how many tokens were handed out.
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::Relaxed)
    }

    /// Returns how many refresh-token grants succeeded.
    pub fn refreshed(&self) -> usize {
        self.refreshed.load(Ordering::Relaxed)
    }
}

/// Checks a refresh-token grant as Docker's distribution client sends it
/// and returns the scopes it asks for.
fn grant_scopes(request: &Request, known: &str) -> Result<Vec<String>, &'static str> {
    let is_form = request
        .head
        .headers
        .get("content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err("expected a form");
    }
    let form = String::from_utf8_lossy(&request.body);
    let field = |key: &str| query_values(&format!("?{form}"), key).into_iter().next();
    if field("grant_type").as_deref() != Some("refresh_token") {
        return Err("unsupported grant_type");
    }
    if field("refresh_token").as_deref() != Some(known) {
        return Err("invalid refresh token");
    }
    if field("client_id").as_deref() != Some(CLIENT_ID)
        || field("service").as_deref() != Some(SERVICE)
    {
        return Err("wrong client_id or service");
    }
    let scope = field("scope").unwrap_or_default();
    Ok(scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect())
}

/// Returns an OAuth2 error answer.
fn oauth_error(description: &str) -> Answer {
    let body = json!({"error": "invalid_grant", "error_description": description});
    Answer::with_status(400, "application/json", body.to_string().into_bytes())
}

/// Signs a JWT granting every scope asked for.
fn sign(signer: &EcdsaKeyPair, cert_der: &str, scopes: &[String]) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|scope| {
            let (kind, rest) = scope.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [cert_der]});
    let claims = json!({
        "iss": ISSUER, "sub": "tester", "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now,
        "jti": format!("{now}-{}", access.len()), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let rng = ring::rand::SystemRandom::new();
    let signature = signer
        .sign(&rng, signing_input.as_bytes())
        .expect("signing works");
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    )
}

/// Returns the decoded values of `key` in a path's query string.
fn query_values(path: &str, key: &str) -> Vec<String> {
    let query = path.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
        .collect()
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A request as the token server sees it: the method and body beside
/// what `http::Server` reads.
struct Request {
    method: String,
    head: http::Request,
    body: Vec<u8>,
}

/// A loopback HTTP/1.1 server, one request per connection, that unlike
/// `http::Server` reads request bodies, for the grants; stopped when
/// dropped.
struct Server {
    addr: String,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start<H>(handler: H) -> TestResult<Server>
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

    fn addr(&self) -> &str {
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

fn serve_one(mut stream: TcpStream, handler: &dyn Fn(&Request) -> Answer) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut words = request_line.split(' ');
    let method = words.next().unwrap_or_default().to_string();
    let path = words.next().unwrap_or("/").to_string();
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
    let length = headers
        .get("content-length")
        .and_then(|l| l.parse::<u64>().ok())
        .unwrap_or(0);
    let mut body = Vec::new();
    reader
        .take(length.min(1024 * 1024))
        .read_to_end(&mut body)?;
    let answer = handler(&Request {
        method,
        head: http::Request { path, headers },
        body,
    });
    write!(
        stream,
        "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        answer.status,
        answer.content_type,
        answer.body.len()
    )?;
    stream.write_all(&answer.body)?;
    stream.flush()
}
