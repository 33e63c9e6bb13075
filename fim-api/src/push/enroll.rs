//! The agent's credentials at the workspace: enrolling once, then mutual TLS.
//!
//! The agent trusts one CA, the workspace's (`--collector-ca`, a file only root may change:
//! whoever could replace it could point the agent at a collector of their own), and checks
//! the collector's certificate against it for the fixed name [`COLLECTOR_SERVER_NAME`], so
//! collectors may move address without new certificates. On its first connection it
//! generates an ECDSA P-256 key, sends a certificate request for it with the enrollment
//! token an owner gave it (`--enroll-token-file`), and keeps the key (0600) and the
//! certificate it is issued in its state directory; the key never leaves the machine and the
//! token is not needed again. Enrollment runs inside the push loop, so a collector that is
//! down at start is retried with the same back-off as reporting.
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::{AgentIdentity, PushError};
use crate::collector_pb::{enrollment_client::EnrollmentClient, EnrollRequest};

/// The name every collector's certificate is issued for, and the one agents check.
pub const COLLECTOR_SERVER_NAME: &str = "fim-collector";

/// The agent's key and certificate in its state directory.
pub const AGENT_KEY_FILE: &str = "collector-agent.key";
pub const AGENT_CERT_FILE: &str = "collector-agent.pem";

/// The largest CA file or token file read (a CA certificate is a few KiB).
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// An issued certificate and its key, PEM.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub certificate_pem: String,
    pub key_pem: String,
}

/// How an agent reaches collectors over mutual TLS.
#[derive(Clone, Debug)]
pub struct TlsSettings {
    ca_pem: String,
    /// Where the key and certificate are kept (the agent's state directory).
    dir: PathBuf,
    /// The enrollment token's file, for the first connection.
    token_file: Option<PathBuf>,
}

impl TlsSettings {
    /// Reads the CA at `ca_path`, which must be trusted configuration (root's, or the
    /// service's on Windows), and notes where credentials live.
    pub fn new(
        ca_path: &Path,
        token_file: Option<PathBuf>,
        state_dir: &Path,
    ) -> Result<TlsSettings, PushError> {
        let ca_pem = read_trusted("collector CA", ca_path)?;
        if !ca_pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(PushError::Credentials(format!(
                "the collector CA {} holds no PEM certificate",
                ca_path.display()
            )));
        }
        Ok(TlsSettings {
            ca_pem,
            dir: state_dir.to_path_buf(),
            token_file,
        })
    }

    /// The stored key and certificate, None before enrollment.
    pub fn stored(&self) -> Result<Option<Credentials>, PushError> {
        let (key, cert) = (
            self.dir.join(AGENT_KEY_FILE),
            self.dir.join(AGENT_CERT_FILE),
        );
        if !key.exists() || !cert.exists() {
            return Ok(None);
        }
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|error| {
                PushError::Credentials(format!("cannot read {}: {error}", path.display()))
            })
        };
        Ok(Some(Credentials {
            certificate_pem: read(&cert)?,
            key_pem: read(&key)?,
        }))
    }

    /// The stored credentials, or new ones from enrolling at `address`.
    pub async fn credentials(
        &self,
        address: &str,
        identity: &AgentIdentity,
    ) -> Result<Credentials, PushError> {
        if let Some(credentials) = self.stored()? {
            return Ok(credentials);
        }
        let Some(token_file) = &self.token_file else {
            return Err(PushError::Credentials(format!(
                "this agent is not enrolled in the workspace ({} is missing) and has no \
                 enrollment token: give one with --enroll-token-file (an owner makes it with \
                 `fim-collector enroll create`)",
                self.dir.join(AGENT_CERT_FILE).display()
            )));
        };
        let token = read_trusted("enrollment token", token_file)?;
        self.enroll(address, identity, token.trim()).await
    }

    async fn enroll(
        &self,
        address: &str,
        identity: &AgentIdentity,
        token: &str,
    ) -> Result<Credentials, PushError> {
        let key = KeyPair::generate().map_err(credentials_error("generating a key"))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, identity.computer_id.as_str());
        params.distinguished_name = name;
        let request = params
            .serialize_request(&key)
            .and_then(|request| request.pem())
            .map_err(credentials_error("making the certificate request"))?;
        let channel = self.channel(address, None).await?;
        let response = EnrollmentClient::new(channel)
            .enroll(EnrollRequest {
                token: token.to_string(),
                certificate_request_pem: request,
                computer_id: identity.computer_id.clone(),
                computer: identity.computer.clone(),
            })
            .await
            .map_err(|status| PushError::Stream {
                address: address.to_string(),
                status: Box::new(status),
            })?
            .into_inner();
        let credentials = Credentials {
            certificate_pem: response.certificate_pem,
            key_pem: key.serialize_pem(),
        };
        let write = |file: &str, text: &str| {
            let path = self.dir.join(file);
            fim_engine::platform::write_private_file(&path, text.as_bytes()).map_err(|error| {
                PushError::Credentials(format!("cannot write {}: {error}", path.display()))
            })
        };
        // The key first: a certificate without its key would be useless, a key without a
        // certificate is enrolled again.
        write(AGENT_KEY_FILE, &credentials.key_pem)?;
        write(AGENT_CERT_FILE, &credentials.certificate_pem)?;
        tracing::info!(collector = %address, "enrolled in the workspace");
        Ok(credentials)
    }

    /// A TLS channel to `address` trusting only the workspace CA, presenting `credentials`
    /// when given.
    pub async fn channel(
        &self,
        address: &str,
        credentials: Option<&Credentials>,
    ) -> Result<Channel, PushError> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name(COLLECTOR_SERVER_NAME);
        if let Some(credentials) = credentials {
            tls = tls.identity(Identity::from_pem(
                &credentials.certificate_pem,
                &credentials.key_pem,
            ));
        }
        let uri = match address.split_once("://") {
            Some((_, rest)) => format!("https://{rest}"),
            None => format!("https://{address}"),
        };
        let fail = |source| PushError::Connect {
            address: address.to_string(),
            source,
        };
        super::endpoint(Endpoint::from_shared(uri).map_err(fail)?)
            .tls_config(tls)
            .map_err(fail)?
            .connect()
            .await
            .map_err(fail)
    }
}

fn credentials_error(action: &'static str) -> impl Fn(rcgen::Error) -> PushError {
    move |error| PushError::Credentials(format!("{action}: {error}"))
}

/// Reads a small configuration file that only root (the service, on Windows) may change.
fn read_trusted(what: &str, path: &Path) -> Result<String, PushError> {
    use std::io::Read as _;
    let fail = |error: std::io::Error| {
        PushError::Credentials(format!(
            "cannot read the {what} {}: {error}",
            path.display()
        ))
    };
    let file = std::fs::File::open(path).map_err(fail)?;
    let metadata = file.metadata().map_err(fail)?;
    fim_engine::trust::check_file(what, path, &metadata)
        .map_err(|error| PushError::Credentials(error.to_string()))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(fail)?;
    Ok(text)
}
