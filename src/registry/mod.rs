//! A client of the Distribution API v2 (the OCI distribution spec): fetch
//! manifests and indexes by tag or digest, and stream blobs.
//!
//! Manifests are identified by the digest of their raw bytes, computed here
//! and checked against the digest the caller expects wherever one is known.
//! Manifests above [`MAX_MANIFEST_BYTES`] are refused before they are read
//! whole. Blobs are handed out as streams, for the caller to hash while it
//! writes them.
//!
//! Which hosts are asked, and how they are reached, is [`hosts`]'s part:
//! pulls try a registry's mirrors first and fall back to the registry;
//! pushes and questions about what a registry serves now go to the
//! registry alone. Loopback registries and those named insecure are spoken
//! to over plain HTTP unless configured otherwise; every other host over
//! HTTPS, with the system's roots and any CA configured for it.

mod auth;
pub mod credentials;
mod error;
pub mod hosts;
mod retry;
mod transport;
mod upload;

use std::io::Read;
use std::time::Duration;

use ureq::http::Response;

use crate::digest::{Digest, Hasher};
use crate::manifest::{self, Descriptor, MAX_MANIFEST_BYTES, Manifest};
use crate::media_type;
use crate::reference::Reference;

pub use credentials::{BasicAuth, Credential, CredentialError, CredentialHelper, Credentials};
pub use error::RegistryError;
pub use hosts::{Hosts, HostsError, Mirror, Proxies};
pub use retry::RetryPolicy;
pub use upload::{CHUNK_BYTES, Mount};

use hosts::{Capability, Endpoint};
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
    offset: u64,
}

impl BlobStream {
    /// Returns the position in the blob of the stream's first byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

impl Read for BlobStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reader.read(buf)
    }
}

/// How long a response may stall unless told otherwise.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Options for a [`Client`].
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Registries (`host[:port]`) to speak plain HTTP to, besides loopback.
    pub insecure_registries: Vec<String>,
    /// Credentials for registries that ask for them.
    pub credentials: Credentials,
    /// How hard to try again after failures.
    pub retry: RetryPolicy,
    /// How long a response may stall before the request is abandoned
    /// (and, for a blob, resumed); `None` for the default of 60 s.
    pub read_timeout: Option<Duration>,
    /// Host directories and mirrors; none by default (the command line
    /// uses [`Hosts::from_env`]).
    pub hosts: Hosts,
    /// Proxies; `None` to read them from the environment.
    pub proxies: Option<Proxies>,
}

/// A registry client; cheap to share between threads.
#[derive(Debug)]
pub struct Client {
    connector: hosts::Connector,
    auth: auth::Authenticator,
    retry: RetryPolicy,
}

impl Client {
    /// Creates a client. Host directories are read, and connections set
    /// up, when a registry is first asked for something.
    pub fn new(options: ClientOptions) -> Client {
        let connector = hosts::Connector::new(
            options.hosts,
            options.insecure_registries,
            options.proxies.unwrap_or_else(Proxies::from_env),
            options.read_timeout.unwrap_or(DEFAULT_READ_TIMEOUT),
        );
        Client {
            connector,
            auth: auth::Authenticator::new(options.credentials),
            retry: options.retry,
        }
    }

    /// Fetches the manifest or index `reference` names (by digest if it has
    /// one, else by tag), checks its size and, where the reference pins
    /// one, its digest. A mirror is asked first if one may serve it.
    pub fn fetch_manifest(&self, reference: &Reference) -> Result<FetchedManifest, RegistryError> {
        let capability = match reference.digest() {
            Some(_) => Capability::Pull,
            None => Capability::Resolve,
        };
        let what = format!("manifest {reference}");
        self.with_mirrors(reference, capability, &what, |endpoint| {
            self.fetch_manifest_at(endpoint, reference)
        })
    }

