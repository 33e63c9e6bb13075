//! Engine and policy: `fim entities` edits are followed live (kernel roots included), a broken
//! policy is refused with its location while the old one stays in force, and `fim changes` /
//! `fim summary` filter and count like the product's queries.
use std::time::Duration;

use fim_tests::engine::{object_records, path_of, summary, Engine, Workspace};

#[test]
fn entities_added_live_are_monitored_in_real_time() {
    let workspace = Workspace::new("live");
    let extra = workspace.base.join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join("old"), "before").unwrap();
    let mut engine = Engine::start(&workspace);

    let output = workspace.fim(&[
        "entities",
        "add",
        "--name",
        "extra",
        "--path",
        &path_of(&extra),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    engine.wait_for_log("kernel roots updated", Duration::from_secs(10));
    engine.wait_for_log("new entities scan finished", Duration::from_secs(30));
    assert!(
        object_records(&engine.records()).is_empty(),
        "a new entity's baseline is silent"
    );

    std::fs::write(extra.join("new"), "after").unwrap();
    // After the monitor's own record of the entity's addition.
    let records = object_records(&engine.settle(2));
    assert_eq!(
        summary(&records),
        vec![("Added".into(), path_of(&extra.join("new")), vec![])]
    );
    assert_eq!(records[0]["Entity"], "extra");
    assert_eq!(records[0]["DetectedBy"], "realtime");

    let listed = workspace.fim(&["entities", "list", "--json"]);
    let entities: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let names: Vec<&str> = entities
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["tree", "extra"]);

    let output = workspace.fim(&["entities", "disable", "extra"]);
    assert!(output.status.success());
    engine.wait_for_log("removed=[\"extra\"]", Duration::from_secs(10));
    std::fs::write(extra.join("ignored-now"), "x").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        object_records(&engine.records()).len(),
        1,
        "a disabled entity reports nothing"
    );
    engine.stop();
}

#[test]
fn a_broken_policy_is_refused_and_the_old_one_kept() {
    let workspace = Workspace::new("broken");
    let mut engine = Engine::start(&workspace);
    workspace.write_policy("[[entity]]\nname = \"tree\"\nkind = \"linux-fil\"\npath = \"/tmp\"\n");
    engine.wait_for_log("keeping the previous one", Duration::from_secs(10));
    let log = engine.log();
    assert!(
        log.contains(&format!("{}:3:8", path_of(&workspace.policy))),
        "the error names file:line:column:\n{log}"
    );
    std::fs::write(workspace.tree.join("still-watched"), "x").unwrap();
    let records = engine.settle(1);
    assert_eq!(
        summary(&records),
        vec![(
            "Added".into(),
            path_of(&workspace.tree.join("still-watched")),
            vec![]
        )]
    );
    engine.stop();

    let check = workspace.fim(&["policy", "check", &path_of(&workspace.policy)]);
    assert_eq!(check.status.code(), Some(2));
    let text = String::from_utf8_lossy(&check.stderr);
    assert!(
        text.starts_with(&format!("{}:3:8:", path_of(&workspace.policy))),
        "{text}"
    );
}

#[test]
fn changes_and_summary_filter_and_count() {
    let workspace = Workspace::new("query");
    std::fs::write(workspace.tree.join("a.conf"), "a").unwrap();
    std::fs::write(workspace.tree.join("b.txt"), "b").unwrap();
    let engine = Engine::start(&workspace);
    std::fs::write(workspace.tree.join("c.conf"), "c").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    std::fs::remove_file(workspace.tree.join("b.txt")).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    std::fs::write(workspace.tree.join("a.conf"), "aa").unwrap();
    engine.settle(3);
    engine.stop();

    let removed = workspace.fim(&[
        "changes",
        "--since",
        "1h",
        "--category",
        "Removed",
        "--format",
        "csv",
    ]);
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    let csv = String::from_utf8_lossy(&removed.stdout).to_string();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with(
        "Sequence,TimeGenerated,Computer,ConfigChangeType,ChangeCategory,FileSystemPath"
    ));
    assert!(
        lines[1].contains(&format!(
            ",Files,Removed,{},",
            path_of(&workspace.tree.join("b.txt"))
        )),
        "{csv}"
    );

    let conf = workspace.fim(&["changes", "--path", "**/*.conf", "--format", "jsonl"]);
    let paths: Vec<String> = String::from_utf8_lossy(&conf.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["File"]["FileSystemPath"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        paths,
        vec![
            path_of(&workspace.tree.join("c.conf")),
            path_of(&workspace.tree.join("a.conf"))
        ]
    );

    let counts = workspace.fim(&["summary", "--by", "type,category", "--format", "json"]);
    let counts: serde_json::Value = serde_json::from_slice(&counts.stdout).unwrap();
    assert_eq!(
        counts,
        serde_json::json!([
            {"type": "Files", "category": "Added", "count": 1},
            {"type": "Files", "category": "Modified", "count": 1},
            {"type": "Files", "category": "Removed", "count": 1},
        ])
    );

    let future = workspace.fim(&["changes", "--until", "1970-01-02", "--format", "jsonl"]);
    assert!(future.stdout.is_empty());
    let bad = workspace.fim(&["changes", "--since", "yesterday"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("\"yesterday\" is not a time"));
}

#[test]
fn removing_a_narrower_entity_hands_its_files_to_the_broader_one() {
    let workspace = Workspace::new("overlap");
    std::fs::create_dir_all(workspace.tree.join("etc")).unwrap();
    std::fs::write(workspace.tree.join("etc/a.conf"), "a").unwrap();
    std::fs::write(workspace.tree.join("etc/b.txt"), "b").unwrap();
    let conf = format!("{}/etc/*.conf", path_of(&workspace.tree));
    let output = workspace.fim(&[
        "entities",
        "add",
        "--name",
        "conf",
        "--kind",
        "file-content",
        "--path",
        &conf,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut engine = Engine::start(&workspace);
    let output = workspace.fim(&["entities", "remove", "conf"]);
    assert!(output.status.success());
    engine.wait_for_log("removed=[\"conf\"]", Duration::from_secs(10));
    engine.stop();
    // The broader entity already had a.conf in its baseline: nothing to report.
    let scan = workspace.fim(&["scan", "--json"]);
    assert!(
        scan.status.success(),
        "{}",
        String::from_utf8_lossy(&scan.stderr)
    );
    let outcome: serde_json::Value = serde_json::from_slice(&scan.stdout).unwrap();
    assert_eq!(outcome["changes"], 0, "{outcome}");
    let journal = workspace.journal();
    assert!(object_records(&journal).is_empty(), "{journal:#?}");
    assert_eq!(
        journal[0]["Monitor"]["Event"], "EntityRemoved",
        "{journal:#?}"
    );
}

#[test]
fn an_entity_whose_path_is_a_symlink_is_warned_about() {
    let workspace = Workspace::new("symlinked");
    let target = workspace.base.join("real");
    std::fs::create_dir_all(&target).unwrap();
    let link = workspace.base.join("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    workspace.write_policy(&format!(
        "[[entity]]\nname = \"linked\"\nkind = \"linux-file\"\npath = \"{}\"\n",
        path_of(&link)
    ));
    let engine = Engine::start(&workspace);
    let log = engine.stop();
    assert!(
        log.contains(&format!(
            "entity \"linked\": {} is a symbolic link to {}; only the link itself is monitored",
            path_of(&link),
            path_of(&target)
        )),
        "{log}"
    );
}
