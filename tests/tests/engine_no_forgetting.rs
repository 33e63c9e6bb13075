//! Engine and policy changes that used to launder a change: disabling an entity and enabling
//! it again, removing and re-adding it, renaming it while fimd is stopped, or hiding a path
//! behind an ignore pattern for a while. Each time the entity comes back, its paths are
//! compared with their last baseline and every difference is a record; only paths never
//! baselined get a silent first baseline.
use std::{path::Path, time::Duration};

use fim_tests::engine::{object_records, path_of, Engine, Workspace};
use serde_json::Value;

/// A directory outside the workspace's own entity, with three files, monitored as `name`.
fn ssh_dir(workspace: &Workspace) -> std::path::PathBuf {
    let dir = workspace.base.join("ssh");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("sshd_config"), "Port 22\n").unwrap();
    std::fs::write(dir.join("moduli"), "2048 moduli\n").unwrap();
    std::fs::write(dir.join("gone"), "removed while nobody looked\n").unwrap();
    dir
}

/// What an attacker does while the entity is not watched: a config edited, a key planted,
/// a file deleted.
fn tamper(dir: &Path) {
    std::fs::write(dir.join("sshd_config"), "Port 22\nPermitRootLogin yes\n").unwrap();
    std::fs::write(dir.join("authorized_keys"), "ssh-ed25519 AAAA attacker\n").unwrap();
    std::fs::remove_file(dir.join("gone")).unwrap();
}

/// The records about `dir`'s files, as (category, file name), sorted.
fn about(records: &[Value], dir: &Path) -> Vec<(String, String)> {
    let prefix = format!("{}/", path_of(dir));
    let mut found: Vec<(String, String)> = records
        .iter()
        .filter_map(|record| {
            let path = record["File"]["FileSystemPath"].as_str()?;
            let name = path.strip_prefix(&prefix)?;
            Some((
                record["ChangeCategory"].as_str()?.to_string(),
                name.to_string(),
            ))
        })
        .collect();
    found.sort();
    found
}

fn wait_records(engine: &Engine, dir: &Path, count: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline && about(&engine.records(), dir).len() < count {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(600));
    engine.records()
}

fn tampered_records() -> Vec<(String, String)> {
    vec![
        ("Added".to_string(), "authorized_keys".to_string()),
        ("Modified".to_string(), "sshd_config".to_string()),
        ("Removed".to_string(), "gone".to_string()),
    ]
}

fn assert_scan_records(records: &[Value], dir: &Path, entity: &str) {
    let prefix = path_of(dir);
    for record in records.iter().filter(|r| {
        r["File"]["FileSystemPath"]
            .as_str()
            .is_some_and(|p| p.starts_with(&prefix))
    }) {
        assert_eq!(record["DetectedBy"], "scan", "{record:#}");
        assert_eq!(record["Entity"], entity, "{record:#}");
        if record["ChangeCategory"] == "Modified" {
            let fields = record["FieldsChanged"].as_array().expect("fields");
            assert!(
                fields.iter().any(|f| f == "FileContentChecksum"),
                "{record:#}"
            );
        }
    }
}

#[test]
fn disabling_and_enabling_an_entity_reports_what_changed_meanwhile() {
    let workspace = Workspace::new("forget-disable");
    let dir = ssh_dir(&workspace);
    workspace.fim_ok(&["entities", "add", "--name", "ssh", "--path", &path_of(&dir)]);
    let mut engine = Engine::start(&workspace);
    assert!(
        object_records(&engine.records()).is_empty(),
        "{:#?}",
        engine.records()
    );

    workspace.fim_ok(&["entities", "disable", "ssh"]);
    engine.wait_for_log("removed=[\"ssh\"]", Duration::from_secs(10));
    tamper(&dir);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        object_records(&engine.records()).is_empty(),
        "a disabled entity reports nothing"
    );

    workspace.fim_ok(&["entities", "enable", "ssh"]);
    let records = wait_records(&engine, &dir, 3);
    assert_eq!(about(&records, &dir), tampered_records(), "{records:#?}");
    assert_scan_records(&records, &dir, "ssh");
    engine.stop();
}

