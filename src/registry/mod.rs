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
mod error;
mod transport;
mod upload;

use std::io::Read;
use std::time::Duration;

use ureq::http::Response;

use crate::digest::{Digest, Hasher};
use crate::manifest::{self, Descriptor, MAX_MANIFEST_BYTES, Manifest};
use crate::media_type;
use crate::reference::Reference;

pub use credentials::{BasicAuth, CredentialError, Credentials};
pub use error::RegistryError;
pub use upload::{CHUNK_BYTES, Mount};

use transport::{Exchange, Method, header};

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
        let mut request = Exchange::new(reference, Method::Get, &path, what);
        request
            .headers
            .push(("Accept", media_type::MANIFEST_ACCEPT.to_string()));
        let response = self.exchange(request)?;
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
        let response = self.exchange(Exchange::new(reference, Method::Get, &path, what))?;
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
        let mut request = Exchange::new(reference, Method::Head, &path, what);
        request
            .headers
            .push(("Accept", media_type::MANIFEST_ACCEPT.to_string()));
        let response = self.exchange(request)?;
        let announced = header(&response, "docker-content-digest").and_then(|d| d.parse().ok());
        match announced {
            Some(digest) => Ok(digest),
            None => self.fetch_manifest(reference).map(|fetched| fetched.digest),
        }
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
}
