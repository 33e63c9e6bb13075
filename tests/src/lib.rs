//! Harness for the integration tests: a real `fimd` process, its JSON event stream, and
//! helpers that perform file operations in forked children (so chdir, unshare and the pid
//! under test belong to one process, not to the multi-threaded test runner).
//!
//! `FIMD_BIN` names the daemon (default: the workspace's target/debug/fimd), `FIM_STRATEGY`
//! the attach strategy to test (default: tracepoint). The VM runs set both.
use std::{
    ffi::CString,
    io::{BufRead, BufReader},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod api;
pub mod attack;
pub mod collector;
pub mod engine;

/// Fails the test loudly when not root: these tests load BPF programs.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the kernel tests load BPF programs and must run as root (euid is {euid})"
    );
}

pub fn strategy() -> String {
    std::env::var("FIM_STRATEGY").unwrap_or_else(|_| "tracepoint".to_string())
}

/// How long fimd may take to exit after SIGTERM: 2 s, what operators are promised. In the
/// QEMU guest (software emulation, `FIM_EMULATED` set by `cargo xtask vm`) every instruction
/// costs 10 to 30 times as much, so the bound there is 10 s.
pub fn sigterm_limit() -> std::time::Duration {
    if std::env::var_os("FIM_EMULATED").is_some() {
        std::time::Duration::from_secs(10)
    } else {
        std::time::Duration::from_secs(2)
    }
}

