//! Engine, real time: each file operation under a monitored tree becomes exactly the change
//! record a user would expect, attributed to the process that made it.
use std::{
    os::unix::{ffi::OsStrExt, fs::PermissionsExt},
    path::Path,
    process::Command,
    time::Duration,
};

use fim_tests::engine::{path_of, summary, Engine, Workspace};
use serde_json::Value;

/// Runs a command and returns its pid once it succeeded.
fn run(program: &str, args: &[&str]) -> u32 {
    let mut child = Command::new(program).args(args).spawn().expect("spawn");
    let pid = child.id();
    let status = child.wait().expect("wait");
    assert!(status.success(), "{program} {args:?} failed: {status}");
    pid
}

fn sh(script: &str) -> u32 {
    run("sh", &["-c", script])
}

fn fields(list: &[&str]) -> Vec<String> {
    list.iter().map(|field| field.to_string()).collect()
}

fn assert_actor(record: &Value, name: &str, pid: u32) {
    assert_eq!(record["Actor"]["ProcessName"], name, "actor in {record}");
    assert_eq!(record["Actor"]["ProcessId"], pid, "pid in {record}");
    assert_eq!(record["Actor"]["UserId"], 0, "uid in {record}");
    assert_eq!(record["DetectedBy"], "realtime", "{record}");
}

fn records_from(engine: &Engine, skip: usize, count: usize) -> Vec<Value> {
    let records = engine.settle(skip + count);
    if records.len() != skip + count {
        // One line per record (category, path, detection, actor, time): the whole JSON of
        // forty records is cut off by the CI log before the odd one shows.
        let lines: Vec<String> = records[skip.min(records.len())..]
            .iter()
            .map(|record| {
                format!(
                    "#{} {} {} {} {} {}/{} {}",
                    record["Sequence"],
                    record["ChangeCategory"],
                    record["File"]["FileSystemPath"],
                    record["DetectedBy"],
                    record["Operations"],
                    record["Actor"]["ProcessName"],
                    record["Actor"]["ProcessId"],
                    record["TimeGenerated"]
                )
            })
            .collect();
        panic!(
            "expected {count} new records, got {}:\n{}",
            records.len().saturating_sub(skip),
            lines.join("\n")
        );
    }
    records[skip..].to_vec()
}

#[test]
fn create_modify_and_mtime_restored_content_change() {
    let workspace = Workspace::new("cmt");
    let engine = Engine::start(&workspace);
    let file = workspace.tree.join("a.txt");
    let name = path_of(&file);

    let pid = sh(&format!("printf hello > '{name}'"));
    let added = records_from(&engine, 0, 1);
    assert_eq!(
        summary(&added),
        vec![("Added".into(), name.clone(), vec![])]
    );
    assert_actor(&added[0], "sh", pid);
    assert_eq!(added[0]["File"]["Size"], 5);
    assert_eq!(
        added[0]["File"]["FileContentChecksum"],
        blake3::hash(b"hello").to_hex().as_str()
    );
    assert_eq!(
        added[0]["Computer"].as_str().map(str::is_empty),
        Some(false)
    );
    assert_eq!(added[0]["ConfigChangeType"], "Files");
    assert_eq!(added[0]["Entity"], "tree");

    std::thread::sleep(Duration::from_millis(20));
    let pid = sh(&format!("printf world > '{name}'"));
    let modified = records_from(&engine, 1, 1);
    assert_eq!(
        summary(&modified),
        vec![(
            "Modified".into(),
            name.clone(),
            fields(&["DateModified", "FileContentChecksum"])
        )]
    );
    assert_actor(&modified[0], "sh", pid);
    assert_eq!(
        modified[0]["File"]["PreviousFileContentChecksum"],
        blake3::hash(b"hello").to_hex().as_str()
    );

    // Same size, mtime put back: only the hash can tell.
    let reference = path_of(&workspace.base.join("ref"));
    run("touch", &["-r", &name, &reference]);
    std::thread::sleep(Duration::from_millis(20));
    let pid = sh(&format!(
        "printf WORLD > '{name}'; touch -r '{reference}' '{name}'"
    ));
    let sneaky = records_from(&engine, 2, 1);
    assert_eq!(
        summary(&sneaky),
        vec![(
            "Modified".into(),
            name.clone(),
            fields(&["FileContentChecksum"])
        )]
    );
    // The last process to touch the file was touch, forked by the shell.
    assert_eq!(sneaky[0]["Actor"]["ProcessName"], "touch");
    assert_eq!(sneaky[0]["Actor"]["ParentProcessId"], pid);
    engine.stop();
}

