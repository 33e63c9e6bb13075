//! Engine, under objects that used to stall it: a 100 GB sparse file (hashed beside the event
//! path, visible in `fim status`, cancelled by SIGTERM) and a file below a path longer than
//! PATH_MAX (reached through directory descriptors by the scanner and the real-time path).
use std::{
    ffi::CString,
    fs::File,
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{ffi::OsStrExt, fs::FileExt},
    },
    path::{Path, PathBuf},
    process::Command,
    sync::mpsc,
    time::{Duration, Instant},
};

use fim_tests::{
    engine::{path_of, summary, Engine, Workspace},
    spawn_collecting,
};
use serde_json::Value;

/// `truncate -s 100G`: 100 GiB.
const HUGE: u64 = 100 << 30;
/// BLAKE3 of 100 GiB of zeros (the standard hash, as `b3sum` prints it for such a file),
/// computed once with the blake3 crate over a plain zero buffer: the daemon skips reading the
/// holes, and this is what it must still arrive at.
const HUGE_ZEROS_BLAKE3: &str = "253da5f3c5802f7a2c30b16a29ae4aa3830be8d5be57e31778087ea060f7def9";

fn sh(script: &str) {
    let status = Command::new("sh")
        .args(["-c", script])
        .status()
        .expect("sh");
    assert!(status.success(), "{script}: {status}");
}

fn record_for<'a>(records: &'a [Value], path: &str) -> Option<&'a Value> {
    records
        .iter()
        .find(|record| record["File"]["FileSystemPath"] == path)
}

/// Waits until `check` returns Some, polling; panics with `what` after `timeout`.
fn wait_for<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status_json(workspace: &Workspace, local: bool) -> Value {
    let mut args = vec!["status", "--json"];
    if local {
        args.insert(0, "--local");
    }
    let output = workspace.fim(&args);
    assert!(
        output.status.success(),
        "fim status: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("status JSON")
}

/// The file `path` in a status's `hashing` list, if there.
fn hashing_entry(status: &Value, path: &str) -> Option<Value> {
    status["hashing"]
        .as_array()?
        .iter()
        .find(|file| file["path"] == path)
        .cloned()
}

/// SIGTERM; asserts a clean exit within `limit`; returns how long it took and the log.
fn stop_within(engine: Engine, workspace: &Workspace, limit: Duration) -> (Duration, String) {
    let pid = status_json(workspace, true)["daemon"]["pid"]
        .as_str()
        .and_then(|pid| pid.parse::<i32>().ok())
        .expect("fimd's pid in the status");
    let (done, stopped) = mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        // Engine::stop sends SIGTERM and asserts a clean exit.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.stop()));
        let _ = done.send(result.map_err(|_| ()));
    });
    match stopped.recv_timeout(limit) {
        Ok(Ok(log)) => (started.elapsed(), log),
        Ok(Err(())) => panic!("fimd did not exit cleanly after SIGTERM"),
        Err(_) => {
            // SAFETY: kill(2) of the fimd we started, so it does not outlive the test.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("fimd was still running {limit:?} after SIGTERM");
        }
    }
}

/// Starts fimd and waits for its start-up scan for up to `timeout` (the harness waits 120 s;
/// a debug build hashes 100 GiB of holes more slowly than that on a busy 2-core host).
fn start_slow(workspace: &Workspace, timeout: Duration) -> Restarted {
    let mut command = Engine::command(workspace, &[]);
    let (child, records, log) = spawn_collecting(&mut command);
    let restarted = Restarted {
        child,
        records,
        log,
    };
    wait_for(timeout, "the start-up scan to finish", || {
        restarted
            .log()
            .contains("start-up scan finished")
            .then_some(())
    });
    restarted
}

