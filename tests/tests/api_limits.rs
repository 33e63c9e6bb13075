//! The API bounds what a client can hold open: a reader (uid 1001, a real process through
//! the real socket) opening a hundred connections keeps at most 32, a connection that sends
//! nothing is closed, and root's own calls keep working meanwhile.
use std::{
    io::Read,
    os::unix::net::UnixStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use fim_api::limits::{FIRST_BYTE, MAX_PER_PEER};
use fim_tests::{
    api::{ensure_group, start_with_role_groups},
    engine::{path_of, Workspace},
};

const OWNERS: &str = "fim-test-owners";
const READERS: &str = "fim-test-readers";

/// Opens `count` connections as uid 1001 in the reader group, waits, and prints how many the
/// server has not closed (EOF or a reset is a closed one).
const HOLDER: &str = r#"
import socket, sys, time
path, count = sys.argv[1], int(sys.argv[2])
held = []
for _ in range(count):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    try:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
    except OSError:
        pass  # refused and closed already
    held.append(s)
time.sleep(2)
open_now = 0
for s in held:
    s.setblocking(False)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                break
    except BlockingIOError:
        open_now += 1
    except OSError:
        pass
print(open_now)
"#;

#[test]
fn a_reader_cannot_hold_more_than_its_share_of_connections() {
    let readers = ensure_group(READERS, 64991);
    ensure_group(OWNERS, 64990);
    let workspace = Workspace::new("api-limits");
    let engine = start_with_role_groups(&workspace, OWNERS, READERS);
    let holder = Command::new("setpriv")
        .args(["--reuid=1001", "--regid=1001"])
        .arg(format!("--groups={readers}"))
        .args([
            "/usr/bin/python3",
            "-c",
            HOLDER,
            &path_of(&workspace.socket),
            "100",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the holder");
    // While it holds them, root's own calls still go through.
    std::thread::sleep(Duration::from_millis(1500));
    let status = workspace.fim(&["status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let output = holder.wait_with_output().expect("holder");
    let held: usize = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| {
            panic!(
                "the holder said: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert_eq!(held, MAX_PER_PEER, "connections uid 1001 kept open");
    assert!(
        engine.log().contains("API connection refused"),
        "{}",
        engine.log()
    );
    engine.stop();
}

#[test]
fn a_connection_that_sends_nothing_is_closed() {
    let workspace = Workspace::new("api-silent");
    let engine = start_with_role_groups(&workspace, "", "");
    let mut silent = UnixStream::connect(&workspace.socket).expect("connect");
    silent
        .set_read_timeout(Some(FIRST_BYTE + Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    let mut buffer = [0u8; 64];
    // The server speaks first in HTTP/2 only after the preface; it closes us instead.
    let closed = loop {
        match silent.read(&mut buffer) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    let waited = started.elapsed();
    assert!(closed, "still open after {waited:?}");
    assert!(
        waited >= FIRST_BYTE - Duration::from_secs(1),
        "closed too early: {waited:?}"
    );
    engine.stop();
}
