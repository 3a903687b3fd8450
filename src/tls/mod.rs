//! TLS for the node, with rustls (ring): the server configuration that
//! `serve` answers HTTPS with, the extra CA certificates peers are verified
//! against (`peer_ca`), and the client the tools use to reach the node that
//! serves their data folder. Certificates come from PEM files named in the
//! config; every error names the config key whose file is wrong.

pub mod listener;
pub mod self_signed;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {}: {source}", path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{key}: {} holds no PEM {what}", path.display())]
    NotPem {
        key: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error("{key}: {}: {detail}", path.display())]
    Unusable {
        key: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("TLS set-up: {0}")]
    Setup(String),
    #[error("making certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} exists; remove it or choose another data folder", .0.display())]
    Exists(PathBuf),
}

/// One PEM file named by a config key; relative paths are taken from the
/// data folder, so that a folder moves with its certificates.
struct PemFile {
    key: &'static str,
    path: PathBuf,
    bytes: Vec<u8>,
}

impl PemFile {
    fn read(data_dir: &Path, key: &'static str, path: &Path) -> Result<PemFile, TlsError> {
        let path = data_dir.join(path);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(PemFile { key, path, bytes }),
            Err(source) => Err(TlsError::Read { key, path, source }),
        }
    }

    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let certs = CertificateDer::pem_slice_iter(&self.bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.unusable(e))?;
        if certs.is_empty() {
            return Err(self.not_pem("certificate"));
        }
        Ok(certs)
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(&self.bytes).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => self.not_pem("private key"),
            other => self.unusable(other),
        })
    }

    fn not_pem(&self, what: &'static str) -> TlsError {
        TlsError::NotPem {
            key: self.key,
            path: self.path.clone(),
            what,
        }
    }

    fn unusable(&self, detail: impl std::fmt::Display) -> TlsError {
        TlsError::Unusable {
            key: self.key,
            path: self.path.clone(),
            detail: detail.to_string(),
        }
    }
}

/// The one crypto provider: ring, which reqwest's rustls already uses, so
/// the binary carries one implementation.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

/// The certificates of `tls_cert`, when TLS is configured.
fn own_certificates(
    data_dir: &Path,
    config: &Config,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    match &config.tls_cert {
        Some(path) => PemFile::read(data_dir, "tls_cert", path)?.certificates(),
        None => Ok(Vec::new()),
    }
}

/// The HTTPS configuration when `tls_cert` and `tls_key` are set (the
/// config check makes sure they come together), `None` for plain HTTP.
pub fn server_config(
    data_dir: &Path,
    config: &Config,
) -> Result<Option<Arc<ServerConfig>>, TlsError> {
    let Some(key_path) = &config.tls_key else {
        return Ok(None);
    };
    let certs = own_certificates(data_dir, config)?;
    let key_file = PemFile::read(data_dir, "tls_key", key_path)?;
    let key = key_file.private_key()?;
    let mut server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_no_client_auth()
        // rustls checks here that the key belongs to the certificate.
        .with_single_cert(certs, key)
        .map_err(|e| key_file.unusable(format!("does not fit tls_cert: {e}")))?;
    // The API speaks HTTP/1.1 only (axum without http2).
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(server)))
}

/// The `peer_ca` certificates (none when the key is unset): trusted for
/// peers in addition to the public web roots.
#[derive(Debug, Clone, Default)]
pub struct PeerTrust {
    extra_roots: Vec<CertificateDer<'static>>,
}

impl PeerTrust {
    pub fn load(data_dir: &Path, config: &Config) -> Result<PeerTrust, TlsError> {
        let Some(path) = &config.peer_ca else {
            return Ok(PeerTrust::default());
        };
        let file = PemFile::read(data_dir, "peer_ca", path)?;
        let extra_roots = file.certificates()?;
        // A certificate rustls cannot use as an anchor is reported now, not
        // at the first sync.
        let mut store = RootCertStore::empty();
        for cert in &extra_roots {
            store.add(cert.clone()).map_err(|e| file.unusable(e))?;
        }
        Ok(PeerTrust { extra_roots })
    }

    /// Adds the extra roots to a client; verification itself stays on.
    pub fn apply(
        &self,
        mut builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, TlsError> {
        for cert in &self.extra_roots {
            let cert = reqwest::Certificate::from_der(cert)
                .map_err(|e| TlsError::Setup(format!("peer_ca: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        Ok(builder)
    }
}

/// A client for the node serving `data_dir` (its URL from `serve.url`). It
/// accepts the node's own certificate from `tls_cert` whatever the URL's
/// host (the node may listen on 0.0.0.0 or an address its certificate does
/// not name), and otherwise verifies against `peer_ca` and `tls_cert`'s
/// certificates as anchors, so a certificate renewed on disk from the same
/// CA still passes.
pub fn local_client(data_dir: &Path, config: &Config) -> Result<reqwest::Client, TlsError> {
    let own = own_certificates(data_dir, config)?;
    let peer_trust = PeerTrust::load(data_dir, config)?;
    let provider = provider();
    let mut roots = RootCertStore::empty();
    // Leaf certificates may not be usable as anchors; they are matched
    // exactly instead, so skipping them loses nothing.
    roots.add_parsable_certificates(own.iter().chain(&peer_trust.extra_roots).cloned());
    let anchors = if roots.is_empty() {
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TlsError::Setup(e.to_string()))?,
        )
    };
    let verifier = OwnNode {
        own,
        anchors,
        provider: provider.clone(),
    };
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .map_err(|e| TlsError::Setup(e.to_string()))
}

/// Verifies the node this tool belongs to: its exact certificate (the
/// handshake still proves it holds the key), or a chain to the anchors.
#[derive(Debug)]
struct OwnNode {
    own: Vec<CertificateDer<'static>>,
    anchors: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for OwnNode {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.own.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            return Ok(ServerCertVerified::assertion());
        }
        match &self.anchors {
            Some(anchors) => anchors.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
