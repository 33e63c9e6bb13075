//! Nothing leaks through the root daemon's API: an owner-group member cannot have fimd watch
//! what it could not read itself, only root manages file-content entities, and file content
//! (diffs, baseline content) reaches root only. The unprivileged callers are real processes
//! under uid 1001 (`setpriv`) calling through the real socket of a real fimd; hostile entity
//! paths are refused before they reach the policy.
use std::{process::Command, time::Duration};

use fim_api::pb;
use fim_tests::{
    api::{block_on, ensure_group, start_with_role_groups, unix_client},
    engine::{Engine, Workspace},
};

const OWNERS: &str = "fim-test-owners";
const READERS: &str = "fim-test-readers";
const USER: u32 = 1001;

fn groups() -> (u32, u32) {
    static GROUPS: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *GROUPS.get_or_init(|| (ensure_group(OWNERS, 64990), ensure_group(READERS, 64991)))
}

fn start(workspace: &Workspace) -> Engine {
    start_with_role_groups(workspace, OWNERS, READERS)
}

/// Runs `api_call SOCKET ARGS..` as uid 1001 with `group` as its only supplementary group.
fn call_as(workspace: &Workspace, group: u32, args: &[&str]) -> String {
    let output = Command::new("setpriv")
        .arg(format!("--reuid={USER}"))
        .arg(format!("--regid={USER}"))
        .arg(format!("--groups={group}"))
        .arg(env!("CARGO_BIN_EXE_api_call"))
        .arg(&workspace.socket)
        .args(args)
        .output()
        .expect("run setpriv");
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        output.status.success(),
        "api_call {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn an_owner_cannot_watch_what_it_cannot_read() {
    let (owners, _) = groups();
    let workspace = Workspace::new("api-leak-shadow");
    let engine = start(&workspace);
    let before = std::fs::read_to_string(&workspace.policy).expect("policy");
    let shadow = call_as(
        &workspace,
        owners,
        &["upsert", "shadow", "linux-file", "/etc/shadow"],
    );
    assert!(shadow.starts_with("PermissionDenied "), "{shadow}");
    assert!(
        shadow.contains("/etc/shadow is not readable by uid 1001"),
        "{shadow}"
    );
    // A wildcard is judged by what it matches.
    let wildcard = call_as(
        &workspace,
        owners,
        &["upsert", "shadows", "linux-file", "/etc/shad*"],
    );
    assert!(wildcard.starts_with("PermissionDenied "), "{wildcard}");
    // /etc/shadow or its backup /etc/shadow-, whichever the directory lists first.
    assert!(
        wildcard.contains("entity \"shadows\": /etc/shadow"),
        "{wildcard}"
    );
    assert!(
        wildcard.contains("is not readable by uid 1001"),
        "{wildcard}"
    );
    assert_eq!(
        std::fs::read_to_string(&workspace.policy).expect("policy"),
        before,
        "a refused entity reached the policy"
    );
    // What the caller can read, it may monitor.
    let passwd = call_as(
        &workspace,
        owners,
        &["upsert", "passwd", "linux-file", "/etc/passwd"],
    );
    assert_eq!(passwd, "Ok");
    assert!(std::fs::read_to_string(&workspace.policy)
        .expect("policy")
        .contains("/etc/passwd"));
    engine.stop();
}

#[test]
fn only_root_manages_file_content_entities() {
    let (owners, _) = groups();
    let workspace = Workspace::new("api-leak-content-entity");
    let notes = workspace.tree.join("notes.txt");
    std::fs::write(&notes, "hello\n").expect("write notes");
    let notes = notes.to_str().expect("utf-8 path").to_string();
    let engine = start(&workspace);
    let refused = call_as(
        &workspace,
        owners,
        &["upsert", "notes", "file-content", &notes],
    );
    assert!(refused.starts_with("PermissionDenied "), "{refused}");
    assert!(
        refused.contains("only root may add or edit a file-content entity"),
        "{refused}"
    );
    // Root may add it; the owner-group member may then neither replace nor re-enable it.
    block_on(async {
        let mut root = unix_client(&workspace.socket).await;
        root.upsert_entity(pb::UpsertEntityRequest {
            entity: Some(pb::Entity {
                name: "notes".into(),
                kind: pb::EntityKind::FileContent as i32,
                path: notes.clone(),
                enabled: true,
                ..Default::default()
            }),
        })
        .await
        .expect("root adds a file-content entity");
    });
    let replaced = call_as(
        &workspace,
        owners,
        &["upsert", "notes", "linux-file", &notes],
    );
    assert!(replaced.starts_with("PermissionDenied "), "{replaced}");
    assert!(
        replaced.contains("\"notes\" is a file-content entity: only root may edit it"),
        "{replaced}"
    );
    let enabled = call_as(&workspace, owners, &["enable", "notes"]);
    assert!(enabled.starts_with("PermissionDenied "), "{enabled}");
    assert!(enabled.contains("only root may edit it"), "{enabled}");
    engine.stop();
}

