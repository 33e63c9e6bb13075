//! Engine and its database file under attack: deleted or replaced while fimd runs (restored
//! from the copy fimd holds open, nothing lost), missing or empty at start (a new journal
//! that opens with a HistoryLost record), damaged at start (refused, one line, non-zero
//! exit), and the chain head written to the system log for `fim verify --expect`.
use std::{os::unix::net::UnixDatagram, path::PathBuf, time::Duration};

use fim_tests::engine::{object_records, path_of, Engine, Workspace};
use serde_json::Value;

/// A datagram socket standing in for /dev/log.
struct Syslog {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Syslog {
    fn bind(workspace: &Workspace) -> Self {
        let path = workspace.base.join("log.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the syslog stand-in");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Syslog { socket, path }
    }

    /// Every line received so far.
    fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut buffer = [0u8; 2048];
        while let Ok(size) = self.socket.recv(&mut buffer) {
            lines.push(String::from_utf8_lossy(&buffer[..size]).into_owned());
        }
        lines
    }
}

fn start(workspace: &Workspace, syslog: &Syslog) -> Engine {
    Engine::start_with(workspace, &["--syslog-socket", &path_of(&syslog.path)])
}

fn database(workspace: &Workspace) -> PathBuf {
    workspace.state.join("fim.db")
}

