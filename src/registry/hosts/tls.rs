//! TLS for one host: the system's roots, or the system's roots plus extra
//! certificate authorities, a client certificate, or no verification at
//! all; turned into ureq's TLS configuration.
//!
//! Without extra CAs the platform verifier checks certificates, as before
//! hosts were configured. With extra CAs the system's roots are read once
//! per process and the extra ones added, as Docker and containerd do (a
//! registry with a private CA may still redirect to blob storage with a
//! public certificate). Files are read and checked here, before ureq sees
//! them: ureq would panic on a key that does not match its certificate.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

use super::HostsError;

/// How to speak TLS to one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct TlsSetup {
    /// PEM files of extra certificate authorities.
    pub ca: Vec<PathBuf>,
    /// A PEM client certificate (chain) and its key file, `None` when the
    /// key is in the certificate file.
    pub client: Option<(PathBuf, Option<PathBuf>)>,
    /// Whether to accept any certificate.
    pub skip_verify: bool,
}

impl TlsSetup {
    /// Builds ureq's TLS configuration, reading and checking the files.
    pub(crate) fn config(&self) -> Result<TlsConfig, HostsError> {
        let mut builder = TlsConfig::builder();
        builder = if self.skip_verify {
            builder.disable_verification(true)
        } else if self.ca.is_empty() {
            builder.root_certs(RootCerts::PlatformVerifier)
        } else {
            let mut roots: Vec<Certificate<'static>> = system_roots()
                .iter()
                .map(|der| Certificate::from_der(der.as_ref()).to_owned())
                .collect();
            for path in &self.ca {
                roots.extend(read_certificates(path)?);
            }
            builder.root_certs(RootCerts::new_with_certs(&roots))
        };
        if let Some((cert, key)) = &self.client {
            builder = builder.client_cert(Some(read_client_cert(cert, key.as_deref())?));
        }
        Ok(builder.build())
    }
}

/// Returns the system's root certificates, read once.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::debug!("reading the system's root certificates: {error}");
        }
        found.certs
    })
}

fn read(path: &Path) -> Result<Vec<u8>, HostsError> {
    std::fs::read(path).map_err(|source| HostsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certificate_error(path: &Path, detail: impl ToString) -> HostsError {
    HostsError::Certificate {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    }
}

/// Reads every certificate of a PEM file; a file without one is an error.
fn read_certificates(path: &Path) -> Result<Vec<Certificate<'static>>, HostsError> {
    let pem = read(path)?;
    let ders = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| certificate_error(path, e))?;
    if ders.is_empty() {
        return Err(certificate_error(path, "the file holds no PEM certificate"));
    }
    Ok(ders
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect())
}

/// Reads a client certificate chain and its private key, and checks that
/// they belong together.
fn read_client_cert(cert_path: &Path, key_path: Option<&Path>) -> Result<ClientCert, HostsError> {
    let chain_pem = read(cert_path)?;
    let chain = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| certificate_error(cert_path, e))?;
    if chain.is_empty() {
        return Err(certificate_error(
            cert_path,
            "the file holds no PEM certificate",
        ));
    }
    let key_path = key_path.unwrap_or(cert_path);
    let key_pem = read(key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| certificate_error(key_path, format!("no usable PEM private key ({e})")))?;

    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(
        |e| {
            certificate_error(
                cert_path,
                format!("does not go with its key `{}`: {e}", key_path.display()),
            )
        },
    )?;

    let chain: Vec<Certificate<'static>> = chain
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    let key = PrivateKey::from_pem(&key_pem).map_err(|e| certificate_error(key_path, e))?;
    Ok(ClientCert::new_with_certs(&chain, key))
}

/// Returns a transport error with a TLS failure as ureq's TLS error
/// rather than as the I/O error rustls reports it through: a refused
/// certificate is final, not a network hiccup worth retrying.
pub(crate) fn typed_tls_error(error: ureq::Error) -> ureq::Error {
    let ureq::Error::Io(io) = error else {
        return error;
    };
    let is_tls = io
        .get_ref()
        .is_some_and(|inner| inner.is::<rustls::Error>());
    if !is_tls {
        return ureq::Error::Io(io);
    }
    match io
        .into_inner()
        .map(|inner| inner.downcast::<rustls::Error>())
    {
        Some(Ok(tls)) => ureq::Error::Rustls(*tls),
        Some(Err(inner)) => ureq::Error::Io(std::io::Error::other(inner)),
        None => ureq::Error::Io(std::io::Error::other("tls failure")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_unusable_certificate_files_by_path() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let empty = dir.path().join("empty.crt");
        std::fs::write(&empty, "not a certificate\n")?;
        let cases = [
            (
                TlsSetup {
                    ca: vec![dir.path().join("missing.crt")],
                    ..TlsSetup::default()
                },
                "missing.crt",
            ),
            (
                TlsSetup {
                    ca: vec![empty.clone()],
                    ..TlsSetup::default()
                },
                "holds no PEM certificate",
            ),
            (
                TlsSetup {
                    client: Some((empty.clone(), None)),
                    ..TlsSetup::default()
                },
                "holds no PEM certificate",
            ),
        ];
        for (setup, expected) in cases {
            let error = setup.config().err().ok_or("the setup should fail")?;
            let message = format!("{error}: {:?}", std::error::Error::source(&error));
            assert!(message.contains(expected), "{message}");
        }
        Ok(())
    }

    #[test]
    fn refuses_a_client_key_of_another_certificate() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let key = rcgen::KeyPair::generate()?;
        let other_key = rcgen::KeyPair::generate()?;
        let cert = rcgen::CertificateParams::new(vec!["client".to_string()])?.self_signed(&key)?;
        let (cert_path, key_path) = (dir.path().join("c.cert"), dir.path().join("c.key"));
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, other_key.serialize_pem())?;
        let setup = TlsSetup {
            client: Some((cert_path.clone(), Some(key_path.clone()))),
            ..TlsSetup::default()
        };
        let error = setup.config().err().ok_or("a wrong key should fail")?;
        assert!(error.to_string().contains("c.cert"), "{error}");

        std::fs::write(&key_path, key.serialize_pem())?;
        setup.config()?;
        let combined = dir.path().join("both.pem");
        std::fs::write(&combined, format!("{}{}", cert.pem(), key.serialize_pem()))?;
        TlsSetup {
            client: Some((combined, None)),
            ca: vec![cert_path],
            ..TlsSetup::default()
        }
        .config()?;
        Ok(())
    }

    #[test]
    fn tells_tls_failures_from_network_failures() {
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert!(matches!(
            typed_tls_error(ureq::Error::Io(tls)),
            ureq::Error::Rustls(_)
        ));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(
            typed_tls_error(ureq::Error::Io(reset)),
            ureq::Error::Io(_)
        ));
    }
}
