//! The named pipe under Wine (these run in the Wine lane): the descriptor Windows accepts,
//! group lookups, the first-instance refusal, and a real client identified from its token.
use tokio_stream::StreamExt as _;

use super::*;
use crate::pipe::pipe_sddl;

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.subsec_nanos())
        .unwrap_or_default();
    crate::pipe::pipe_path(&format!("{prefix}-{}-{nanos}", std::process::id()))
}

#[test]
fn the_built_descriptor_is_accepted_by_windows() {
    for (owner, reader) in [
        (None, None),
        (Some("S-1-5-32-545"), None),
        (Some("S-1-5-32-545"), Some("S-1-5-32-546")),
        (
            Some("S-1-5-21-1004336348-1177238915-682003330-1010"),
            Some("S-1-5-11"),
        ),
    ] {
        let sddl = pipe_sddl(owner, reader).unwrap();
        descriptor_accepted(&sddl).unwrap_or_else(|error| panic!("{sddl}: {error}"));
    }
    assert!(descriptor_accepted("D:P(A;;GRGW;;;not-a-sid)").is_err());
}

#[test]
fn groups_resolve_by_name_or_sid_and_missing_ones_are_none() {
    let administrators = resolve_group("Administrators", "owner group")
        .unwrap()
        .expect("BUILTIN\\Administrators exists");
    assert_eq!(administrators.text().unwrap(), "S-1-5-32-544");
    let users = resolve_group("S-1-5-32-545", "reader group")
        .unwrap()
        .expect("a SID string");
    assert_eq!(users.text().unwrap(), "S-1-5-32-545");
    assert!(resolve_group("fim-no-such-group-7f3a", "reader group")
        .unwrap()
        .is_none());
    assert!(resolve_group("S-1-x", "reader group").is_err());
}

#[tokio::test]
async fn the_first_instance_is_ours_alone() {
    let path = unique("fim-unit-first");
    let first = PipeListener::bind(&path, None, None).unwrap();
    match PipeListener::bind(&path, None, None) {
        Err(PipeError::InUse(name)) => assert_eq!(name, path),
        Err(other) => panic!("expected InUse, got {other}"),
        Ok(_) => panic!("a second first instance of {path} was created"),
    }
    drop(first);
    // The name is free again once the last instance is closed.
    PipeListener::bind(&path, None, None).unwrap();
}

#[tokio::test]
async fn a_client_is_identified_from_its_token_at_connect() {
    let path = unique("fim-unit-peer");
    let listener = PipeListener::bind(&path, None, Some("S-1-5-32-545")).unwrap();
    let mut incoming = listener.incoming(Limiter::default());
    // Two clients: one instance always waits, so the second connects too.
    let _first = crate::client_windows::open(&path).await.unwrap();
    let _second = crate::client_windows::open(&path).await.unwrap();
    for _ in 0..2 {
        let stream = tokio::time::timeout(Duration::from_secs(10), incoming.next())
            .await
            .expect("a connection within 10 s")
            .expect("the stream goes on")
            .expect("an admitted connection");
        let peer = stream.connect_info().expect("the token was read");
        assert!(peer.sid.starts_with("S-1-"), "{peer:?}");
        // Wine runs everything as one user who is an administrator.
        assert!(peer.is_admin(), "{peer:?}");
        eprintln!("identified: {}", peer.describe());
    }
}

#[tokio::test]
async fn pipe_connections_take_slots_from_the_limiter() {
    use tokio::io::AsyncReadExt as _;
    let path = unique("fim-unit-limits");
    let listener = PipeListener::bind(&path, None, None).unwrap();
    // One connection per peer: the second from the same user is closed at accept.
    let mut incoming = listener.incoming(Limiter::new(8, 1));
    let _first = crate::client_windows::open(&path).await.unwrap();
    let admitted = tokio::time::timeout(Duration::from_secs(10), incoming.next())
        .await
        .expect("the first connection")
        .expect("the stream goes on")
        .expect("admitted");
    let mut second = crate::client_windows::open(&path).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), second.read(&mut byte))
        .await
        .expect("the refused connection is closed, not left hanging");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the second connection was served: {read:?}"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), incoming.next())
            .await
            .is_err(),
        "a refused connection reached the server"
    );
    drop(admitted);
    // Its slot came back: the next connection is admitted.
    let _third = crate::client_windows::open(&path).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), incoming.next())
        .await
        .expect("a connection after the slot came back")
        .expect("the stream goes on")
        .expect("admitted");
}
