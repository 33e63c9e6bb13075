//! Engine, real time: what an attacker undoes inside the coalescing window is still recorded,
//! and a record coalesced from several processes names every one of them.
//!
//! Events only say where to look, and the look comes 50 ms after the first event: a write
//! whose content and times are put back before then differs from the baseline in ctime alone
//! (user space cannot set it), and must still be a record.
use std::{
    ffi::CString,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use fim_tests::engine::{path_of, summary, Engine, Workspace};
use serde_json::Value;

/// Runs a command and returns its pid once it succeeded.
fn run(program: &str, args: &[&str], dir: &Path) -> u32 {
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let status = child.wait().expect("wait");
    assert!(status.success(), "{program} {args:?} failed: {status}");
    pid
}

fn fields(list: &[&str]) -> Vec<String> {
    list.iter().map(|field| field.to_string()).collect()
}

fn records_from(engine: &Engine, skip: usize, count: usize) -> Vec<Value> {
    let records = engine.settle(skip + count);
    assert_eq!(
        records.len(),
        skip + count,
        "expected {count} new records, got: {:#?}",
        &records[skip.min(records.len())..]
    );
    records[skip..].to_vec()
}

/// (ProcessName, ProcessId, ParentProcessId, Operations) of each contributor.
fn contributors(record: &Value) -> Vec<(String, u64, u64, Vec<String>)> {
    let Some(list) = record["Contributors"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .map(|entry| {
            (
                entry["ProcessName"].as_str().unwrap_or("?").to_string(),
                entry["ProcessId"].as_u64().unwrap_or(0),
                entry["ParentProcessId"].as_u64().unwrap_or(0),
                entry["Operations"]
                    .as_array()
                    .map(|ops| {
                        ops.iter()
                            .map(|op| op.as_str().unwrap_or("?").to_string())
                            .collect()
                    })
                    .unwrap_or_default(),
            )
        })
        .collect()
}

const UNDO_NAME: &[u8] = b"fim-undo\0";

/// In a forked child named `fim-undo`: write `evil` over the file, put the original content
/// back and its atime/mtime with it. Returns the child's pid and how long the undo took.
fn write_and_undo(path: &Path) -> (u32, Duration) {
    let original = std::fs::read(path).expect("read original");
    let meta = std::fs::metadata(path).expect("stat original");
    let times = [
        libc::timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        libc::timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    ];
    let name = CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    let evil = b"evil";
    let started = Instant::now();
    // SAFETY: the child makes only async-signal-safe system calls on memory prepared above,
    // then _exit; the parent waits for it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: see above; every pointer is valid for the call.
        unsafe {
            libc::prctl(
                libc::PR_SET_NAME,
                UNDO_NAME.as_ptr() as libc::c_ulong,
                0,
                0,
                0,
            );
            let mut ok = true;
            for content in [&evil[..], &original[..]] {
                let fd = libc::open(name.as_ptr(), libc::O_WRONLY | libc::O_TRUNC);
                ok &= fd >= 0
                    && libc::write(fd, content.as_ptr().cast(), content.len())
                        == content.len() as isize;
                ok &= libc::close(fd) == 0;
            }
            ok &= libc::utimensat(libc::AT_FDCWD, name.as_ptr(), times.as_ptr(), 0) == 0;
            libc::_exit(if ok { 0 } else { 1 });
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    let took = started.elapsed();
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "the undo child failed: {status:#x}"
    );
    assert_eq!(std::fs::read(path).expect("read back"), original);
    (pid as u32, took)
}

/// A coalescing window of 2 s instead of 50 ms, so that steps meant to fall in one window do
/// on a loaded machine too (under a parallel CI run two process spawns took 261 ms).
fn wide_window(workspace: &Workspace) {
    workspace.write_policy(&format!(
        "[settings]\nscan_idle_io = false\ncoalesce_ms = 2000\n\n[[entity]]\nname = \"tree\"\nkind = \"linux-file\"\npath = \"{}\"\n",
        workspace.tree.display()
    ));
}

#[test]
fn a_write_undone_within_the_window_is_a_change_time_record() {
    let workspace = Workspace::new("undo");
    wide_window(&workspace);
    let file = workspace.tree.join("passwd");
    std::fs::write(&file, "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    let engine = Engine::start(&workspace);
    let name = path_of(&file);

    let (pid, took) = write_and_undo(&file);
    assert!(took < Duration::from_millis(1500), "the undo took {took:?}");
    let records = records_from(&engine, 0, 1);
    assert_eq!(
        summary(&records),
        vec![("Modified".into(), name.clone(), fields(&["ChangeTime"]))]
    );
    let record = &records[0];
    assert_eq!(record["DetectedBy"], "realtime", "{record}");
    assert_eq!(record["Actor"]["ProcessName"], "fim-undo", "{record}");
    assert_eq!(record["Actor"]["ProcessId"], pid, "{record}");
    assert_eq!(record["Actor"]["ParentProcessId"], std::process::id());
    assert_eq!(
        record["Operations"],
        serde_json::json!(["write-closed", "setattr"])
    );
    // One process: no Contributors list, the record has its usual shape.
    assert!(record.get("Contributors").is_none(), "{record}");
    let columns = &record["File"];
    assert_eq!(columns["DateModified"], columns["PreviousDateModified"]);
    assert_eq!(
        columns["FileContentChecksum"],
        columns["PreviousFileContentChecksum"]
    );
    assert_eq!(columns["Inode"], columns["PreviousInode"]);
    assert!(columns["ChangeTime"].is_string(), "{record}");
    assert_ne!(columns["ChangeTime"], columns["PreviousChangeTime"]);
    let log = engine.stop();

    // The baseline took the new ctime: a scan afterwards has nothing more to say.
    let scan = workspace.fim(&["--local", "scan", "--json"]);
    assert!(scan.status.success(), "{log}");
    let outcome: Value = serde_json::from_slice(&scan.stdout).expect("scan json");
    assert_eq!(outcome["changes"], 0, "{outcome}");
}

#[test]
fn a_scan_also_records_a_write_that_was_undone() {
    let workspace = Workspace::new("undo-scan");
    let file = workspace.tree.join("shadow");
    std::fs::write(&file, "root:*:19000::::::\n").unwrap();
    let engine = Engine::start(&workspace);
    engine.stop();

    // No daemon: only the scan can find it, and what it finds is the change time.
    write_and_undo(&file);
    let scan = workspace.fim(&["--local", "scan", "--json"]);
    assert!(
        scan.status.success(),
        "{}",
        String::from_utf8_lossy(&scan.stderr)
    );
    let outcome: Value = serde_json::from_slice(&scan.stdout).expect("scan json");
    assert_eq!(outcome["changes"], 1, "{outcome}");
    let journal = workspace.journal();
    assert_eq!(
        summary(&journal),
        vec![("Modified".into(), path_of(&file), fields(&["ChangeTime"]))]
    );
    assert_eq!(journal[0]["DetectedBy"], "scan");
    assert_eq!(journal[0]["Actor"], "unknown");
}

#[test]
fn moving_the_original_away_and_back_is_recorded() {
    let workspace = Workspace::new("mvback");
    wide_window(&workspace);
    let file = workspace.tree.join("sudoers");
    std::fs::write(&file, "root ALL=(ALL) ALL\n").unwrap();
    let inode = std::fs::metadata(&file).unwrap().ino();
    let engine = Engine::start(&workspace);
    let name = path_of(&file);

    let shell = run(
        "sh",
        &["-c", "mv sudoers sudoers.tmp; mv sudoers.tmp sudoers"],
        &workspace.tree,
    );
    let records = records_from(&engine, 0, 1);
    // The same inode with the same content and metadata is back: only its ctime moved (the
    // temporary name had no baseline, so nothing is said about it).
    assert_eq!(
        summary(&records),
        vec![("Modified".into(), name.clone(), fields(&["ChangeTime"]))]
    );
    let record = &records[0];
    assert_eq!(record["DetectedBy"], "realtime", "{record}");
    assert_eq!(record["Operations"], serde_json::json!(["rename"]));
    assert_eq!(record["File"]["Inode"], inode);
    assert_eq!(record["File"]["PreviousInode"], inode);
    let temporary = path_of(&workspace.tree.join("sudoers.tmp"));
    assert_eq!(record["File"]["RenamedTo"], temporary.as_str(), "{record}");
    assert_eq!(
        record["File"]["RenamedFrom"],
        temporary.as_str(),
        "{record}"
    );
    // Two mv processes, both children of the shell; the last is the Actor.
    let named = contributors(record);
    assert_eq!(named.len(), 2, "{record}");
    for (process, _, parent, operations) in &named {
        assert_eq!(process, "mv");
        assert_eq!(*parent, u64::from(shell));
        assert_eq!(operations, &fields(&["rename"]));
    }
    assert_ne!(named[0].1, named[1].1, "two distinct processes: {record}");
    assert_eq!(record["Actor"]["ProcessName"], "mv");
    assert_eq!(record["Actor"]["ProcessId"], named[1].1);
    engine.stop();
}

#[test]
fn a_writer_and_a_toucher_in_one_window_are_both_named() {
    let workspace = Workspace::new("two-actors");
    wide_window(&workspace);
    let file = workspace.tree.join("hosts");
    std::fs::write(&file, "127.0.0.1 localhost\n").unwrap();
    let reference = workspace.base.join("ref");
    std::fs::write(&reference, "").unwrap();
    let engine = Engine::start(&workspace);
    let name = path_of(&file);
    let reference_name = path_of(&reference);
    run("touch", &["-r", &name, &reference_name], &workspace.base);

    let started = Instant::now();
    let writer = run("sh", &["-c", "echo x >> hosts"], &workspace.tree);
    let toucher = run("touch", &["-r", &reference_name, &name], &workspace.base);
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1500), "the two took {took:?}");
    let records = records_from(&engine, 0, 1);
    // mtime was put back by touch -r; size and content tell.
    assert_eq!(
        summary(&records),
        vec![(
            "Modified".into(),
            name.clone(),
            fields(&["Size", "FileContentChecksum"])
        )]
    );
    let record = &records[0];
    assert_eq!(record["DetectedBy"], "realtime", "{record}");
    assert_eq!(record["Actor"]["ProcessName"], "touch", "{record}");
    assert_eq!(record["Actor"]["ProcessId"], toucher, "{record}");
    let me = u64::from(std::process::id());
    assert_eq!(
        contributors(record),
        vec![
            (
                "sh".into(),
                u64::from(writer),
                me,
                fields(&["write-closed"])
            ),
            (
                "touch".into(),
                u64::from(toucher),
                me,
                fields(&["write-closed", "setattr"])
            ),
        ],
        "{record}"
    );
    assert_eq!(
        record["Operations"],
        serde_json::json!(["write-closed", "setattr"])
    );
    assert!(record.get("ContributorsOmitted").is_none(), "{record}");
    engine.stop();
    // `fim changes --format jsonl` shows the same list.
    let journal = workspace.journal();
    assert_eq!(journal.len(), 1);
    assert_eq!(contributors(&journal[0]), contributors(record));
}
