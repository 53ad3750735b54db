//! A client of the Distribution API v2 (the OCI distribution spec): fetch
//! manifests and indexes by tag or digest, and stream blobs.
//!
//! Manifests are identified by the digest of their raw bytes, computed here
//! and checked against the digest the caller expects wherever one is known.
//! Manifests above [`MAX_MANIFEST_BYTES`] are refused before they are read
//! whole. Blobs are handed out as streams, for the caller to hash while it
//! writes them. Loopback registries and those named insecure are spoken to
//! over plain HTTP; every other registry over HTTPS with the system's roots.

mod auth;
pub mod credentials;

use std::io::Read;
use std::time::Duration;

use ureq::http::{Response, StatusCode};

use crate::digest::{Digest, Hasher};
use crate::manifest::{self, Descriptor, MAX_MANIFEST_BYTES, Manifest, ManifestError};
use crate::media_type;
use crate::reference::Reference;

pub use credentials::{BasicAuth, CredentialError, Credentials};

/// What went wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No HTTP exchange was possible.
    #[error(
        "cannot reach registry `{registry}` at {url}: {source}; \
         check the name and the network{}",
        insecure_hint(registry)
    )]
    Unreachable {
        /// The registry as the reference names it.
        registry: String,
        /// The URL tried.
        url: String,
        /// The transport's error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The registry does not know the name, tag or digest.
    #[error("`{reference}` was not found at the registry ({detail}); check the name and the tag")]
    NotFound {
        /// The full reference asked for.
        reference: String,
        /// The registry's own words.
        detail: String,
    },
    /// The registry refused access.
    #[error("registry `{registry}` refused access to `{reference}` ({detail}); {}",
        if *has_credentials { "check the credentials in the Docker configuration" }
        else { "log in with `docker login`, or add an `auths` entry to the Docker configuration" })]
    Unauthorized {
        /// The registry.
        registry: String,
        /// The full reference asked for.
        reference: String,
        /// The registry's own words.
        detail: String,
        /// Whether credentials were configured for this registry.
        has_credentials: bool,
    },
    /// The token server did not hand out a token.
    #[error("cannot get a token for `{registry}` from `{realm}`: {detail}")]
    Token {
        /// The registry.
        registry: String,
        /// The token server.
        realm: String,
        /// What went wrong.
        detail: String,
    },
    /// Any other unexpected status.
    #[error("registry `{registry}` answered {status} to {what}: {detail}")]
    Status {
        /// The registry.
        registry: String,
        /// The request, as `manifest docker.io/library/alpine:3`.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error code and message.
        detail: String,
    },
    /// A manifest above the size limit.
    #[error(
        "manifest of `{reference}` is {size_bytes} bytes, more than the limit of {MAX_MANIFEST_BYTES}"
    )]
    ManifestTooLarge {
        /// The full reference.
        reference: String,
        /// Its size, or the bytes read before giving up.
        size_bytes: u64,
    },
    /// Content whose digest is not the one expected.
    #[error(
        "manifest of `{reference}` hashes to `{actual}`, expected `{expected}`; the registry served wrong content"
    )]
    DigestMismatch {
        /// The full reference.
        reference: String,
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
    },
    /// A manifest lkcache cannot use.
    #[error("cannot use the manifest of `{reference}`")]
    Manifest {
        /// The full reference.
        reference: String,
        /// Why.
        #[source]
        source: ManifestError,
    },
    /// The connection broke while reading a response.
    #[error("reading {what} from `{registry}` failed")]
    Read {
        /// The registry.
        registry: String,
        /// What was being read.
        what: String,
        /// The transport's error.
        #[source]
        source: std::io::Error,
    },
}

fn insecure_hint(registry: &str) -> &'static str {
    if registry.contains(':') {
        "; if the registry speaks plain HTTP, name it with --insecure-registry"
    } else {
        ""
    }
}

/// The requests the client sends.
#[derive(Debug, Clone, Copy)]
enum Method {
    Get,
    Head,
}

/// A manifest or index as the registry served it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes, which the digest covers.
    pub bytes: Vec<u8>,
    /// The media type, from the document or the `Content-Type`.
    pub media_type: String,
    /// The digest of `bytes`.
    pub digest: Digest,
    /// The document, parsed.
    pub manifest: Manifest,
}

