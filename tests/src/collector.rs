//! Harness for the workspace tests: a real `fim-collector` process on loopback TCP, its
//! database read back, the agent's journal read straight from its SQLite file, and a client
//! that speaks fim.collector.v1 directly.
use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::fimd_bin;

/// `fim-collector` next to fimd (or FIM_COLLECTOR_BIN).
pub fn collector_bin() -> PathBuf {
    if let Ok(path) = std::env::var("FIM_COLLECTOR_BIN") {
        return PathBuf::from(path);
    }
    let path = fimd_bin().with_file_name("fim-collector");
    assert!(
        path.exists(),
        "fim-collector not found next to fimd (cargo build -p fim-collector) or set FIM_COLLECTOR_BIN"
    );
    path
}

/// A loopback address with a port nothing listens on now.
pub fn free_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let address = listener.local_addr().expect("local address");
    address.to_string()
}

/// The HTTP/2 client preface and an empty SETTINGS frame: what a gRPC client sends first.
pub const HTTP2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0";

/// Whether the collector at `address` admits a new TCP connection now: one it admits answers
/// the preface with its own SETTINGS; one past its limits is closed without a byte.
pub fn admits_a_connection(address: &str) -> bool {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the collector");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    if stream.write_all(HTTP2_PREFACE).is_err() {
        return false;
    }
    let mut first = [0u8; 9];
    loop {
        match stream.read(&mut first) {
            Ok(read) => return read > 0,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// A running collector.
pub struct Collector {
    child: Child,
    log: Arc<Mutex<String>>,
    pub address: String,
    pub state: PathBuf,
}

impl Collector {
    /// Starts `fim-collector serve` on `address` with `state` and waits until it listens.
    pub fn start(state: &Path, address: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(collector_bin())
            .args(["serve", "--listen", address, "--state-dir"])
            .arg(state)
            .args(extra)
            .env("FIM_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fim-collector");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().expect("collector stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[collector] {line}");
                let mut log = sink.lock().expect("log lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().expect("collector stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the collector's address");
        let printed = line
            .trim()
            .strip_prefix("fim-collector listening on ")
            .unwrap_or_else(|| panic!("the collector did not start: {line:?}"))
            .to_string();
        assert_eq!(printed, address, "the collector listens where it was asked");
        Collector {
            child,
            log,
            address: printed,
            state: state.to_path_buf(),
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// SIGKILL, mid-whatever.
    pub fn kill9(mut self) {
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes a one-use enrollment token in the workspace at `state` (creating the database and
/// the CA on a first run) and returns the fimd flags that report to `address` with it:
/// `--collector`, `--collector-ca` and `--enroll-token-file`.
pub fn enrolled_agent_args(state: &Path, address: &str) -> Vec<String> {
    enrolled_agent_args_in(state, address, &[])
}

/// [`enrolled_agent_args`] for a workspace elsewhere: `store` are the collector's database
/// flags (`--database URL`); `state` still holds the CA and the token file.
pub fn enrolled_agent_args_in(state: &Path, address: &str, store: &[&str]) -> Vec<String> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let number = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("agent-{}-{number}", std::process::id());
    let token_file = state.join(format!("{name}.token"));
    let mut args = vec![
        "enroll",
        "create",
        "--name",
        &name,
        "--uses",
        "1",
        "--out",
        token_file.to_str().expect("a UTF-8 path"),
    ];
    args.extend_from_slice(store);
    let output = run_collector(&args, state);
    assert!(
        output.status.success(),
        "fim-collector enroll create: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    vec![
        "--collector".to_string(),
        address.to_string(),
        "--collector-ca".to_string(),
        ca_path(state).display().to_string(),
        "--enroll-token-file".to_string(),
        token_file.display().to_string(),
    ]
}

/// The workspace CA of the collector whose state directory is `state`.
pub fn ca_path(state: &Path) -> PathBuf {
    state.join("tls").join("ca.pem")
}

/// Borrows flags for `Engine::start_with`.
pub fn as_args(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// `fim-collector ARGS` to completion.
pub fn run_collector(args: &[&str], state: &Path) -> Output {
    Command::new(collector_bin())
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .expect("run fim-collector")
}

/// `fim-collector machines --json`, one value per journal.
pub fn machines(state: &Path) -> Vec<Value> {
    let output = run_collector(&["machines", "--json"], state);
    assert!(
        output.status.success(),
        "fim-collector machines: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("machine JSON"))
        .collect()
}

/// A journal row: sequence, record text, prev_hash and hash (hex).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub sequence: u64,
    pub record: String,
    pub prev_hash: String,
    pub hash: String,
}

fn rows(path: &Path, sql: &str) -> Vec<Row> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open database");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    let mut statement = conn.prepare(sql).expect("prepare");
    statement
        .query_map([], |row| {
            Ok(Row {
                sequence: row.get::<_, i64>(0)? as u64,
                record: row.get(1)?,
                prev_hash: hex(&row.get::<_, Vec<u8>>(2)?),
                hash: hex(&row.get::<_, Vec<u8>>(3)?),
            })
        })
        .expect("query")
        .collect::<rusqlite::Result<Vec<_>>>()
        .expect("rows")
}

/// The agent's journal, from its own file.
pub fn agent_rows(agent_state: &Path) -> Vec<Row> {
    rows(
        &agent_state.join("fim.db"),
        "SELECT sequence, record, prev_hash, hash FROM journal ORDER BY sequence",
    )
}

/// Every record the workspace holds (all journals), in sequence order.
pub fn collector_rows(state: &Path) -> Vec<Row> {
    rows(
        &state.join("collector.db"),
        "SELECT sequence, record, prev_hash, hash FROM configuration_change ORDER BY journal_id, sequence",
    )
}

/// How many records the workspace holds (0 before its database exists). Any other failure
/// panics: a count of 0 on error would let a "nothing stored" assertion pass vacuously.
pub fn collector_count(state: &Path) -> u64 {
    let path = state.join("collector.db");
    if !path.exists() {
        return 0;
    }
    let conn =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|error| panic!("opening {}: {error}", path.display()));
    conn.busy_timeout(Duration::from_secs(5))
        .unwrap_or_else(|error| panic!("busy timeout on {}: {error}", path.display()));
    let count = conn
        .query_row("SELECT count(*) FROM configuration_change", [], |row| {
            row.get::<_, i64>(0)
        })
        .unwrap_or_else(|error| panic!("counting records in {}: {error}", path.display()));
    u64::try_from(count).unwrap_or_else(|_| panic!("a negative count: {count}"))
}

/// The agent's committed head: (sequence, hash hex).
pub fn agent_head(agent_state: &Path) -> (u64, String) {
    let conn = rusqlite::Connection::open_with_flags(
        agent_state.join("fim.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open agent database");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    conn.query_row(
        "SELECT sequence, hash FROM chain_head WHERE id = 1",
        [],
        |row| {
            Ok((
                row.get::<_, i64>(0)? as u64,
                hex(&row.get::<_, Vec<u8>>(1)?),
            ))
        },
    )
    .expect("chain head")
}

/// Polls `done` every 50 ms until it holds or `timeout` passes (then panics with `what`).
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Waits until the agent's head has not moved for a second, and returns it.
pub fn settled_head(agent_state: &Path, at_least: u64, timeout: Duration) -> (u64, String) {
    let deadline = Instant::now() + timeout;
    let mut last = agent_head(agent_state);
    let mut since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let head = agent_head(agent_state);
        if head != last {
            last = head;
            since = Instant::now();
        } else if last.0 >= at_least && since.elapsed() > Duration::from_secs(1) {
            return last;
        }
    }
    panic!("the agent's journal did not settle at {at_least}+ records (head {last:?})");
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