#[test]
fn readers_never_receive_file_content() {
    let (owners, readers) = groups();
    let workspace = Workspace::new("api-leak-content");
    let notes = workspace.tree.join("notes.txt");
    std::fs::write(&notes, "the old secret\n").expect("write notes");
    workspace.write_policy(&format!(
        "[settings]\nscan_idle_io = false\n\n[[entity]]\nname = \"notes\"\nkind = \"file-content\"\npath = \"{}\"\n",
        notes.display()
    ));
    let engine = start(&workspace);
    std::fs::write(&notes, "the new secret\n").expect("change notes");
    let records = engine.settle(1);
    assert!(!records.is_empty(), "the change was never recorded");
    let notes = notes.to_str().expect("utf-8 path");
    // Root sees the diff and the content: the records do carry it.
    let mut root = String::new();
    for _ in 0..50 {
        root = block_on(async {
            let mut client = unix_client(&workspace.socket).await;
            let records = client
                .query_changes(pb::QueryChangesRequest::default())
                .await
                .expect("root query")
                .into_inner()
                .records;
            let diffs = records
                .iter()
                .filter(|r| r.file.as_ref().is_some_and(|f| f.content_diff.is_some()))
                .count();
            format!("Ok {} {diffs}", records.len())
        });
        if !root.ends_with(" 0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!root.ends_with(" 0"), "root sees no diff: {root}");
    // A reader and a non-root owner get the same records without content.
    for group in [readers, owners] {
        for command in ["query", "watch"] {
            let outcome = call_as(&workspace, group, &[command]);
            let fields: Vec<&str> = outcome.split(' ').collect();
            assert_eq!(fields.first(), Some(&"Ok"), "{command}: {outcome}");
            assert_ne!(
                fields.get(1),
                Some(&"0"),
                "{command}: no records: {outcome}"
            );
            assert_eq!(
                fields.get(2),
                Some(&"0"),
                "{command} leaked a diff: {outcome}"
            );
        }
        let baseline = call_as(&workspace, group, &["baseline", notes]);
        assert_eq!(baseline, "Ok false", "the baseline leaked content");
    }
    engine.stop();
}

#[test]
fn hostile_entity_paths_are_invalid_arguments() {
    groups();
    let workspace = Workspace::new("api-leak-hostile");
    let engine = start(&workspace);
    let before = std::fs::read_to_string(&workspace.policy).expect("policy");
    let deep = "/a".repeat(3000);
    let long = format!("/{}", "x".repeat(5000));
    for (path, message) in [
        (
            "/etc/pass\0wd".to_string(),
            "entity.path: must not contain a NUL byte",
        ),
        (deep, "entity.path: has 3000 components; at most 256"),
        (long, "entity.path: is 5001 bytes long; at most 4095"),
    ] {
        let status = block_on(async {
            let mut root = unix_client(&workspace.socket).await;
            root.upsert_entity(pb::UpsertEntityRequest {
                entity: Some(pb::Entity {
                    name: "hostile".into(),
                    kind: pb::EntityKind::LinuxFile as i32,
                    path,
                    enabled: true,
                    ..Default::default()
                }),
            })
            .await
            .expect_err("a hostile path is refused")
        });
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert_eq!(status.message(), message);
    }
    assert_eq!(
        std::fs::read_to_string(&workspace.policy).expect("policy"),
        before
    );
    engine.stop();
}
