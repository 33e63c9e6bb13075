//! The API over TCP: mutual TLS with a client CA, and roles by certificate fingerprint.
//! The CA, the server certificate and the client certificates are made at test time (rcgen);
//! the client is a real tonic client over a real TLS connection to a real fimd.
use std::path::Path;

use fim_api::pb::{self, fim_client::FimClient};
use fim_tests::{
    api::{block_on, code},
    engine::{Engine, Workspace},
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// A certificate and its key, PEM.
struct Pem {
    cert: String,
    key: String,
    der: Vec<u8>,
}

fn leaf(name: &str, usage: ExtendedKeyUsagePurpose, issuer: Option<&Issuer<'_, KeyPair>>) -> Pem {
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

async fn client(
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

#[test]
fn client_certificates_decide_the_role() {
    let workspace = Workspace::new("api-tls");
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
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let server = leaf("fimd", ExtendedKeyUsagePurpose::ServerAuth, Some(&issuer));
    let known = leaf("reader", ExtendedKeyUsagePurpose::ClientAuth, Some(&issuer));
    let unlisted = leaf(
        "unlisted",
        ExtendedKeyUsagePurpose::ClientAuth,
        Some(&issuer),
    );
    let stranger = leaf("stranger", ExtendedKeyUsagePurpose::ClientAuth, None);

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let cert = write(&workspace.base, "server.pem", &server.cert);
    let key = write(&workspace.base, "server.key", &server.key);
    let ca = write(&workspace.base, "ca.pem", &ca_pem);
    let client_role = format!("{}=reader", fim_api::auth::fingerprint(&known.der));
    let engine = Engine::start_with(
        &workspace,
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

    block_on(async {
        // The listed client is a reader: it can look, not change.
        let mut reader = client(port, &ca_pem, &known).await.expect("connect");
        let status = reader
            .get_status(pb::GetStatusRequest {})
            .await
            .expect("a listed reader may call GetStatus")
            .into_inner();
        assert!(!status.version.is_empty());
        let scan = reader.trigger_scan(pb::TriggerScanRequest::default()).await;
        assert_eq!(code(&scan), "PermissionDenied", "{scan:?}");

        // Signed by the CA but not listed: the handshake succeeds, every call is refused.
        let mut unlisted = client(port, &ca_pem, &unlisted).await.expect("connect");
        let denied = unlisted
            .get_status(pb::GetStatusRequest {})
            .await
            .expect_err("an unlisted certificate has no role");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
        assert!(
            denied.message().contains("has no role"),
            "{}",
            denied.message()
        );

        // Not from the CA: the TLS handshake fails, no call gets through. With TLS 1.3 the
        // client finishes its side first, so the refusal shows as the connection dying.
        match client(port, &ca_pem, &stranger).await {
            Err(error) => eprintln!("stranger: connect failed: {error:?}"),
            Ok(mut stranger) => match stranger.get_status(pb::GetStatusRequest {}).await {
                Ok(_) => panic!("a certificate from another CA was accepted"),
                Err(status) => {
                    // How the dead connection surfaces depends on timing (seen: Unavailable,
                    // Unknown, Cancelled "connection closed"); what matters is that the server
                    // never answered: a PERMISSION_DENIED would mean the handshake passed.
                    assert!(
                        matches!(
                            status.code(),
                            tonic::Code::Unavailable
                                | tonic::Code::Unknown
                                | tonic::Code::Cancelled
                        ),
                        "the handshake should fail, not the call: {status:?}"
                    );
                    assert!(
                        status.message().contains("transport error")
                            || status.message().contains("connection")
                            || status.message().contains("canceled"),
                        "{status:?}"
                    );
                }
            },
        }
        // The daemon is unharmed and still serves the listed client.
        let again = reader.get_status(pb::GetStatusRequest {}).await;
        assert_eq!(code(&again), "Ok", "{again:?}");
    });
    engine.stop();
}
