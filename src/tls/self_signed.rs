//! `crm-node tls self-signed`: a private CA and a node certificate signed
//! by it, for trying HTTPS between nodes without a company CA. Production
//! should use certificates from the company's CA or a reverse proxy; this
//! exists so that a test set-up is one command, not an openssl recipe.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use super::TlsError;

/// The folder inside the data folder the files go to.
pub const FOLDER: &str = "tls";

/// A certificate authority held in memory: it signs node certificates.
pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its private key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Authority {
    pub fn new(common_name: &str) -> Result<Authority, TlsError> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Authority { issuer })
    }

    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A server certificate for `names` (DNS names) and `ips`.
    pub fn issue(
        &self,
        common_name: &str,
        names: &[String],
        ips: &[IpAddr],
    ) -> Result<Issued, TlsError> {
        let alt_names: Vec<String> = names
            .iter()
            .cloned()
            .chain(ips.iter().map(IpAddr::to_string))
            .collect();
        let mut params = CertificateParams::new(alt_names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What [`write`] made: the files, and the config lines that use them.
pub struct Written {
    pub files: Vec<PathBuf>,
    pub config: String,
}

/// Writes `tls/ca.crt`, `tls/ca.key`, `tls/node.crt` and `tls/node.key`
/// into `data_dir`. The node certificate names `localhost` and 127.0.0.1
/// besides `names` and `ips`, so that local tools and tests reach it. Never
/// overwrites a file.
pub fn write(data_dir: &Path, names: &[String], ips: &[IpAddr]) -> Result<Written, TlsError> {
    let mut all_names = vec!["localhost".to_owned()];
    all_names.extend(names.iter().filter(|n| *n != "localhost").cloned());
    let mut all_ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    all_ips.extend(ips.iter().filter(|ip| !ip.is_loopback()).copied());
    let authority = Authority::new("crm-node private CA")?;
    let common_name = names.first().map_or("localhost", String::as_str);
    let node = authority.issue(common_name, &all_names, &all_ips)?;
    let dir = data_dir.join(FOLDER);
    std::fs::create_dir_all(&dir).map_err(|source| TlsError::Write {
        path: dir.clone(),
        source,
    })?;
    let files = [
        ("ca.crt", authority.cert_pem()),
        ("ca.key", authority.key_pem()),
        ("node.crt", node.cert_pem),
        ("node.key", node.key_pem),
    ];
    for (name, _) in &files {
        if dir.join(name).exists() {
            return Err(TlsError::Exists(dir.join(name)));
        }
    }
    let mut written = Vec::new();
    for (name, text) in &files {
        let path = dir.join(name);
        write_new(&path, text.as_bytes(), name.ends_with(".key"))?;
        written.push(path);
    }
    let config = format!(
        "tls_cert = \"{FOLDER}/node.crt\"\ntls_key = \"{FOLDER}/node.key\"\npeer_ca = \"{FOLDER}/ca.crt\"\n"
    );
    Ok(Written {
        files: written,
        config,
    })
}

/// Creates `path` (refusing to replace one); private keys are readable by
/// the owner only.
fn write_new(path: &Path, bytes: &[u8], private: bool) -> Result<(), TlsError> {
    let error = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(error)?;
    file.write_all(bytes).map_err(error)?;
    file.sync_all().map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_four_files_once_and_the_config_points_at_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let written = write(dir.path(), &["crm.office.lan".into()], &[]).expect("written");
        assert_eq!(written.files.len(), 4);
        for line in ["tls_cert = \"tls/node.crt\"", "peer_ca = \"tls/ca.crt\""] {
            assert!(written.config.contains(line), "{}", written.config);
        }
        let config = crate::config::Config {
            tls_cert: Some("tls/node.crt".into()),
            tls_key: Some("tls/node.key".into()),
            peer_ca: Some("tls/ca.crt".into()),
            ..Default::default()
        };
        assert!(crate::tls::server_config(dir.path(), &config)
            .expect("usable")
            .is_some());
        assert!(crate::tls::PeerTrust::load(dir.path(), &config).is_ok());
        assert!(matches!(
            write(dir.path(), &[], &[]),
            Err(TlsError::Exists(_))
        ));
    }
}
