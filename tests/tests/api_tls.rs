//! The API over TCP: mutual TLS with a client CA, and roles by certificate fingerprint.
//! The CA, the server certificate and the client certificates are made at test time (rcgen);
//! the client is a real tonic client over a real TLS connection to a real fimd. Handshakes
//! that stall half-way are closed at the handshake deadline and give their slots back.
mod common_tls;

use common_tls::{client, leaf, start_tls, test_ca};
use fim_api::pb;
use fim_tests::{
    api::{block_on, code},
    engine::Workspace,
};
use rcgen::ExtendedKeyUsagePurpose;

#[test]
fn client_certificates_decide_the_role() {
    let workspace = Workspace::new("api-tls");
    let (ca_pem, issuer) = test_ca();
    let known = leaf("reader", ExtendedKeyUsagePurpose::ClientAuth, Some(&issuer));
    let unlisted = leaf(
        "unlisted",
        ExtendedKeyUsagePurpose::ClientAuth,
        Some(&issuer),
    );
    let stranger = leaf("stranger", ExtendedKeyUsagePurpose::ClientAuth, None);
    let (engine, port) = start_tls(&workspace, &ca_pem, &issuer, &known);

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

/// The first bytes of a TLS ClientHello: a handshake record header announcing 512 bytes, and
/// the start of the message. The rest never comes.
const HALF_A_HELLO: [u8; 9] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];

/// Whether the server has closed `stream` (EOF or a reset), waiting up to its read timeout.
fn closed_by_server(stream: &mut std::net::TcpStream) -> bool {
    use std::io::Read;
    let mut buffer = [0u8; 256];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn half_open_tls_handshakes_are_closed_and_give_back_their_slots() {
    use fim_api::limits::{MAX_PER_PEER, TLS_HANDSHAKE};
    use std::{
        io::Write,
        time::{Duration, Instant},
    };
    let workspace = Workspace::new("api-tls-half");
    let (ca_pem, issuer) = test_ca();
    let known = leaf("reader", ExtendedKeyUsagePurpose::ClientAuth, Some(&issuer));
    let (engine, port) = start_tls(&workspace, &ca_pem, &issuer, &known);

    // An attacker on this address starts as many handshakes as it may and stalls them all:
    // each has sent bytes (so the first-byte deadline does not apply) and never finishes.
    let started = Instant::now();
    let mut stalled: Vec<_> = (0..MAX_PER_PEER)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            stream.write_all(&HALF_A_HELLO).expect("half a hello");
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    block_on(async {
        // While they are held, this address has no slot left: a real client is turned away.
        let refused = match client(port, &ca_pem, &known).await {
            Err(_) => true,
            Ok(mut reader) => reader.get_status(pb::GetStatusRequest {}).await.is_err(),
        };
        assert!(
            refused,
            "a client got a slot while {MAX_PER_PEER} handshakes held them"
        );
    });
    // Each stalled handshake is closed at the handshake deadline, not after the idle timeout.
    for stream in &mut stalled {
        stream
            .set_read_timeout(Some(TLS_HANDSHAKE + Duration::from_secs(10)))
            .expect("read timeout");
        assert!(
            closed_by_server(stream),
            "a stalled handshake was still open {:?} after it began",
            started.elapsed()
        );
    }
    let waited = started.elapsed();
    assert!(
        waited >= TLS_HANDSHAKE - Duration::from_secs(1),
        "closed before the handshake deadline: {waited:?}"
    );
    // Their slots are free again: the real client is served.
    block_on(async {
        let mut reader = client(port, &ca_pem, &known).await.expect("connect");
        let status = reader.get_status(pb::GetStatusRequest {}).await;
        assert_eq!(code(&status), "Ok", "{status:?}");
    });
    engine.stop();
}