impl FetchedManifest {
    /// Returns a descriptor of this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
            extra: Default::default(),
        }
    }
}

/// A blob's body, to be read as it arrives.
pub struct BlobStream {
    reader: Box<dyn Read + Send>,
}

impl Read for BlobStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reader.read(buf)
    }
}

/// Options for a [`Client`].
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Registries (`host[:port]`) to speak plain HTTP to, besides loopback.
    pub insecure_registries: Vec<String>,
    /// Credentials for registries that ask for them.
    pub credentials: Credentials,
}

/// A registry client; cheap to share between threads.
#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
    insecure_registries: Vec<String>,
    auth: auth::Authenticator,
}

impl Client {
    /// Creates a client.
    pub fn new(options: ClientOptions) -> Client {
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("lkcache/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            // A stalled body must not hang a pull forever.
            .timeout_per_read(Some(Duration::from_secs(60)))
            .max_redirects(10)
            // Parallel blob downloads each keep their connection for the next.
            .max_idle_connections_per_host(16)
            .tls_config(tls)
            .build();
        Client {
            agent: config.new_agent(),
            insecure_registries: options.insecure_registries,
            auth: auth::Authenticator::new(options.credentials),
        }
    }

    /// Fetches the manifest or index `reference` names (by digest if it has
    /// one, else by tag), checks its size and, where the reference pins
    /// one, its digest.
    pub fn fetch_manifest(&self, reference: &Reference) -> Result<FetchedManifest, RegistryError> {
        let path = manifest_path(reference);
        let what = format!("manifest {reference}");
        let accept = Some(media_type::MANIFEST_ACCEPT);
        let response = self.send(Method::Get, reference, &path, accept, &what)?;
        let declared = header(&response, "content-type").unwrap_or_default();
        let bytes = read_manifest_body(reference, response)?;

        let algorithm = reference
            .digest()
            .map_or(crate::digest::Algorithm::Sha256, Digest::algorithm);
        let mut hasher = Hasher::new(algorithm);
        hasher.update(&bytes);
        let digest = hasher.finish();
        if let Some(expected) = reference.digest().filter(|d| **d != digest) {
            return Err(RegistryError::DigestMismatch {
                reference: reference.to_string(),
                expected: expected.clone(),
                actual: digest,
            });
        }
        let (manifest, media_type) =
            manifest::parse(&bytes, &declared).map_err(|source| RegistryError::Manifest {
                reference: reference.to_string(),
                source,
            })?;
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
            manifest,
        })
    }

    /// Opens the blob `digest` of `reference`'s repository for streaming,
    /// following redirects to blob storage (which never see the registry's
    /// credentials).
    pub fn fetch_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<BlobStream, RegistryError> {
        let path = format!("/v2/{}/blobs/{digest}", reference.repository());
        let what = format!("blob {digest}");
        let response = self.send(Method::Get, reference, &path, None, &what)?;
        Ok(BlobStream {
            reader: Box::new(response.into_body().into_reader()),
        })
    }

    /// Returns the digest the registry serves for `reference` now, asking
    /// with a `HEAD` and falling back to fetching the manifest when the
    /// registry does not say.
    pub fn current_digest(&self, reference: &Reference) -> Result<Digest, RegistryError> {
        let path = manifest_path(reference);
        let what = format!("manifest {reference}");
        let accept = Some(media_type::MANIFEST_ACCEPT);
        let response = self.send(Method::Head, reference, &path, accept, &what)?;
        let announced = header(&response, "docker-content-digest").and_then(|d| d.parse().ok());
        match announced {
            Some(digest) => Ok(digest),
            None => self.fetch_manifest(reference).map(|fetched| fetched.digest),
        }
    }

    /// Sends a request, answering one authentication challenge; returns
    /// only successful responses.
    fn send(
        &self,
        method: Method,
        reference: &Reference,
        path: &str,
        accept: Option<&str>,
        what: &str,
    ) -> Result<Response<ureq::Body>, RegistryError> {
        let domain = reference.domain();
        let scope = format!("repository:{}:pull", reference.repository());
        let url = format!("{}{path}", self.base_url(reference));
        let mut retried_auth = false;
        loop {
            let mut request = match method {
                Method::Get => self.agent.get(&url),
                Method::Head => self.agent.head(&url),
            };
            if let Some(accept) = accept {
                request = request.header("Accept", accept);
            }
            if let Some(authorization) = self.auth.authorization(&self.agent, domain, &scope)? {
                request = request.header("Authorization", authorization);
            }
            tracing::trace!("{method:?} {url}");
            let response = request
                .call()
                .map_err(|source| RegistryError::Unreachable {
                    registry: domain.to_string(),
                    url: url.clone(),
                    source: Box::new(source),
                })?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !retried_auth {
                retried_auth = true;
                let challenge = header(&response, "www-authenticate");
                if self
                    .auth
                    .on_unauthorized(domain, &scope, challenge.as_deref())
                {
                    continue;
                }
            }
            if status.is_success() {
                return Ok(response);
            }
            return Err(self.status_error(reference, what, response));
        }
    }

    fn status_error(
        &self,
        reference: &Reference,
        what: &str,
        mut response: Response<ureq::Body>,
    ) -> RegistryError {
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .unwrap_or_default();
        let detail = registry_error_detail(&body).unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_lowercase()
        });
        let registry = reference.domain().to_string();
        match status {
            StatusCode::NOT_FOUND => RegistryError::NotFound {
                reference: reference.to_string(),
                detail,
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
                has_credentials: self.auth.has_credentials(&registry),
                registry,
                reference: reference.to_string(),
                detail,
            },
            _ => RegistryError::Status {
                registry,
                what: what.to_string(),
                status: status.as_u16(),
                detail,
            },
        }
    }

    fn base_url(&self, reference: &Reference) -> String {
        let is_insecure = reference.is_loopback()
            || self
                .insecure_registries
                .iter()
                .any(|r| r == reference.domain());
        let scheme = if is_insecure { "http" } else { "https" };
        format!("{scheme}://{}", reference.registry_host())
    }
}

