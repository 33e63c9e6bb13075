//! Evasion, in real time: each way an attacker steps around the syscalls a FIM hooks must
//! still give the change record, in real time (no sweep runs during these tests: the sweep
//! interval is an hour), with the right path and actor. Runs on the host (tracepoint) and in
//! the VM for every strategy.
use std::{path::Path, process::Command, time::Duration};

use fim_tests::{
    attack,
    engine::{path_of, summary, Engine, Workspace},
};
use serde_json::Value;

/// The harness's entry for attacks run in a process of their own (see `attack.rs`).
#[test]
fn attack_entry() {
    attack::entry();
}

fn policy(workspace: &Workspace, entity_path: &Path) {
    workspace.write_policy(&format!(
        "[settings]\nscan_idle_io = false\nsweep_interval_secs = 3600\n\n[[entity]]\nname = \"target\"\nkind = \"linux-file\"\npath = \"{}\"\n",
        entity_path.display()
    ));
}

fn sh(script: &str) -> u32 {
    let mut child = Command::new("sh")
        .args(["-c", script])
        .spawn()
        .expect("spawn sh");
    let pid = child.id();
    assert!(child.wait().expect("wait sh").success(), "sh -c {script}");
    pid
}

/// Waits until a record for `path` with `category` arrives after the first `skip` records.
fn wait_record(engine: &Engine, skip: usize, category: &str, path: &Path) -> Value {
    wait_record_for(engine, skip, category, path, Duration::from_secs(15))
}

