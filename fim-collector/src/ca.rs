//! The workspace's certificate authority: who the collector is to agents, and who an agent
//! is to the collector.
//!
//! One CA per workspace, made on the collector's first start and kept in its TLS directory
//! (`ca.key`, 0600, and `ca.pem`, the file agents are given as `--collector-ca`). Several
//! collectors sharing one PostgreSQL share the directory's two files. From the CA:
//! - the collector's server certificate, made afresh in memory at every start (a new key
//!   each time, nothing more to protect on disk), for the fixed name
//!   [`fim_api::push::COLLECTOR_SERVER_NAME`] with the serverAuth usage only: agents check
//!   the chain to the workspace CA, which no one else issues from, and a collector may then
//!   move address or sit behind any name without a new certificate;
//! - agents' client certificates, signed at enrollment for a key the agent generated, with
//!   the clientAuth usage only, so an agent's certificate can never pose as a collector to
//!   another agent. Nothing from the request is copied but its public key: the subject is the
//!   computer id the enrollment was granted to, and the request cannot ask for a CA.
use std::{
    io,
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use time::{Duration, OffsetDateTime};

/// The CA's files in the TLS directory.
pub const CA_KEY_FILE: &str = "ca.key";
pub const CA_CERT_FILE: &str = "ca.pem";

/// How long an agent's certificate is valid (renewed by enrolling again).
pub const AGENT_CERTIFICATE_DAYS: i64 = 825;

/// The largest certificate request accepted (an ECDSA or RSA-4096 request is under 4 KiB).
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("the workspace CA in {}: {action}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error("the workspace CA in {}: {action}: {source}", dir.display())]
    Certificate {
        dir: PathBuf,
        action: &'static str,
        source: rcgen::Error,
    },
    #[error(
        "the workspace CA in {} is incomplete: {present} exists but {missing} does not; \
         restore it (agents enrolled with it trust only it) or move both away to make a new one",
        dir.display()
    )]
    Incomplete {
        dir: PathBuf,
        present: &'static str,
        missing: &'static str,
    },
}

/// A certificate issued to an agent.
#[derive(Clone, Debug)]
pub struct IssuedCertificate {
    pub pem: String,
    /// SHA-256 of the DER, lowercase hex: how the collector recognises it on every stream.
    pub fingerprint: String,
    /// Hex.
    pub serial: String,
    pub not_after_ns: i64,
}

pub struct WorkspaceCa {
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
    dir: PathBuf,
}

impl WorkspaceCa {
    /// Loads the CA from `dir`, or makes one there when neither file exists.
    pub fn load_or_create(dir: &Path) -> Result<WorkspaceCa, CaError> {
        let (key_path, cert_path) = (dir.join(CA_KEY_FILE), dir.join(CA_CERT_FILE));
        let incomplete = |present, missing| CaError::Incomplete {
            dir: dir.to_path_buf(),
            present,
            missing,
        };
        match (key_path.exists(), cert_path.exists()) {
            (true, true) => Self::load(dir, &key_path, &cert_path),
            (false, false) => Self::create(dir, &key_path, &cert_path),
            (true, false) => Err(incomplete(CA_KEY_FILE, CA_CERT_FILE)),
            (false, true) => Err(incomplete(CA_CERT_FILE, CA_KEY_FILE)),
        }
    }

    fn load(dir: &Path, key_path: &Path, cert_path: &Path) -> Result<WorkspaceCa, CaError> {
        let (io, certificate) = (io_error(dir), certificate_error(dir));
        let key_pem = std::fs::read_to_string(key_path).map_err(io("reading ca.key"))?;
        let ca_pem = std::fs::read_to_string(cert_path).map_err(io("reading ca.pem"))?;
        let key = KeyPair::from_pem(&key_pem).map_err(certificate("reading ca.key"))?;
        let issuer =
            Issuer::from_ca_cert_pem(&ca_pem, key).map_err(certificate("reading ca.pem"))?;
        Ok(WorkspaceCa {
            issuer,
            ca_pem,
            dir: dir.to_path_buf(),
        })
    }

