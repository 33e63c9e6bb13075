//! Mutual TLS for the tests that run fimd's API over TCP: a CA, leaf certificates made at
//! test time (rcgen), fimd started on a free loopback port with a listed reader, and a real
//! tonic client. Shared by `api_tls.rs` and `engine_api_descriptors.rs` (`mod common_tls;`).
use std::path::Path;

use fim_api::pb::fim_client::FimClient;
use fim_tests::engine::{Engine, Workspace};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// A certificate and its key, PEM.
pub struct Pem {
    pub cert: String,
    pub key: String,
    pub der: Vec<u8>,
}

pub fn leaf(
    name: &str,
    usage: ExtendedKeyUsagePurpose,
    issuer: Option<&Issuer<'_, KeyPair>>,
) -> Pem {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let cert = match issuer {
        Some(issuer) => params.signed_by(&key, issuer),
        None => params.self_signed(&key),
    }
    .expect("sign");
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

pub async fn client(
    port: u16,
    ca: &str,
    identity: &Pem,
) -> Result<FimClient<tonic::transport::Channel>, tonic::transport::Error> {
    let tls = ClientTlsConfig::new()
        .domain_name("localhost")
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(&identity.cert, &identity.key));
    let channel = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))?
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(FimClient::new(channel))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write pem");
    path.display().to_string()
}

/// A test CA: its PEM and the issuer that signs leaves with it.
pub fn test_ca() -> (String, Issuer<'static, KeyPair>) {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "fim test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
    (ca_cert.pem(), Issuer::new(ca_params, ca_key))
}

/// fimd with its API on a free loopback port over mutual TLS, `reader` listed as a reader.
pub fn start_tls(
    workspace: &Workspace,
    ca_pem: &str,
    issuer: &Issuer<'_, KeyPair>,
    reader: &Pem,
) -> (Engine, u16) {
    let server = leaf("fimd", ExtendedKeyUsagePurpose::ServerAuth, Some(issuer));
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let cert = write(&workspace.base, "server.pem", &server.cert);
    let key = write(&workspace.base, "server.key", &server.key);
    let ca = write(&workspace.base, "ca.pem", ca_pem);
    let client_role = format!("{}=reader", fim_api::auth::fingerprint(&reader.der));
    let engine = Engine::start_with(
        workspace,
        &[
            "--api-socket",
            workspace.socket.to_str().expect("utf-8"),
            "--api-tcp",
            &listen,
            "--api-tls-cert",
            &cert,
            "--api-tls-key",
            &key,
            "--api-client-ca",
            &ca,
            "--api-client",
            &client_role,
        ],
    );
    assert!(
        engine
            .log()
            .contains(&format!("api listening on {listen} (TLS")),
        "{}",
        engine.log()
    );
    (engine, port)
}