/// Returns the API path of the manifest `reference` names, by digest when
/// it is pinned to one.
fn manifest_path(reference: &Reference) -> String {
    let target = match reference.digest() {
        Some(digest) => digest.to_string(),
        None => reference.tag().unwrap_or("latest").to_string(),
    };
    format!("/v2/{}/manifests/{target}", reference.repository())
}

fn header(response: &Response<ureq::Body>, name: &str) -> Option<String> {
    let value = response.headers().get(name)?;
    value.to_str().ok().map(str::to_string)
}

/// Reads a manifest body, refusing it as soon as it passes the size limit.
fn read_manifest_body(
    reference: &Reference,
    response: Response<ureq::Body>,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = |size_bytes| RegistryError::ManifestTooLarge {
        reference: reference.to_string(),
        size_bytes,
    };
    let declared_len = header(&response, "content-length").and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared_len.filter(|len| *len > MAX_MANIFEST_BYTES) {
        return Err(too_large(len));
    }
    let mut bytes = Vec::new();
    response
        .into_body()
        .into_reader()
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| RegistryError::Read {
            registry: reference.domain().to_string(),
            what: format!("manifest {reference}"),
            source,
        })?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Extracts `CODE: message` from a Distribution error body.
fn registry_error_detail(body: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let errors: Errors = serde_json::from_str(body).ok()?;
    let parts: Vec<String> = errors
        .errors
        .iter()
        .map(|e| format!("{}: {}", e.code, e.message))
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speaks_plain_http_only_to_loopback_and_named_insecure_registries() {
        let client = Client::new(ClientOptions {
            insecure_registries: vec!["build.internal:5000".to_string()],
            ..ClientOptions::default()
        });
        let cases = [
            ("localhost:5000/app", "http://localhost:5000"),
            ("127.0.0.1:5000/app", "http://127.0.0.1:5000"),
            ("[::1]:5000/app", "http://[::1]:5000"),
            ("build.internal:5000/app", "http://build.internal:5000"),
            ("build.internal/app", "https://build.internal"),
            ("ghcr.io/org/app", "https://ghcr.io"),
            ("alpine", "https://registry-1.docker.io"),
        ];
        for (input, expected) in cases {
            let reference: Reference = input.parse().unwrap();
            assert_eq!(client.base_url(&reference), expected, "{input}");
        }
    }

    #[test]
    fn extracts_registry_error_messages() {
        let body =
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(
            registry_error_detail(body).as_deref(),
            Some("MANIFEST_UNKNOWN: manifest unknown")
        );
        assert_eq!(registry_error_detail("<html>"), None);
    }
}