    fn create(dir: &Path, key_path: &Path, cert_path: &Path) -> Result<WorkspaceCa, CaError> {
        let (io, certificate) = (io_error(dir), certificate_error(dir));
        fim_engine::platform::create_private_dir(dir).map_err(io("creating the directory"))?;
        let key = KeyPair::generate().map_err(certificate("generating the CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name("fim workspace CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(20 * 365);
        params.serial_number = Some(random_serial().map_err(io("drawing a serial number"))?);
        let cert = params
            .self_signed(&key)
            .map_err(certificate("signing the CA certificate"))?;
        // The key first: a crash between the two leaves an incomplete CA, which is refused
        // loudly rather than replaced (agents may already trust it).
        fim_engine::platform::write_private_file(key_path, key.serialize_pem().as_bytes())
            .map_err(io("writing ca.key"))?;
        fim_engine::platform::write_private_file(cert_path, cert.pem().as_bytes())
            .map_err(io("writing ca.pem"))?;
        tracing::info!(dir = %dir.display(), "created the workspace CA");
        Ok(WorkspaceCa {
            ca_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            dir: dir.to_path_buf(),
        })
    }

    /// The CA certificate, PEM: what agents trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The path of the CA certificate, for messages (`--collector-ca`).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// A fresh server certificate and key (PEM) for this run of the collector.
    pub fn server_identity(&self) -> Result<(String, String), CaError> {
        let fail = |source| CaError::Certificate {
            dir: self.dir.clone(),
            action: "making the server certificate",
            source,
        };
        let key = KeyPair::generate().map_err(fail)?;
        let mut params =
            CertificateParams::new(vec![fim_api::push::COLLECTOR_SERVER_NAME.to_string()])
                .map_err(fail)?;
        params.distinguished_name = name(fim_api::push::COLLECTOR_SERVER_NAME);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(365);
        params.serial_number = Some(random_serial().map_err(|source| CaError::Io {
            dir: self.dir.clone(),
            action: "drawing a serial number",
            source,
        })?);
        let cert = params.signed_by(&key, &self.issuer).map_err(fail)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Signs a client certificate for `computer_id` over the public key of `request_pem`
    /// (whose signature proves the agent holds the key). The refusal is for the agent.
    pub fn sign_agent(
        &self,
        request_pem: &str,
        computer_id: &str,
    ) -> Result<IssuedCertificate, String> {
        if request_pem.len() > MAX_REQUEST_BYTES {
            return Err(format!(
                "the certificate request is {} bytes, more than the {MAX_REQUEST_BYTES} allowed",
                request_pem.len()
            ));
        }
        let request = CertificateSigningRequestParams::from_pem(request_pem).map_err(|error| {
            format!("the certificate request is not a valid, self-signed PKCS#10 request: {error}")
        })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(computer_id);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        let not_after = now + Duration::days(AGENT_CERTIFICATE_DAYS);
        params.not_after = not_after;
        let serial = random_serial().map_err(|error| format!("drawing a serial: {error}"))?;
        let serial_hex = crate::chain::hex(&serial.to_bytes());
        params.serial_number = Some(serial);
        let cert = params
            .signed_by(&request.public_key, &self.issuer)
            .map_err(|error| format!("signing the certificate: {error}"))?;
        Ok(IssuedCertificate {
            pem: cert.pem(),
            fingerprint: fingerprint(cert.der()),
            serial: serial_hex,
            not_after_ns: i64::try_from(not_after.unix_timestamp_nanos()).unwrap_or(i64::MAX),
        })
    }
}

/// SHA-256 of a certificate's DER, lowercase hex (as `openssl x509 -fingerprint -sha256`
/// prints it, without the colons).
pub fn fingerprint(der: &[u8]) -> String {
    crate::chain::hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

/// `CaError::Io` for an action in `dir`.
fn io_error(dir: &Path) -> impl Fn(&'static str) -> Box<dyn FnOnce(io::Error) -> CaError> + '_ {
    move |action| {
        let dir = dir.to_path_buf();
        Box::new(move |source| CaError::Io {
            dir,
            action,
            source,
        })
    }
}

/// `CaError::Certificate` for an action in `dir`.
fn certificate_error(
    dir: &Path,
) -> impl Fn(&'static str) -> Box<dyn FnOnce(rcgen::Error) -> CaError> + '_ {
    move |action| {
        let dir = dir.to_path_buf();
        Box::new(move |source| CaError::Certificate {
            dir,
            action,
            source,
        })
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "fim workspace");
    name.push(DnType::CommonName, common_name);
    name
}

/// 16 random bytes, the top bit clear so the DER integer stays positive.
fn random_serial() -> io::Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    fim_engine::platform::random_bytes(&mut bytes)?;
    bytes[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(computer_id: &str) -> (KeyPair, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = name(computer_id);
        // Asks for more than it may have: the CA must not copy any of it.
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        (key, pem)
    }

    #[test]
    fn the_ca_is_made_once_kept_private_and_signs_only_what_it_decides() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let ca = WorkspaceCa::load_or_create(&tls).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(tls.join(CA_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "the CA key is the owner's only");
        }
        let again = WorkspaceCa::load_or_create(&tls).unwrap();
        assert_eq!(again.ca_pem(), ca.ca_pem(), "a second start keeps the CA");

        let (_key, pem) = request("attacker-asks-for-ca");
        let issued = again.sign_agent(&pem, "machine-1").unwrap();
        let (_, der) = x509_parser::pem::parse_x509_pem(issued.pem.as_bytes()).unwrap();
        let cert = der.parse_x509().unwrap();
        let subject = cert.subject().to_string();
        assert!(subject.contains("CN=machine-1"), "{subject}");
        assert!(!cert.is_ca(), "a request cannot make itself a CA");
        let usage = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(usage.client_auth && !usage.server_auth);
        assert_eq!(issued.fingerprint, fingerprint(&der.contents));
        assert_eq!(issued.fingerprint.len(), 64);

        assert!(ca.sign_agent("not a request", "m").is_err());
        assert!(ca
            .sign_agent(&"x".repeat(MAX_REQUEST_BYTES + 1), "m")
            .unwrap_err()
            .contains("more than"));
    }

    #[test]
    fn half_a_ca_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        WorkspaceCa::load_or_create(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
        let error = WorkspaceCa::load_or_create(dir.path()).err().unwrap();
        assert!(error.to_string().contains("incomplete"), "{error}");
        assert!(!dir.path().join(CA_KEY_FILE).exists());
    }
}
