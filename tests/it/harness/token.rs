//! A token server for the registry's token mode: a test double of the
//! Docker token service (Distribution verifies the JWTs it signs against a
//! certificate bundle). It issues ES256 tokens granting what each scope
//! asks, to anyone or only to one user, and counts what it issued.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::json;

use super::TestResult;
use super::http::{Answer, Request, Server};

/// The service and issuer names the registry is configured with.
pub const SERVICE: &str = "lkcache-test-registry";
pub const ISSUER: &str = "lkcache-test-token-server";

/// A running token server.
pub struct TokenServer {
    server: Server,
    cert_bundle: PathBuf,
    issued: Arc<AtomicUsize>,
}

impl TokenServer {
    /// Starts a token server; with `user`, only that user (by basic auth)
    /// gets tokens. Its certificate is written into `dir`.
    pub fn start(dir: &Path, user: Option<(&str, &str)>) -> TestResult<TokenServer> {
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
        let expected = user.map(|(name, password)| {
            format!("Basic {}", STANDARD.encode(format!("{name}:{password}")))
        });
        let issued = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&issued);
        let server = Server::start(move |request| {
            if expected.is_some() && request.headers.get("authorization") != expected.as_ref() {
                return Answer::with_status(401, "text/plain", b"wrong credentials".to_vec());
            }
            counter.fetch_add(1, Ordering::Relaxed);
            let token = sign(&signer, &cert_der, request);
            Answer::json(&json!({"token": token, "expires_in": 300}))
        })?;
        Ok(TokenServer {
            server,
            cert_bundle,
            issued,
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
}

/// Signs a JWT granting every scope the request asks for.
fn sign(signer: &EcdsaKeyPair, cert_der: &str, request: &Request) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let access: Vec<serde_json::Value> = query_values(&request.path, "scope")
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
