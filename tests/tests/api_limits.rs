//! The API bounds what a client can hold open: a reader (uid 1001, a real process through
//! the real socket) opening ten thousand connections keeps at most 32 and costs the daemon no
//! more descriptors than that, a connection that sends nothing is closed, and root's own calls keep working meanwhile. Readers holding a thousand
//! connections and two hundred change streams they never read leave fimd's memory bounded,
//! and a change made meanwhile is still recorded with its hash.
use std::{
    os::unix::net::UnixStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use fim_api::limits::{FIRST_BYTE, MAX_CONNECTIONS, MAX_PER_PEER, MAX_STREAMS_PER_PEER};
use fim_tests::{
    api::{ensure_group, start_with_role_groups},
    engine::{path_of, Engine, Workspace},
    read_until_closed,
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
print("connected", flush=True)
time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 2)
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

/// The count a HOLDER printed last (its first line says it has connected).
fn held_count(output: &std::process::Output) -> usize {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .and_then(|line| line.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "the holder said: {} {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

/// Descriptors fimd has open.
fn open_descriptors(engine: &Engine) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", engine.pid()))
        .expect("fimd's descriptors")
        .count()
}

#[test]
fn ten_thousand_connections_from_a_reader_leave_it_its_share_and_the_daemon_working() {
    use std::io::BufRead;
    const ATTEMPTS: usize = 10_000;
    let readers = ensure_group(READERS, 64991);
    ensure_group(OWNERS, 64990);
    let workspace = Workspace::new("api-limits");
    let engine = start_with_role_groups(&workspace, OWNERS, READERS);
    let before = open_descriptors(&engine);
    // The reader may hold that many descriptors itself; the daemon must not follow it.
    let mut holder = Command::new("prlimit")
        .arg(format!("--nofile={}", ATTEMPTS + 100))
        .args(["--", "setpriv", "--reuid=1001", "--regid=1001"])
        .arg(format!("--groups={readers}"))
        .args([
            "/usr/bin/python3",
            "-c",
            HOLDER,
            &path_of(&workspace.socket),
        ])
        .args([&ATTEMPTS.to_string(), "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the holder");
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("holder line");
    assert_eq!(line.trim(), "connected", "the holder did not connect");
    // While it holds them: fimd keeps at most the reader's share, root's calls go through,
    // and a change is recorded.
    let during = open_descriptors(&engine);
    assert!(
        during <= before + MAX_PER_PEER + 8,
        "fimd went from {before} to {during} descriptors"
    );
    let status = workspace.fim(&["status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let changed = workspace.tree.join("during-the-flood");
    std::fs::write(&changed, b"flood").unwrap();
    let want = path_of(&changed);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !engine
        .records()
        .iter()
        .any(|record| record["File"]["FileSystemPath"] == want.as_str())
    {
        assert!(Instant::now() < deadline, "no record for {want}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = holder.wait_with_output().expect("holder");
    assert_eq!(
        held_count(&output),
        MAX_PER_PEER,
        "connections uid 1001 kept open"
    );
    assert!(
        engine.log().contains("API connection refused"),
        "{}",
        engine.log()
    );
    // Refusals are logged at a bounded rate, not once per connection.
    let warnings = engine.log().matches("API connection refused").count();
    assert!(warnings < 20, "{warnings} refusal warnings for one flood");
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
    // The server speaks first in HTTP/2 only after the preface; it closes us instead.
    let closed = read_until_closed(&mut silent);
    let waited = started.elapsed();
    let Some(how) = closed else {
        panic!("still open after {waited:?}");
    };
    assert!(
        waited >= FIRST_BYTE - Duration::from_secs(1),
        "closed too early ({how}): {waited:?}"
    );
    engine.stop();
}

/// fimd's resident memory in KiB.
fn rss_kib(engine: &Engine) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", engine.pid())).expect("status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Runs `program ARGS..` as `uid` (and gid) in the reader group.
fn as_reader(uid: u32, readers: u32, program: &str, args: &[&str]) -> std::process::Child {
    Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg(format!("--groups={readers}"))
        .arg(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run as a reader")
}

#[test]
fn unread_streams_and_idle_connections_leave_memory_bounded_and_recording_on() {
    use std::io::BufRead;
    let readers = ensure_group(READERS, 64991);
    ensure_group(OWNERS, 64990);
    let workspace = Workspace::new("api-memory");
    let engine = start_with_role_groups(&workspace, OWNERS, READERS);
    // A journal worth replaying: every stream below asks for it from sequence 0.
    const HISTORY: usize = 3000;
    for index in 0..HISTORY {
        std::fs::write(workspace.tree.join(format!("h{index}")), [b'x'; 512]).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    while engine.records().len() < HISTORY {
        assert!(
            Instant::now() < deadline,
            "{} records",
            engine.records().len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = rss_kib(&engine);

    // 13 readers with 20 streams each: 16 open per reader (208 in all), the rest refused.
    let socket = path_of(&workspace.socket);
    let mut streams: Vec<_> = (0..13)
        .map(|n| {
            let args = [socket.as_str(), "hold", "20", "25"];
            as_reader(2001 + n, readers, env!("CARGO_BIN_EXE_api_call"), &args)
        })
        .collect();
    for holder in &mut streams {
        let mut line = String::new();
        std::io::BufReader::new(holder.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("holder line");
        assert_eq!(
            line.trim(),
            format!("Ok {MAX_STREAMS_PER_PEER} ResourceExhausted"),
            "a reader's streams"
        );
    }
    // 20 more readers try 50 connections each: a thousand, of which at most 512 stay.
    let connections: Vec<_> = (0..20)
        .map(|n| {
            let args = ["-c", HOLDER, socket.as_str(), "50", "15"];
            as_reader(3001 + n, readers, "/usr/bin/python3", &args)
        })
        .collect();
    std::thread::sleep(Duration::from_secs(5));

    // Meanwhile a change is recorded, hash and all, and root is still served.
    let changed = workspace.tree.join("during");
    std::fs::write(&changed, b"written while the API is full").unwrap();
    let want = path_of(&changed);
    let deadline = Instant::now() + Duration::from_secs(30);
    let record = loop {
        let found = engine
            .records()
            .into_iter()
            .find(|record| record["File"]["FileSystemPath"] == want.as_str());
        if let Some(record) = found {
            break record;
        }
        assert!(Instant::now() < deadline, "no record for {want}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        record["File"]["FileContentChecksum"],
        blake3::hash(b"written while the API is full")
            .to_hex()
            .as_str()
    );
    let status = workspace.fim(&["status"]);
    assert!(
        status.status.success(),
        "root refused while readers fill the API: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let during = rss_kib(&engine);

    let mut kept = 0;
    for holder in connections {
        let output = holder.wait_with_output().expect("connection holder");
        let held = held_count(&output);
        assert!(held <= MAX_PER_PEER, "one reader kept {held}");
        kept += held;
    }
    assert!(
        kept <= MAX_CONNECTIONS,
        "{kept} connections kept in all, more than {MAX_CONNECTIONS}"
    );
    for holder in streams {
        holder.wait_with_output().expect("stream holder");
    }
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib(&engine);
    eprintln!("fimd RSS: {before} KiB before, {during} KiB during, {after} KiB after");
    // 208 unread streams and 512 connections: each holds a few buffers, not a journal copy
    // or a database connection (measured: about 65 MiB more; 175 MiB before the bounds).
    assert!(
        during < before + 96 * 1024,
        "RSS grew from {before} to {during} KiB"
    );
    assert!(
        after < before + 96 * 1024,
        "RSS stayed at {after} KiB after the clients left (from {before})"
    );
    engine.stop();
}