struct Restarted {
    child: std::process::Child,
    records: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Restarted {
    fn log(&self) -> String {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    fn records(&self) -> Vec<Value> {
        self.records
            .lock()
            .map(|records| records.clone())
            .unwrap_or_default()
    }

    fn stop(mut self) {
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait fimd");
        assert!(
            status.success(),
            "fimd exited with {status}:\n{}",
            self.log()
        );
    }
}

impl Drop for Restarted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The baseline row of `path`: (size, hash as hex).
fn baseline_row(workspace: &Workspace, path: &Path) -> Option<(u64, Option<String>)> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let connection =
        rusqlite::Connection::open_with_flags(workspace.state.join("fim.db"), flags).unwrap();
    connection
        .query_row(
            "SELECT size, hash FROM baseline WHERE path = ?1",
            [path.as_os_str().as_bytes()],
            |row| {
                let size: i64 = row.get(0)?;
                let hash: Option<Vec<u8>> = row.get(1)?;
                Ok((
                    size as u64,
                    hash.map(|hash| hash.iter().map(|byte| format!("{byte:02x}")).collect()),
                ))
            },
        )
        .ok()
}

#[test]
fn a_huge_sparse_file_never_stalls_real_time() {
    let workspace = Workspace::new("stall-sparse");
    let engine = Engine::start(&workspace);
    let huge = workspace.tree.join("stall-huge.img");
    let small = workspace.tree.join("stall-small.txt");
    let (huge_name, small_name) = (path_of(&huge), path_of(&small));

    sh(&format!("truncate -s 100G '{huge_name}'"));
    sh(&format!(
        "printf 'written after the huge one' > '{small_name}'"
    ));
    // The small file's record comes at once, while the huge one is still being hashed.
    let records = wait_for(Duration::from_secs(5), "the small file's record", || {
        let records = engine.records();
        record_for(&records, &small_name)
            .is_some()
            .then_some(records)
    });
    let added = record_for(&records, &small_name).expect("small record");
    assert_eq!(added["ChangeCategory"], "Added", "{added}");
    assert_eq!(added["DetectedBy"], "realtime", "{added}");
    assert!(
        record_for(&records, &huge_name).is_none(),
        "100 GiB hashed already? {records:#?}"
    );

    // `fim status` says what is being hashed: through the API (refreshed every second), and
    // from the copy saved in the database.
    let entry = wait_for(
        Duration::from_secs(3),
        "the huge file in the status",
        || hashing_entry(&status_json(&workspace, false), &huge_name),
    );
    assert_eq!(entry["size"], HUGE, "{entry}");
    assert!(
        entry["done"].as_u64().is_some_and(|done| done < HUGE),
        "{entry}"
    );
    let saved = wait_for(Duration::from_secs(5), "the saved hashing status", || {
        hashing_entry(&status_json(&workspace, true), &huge_name)
    });
    assert_eq!(saved["size"], HUGE, "{saved}");
    assert!(
        record_for(&engine.records(), &huge_name).is_none(),
        "the hash cannot be done yet"
    );

    // The engine lets go of the hash at once, and the process exits within the promised
    // bound (the kernel programs' teardown is handed to the kernel).
    let (took, log) = stop_within(engine, &workspace, fim_tests::sigterm_limit());
    let stopping = log_time(&log, "SIGTERM: stopping");
    let cancelled = log_time(&log, "hash cancelled");
    eprintln!(
        "SIGTERM during a 100 GiB hash: hash cancelled after {:.3}s, fimd exited after {took:?}",
        cancelled - stopping
    );
    assert!(
        (0.0..2.0).contains(&(cancelled - stopping)),
        "the hash was not cancelled within 2 s of SIGTERM:\n{log}"
    );
    // The cancelled hash left nothing behind: no record, no baseline row.
    assert!(record_for(&workspace.journal(), &huge_name).is_none());
    assert_eq!(baseline_row(&workspace, &huge), None);

    // While fimd is down the small file changes too. The next start-up scan reports that at
    // once and hands the huge file to the background hasher: one terabyte-class file must not
    // hold up what else the scan found. Then the huge one: one Added record, standard hash.
    sh(&format!("printf ' and more' >> '{small_name}'"));
    let restarted = start_slow(&workspace, Duration::from_secs(600));
    wait_for(Duration::from_secs(600), "the huge file's record", || {
        record_for(&restarted.records(), &huge_name).map(|_| ())
    });
    let journal = workspace.journal();
    let position = |path: &str, category: &str| {
        journal.iter().position(|record| {
            record["File"]["FileSystemPath"] == path && record["ChangeCategory"] == category
        })
    };
    let huge_records: Vec<&Value> = journal
        .iter()
        .filter(|record| record["File"]["FileSystemPath"] == huge_name.as_str())
        .collect();
    assert_eq!(
        summary(
            &huge_records
                .iter()
                .map(|record| (*record).clone())
                .collect::<Vec<_>>()
        ),
        vec![("Added".to_string(), huge_name.clone(), vec![])],
        "{huge_records:#?}"
    );
    assert_eq!(huge_records[0]["DetectedBy"], "scan");
    assert_eq!(huge_records[0]["File"]["Size"], HUGE);
    assert_eq!(
        huge_records[0]["File"]["FileContentChecksum"],
        HUGE_ZEROS_BLAKE3
    );
    assert_eq!(
        baseline_row(&workspace, &huge),
        Some((HUGE, Some(HUGE_ZEROS_BLAKE3.to_string())))
    );
    let small_modified = position(&small_name, "Modified").expect("the small file's change");
    assert_eq!(journal[small_modified]["DetectedBy"], "scan");
    assert_eq!(journal[small_modified]["File"]["Size"], 35);
    assert!(
        small_modified < position(&huge_name, "Added").expect("huge"),
        "the start-up scan waited for 100 GiB before reporting a small change: {journal:#?}"
    );
    let small_records = journal
        .iter()
        .filter(|record| record["File"]["FileSystemPath"] == small_name.as_str())
        .count();
    assert_eq!(small_records, 2, "the small file was recorded twice");
    assert_eq!(restarted.records().len(), 2, "{:#?}", restarted.records());
    restarted.stop();
}

/// Seconds into the day of the first log line containing `needle` (`[fimd] <RFC 3339> ...`).
fn log_time(log: &str, needle: &str) -> f64 {
    let line = log
        .lines()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in the log:\n{log}"));
    let time = line
        .split_whitespace()
        .find_map(|word| {
            word.split_once('T')
                .map(|(_, time)| time.trim_end_matches('Z'))
        })
        .unwrap_or_else(|| panic!("no timestamp in {line:?}"));
    let parts: Vec<f64> = time
        .split(':')
        .filter_map(|part| part.parse().ok())
        .collect();
    assert_eq!(parts.len(), 3, "{line:?}");
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

fn open_dir(directory: Option<&OwnedFd>, name: &[u8]) -> OwnedFd {
    let name = CString::new(name).expect("no NUL");
    let base = directory.map_or(libc::AT_FDCWD, AsRawFd::as_raw_fd);
    // SAFETY: a NUL-terminated name and our own descriptor.
    let fd = unsafe { libc::openat(base, name.as_ptr(), libc::O_PATH | libc::O_DIRECTORY) };
    assert!(fd >= 0, "openat: {}", io::Error::last_os_error());
    // SAFETY: a fresh descriptor nobody else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `levels` nested directories `name` below `base`, made with mkdirat (a path cannot name the
/// bottom ones); returns the deepest one's descriptor and path.
fn deep_chain(base: &Path, name: &str, levels: usize) -> (OwnedFd, PathBuf) {
    let mut fd = open_dir(None, base.as_os_str().as_bytes());
    let cname = CString::new(name).expect("no NUL");
    let mut path = base.to_path_buf();
    for _ in 0..levels {
        // SAFETY: our descriptor and a NUL-terminated name.
        let made = unsafe { libc::mkdirat(fd.as_raw_fd(), cname.as_ptr(), 0o755) };
        assert_eq!(made, 0, "mkdirat: {}", io::Error::last_os_error());
        fd = open_dir(Some(&fd), name.as_bytes());
        path.push(name);
    }
    (fd, path)
}

/// Opens `name` in `directory` for writing (created, truncated), as a process would.
fn write_at(directory: &OwnedFd, name: &str, content: &[u8]) {
    let cname = CString::new(name).expect("no NUL");
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC;
    // SAFETY: our descriptor and a NUL-terminated name.
    let fd = unsafe { libc::openat(directory.as_raw_fd(), cname.as_ptr(), flags, 0o644) };
    assert!(fd >= 0, "openat: {}", io::Error::last_os_error());
    // SAFETY: a fresh descriptor nobody else owns.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all_at(content, 0).expect("write");
    // Closed here: the write-close event.
}

#[test]
fn a_file_below_path_max_is_baselined_and_watched() {
    let workspace = Workspace::new("stall-deep");
    // 24 levels of 200 bytes: about 4.9 kB below the tree, past PATH_MAX (4096).
    let (bottom, deep) = deep_chain(&workspace.tree, &"deep".repeat(50), 24);
    let leaf = deep.join("leaf.conf");
    assert!(leaf.as_os_str().len() > 4096);
    write_at(&bottom, "leaf.conf", b"version 1\n");

    let engine = Engine::start(&workspace);
    assert!(
        !engine.log().contains("cannot list directory"),
        "{}",
        engine.log()
    );
    // The start-up baseline has it.
    assert_eq!(
        baseline_row(&workspace, &leaf),
        Some((10, Some(blake3::hash(b"version 1\n").to_hex().to_string())))
    );

    std::thread::sleep(Duration::from_millis(20));
    write_at(&bottom, "leaf.conf", b"version 2, longer\n");
    let records = engine.settle(1);
    let leaf_name = path_of(&leaf);
    let mut seen = summary(&records);
    for (_, _, fields) in &mut seen {
        fields.sort();
    }
    let fields = ["DateModified", "FileContentChecksum", "Size"].map(str::to_string);
    assert_eq!(
        seen,
        vec![("Modified".to_string(), leaf_name.clone(), fields.to_vec())],
        "{records:#?}\n{}",
        engine.log()
    );
    assert_eq!(records[0]["DetectedBy"], "realtime");
    assert_eq!(
        records[0]["File"]["FileContentChecksum"],
        blake3::hash(b"version 2, longer\n").to_hex().as_str()
    );
    engine.stop();
}