    /// Fetches a manifest from one host.
    fn fetch_manifest_at(
        &self,
        endpoint: &Endpoint,
        reference: &Reference,
    ) -> Result<FetchedManifest, RegistryError> {
        let path = manifest_path(reference);
        let what = format!("manifest {reference}");
        let mut request = Exchange::new(reference, Method::Get, &path, what);
        request
            .headers
            .push(("Accept", media_type::MANIFEST_ACCEPT.to_string()));
        let response = self.exchange_at(endpoint, request)?;
        let declared = header(&response, "content-type").unwrap_or_default();
        let bytes = read_manifest_body(&endpoint.name, reference, response)?;

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
        self.fetch_blob_from(reference, digest, 0)
    }

    /// Opens the blob `digest` for streaming from byte `offset` on, with a
    /// `Range` request; a registry that ignores the range sends the whole
    /// blob, which [`BlobStream::offset`] then tells. A mirror is asked
    /// first if one may serve it.
    pub fn fetch_blob_from(
        &self,
        reference: &Reference,
        digest: &Digest,
        offset: u64,
    ) -> Result<BlobStream, RegistryError> {
        let what = format!("blob {digest} of {reference}");
        self.with_mirrors(reference, Capability::Pull, &what, |endpoint| {
            self.fetch_blob_at(endpoint, reference, digest, offset)
        })
    }

    /// Opens a blob at one host.
    fn fetch_blob_at(
        &self,
        endpoint: &Endpoint,
        reference: &Reference,
        digest: &Digest,
        offset: u64,
    ) -> Result<BlobStream, RegistryError> {
        let path = format!("/v2/{}/blobs/{digest}", reference.repository());
        let mut request = Exchange::new(reference, Method::Get, &path, format!("blob {digest}"));
        if offset > 0 {
            request.headers.push(("Range", format!("bytes={offset}-")));
        }
        let response = self.exchange_at(endpoint, request)?;
        let served_from = match response.status().as_u16() {
            206 => header(&response, "content-range").and_then(|r| range_start(&r)),
            _ => Some(0),
        };
        let Some(served_from) = served_from.filter(|start| *start == 0 || *start == offset) else {
            return Err(RegistryError::Status {
                registry: endpoint.name.clone(),
                what: format!("blob {digest} from byte {offset}"),
                status: 206,
                detail: "the answer's Content-Range does not start where asked".to_string(),
                attempts: 1,
            });
        };
        Ok(BlobStream {
            reader: Box::new(response.into_body().into_reader()),
            offset: served_from,
        })
    }

    /// Returns the digest the registry serves for `reference` now, asking
    /// with a `HEAD` and falling back to fetching the manifest when the
    /// registry does not say. Only the registry itself is asked: a mirror
    /// may be behind.
    pub fn current_digest(&self, reference: &Reference) -> Result<Digest, RegistryError> {
        let upstream = &self.route(reference)?.upstream;
        let path = manifest_path(reference);
        let what = format!("manifest {reference}");
        let mut request = Exchange::new(reference, Method::Head, &path, what);
        request
            .headers
            .push(("Accept", media_type::MANIFEST_ACCEPT.to_string()));
        let response = self.exchange_at(upstream, request)?;
        let announced = header(&response, "docker-content-digest").and_then(|d| d.parse().ok());
        match announced {
            Some(digest) => Ok(digest),
            None => self
                .fetch_manifest_at(upstream, reference)
                .map(|fetched| fetched.digest),
        }
    }
}

/// Reads the first byte position of `Content-Range: bytes START-END/SIZE`.
fn range_start(content_range: &str) -> Option<u64> {
    let range = content_range.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
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

/// Reads a manifest body from `registry`, refusing it as soon as it passes
/// the size limit.
fn read_manifest_body(
    registry: &str,
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
            registry: registry.to_string(),
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
            let route = client.route(&reference).unwrap();
            assert_eq!(route.upstream.base_url(), expected, "{input}");
            assert!(route.mirrors.is_empty(), "{input}");
        }
    }
}