pub fn fimd_bin() -> PathBuf {
    if let Ok(path) = std::env::var("FIMD_BIN") {
        return PathBuf::from(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."));
    for profile in ["debug", "release"] {
        let candidate = workspace.join("target").join(profile).join("fimd");
        if candidate.exists() {
            return candidate;
        }
    }
    panic!("fimd binary not found: build it (cargo build -p fim-userspace) or set FIMD_BIN");
}

/// A unique scratch directory with a monitored `watched/` and an unmonitored `other/`.
pub struct Scratch {
    pub base: PathBuf,
    pub watched: PathBuf,
    pub other: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Self {
        let base = std::env::temp_dir().join(format!("fim-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let watched = base.join("watched");
        let other = base.join("other");
        std::fs::create_dir_all(&watched).expect("create watched dir");
        std::fs::create_dir_all(&other).expect("create other dir");
        // Canonical, so expected paths match what the daemon reports.
        let base = std::fs::canonicalize(&base).expect("canonicalize scratch");
        Self {
            watched: base.join("watched"),
            other: base.join("other"),
            base,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// Output lines collected from a child: its JSON stdout lines, and its log (stderr).
pub type Collected = (Child, Arc<Mutex<Vec<Value>>>, Arc<Mutex<String>>);

/// Spawns fimd with piped output; threads collect each stdout line as JSON (a line that is not
/// JSON fails the test) and echo the log to the test's stderr.
pub fn spawn_collecting(command: &mut Command) -> Collected {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn fimd");
    let lines = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::new(Mutex::new(String::new()));
    let stdout = child.stdout.take().expect("fimd stdout");
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            match serde_json::from_str::<Value>(&line) {
                Ok(value) => sink.lock().expect("stdout lock").push(value),
                Err(error) => panic!("fimd printed a line that is not JSON ({error}): {line}"),
            }
        }
    });
    let stderr = child.stderr.take().expect("fimd stderr");
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[fimd] {line}");
            let mut log = sink.lock().expect("stderr lock");
            log.push_str(&line);
            log.push('\n');
        }
    });
    (child, lines, log)
}

/// A running fimd and everything it has printed.
pub struct Daemon {
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
}

impl Daemon {
    /// Starts fimd watching `roots` and waits until its programs are attached.
    pub fn start(roots: &[&Path], extra: &[&str]) -> Self {
        require_root();
        let mut command = Command::new(fimd_bin());
        command.arg("--strategy").arg(strategy());
        for root in roots {
            command.arg("--watch").arg(root);
        }
        command.args(extra).env("FIM_LOG", "info");
        let (child, events, stderr) = spawn_collecting(&mut command);
        let mut daemon = Self {
            child,
            events,
            stderr,
        };
        daemon.wait_for_log("monitoring started", Duration::from_secs(300));
        daemon
    }

    /// Waits for `needle` in the log; fails at once if fimd exits or falls back to scan-only.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let log = self.stderr.lock().expect("stderr lock").clone();
            if log.contains(needle) {
                return;
            }
            if log.contains("scan-only") {
                panic!(
                    "fimd could not attach ({} strategy) and fell back to scan-only:\n{log}",
                    strategy()
                );
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "fimd exited with {status} before {needle:?}:\n{}",
                    self.stderr.lock().expect("stderr lock")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "fimd never logged {needle:?}; its log:\n{}",
            self.stderr.lock().expect("stderr lock")
        );
    }

    /// Events whose path or old_path is under `dir`.
    pub fn events_under(&self, dir: &Path) -> Vec<Value> {
        let prefix = dir.to_string_lossy().to_string();
        let under = |field: &str, event: &Value| {
            event[field]
                .as_str()
                .is_some_and(|path| path == prefix || path.starts_with(&format!("{prefix}/")))
        };
        self.events
            .lock()
            .expect("events lock")
            .iter()
            .filter(|event| under("path", event) || under("old_path", event))
            .cloned()
            .collect()
    }

    pub fn all_events(&self) -> Vec<Value> {
        self.events.lock().expect("events lock").clone()
    }

    /// Waits until `count` events under `dir` arrived, then a little longer to catch extras.
    pub fn settle(&self, dir: &Path, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && self.events_under(dir).len() < count {
            std::thread::sleep(Duration::from_millis(20));
        }
        // Entry events wait up to 500 ms for their syscall result; extras would show by then.
        std::thread::sleep(Duration::from_millis(700));
        self.events_under(dir)
    }

    /// SIGTERM, and checks a clean detach.
    pub fn stop(mut self) -> String {
        // SAFETY: plain kill(2) on our child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait fimd");
        std::thread::sleep(Duration::from_millis(100));
        let log = self.stderr.lock().expect("stderr lock").clone();
        assert!(status.success(), "fimd exited with {status}; log:\n{log}");
        assert!(
            log.contains("all programs detached"),
            "no clean detach; log:\n{log}"
        );
        log
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (op, path) of each event, for exact comparisons.
pub fn ops(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|event| {
            (
                event["op"].as_str().unwrap_or("?").to_string(),
                event["path"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

pub fn c(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("path without NUL")
}

pub fn cs(text: &str) -> CString {
    CString::new(text).expect("text without NUL")
}

/// Runs `body` in a forked child and returns the child's pid once it exited with status 0.
/// `body` must only make raw syscalls (no allocation: the parent is multi-threaded).
pub fn in_child(body: impl FnOnce() -> i32) -> u32 {
    // SAFETY: fork in a multi-threaded process; the child only runs `body`, which makes
    // async-signal-safe libc calls, then _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = body();
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child failed with status {status:#x}"
    );
    pid as u32
}

/// Asserts every event came from `pid` as root.
pub fn assert_actor(events: &[Value], pid: u32) {
    for event in events {
        assert_eq!(
            event["pid"].as_u64(),
            Some(pid as u64),
            "wrong pid in {event}"
        );
        assert_eq!(event["uid"].as_u64(), Some(0), "wrong uid in {event}");
    }
}

/// Writes `bytes` to `path` with open/write/close (in the calling process).
pub fn raw_write(path: &CString, flags: i32, bytes: &[u8]) -> i32 {
    // SAFETY: raw syscalls on a valid C string and buffer.
    unsafe {
        let fd = libc::open(path.as_ptr(), flags, 0o644);
        if fd < 0 {
            return 10;
        }
        if libc::write(fd, bytes.as_ptr().cast(), bytes.len()) < 0 {
            return 11;
        }
        libc::close(fd);
    }
    0
}

/// Reads `stream` (its read timeout set by the caller) until the server closes it. How it
/// ended ("end of stream", or the error that ended it), or None when the read timed out with
/// the connection still open. For the servers' silent-connection tests (fimd's socket, the
/// collector's TCP port): one reading of "closed" for all of them.
pub fn read_until_closed(stream: &mut impl std::io::Read) -> Option<String> {
    use std::io::ErrorKind;
    let mut buffer = [0u8; 64];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Some("end of stream".to_string()),
            Ok(_) => continue,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            // A signal interrupts a read with SO_RCVTIMEO set even under SA_RESTART: that is
            // not the server closing us (CI once took one for a close 4.8 s into a 10 s limit).
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            // Any other end says how, for the caller's assertion.
            Err(error) => return Some(error.to_string()),
        }
    }
}