/// [`wait_record`] with its own patience, for records that follow a flood or a huge file on
/// an emulated (TCG) VM, where the daemon's CPU is shared with the hashing worker.
fn wait_record_for(
    engine: &Engine,
    skip: usize,
    category: &str,
    path: &Path,
    patience: Duration,
) -> Value {
    let wanted = path_of(path);
    let deadline = std::time::Instant::now() + patience;
    loop {
        let records = engine.records();
        if let Some(record) = records.iter().skip(skip).find(|record| {
            record["ChangeCategory"] == category && record["File"]["FileSystemPath"] == wanted
        }) {
            return record.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {category} record for {wanted}; records: {:#?}",
            &records[skip.min(records.len())..]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_realtime_by(record: &Value, pid: u32) {
    assert_eq!(record["DetectedBy"], "realtime", "{record:#}");
    assert_eq!(record["Actor"]["ProcessId"], pid, "actor in {record:#}");
    assert_eq!(record["Actor"]["UserId"], 0, "{record:#}");
}

/// The change was made by the shell `pid` or by a command it ran (dash does not exec the
/// last command of `-c`, bash does).
fn assert_realtime_by_script(record: &Value, pid: u32) {
    assert_eq!(record["DetectedBy"], "realtime", "{record:#}");
    let actor = &record["Actor"];
    assert!(
        actor["ProcessId"] == pid || actor["ParentProcessId"] == pid,
        "actor is neither the shell {pid} nor its child: {record:#}"
    );
}

/// `pid` is the record's actor or one of its contributors.
fn names(record: &Value, pid: u32) -> bool {
    record["Actor"]["ProcessId"] == pid
        || record["Contributors"]
            .as_array()
            .is_some_and(|all| all.iter().any(|c| c["ProcessId"] == pid))
}

fn has_field(record: &Value, field: &str) -> bool {
    record["FieldsChanged"]
        .as_array()
        .is_some_and(|fields| fields.iter().any(|f| f == field))
}

#[test]
fn monitored_directory_swapped_by_rename_is_followed() {
    let workspace = Workspace::new("ev-swap");
    let cron = workspace.tree.join("cron.d");
    std::fs::create_dir(&cron).unwrap();
    std::fs::write(cron.join("job"), "* * * * * root true\n").unwrap();
    policy(&workspace, &cron);
    let engine = Engine::start_with(&workspace, &["--no-api"]);
    let (name, backup) = (path_of(&cron), path_of(&workspace.tree.join("cron.d.bak")));
    sh(&format!(
        "mv '{name}' '{backup}' && mkdir '{name}' && cp -a '{backup}/.' '{name}'"
    ));
    // Within one coalescing window the swap is one change of the file behind the name (a
    // new inode, same content); across windows, the old file moved away and a copy arrived.
    let job = path_of(&cron.join("job"));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let outcome = loop {
        let records = engine.records();
        let about_job: Vec<&Value> = records
            .iter()
            .filter(|r| r["File"]["FileSystemPath"] == job.as_str())
            .collect();
        // A copy keeps the content; its mtime only as precisely as the cp used preserves it.
        let swapped = about_job.iter().any(|r| {
            r["ChangeCategory"] == "Modified"
                && has_field(r, "Inode")
                && !has_field(r, "FileContentChecksum")
        });
        let moved = about_job.iter().any(|r| {
            r["ChangeCategory"] == "Removed" && r["File"]["RenamedTo"] == format!("{backup}/job")
        }) && about_job.iter().any(|r| r["ChangeCategory"] == "Added");
        if swapped || moved {
            break about_job.iter().map(|r| (*r).clone()).collect::<Vec<_>>();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the swap of {name} was not recorded: {records:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    for record in &outcome {
        assert_eq!(record["DetectedBy"], "realtime", "{record:#}");
    }
    // The replacement directory is watched from its first change on.
    let seen = engine.records().len();
    std::thread::sleep(Duration::from_millis(300));
    let pid = sh(&format!(
        "echo '* * * * * root /tmp/evil' > '{name}/backdoor'"
    ));
    let planted = wait_record(&engine, seen, "Added", &cron.join("backdoor"));
    assert_realtime_by(&planted, pid);
    // And the old tree is no longer the entity: a change there is not reported as cron.d.
    let seen = engine.records().len();
    sh(&format!("echo x >> '{backup}/job'"));
    std::thread::sleep(Duration::from_millis(800));
    let late: Vec<_> = engine.records()[seen..].to_vec();
    assert!(late.is_empty(), "changes in the moved-away copy: {late:#?}");
    engine.stop();
}

#[test]
fn parent_of_monitored_directory_renamed_and_look_alike_created() {
    let workspace = Workspace::new("ev-parent");
    let conf = workspace.tree.join("app").join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("settings"), "debug = no\n").unwrap();
    policy(&workspace, &conf);
    let engine = Engine::start_with(&workspace, &["--no-api"]);
    let (app, old) = (
        path_of(&workspace.tree.join("app")),
        path_of(&workspace.tree.join("app.old")),
    );
    sh(&format!("mv '{app}' '{old}' && mkdir -p '{app}/conf'"));
    let gone = wait_record(&engine, 0, "Removed", &conf.join("settings"));
    assert_eq!(gone["DetectedBy"], "realtime", "{gone:#}");
    std::thread::sleep(Duration::from_millis(300));
    let seen = engine.records().len();
    let pid = sh(&format!(
        "echo 'debug = yes' > '{}'",
        path_of(&conf.join("settings"))
    ));
    let planted = wait_record(&engine, seen, "Added", &conf.join("settings"));
    assert_realtime_by(&planted, pid);
    engine.stop();
}

#[test]
fn io_uring_create_write_close_rename_and_unlink() {
    let workspace = Workspace::new("ev-uring");
    policy(&workspace, &workspace.tree);
    let engine = Engine::start_with(&workspace, &["--no-api"]);
    let planted = workspace.tree.join("planted.conf");
    let pid = attack::run("uring_create", &[&planted]);
    let added = wait_record(&engine, 0, "Added", &planted);
    assert_realtime_by(&added, pid);
    assert_eq!(
        added["File"]["FileContentChecksum"],
        blake3::hash(b"planted by io_uring\n").to_hex().as_str()
    );
    let renamed = workspace.tree.join("renamed.conf");
    let pid = attack::run("uring_rename", &[&planted, &renamed]);
    let moved_in = wait_record(&engine, 1, "Added", &renamed);
    assert_realtime_by(&moved_in, pid);
    assert_eq!(moved_in["File"]["RenamedFrom"], path_of(&planted));
    let pid = attack::run("uring_unlink", &[&renamed]);
    let removed = wait_record(&engine, 3, "Removed", &renamed);
    assert_realtime_by(&removed, pid);
    engine.stop();
}

#[test]
fn writes_through_duplicated_inherited_and_passed_descriptors() {
    let workspace = Workspace::new("ev-dup");
    policy(&workspace, &workspace.tree);
    for name in ["dup", "fork", "socket"] {
        std::fs::write(workspace.tree.join(name), "original\n").unwrap();
    }
    let engine = Engine::start_with(&workspace, &["--no-api"]);
    for (kind, name) in [
        ("dup_tricks", "dup"),
        ("fork_child_writes", "fork"),
        ("pass_over_socket", "socket"),
    ] {
        let file = workspace.tree.join(name);
        let seen = engine.records().len();
        let pid = attack::run(kind, &[&file]);
        let record = wait_record(&engine, seen, "Modified", &file);
        assert_realtime_by(&record, pid);
        assert!(
            has_field(&record, "FileContentChecksum"),
            "{kind}: {record:#}"
        );
        assert_eq!(
            record["File"]["FileContentChecksum"],
            blake3::hash(&std::fs::read(&file).unwrap())
                .to_hex()
                .as_str(),
            "{kind}: the record must carry the final content"
        );
    }
    engine.stop();
}

#[test]
fn writes_through_a_shared_mapping_after_the_descriptor_closed() {
    let workspace = Workspace::new("ev-mmap");
    policy(&workspace, &workspace.tree);
    for name in ["at-exit", "at-munmap"] {
        std::fs::write(workspace.tree.join(name), vec![b'.'; 4096]).unwrap();
    }
    let engine = Engine::start_with(&workspace, &["--no-api"]);
    for (kind, name) in [
        ("mmap_then_exit", "at-exit"),
        ("mmap_then_munmap", "at-munmap"),
    ] {
        let file = workspace.tree.join(name);
        let seen = engine.records().len();
        let pid = attack::run(kind, &[&file]);
        let record = wait_record(&engine, seen, "Modified", &file);
        assert_realtime_by(&record, pid);
        // Writes through a mapping change the content; the mtime only on some filesystems.
        let fields = record["FieldsChanged"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            has_field(&record, "FileContentChecksum"),
            "{kind}: {record:#}"
        );
        assert!(
            fields
                .iter()
                .all(|f| f == "FileContentChecksum" || f == "DateModified"),
            "{kind}: {record:#}"
        );
        assert!(std::fs::read(&file).unwrap().starts_with(b"MAPPED"));
    }
    engine.stop();
}

#[test]
fn actor_executable_is_taken_when_the_change_happens() {
    let workspace = Workspace::new("ev-exec");
    policy(&workspace, &workspace.tree);
    let engine = Engine::start_with(&workspace, &["--no-api"]);
    let file = workspace.tree.join("log");
    let sleep = if Path::new("/usr/bin/sleep").exists() {
        "/usr/bin/sleep"
    } else {
        "/bin/sleep"
    };
    let pid = sh(&format!("echo x >> '{}'; exec {sleep} 1", path_of(&file)));
    let record = wait_record(&engine, 0, "Added", &file);
    assert_realtime_by(&record, pid);
    let shell = std::fs::canonicalize("/bin/sh").unwrap();
    assert_eq!(record["Actor"]["Executable"], path_of(&shell), "{record:#}");
    engine.stop();
}

#[test]
fn writers_open_before_the_daemon_started_are_tracked() {
    let workspace = Workspace::new("ev-before");
    policy(&workspace, &workspace.tree);
    let file = workspace.tree.join("held");
    std::fs::write(&file, "before\n").unwrap();
    // A writer that opened the file before fimd existed, and writes only once told to.
    let name = path_of(&file);
    let go = path_of(&workspace.base.join("go"));
    let mut holder = Command::new("sh")
        .args([
            "-c",
            &format!("exec 7>>'{name}'; while [ ! -e '{go}' ]; do sleep 0.1; done; echo after >&7"),
        ])
        .spawn()
        .expect("spawn holder");
    let fd = format!("/proc/{}/fd/7", holder.id());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !Path::new(&fd).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the holder never opened {name}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let engine = Engine::start_with(&workspace, &["--no-api"]);
    assert!(
        engine
            .log()
            .contains("file already open for writing at start-up"),
        "{}",
        engine.log()
    );
    let pid = holder.id();
    std::fs::write(workspace.base.join("go"), "").unwrap();
    assert!(holder.wait().unwrap().success());
    let record = wait_record(&engine, 0, "Modified", &file);
    assert_eq!(record["DetectedBy"], "realtime", "{record:#}");
    // The holder is named (its `sleep` children inherit the descriptor and may be named too).
    assert!(names(&record, pid), "{record:#}");
    assert_eq!(summary(std::slice::from_ref(&record))[0].1, name);
    engine.stop();
}

#[test]
fn a_storm_of_100000_io_uring_writes_is_survived_and_recorded() {
    let workspace = Workspace::new("ev-storm");
    policy(&workspace, &workspace.tree);
    let engine = Engine::start_with(&workspace, &["--no-api"]);
    let file = workspace.tree.join("storm");
    let pid = attack::run("uring_storm", &[&file]);
    let record = wait_record(&engine, 0, "Added", &file);
    assert_realtime_by(&record, pid);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 100_000);
    // The storm's tail is still being reconciled when the first record arrives (more so on a
    // loaded CI machine): wait for a realtime record with the final size, and it must be the
    // last one for the file.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let last = engine
            .records()
            .into_iter()
            .rfind(|r| r["File"]["FileSystemPath"] == path_of(&file))
            .unwrap();
        if last["File"]["Size"] == 100_000 {
            assert_eq!(last["DetectedBy"], "realtime", "{last:#}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no record with the final size; last: {last:#}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    engine.stop();
}

#[test]
fn name_operations_spelled_through_a_symlinked_directory() {
    let workspace = Workspace::new("ev-symlink");
    let cron = workspace.tree.join("etc").join("cron.d");
    std::fs::create_dir_all(&cron).unwrap();
    for name in [
        "rm-me",
        "chmod-me",
        "mv-me",
        "touch-me",
        "truncate-me",
        "link-me",
    ] {
        std::fs::write(cron.join(name), "data\n").unwrap();
    }
    // One link in a directory above the root before the daemon starts, one made afterwards
    // somewhere unrelated, the way an attacker would.
    let early = workspace.tree.join("etc-link");
    std::os::unix::fs::symlink(workspace.tree.join("etc"), &early).unwrap();
    policy(&workspace, &cron);
    let engine = Engine::start_with(&workspace, &["--no-api"]);
    let elsewhere = workspace.base.join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let late = elsewhere.join("x");
    sh(&format!(
        "ln -s '{}' '{}'",
        path_of(&workspace.tree.join("etc")),
        path_of(&late)
    ));
    std::thread::sleep(Duration::from_millis(500));
    let via_late = path_of(&late.join("cron.d"));
    let via_early = path_of(&early.join("cron.d"));
    let steps: Vec<(String, &str, &str, Vec<&str>)> = vec![
        (format!("rm '{via_late}/rm-me'"), "rm-me", "Removed", vec![]),
        (
            format!("chmod 600 '{via_early}/chmod-me'"),
            "chmod-me",
            "Modified",
            vec!["Mode"],
        ),
        (
            format!("touch -d 2001-01-01 '{via_late}/touch-me'"),
            "touch-me",
            "Modified",
            vec!["DateModified"],
        ),
        (
            format!("truncate -s 0 '{via_early}/truncate-me'"),
            "truncate-me",
            "Modified",
            vec!["Size", "DateModified", "FileContentChecksum"],
        ),
        (
            format!("mv '{via_late}/mv-me' '{via_late}/moved'"),
            "mv-me",
            "Removed",
            vec!["FileSystemPath"],
        ),
    ];
    for (script, name, category, fields) in steps {
        let seen = engine.records().len();
        let pid = sh(&script);
        let record = wait_record(&engine, seen, category, &cron.join(name));
        assert_realtime_by_script(&record, pid);
        assert_eq!(
            record["FieldsChanged"],
            serde_json::json!(fields),
            "{script}: {record:#}"
        );
    }
    engine.stop();
}

/// Bad input: a process with 100,000 writable descriptors on a monitored file, and a mapping
/// of a 1 TB sparse file. Neither crashes the daemon or stalls it; where tracking had to give
/// up (ring full), a gap notice and a rescan stand in, and later changes are still recorded
/// in real time.
#[test]
fn a_hundred_thousand_writable_descriptors_and_a_terabyte_mapping() {
    let workspace = Workspace::new("ev-bad");
    policy(&workspace, &workspace.tree);
    let many = workspace.tree.join("many");
    let huge = workspace.tree.join("huge");
    std::fs::write(&many, "").unwrap();
    std::fs::write(&huge, "").unwrap();
    let engine = Engine::start_with(&workspace, &["--no-api"]);
    let pid = attack::run("many_descriptors", &[&many]);
    // The holders' exits are 100k closes to judge: on an emulated VM that takes a while.
    let record = wait_record_for(&engine, 0, "Modified", &many, Duration::from_secs(60));
    assert_eq!(record["File"]["Size"], 12, "{record:#}");
    // The writer is named, as the actor or among the contributors (its holders' exits come
    // in the same window), unless the flood overflowed the ring and a gap rescan found it.
    let named = names(&record, pid);
    // When the writer's own event was among those lost, the record names the processes whose
    // events came through (the holders, at exit), and the loss was said out loud.
    // The loss is logged when the ring is drained, which can be just after this record.
    let lost = named || {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let said = engine.log().contains("kernel ring buffer overflowed");
            if said || std::time::Instant::now() >= deadline {
                break said;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert!(
        record["DetectedBy"] == "gap-rescan"
            || (record["DetectedBy"] == "realtime" && (named || lost)),
        "{record:#}"
    );
    attack::run("map_huge_sparse", &[&huge]);
    // The terabyte is hashed beside the event path: a small change right after it is
    // still recorded in real time.
    let small = workspace.tree.join("small");
    let seen = engine.records().len();
    let pid = sh(&format!("echo ok > '{}'", path_of(&small)));
    let record = wait_record_for(&engine, seen, "Added", &small, Duration::from_secs(60));
    // After the holders' 100k closes overflowed the ring, the gap rescan it started may meet
    // the file before its own event is judged: then the scan reports it (promptly: it no
    // longer waits for the terabyte's hash), and the event finds nothing left to say.
    if record["DetectedBy"] == "gap-rescan" {
        assert!(
            engine.log().contains("kernel ring buffer overflowed"),
            "{record:#}"
        );
    } else {
        assert_realtime_by(&record, pid);
    }
    engine.stop();
}