fn monitor_events(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .filter(|record| record["ConfigChangeType"] == "Monitor")
        .map(|record| {
            record["Monitor"]["Event"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        })
        .collect()
}

fn added(records: &[Value]) -> Vec<String> {
    object_records(records)
        .iter()
        .filter(|record| record["ChangeCategory"] == "Added")
        .filter_map(|record| {
            record["File"]["FileSystemPath"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn a_database_deleted_while_fimd_runs_is_restored_without_loss() {
    let workspace = Workspace::new("db-deleted");
    let syslog = Syslog::bind(&workspace);
    let mut engine = start(&workspace, &syslog);
    let (before, after) = (workspace.tree.join("before"), workspace.tree.join("after"));
    std::fs::write(&before, "journaled before the deletion").unwrap();
    engine.settle(1);
    std::fs::remove_file(database(&workspace)).unwrap();
    engine.wait_for_log("restoring it from the open copy", Duration::from_secs(10));
    engine.wait_for_log("nothing was lost", Duration::from_secs(10));
    std::fs::write(&after, "journaled after it").unwrap();
    engine.settle(3);
    engine.stop();

    // Everything is in the file at the database's path: the record from before, the
    // restoration, the record from after; and the chain is whole.
    let journal = workspace.journal();
    assert_eq!(
        monitor_events(&journal),
        vec!["DatabaseRestored"],
        "{journal:#?}"
    );
    assert_eq!(
        added(&journal),
        vec![path_of(&before), path_of(&after)],
        "{journal:#?}"
    );
    assert_eq!(journal[1]["Monitor"]["Source"], "database");
    let (intact, said) = workspace.verify(&[]);
    assert!(intact, "{said}");
}

#[test]
fn a_database_replaced_while_fimd_runs_is_moved_aside_and_restored() {
    let workspace = Workspace::new("db-replaced");
    let syslog = Syslog::bind(&workspace);
    let mut engine = start(&workspace, &syslog);
    let before = workspace.tree.join("before");
    std::fs::write(&before, "journaled before the swap").unwrap();
    engine.settle(1);
    // A forged file renamed over the database.
    let forged = workspace.state.join("forged");
    std::fs::write(&forged, "not the journal").unwrap();
    std::fs::rename(&forged, database(&workspace)).unwrap();
    engine.wait_for_log("replaced by another file", Duration::from_secs(10));
    engine.wait_for_log("nothing was lost", Duration::from_secs(10));
    engine.stop();
    let aside: Vec<PathBuf> = std::fs::read_dir(&workspace.state)
        .unwrap()
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path_of(path).contains("fim.db.replaced-"))
        .collect();
    assert_eq!(aside.len(), 1, "the impostor is kept aside for forensics");
    assert_eq!(
        std::fs::read_to_string(&aside[0]).unwrap(),
        "not the journal"
    );
    let journal = workspace.journal();
    assert_eq!(added(&journal), vec![path_of(&before)]);
    assert_eq!(monitor_events(&journal), vec!["DatabaseRestored"]);
    assert!(workspace.verify(&[]).0);
}

#[test]
fn a_database_missing_or_empty_at_start_opens_with_history_lost() {
    let workspace = Workspace::new("db-missing");
    let syslog = Syslog::bind(&workspace);
    let engine = start(&workspace, &syslog);
    std::fs::write(workspace.tree.join("old"), "journaled, then lost").unwrap();
    engine.settle(1);
    engine.stop();
    let remove_database = || {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(workspace.state.join(format!("fim.db{suffix}")));
        }
    };

    remove_database();
    let engine = start(&workspace, &syslog);
    let log = engine.stop();
    assert!(log.contains("HISTORY LOST"), "{log}");
    let journal = workspace.journal();
    assert_eq!(
        monitor_events(&journal),
        vec!["HistoryLost"],
        "{journal:#?}"
    );
    let detail = journal[0]["Monitor"]["Detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("was missing") && detail.contains("at least 1 records"),
        "{detail}"
    );

    // Zero length: the same.
    remove_database();
    std::fs::write(database(&workspace), "").unwrap();
    let engine = start(&workspace, &syslog);
    engine.stop();
    let journal = workspace.journal();
    assert_eq!(
        monitor_events(&journal),
        vec!["HistoryLost"],
        "{journal:#?}"
    );
    let detail = journal[0]["Monitor"]["Detail"].as_str().unwrap_or_default();
    assert!(detail.contains("was empty"), "{detail}");

    // A normal restart says nothing of the kind.
    let engine = start(&workspace, &syslog);
    let log = engine.stop();
    assert!(!log.contains("HISTORY LOST"), "{log}");
    assert_eq!(monitor_events(&workspace.journal()), vec!["HistoryLost"]);
}

#[test]
fn a_damaged_database_is_refused_at_start_with_one_line() {
    let workspace = Workspace::new("db-damaged");
    let syslog = Syslog::bind(&workspace);
    let engine = start(&workspace, &syslog);
    for index in 0..300 {
        std::fs::write(workspace.tree.join(format!("file-{index}")), "x").unwrap();
    }
    engine.settle(300);
    engine.stop();
    let path = database(&workspace);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 8 * 4096, "{} bytes", bytes.len());
    for byte in &mut bytes[2 * 4096..6 * 4096] {
        *byte = 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();

    let (intact, said) = workspace.verify(&[]);
    assert!(
        !intact,
        "fim verify must not call a damaged file intact: {said}"
    );
    assert!(
        said.contains("damaged") || said.contains("malformed"),
        "{said}"
    );

    let output = Engine::command(&workspace, &["--syslog-socket", &path_of(&syslog.path)])
        .output()
        .expect("run fimd");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("ERROR"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("is damaged"), "{stderr}");
}

#[test]
fn the_chain_head_goes_to_the_system_log_and_verify_checks_it() {
    let workspace = Workspace::new("db-anchor");
    let syslog = Syslog::bind(&workspace);
    let engine = start(&workspace, &syslog);
    std::fs::write(workspace.tree.join("a"), "a").unwrap();
    engine.settle(1);
    engine.stop();
    let lines = syslog.lines();
    // At start (empty journal) and at the stop (one record).
    let heads: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("fim chain head"))
        .collect();
    assert!(heads.len() >= 2, "{lines:#?}");
    let last = heads.last().unwrap();
    assert!(last.starts_with("<85>fimd["), "{last}");
    let anchor = last.rsplit(' ').next().unwrap().trim().to_string();
    assert!(anchor.starts_with("1:"), "{anchor}");
    let (intact, said) = workspace.verify(&["--expect", &anchor]);
    assert!(intact, "{said}");
    assert!(said.contains(&format!("chain head at {anchor}")), "{said}");

    // A forged head: refused, exit 2.
    let forged = format!("1:{}", "0".repeat(64));
    let output = workspace.fim(&["--local", "verify", "--expect", &forged]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("does not have the expected hash"));
}

#[test]
fn journal_retention_prunes_with_a_marker_and_the_chain_still_verifies() {
    let workspace = Workspace::new("db-retention");
    workspace.write_policy(&format!(
        "[settings]\nscan_idle_io = false\njournal_keep_records = 3\n\n[[entity]]\nname = \"tree\"\nkind = \"linux-file\"\npath = \"{}\"\n",
        path_of(&workspace.tree)
    ));
    let syslog = Syslog::bind(&workspace);
    let engine = start(&workspace, &syslog);
    for index in 0..6 {
        std::fs::write(workspace.tree.join(format!("f{index}")), "x").unwrap();
    }
    engine.settle(6);
    engine.stop();
    // The next start prunes at once: the three newest file records stay, after a marker.
    let engine = start(&workspace, &syslog);
    std::thread::sleep(Duration::from_secs(2));
    engine.stop();
    let journal = workspace.journal();
    assert_eq!(
        monitor_events(&journal),
        vec!["JournalPruned"],
        "{journal:#?}"
    );
    let marker = journal
        .iter()
        .find(|record| record["ConfigChangeType"] == "Monitor")
        .unwrap();
    assert_eq!(marker["Sequence"], 7, "{marker:#}");
    let detail = marker["Monitor"]["Detail"].as_str().unwrap_or_default();
    assert!(detail.contains("records 1 to 3 were pruned"), "{detail}");
    let kept: Vec<u64> = journal
        .iter()
        .filter_map(|record| record["Sequence"].as_u64())
        .collect();
    assert_eq!(kept, vec![4, 5, 6, 7]);
    let (intact, said) = workspace.verify(&[]);
    assert!(intact, "{said}");
}

/// Pages damaged under the running daemon: whatever SQLite makes of it, no change is dropped
/// silently. Either every change is journaled, or the daemon says it is degraded (in
/// `fim status` and at error level) and holds what it could not write.
#[test]
fn pages_damaged_while_fimd_runs_are_loud_and_nothing_is_dropped_silently() {
    use std::io::{Seek, SeekFrom, Write};
    let workspace = Workspace::new("db-damaged-live");
    let syslog = Syslog::bind(&workspace);
    let engine = start(&workspace, &syslog);
    for index in 0..300 {
        std::fs::write(workspace.tree.join(format!("early{index}")), [b'e'; 300]).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while added(&engine.records()).len() < 300 {
        assert!(std::time::Instant::now() < deadline, "early records");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every page after the header, in the database and its write-ahead log.
    for suffix in ["", "-wal"] {
        let path = PathBuf::from(format!("{}{suffix}", database(&workspace).display()));
        let Ok(mut file) = std::fs::OpenOptions::new().write(true).open(&path) else {
            continue;
        };
        let length = file.metadata().unwrap().len();
        if length > 4096 {
            file.seek(SeekFrom::Start(4096)).unwrap();
            file.write_all(&vec![0x55; (length - 4096) as usize])
                .unwrap();
            file.sync_all().unwrap();
        }
    }
    let late: Vec<PathBuf> = (0..40)
        .map(|index| workspace.tree.join(format!("late{index}")))
        .collect();
    for path in &late {
        std::fs::write(path, b"after the damage").unwrap();
    }
    std::thread::sleep(Duration::from_secs(5));
    let recorded = added(&engine.records());
    let missing: Vec<&PathBuf> = late
        .iter()
        .filter(|path| !recorded.contains(&path_of(path)))
        .collect();
    let status = workspace.fim(&["status"]);
    let said = String::from_utf8_lossy(&status.stdout).to_string();
    eprintln!("{} of 40 unrecorded; status:\n{said}", missing.len());
    // The daemon's own connection may keep journaling from its cache, but whoever reads the
    // file now finds it damaged: status says so instead of failing or saying all is well.
    assert!(
        status.status.success() && said.contains("DEGRADED"),
        "status does not say degraded:\n{said}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    if !missing.is_empty() {
        assert!(
            said.contains("DEGRADED"),
            "{} changes unrecorded and status does not say so:\n{said}",
            missing.len()
        );
        assert!(
            engine.log().contains("changes cannot be recorded"),
            "{}",
            engine.log()
        );
        assert!(!said.contains(" 0 held"), "nothing held:\n{said}");
    }
    engine.stop();
    // And verify never calls the damaged file intact.
    let (intact, verdict) = workspace.verify(&[]);
    assert!(!intact, "verify said intact:\n{verdict}");
}

/// Copies the files of directory `from` into `to` (made afresh), keeping their modes.
fn copy_state(from: &std::path::Path, to: &std::path::Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::metadata(from).unwrap().permissions()).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// How long fimd takes from its start to the log line saying the journal was pruned (which it
/// writes after the prune committed). Stops that fimd.
fn time_to_prune(workspace: &Workspace) -> Duration {
    use std::io::BufRead;
    let started = std::time::Instant::now();
    let mut fimd = Engine::command(workspace, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start fimd");
    let stderr = fimd.stderr.take().expect("piped stderr");
    let mut elapsed = None;
    for line in std::io::BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if line.contains("were pruned by the retention settings") {
            elapsed = Some(started.elapsed());
            break;
        }
    }
    let _ = fimd.kill();
    let _ = fimd.wait();
    elapsed.expect("an unkilled fimd never said it pruned the journal")
}

/// SIGKILL at every point of the start-up that prunes a long journal: each time the journal
/// is either untouched or pruned with its marker, `fim verify` passes, and every record the
/// retention keeps is there. Pruning is one transaction; a kill can never leave records
/// deleted without the marker that accounts for them.
#[test]
fn sigkill_while_the_journal_is_pruned_leaves_it_whole_or_pruned_with_its_marker() {
    const WRITTEN: u64 = 1500;
    const KEEP: u64 = 100;
    let workspace = Workspace::new("db-prune-kill");
    let engine = Engine::start(&workspace);
    for index in 0..WRITTEN {
        std::fs::write(workspace.tree.join(format!("f{index}")), "x").unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while (added(&engine.records()).len() as u64) < WRITTEN {
        assert!(
            std::time::Instant::now() < deadline,
            "records before pruning"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    engine.stop();
    workspace.write_policy(&format!(
        "[settings]\nscan_idle_io = false\njournal_keep_records = {KEEP}\n\n[[entity]]\nname = \"tree\"\nkind = \"linux-file\"\npath = \"{}\"\n",
        path_of(&workspace.tree)
    ));
    let head = workspace.journal().len() as u64;
    assert!(head >= WRITTEN, "{head} records");
    let pristine = workspace.base.join("state-before-pruning");
    copy_state(&workspace.state, &pristine);

    // Kill times are spread around the moment this machine's fimd commits the prune, measured
    // once without a kill: a fixed schedule misses it on a loaded machine, where loading the
    // BPF programs alone can take longer than the whole schedule.
    copy_state(&pristine, &workspace.state);
    let to_prune = time_to_prune(&workspace);
    eprintln!("an unkilled start pruned after {to_prune:?}");
    const STEPS: u32 = 14;
    let (mut whole, mut pruned) = (0, 0);
    for step in 0..STEPS {
        copy_state(&pristine, &workspace.state);
        let mut fimd = Engine::command(&workspace, &[])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start fimd");
        // From a quarter of the measured time to three times it.
        std::thread::sleep(to_prune.mul_f64(0.25 + 2.75 * f64::from(step) / f64::from(STEPS - 1)));
        fimd.kill().expect("SIGKILL");
        let _ = fimd.wait();

        let (intact, said) = workspace.verify(&[]);
        assert!(intact, "after a kill at step {step}: {said}");
        let journal = workspace.journal();
        let sequences: Vec<u64> = journal
            .iter()
            .filter_map(|record| record["Sequence"].as_u64())
            .collect();
        assert!(!sequences.is_empty(), "step {step}: an empty journal");
        let dense: Vec<u64> = (sequences[0]..sequences[0] + sequences.len() as u64).collect();
        assert_eq!(sequences, dense, "step {step}: a hole in the journal");
        let marker = journal
            .iter()
            .find(|record| record["Monitor"]["Event"] == "JournalPruned");
        match marker {
            Some(marker) => {
                // Pruned: exactly the records the marker names are gone, the rest are there.
                let detail = marker["Monitor"]["Detail"].as_str().unwrap_or_default();
                let through: u64 = detail
                    .strip_prefix("records 1 to ")
                    .and_then(|rest| rest.split(' ').next())
                    .and_then(|number| number.parse().ok())
                    .unwrap_or_else(|| panic!("step {step}: {detail}"));
                assert!(
                    through + KEEP >= head,
                    "step {step}: pruned through {through}"
                );
                assert_eq!(sequences[0], through + 1, "step {step}: {detail}");
                pruned += 1;
            }
            None => {
                // Untouched: every record from before is there.
                assert_eq!(
                    sequences[0], 1,
                    "step {step}: records lost without a marker"
                );
                assert!(sequences.len() as u64 >= head, "step {step}");
                whole += 1;
            }
        }
    }
    eprintln!("{whole} kills left the journal untouched, {pruned} found it pruned");
    // The sweep reached both sides of the prune (so some kill fell close to it).
    assert!(
        whole > 0 && pruned > 0,
        "{whole} untouched, {pruned} pruned"
    );
}