#[test]
fn chmod_chown_sed_delete_setcap_and_rename() {
    let workspace = Workspace::new("attrs");
    let conf = workspace.tree.join("app.conf");
    std::fs::write(&conf, "debug = no\n").unwrap();
    let binary = workspace.tree.join("tool");
    std::fs::write(&binary, b"\x7fELF-not-really").unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let engine = Engine::start(&workspace);
    let conf_name = path_of(&conf);

    let pid = run("chmod", &["600", &conf_name]);
    let chmod = records_from(&engine, 0, 1);
    assert_eq!(
        summary(&chmod),
        vec![("Modified".into(), conf_name.clone(), fields(&["Mode"]))]
    );
    assert_eq!(chmod[0]["File"]["Mode"], "0600");
    assert_eq!(chmod[0]["File"]["PreviousMode"], "0644");
    assert_actor(&chmod[0], "chmod", pid);

    let pid = run("chown", &["1234:2345", &conf_name]);
    let chown = records_from(&engine, 1, 1);
    assert_eq!(
        summary(&chown),
        vec![(
            "Modified".into(),
            conf_name.clone(),
            fields(&["Owner", "Group"])
        )]
    );
    assert_eq!(chown[0]["File"]["Owner"], "1234");
    assert_eq!(chown[0]["File"]["PreviousOwner"], "root");
    assert_actor(&chown[0], "chown", pid);

    // sed -i writes a temporary file and renames it over the original.
    let pid = run("sed", &["-i", "s/no/ja/", &conf_name]);
    let sed = records_from(&engine, 2, 1);
    assert_eq!(
        summary(&sed),
        vec![(
            "Modified".into(),
            conf_name.clone(),
            fields(&["DateModified", "Inode", "FileContentChecksum"])
        )]
    );
    assert_actor(&sed[0], "sed", pid);
    let from = sed[0]["File"]["RenamedFrom"].as_str().expect("RenamedFrom");
    assert!(
        from.starts_with(&format!("{}/sed", path_of(&workspace.tree))),
        "{from}"
    );
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "debug = ja\n");

    let binary_name = path_of(&binary);
    let pid = run("setcap", &["cap_net_raw+ep", &binary_name]);
    let setcap = records_from(&engine, 3, 1);
    assert_eq!(
        summary(&setcap),
        vec![(
            "Modified".into(),
            binary_name.clone(),
            fields(&["Capabilities"])
        )]
    );
    assert!(
        setcap[0]["File"]["Capabilities"].is_string(),
        "{}",
        setcap[0]
    );
    assert_actor(&setcap[0], "setcap", pid);

    let moved = path_of(&workspace.tree.join("tool.old"));
    let pid = run("mv", &[&binary_name, &moved]);
    let mut rename = records_from(&engine, 4, 2);
    rename.sort_by_key(|record| record["ChangeCategory"].as_str().map(str::to_string));
    assert_eq!(
        summary(&rename),
        vec![
            ("Added".into(), moved.clone(), fields(&["FileSystemPath"])),
            (
                "Removed".into(),
                binary_name.clone(),
                fields(&["FileSystemPath"])
            ),
        ]
    );
    assert_eq!(rename[0]["File"]["RenamedFrom"], binary_name.as_str());
    assert_eq!(rename[1]["File"]["RenamedTo"], moved.as_str());
    assert_actor(&rename[0], "mv", pid);

    let pid = run("rm", &[&conf_name]);
    let removed = records_from(&engine, 6, 1);
    assert_eq!(
        summary(&removed),
        vec![("Removed".into(), conf_name.clone(), vec![])]
    );
    assert_eq!(
        removed[0]["File"]["PreviousFileContentChecksum"],
        blake3::hash(b"debug = ja\n").to_hex().as_str()
    );
    assert_actor(&removed[0], "rm", pid);

    // The journal holds exactly what was announced, in order.
    let journal = workspace.journal();
    assert_eq!(journal, engine.records());
    let sequences: Vec<u64> = journal
        .iter()
        .map(|r| r["Sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=7).collect::<Vec<u64>>());
    engine.stop();
}

#[test]
fn fifos_odd_names_deep_trees_and_files_written_while_hashed() {
    let workspace = Workspace::new("hostile");
    let engine = Engine::start(&workspace);
    let tree = workspace.tree.clone();

    let fifo = path_of(&tree.join("pipe"));
    run("mkfifo", &[&fifo]);
    let records = records_from(&engine, 0, 1);
    assert_eq!(
        summary(&records),
        vec![("Added".into(), fifo.clone(), vec![])]
    );
    assert_eq!(records[0]["File"]["FileType"], "fifo");
    assert!(records[0]["File"].get("FileContentChecksum").is_none());

    // Not UTF-8, with a newline: the path is escaped, never split into two lines.
    let odd = tree.join(std::ffi::OsStr::from_bytes(b"odd\xff\nname"));
    std::fs::write(&odd, b"x").unwrap();
    let records = records_from(&engine, 1, 1);
    assert_eq!(
        summary(&records),
        vec![(
            "Added".into(),
            format!("{}/odd\\xff\\x0aname", path_of(&tree)),
            vec![]
        )]
    );

    // 40 nested directories made in one go, then a file at the bottom.
    let mut deep = tree.clone();
    for level in 0..40 {
        deep = deep.join(format!("level-{level:02}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("bottom"), b"deep").unwrap();
    let records = records_from(&engine, 2, 41);
    let bottom = path_of(&deep.join("bottom"));
    assert!(
        summary(&records).contains(&("Added".into(), bottom, vec![])),
        "{records:#?}"
    );
    assert!(records
        .iter()
        .all(|record| record["ChangeCategory"] == "Added"));

    // A file appended to for a while: whatever was recorded meanwhile, the last record
    // matches the final content exactly.
    let growing = tree.join("growing.log");
    let writer_path = growing.clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut file = std::fs::File::create(&writer_path).unwrap();
        for line in 0..3000 {
            writeln!(file, "line {line} {}", "x".repeat(200)).unwrap();
            if line % 100 == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    writer.join().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let last = engine
        .records()
        .into_iter()
        .rev()
        .find(|record| record["File"]["FileSystemPath"] == path_of(&growing))
        .expect("a record for the growing file");
    let content = std::fs::read(&growing).unwrap();
    assert_eq!(last["File"]["Size"], content.len());
    assert_eq!(
        last["File"]["FileContentChecksum"],
        blake3::hash(&content).to_hex().as_str()
    );
    assert!(Path::new(&fifo).exists());
    engine.stop();
}

#[test]
fn directories_moved_within_into_and_out_of_the_tree() {
    let workspace = Workspace::new("dirs");
    let tree = workspace.tree.clone();
    std::fs::create_dir_all(tree.join("app/conf")).unwrap();
    std::fs::write(tree.join("app/conf/a"), "a").unwrap();
    std::fs::write(tree.join("app/b"), "b").unwrap();
    let outside = workspace.base.join("incoming");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("c"), "c").unwrap();
    let engine = Engine::start(&workspace);

    let pid = run(
        "mv",
        &[&path_of(&tree.join("app")), &path_of(&tree.join("app2"))],
    );
    let mut moved = records_from(&engine, 0, 8);
    moved.sort_by_key(|record| {
        (
            record["ChangeCategory"].as_str().map(str::to_string),
            record["File"]["FileSystemPath"]
                .as_str()
                .map(str::to_string),
        )
    });
    let p = |rest: &str| path_of(&tree.join(rest));
    let rename = || fields(&["FileSystemPath"]);
    assert_eq!(
        summary(&moved),
        vec![
            ("Added".into(), p("app2"), rename()),
            ("Added".into(), p("app2/b"), rename()),
            ("Added".into(), p("app2/conf"), rename()),
            ("Added".into(), p("app2/conf/a"), rename()),
            ("Removed".into(), p("app"), rename()),
            ("Removed".into(), p("app/b"), rename()),
            ("Removed".into(), p("app/conf"), rename()),
            ("Removed".into(), p("app/conf/a"), rename()),
        ]
    );
    assert_eq!(moved[3]["File"]["RenamedFrom"], p("app/conf/a").as_str());
    assert_eq!(moved[7]["File"]["RenamedTo"], p("app2/conf/a").as_str());
    for record in &moved {
        assert_actor(record, "mv", pid);
    }

    // In from outside: everything inside is Added, saying where it came from; out again:
    // everything is Removed, saying where it went.
    run("mv", &[&path_of(&outside), &p("incoming")]);
    let mut came_in = records_from(&engine, 8, 2);
    came_in.sort_by_key(|record| {
        record["File"]["FileSystemPath"]
            .as_str()
            .map(str::to_string)
    });
    assert_eq!(
        summary(&came_in),
        vec![
            ("Added".into(), p("incoming"), rename()),
            ("Added".into(), p("incoming/c"), rename()),
        ]
    );
    assert_eq!(
        came_in[1]["File"]["RenamedFrom"],
        path_of(&outside.join("c")).as_str()
    );
    run(
        "mv",
        &[&p("incoming"), &path_of(&workspace.base.join("gone"))],
    );
    let mut went_out = records_from(&engine, 10, 2);
    went_out.sort_by_key(|record| {
        record["File"]["FileSystemPath"]
            .as_str()
            .map(str::to_string)
    });
    assert_eq!(
        summary(&went_out),
        vec![
            ("Removed".into(), p("incoming"), fields(&["FileSystemPath"])),
            (
                "Removed".into(),
                p("incoming/c"),
                fields(&["FileSystemPath"])
            ),
        ]
    );
    engine.stop();
}
