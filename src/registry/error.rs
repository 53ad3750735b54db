//! The errors of talking to a registry, each naming the registry or the
//! reference concerned and, where the user can act, what to do.

use crate::digest::Digest;
use crate::manifest::{MAX_MANIFEST_BYTES, ManifestError};

/// What went wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No HTTP exchange was possible.
    #[error(
        "cannot reach registry `{registry}` at {url}: {source}; {}",
        unreachable_hint(registry, source)
    )]
    Unreachable {
        /// The registry as the reference names it.
        registry: String,
        /// The URL tried.
        url: String,
        /// The transport's error.
        #[source]
        source: Box<ureq::Error>,
        /// How many attempts were made.
        attempts: u32,
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
    /// The credentials for the registry could not be looked up.
    #[error("cannot look up the credentials for `{registry}`")]
    Credentials {
        /// The registry.
        registry: String,
        /// Why.
        #[source]
        source: Box<super::CredentialError>,
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
    #[error("registry `{registry}` answered {status} to {what}{}: {detail}", attempts_note(*attempts))]
    Status {
        /// The registry.
        registry: String,
        /// The request, as `manifest docker.io/library/alpine:3`.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The registry's error code and message.
        detail: String,
        /// How many attempts were made.
        attempts: u32,
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
    /// A request that cannot be formed, such as a malformed upload URL.
    #[error("cannot send a request to `{url}`: {detail}")]
    Request {
        /// The URL.
        url: String,
        /// What is wrong.
        detail: String,
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

/// Says what to do about a failed connection: for a refused TLS
/// handshake, where lkcache looks for certificates; otherwise, check the
/// name and the network.
fn unreachable_hint(registry: &str, source: &ureq::Error) -> String {
    let certs_dirs = super::hosts::describe_default_dirs();
    match source {
        ureq::Error::Rustls(rustls::Error::InvalidCertificate(_)) => format!(
            "the registry's certificate is not trusted: put the CA that signed it in \
             `{registry}/ca.crt` under {certs_dirs}, or name it as `ca` in the `hosts.toml` \
             there"
        ),
        ureq::Error::Rustls(rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired
            | rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::UnknownCA,
        )) => format!(
            "the registry wants a client certificate it trusts: put it and its key in \
             `{registry}/client.cert` and `client.key` under {certs_dirs}, or name them as \
             `client` in the `hosts.toml` there"
        ),
        _ if registry.contains(':') => "check the name and the network; if the registry speaks \
                                        plain HTTP, name it with --insecure-registry"
            .to_string(),
        _ => "check the name and the network".to_string(),
    }
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

impl RegistryError {
    /// Tells whether the failure may pass if the whole operation is tried
    /// again: the network, or the registry's own trouble.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } | RegistryError::Read { .. } => true,
            RegistryError::Status { status, .. } => super::retry::is_retryable_status(*status),
            _ => false,
        }
    }

    /// Records how many attempts led to this error.
    pub(super) fn after(self, made: u32) -> RegistryError {
        match self {
            RegistryError::Unreachable {
                registry,
                url,
                source,
                ..
            } => RegistryError::Unreachable {
                registry,
                url,
                source,
                attempts: made,
            },
            other => other,
        }
    }
}