#[test]
fn removing_and_re_adding_an_entity_reports_what_changed_meanwhile() {
    let workspace = Workspace::new("forget-remove");
    let dir = ssh_dir(&workspace);
    workspace.fim_ok(&["entities", "add", "--name", "ssh", "--path", &path_of(&dir)]);
    let mut engine = Engine::start(&workspace);

    workspace.fim_ok(&["entities", "remove", "ssh"]);
    engine.wait_for_log("removed=[\"ssh\"]", Duration::from_secs(10));
    tamper(&dir);
    workspace.fim_ok(&["entities", "add", "--name", "ssh", "--path", &path_of(&dir)]);
    let records = wait_records(&engine, &dir, 3);
    assert_eq!(about(&records, &dir), tampered_records(), "{records:#?}");
    assert_scan_records(&records, &dir, "ssh");
    engine.stop();
}

#[test]
fn an_entity_renamed_while_fimd_was_stopped_keeps_its_baseline() {
    let workspace = Workspace::new("forget-rename");
    let dir = ssh_dir(&workspace);
    workspace.fim_ok(&["entities", "add", "--name", "ssh", "--path", &path_of(&dir)]);
    let engine = Engine::start(&workspace);
    engine.stop();

    workspace.fim_ok(&["entities", "remove", "ssh"]);
    workspace.fim_ok(&[
        "entities",
        "add",
        "--name",
        "openssh",
        "--path",
        &path_of(&dir),
    ]);
    tamper(&dir);
    let engine = Engine::start(&workspace);
    let records = wait_records(&engine, &dir, 2);
    // The rows the old name left are compared: the edit and the deletion are reported. The
    // planted key is new to the renamed entity's first baseline (nothing recorded it before).
    let found = about(&records, &dir);
    assert!(
        found.contains(&("Modified".to_string(), "sshd_config".to_string()))
            && found.contains(&("Removed".to_string(), "gone".to_string())),
        "{records:#?}"
    );
    assert!(
        !found.iter().any(|(_, name)| name == "moduli"),
        "an unchanged file is not reported: {records:#?}"
    );
    assert_scan_records(&records, &dir, "openssh");
    assert!(
        engine
            .log()
            .contains("taken over by the entities that cover them now"),
        "{}",
        engine.log()
    );
    engine.stop();
}

#[test]
fn a_path_hidden_by_an_ignore_pattern_is_compared_when_the_pattern_goes() {
    let workspace = Workspace::new("forget-ignore");
    let dir = ssh_dir(&workspace);
    let entity = |ignore: &str| {
        format!(
            "[settings]\nscan_idle_io = false\n\n[[entity]]\nname = \"ssh\"\nkind = \"linux-file\"\npath = \"{}\"\nrecursive = true\nignore = [{ignore}]\n",
            path_of(&dir)
        )
    };
    workspace.write_policy(&entity(""));
    let mut engine = Engine::start(&workspace);

    workspace.write_policy(&entity("\"sshd_config\""));
    engine.wait_for_log("changed=[\"ssh\"]", Duration::from_secs(10));
    engine.wait_for_log("new entities scan finished", Duration::from_secs(30));
    std::fs::write(dir.join("sshd_config"), "Port 22\nPermitRootLogin yes\n").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        object_records(&engine.records()).is_empty(),
        "an ignored path reports nothing"
    );

    // The pattern goes: the path is compared with the row it had, and the edit is reported.
    workspace.write_policy(&entity(""));
    let records = wait_records(&engine, &dir, 1);
    assert_eq!(
        about(&records, &dir),
        vec![("Modified".to_string(), "sshd_config".to_string())],
        "{records:#?}"
    );
    assert_scan_records(&records, &dir, "ssh");
    engine.stop();
}

#[test]
fn widening_an_entity_baselines_the_newly_covered_paths_silently() {
    let workspace = Workspace::new("forget-widen");
    let dir = ssh_dir(&workspace);
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/deep"), "deep").unwrap();
    let entity = |recursive: bool| {
        format!(
            "[settings]\nscan_idle_io = false\n\n[[entity]]\nname = \"ssh\"\nkind = \"linux-file\"\npath = \"{}/*\"\nrecursive = {recursive}\n",
            path_of(&dir)
        )
    };
    workspace.write_policy(&entity(false));
    let mut engine = Engine::start(&workspace);
    workspace.write_policy(&entity(true));
    engine.wait_for_log("changed=[\"ssh\"]", Duration::from_secs(10));
    engine.wait_for_log("new entities scan finished", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        object_records(&engine.records()).is_empty(),
        "{:#?}",
        engine.records()
    );
    // And they are monitored from now on.
    std::fs::write(dir.join("sub/deep"), "changed").unwrap();
    let records = wait_records(&engine, &dir, 1);
    assert_eq!(
        about(&records, &dir),
        vec![("Modified".to_string(), "sub/deep".to_string())]
    );
    engine.stop();
}
