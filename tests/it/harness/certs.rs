//! Certificates the tests make for themselves: a CA that signs the
//! registry's server certificate (for `127.0.0.1` and `localhost`), and
//! another CA that signs a client certificate, as a registry requiring
//! client certificates would trust.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::TestResult;
use super::registry::Tls;

/// PEM files in a directory.
pub struct Pki {
    /// The CA that signed the server's certificate.
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// The CA that signed the client's certificate.
    pub client_ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    /// Makes both CAs and certificates, written into `dir`.
    pub fn generate(dir: &Path) -> TestResult<Pki> {
        let pki = Pki {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server-key.pem"),
            client_ca: dir.join("client-ca.pem"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client-key.pem"),
        };
        let server_issuer = certificate_authority("lkcache test server CA", &pki.ca)?;
        let client_issuer = certificate_authority("lkcache test client CA", &pki.client_ca)?;

        let mut server =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf(server, &server_issuer, &pki.server_cert, &pki.server_key)?;

        let mut client = CertificateParams::new(Vec::<String>::new())?;
        client
            .distinguished_name
            .push(DnType::CommonName, "lkcache test client");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        leaf(client, &client_issuer, &pki.client_cert, &pki.client_key)?;
        Ok(pki)
    }

    /// Returns the registry's TLS, with or without requiring client
    /// certificates.
    pub fn registry_tls(&self, require_client_cert: bool) -> Tls {
        Tls {
            cert: self.server_cert.clone(),
            key: self.server_key.clone(),
            client_ca: require_client_cert.then(|| self.client_ca.clone()),
        }
    }
}

/// Makes a CA, writes its certificate to `cert_path` and returns it as an
/// issuer.
fn certificate_authority(name: &str, cert_path: &Path) -> TestResult<Issuer<'static, KeyPair>> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    std::fs::write(cert_path, params.self_signed(&key)?.pem())?;
    Ok(Issuer::new(params, key))
}

/// Signs a certificate with `issuer` and writes it and its key.
fn leaf(
    params: CertificateParams,
    issuer: &Issuer<'static, KeyPair>,
    cert_path: &Path,
    key_path: &Path,
) -> TestResult<()> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    std::fs::write(cert_path, cert.pem())?;
    std::fs::write(key_path, key.serialize_pem())?;
    Ok(())
}
