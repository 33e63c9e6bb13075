//! Roles on the local API socket, decided from the kernel's peer credentials: root and the
//! owner group may change monitoring, the reader group may only look, anyone else gets
//! nothing. The unprivileged clients are real processes under other uids and groups
//! (`setpriv`), calling through the real socket of a real fimd.
use std::{
    collections::BTreeMap,
    os::unix::fs::{MetadataExt, PermissionsExt},
    process::Command,
    time::Duration,
};

use fim_api::pb;
use fim_tests::{
    api::{block_on, code, ensure_group, start_with_role_groups, unix_client},
    engine::{Engine, Workspace},
};

const OWNERS: &str = "fim-test-owners";
const READERS: &str = "fim-test-readers";
const NOBODY: u32 = 65534;

const READS: [&str; 7] = [
    "GetStatus",
    "QueryChanges",
    "Summary",
    "ListEntities",
    "WatchChanges",
    "VerifyJournal",
    "Health",
];
const WRITES: [&str; 4] = [
    "TriggerScan",
    "UpsertEntity",
    "SetEntityEnabled",
    "DeleteEntity",
];

/// The test groups' ids (owners, readers), created once: parallel `groupadd` runs would
/// fight over the lock on /etc/group.
fn groups() -> (u32, u32) {
    static GROUPS: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *GROUPS.get_or_init(|| (ensure_group(OWNERS, 64990), ensure_group(READERS, 64991)))
}

/// Runs the probe as uid 65534 with the given group options; METHOD -> code.
fn probe(workspace: &Workspace, groups: &[&str]) -> BTreeMap<String, String> {
    let output = Command::new("setpriv")
        .arg(format!("--reuid={NOBODY}"))
        .args(groups)
        .arg(env!("CARGO_BIN_EXE_api_probe"))
        .arg(&workspace.socket)
        .arg(&workspace.tree)
        .output()
        .expect("run setpriv");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "api_probe failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(method, outcome)| (method.to_string(), outcome.to_string()))
        .collect()
}

fn start(workspace: &Workspace) -> Engine {
    start_with_role_groups(workspace, OWNERS, READERS)
}

#[test]
fn socket_is_owner_group_only_with_a_reader_acl() {
    let (owners, _) = groups();
    let workspace = Workspace::new("api-socket-mode");
    let engine = start(&workspace);
    let meta = std::fs::metadata(&workspace.socket).expect("socket exists");
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!((meta.uid(), meta.gid()), (0, owners));
    assert!(
        engine.log().contains("api listening on"),
        "{}",
        engine.log()
    );
    engine.stop();
    assert!(
        !workspace.socket.exists(),
        "the socket is removed at shutdown"
    );
}

#[test]
fn a_process_with_no_role_is_denied_everything() {
    groups();
    let workspace = Workspace::new("api-nobody");
    let engine = start(&workspace);
    let nobody = [format!("--regid={NOBODY}"), "--clear-groups".to_string()];
    let nobody: Vec<&str> = nobody.iter().map(String::as_str).collect();
    // The file permissions keep it from even connecting...
    let outcome = probe(&workspace, &nobody);
    let connect = outcome.get("connect").expect("connect refused");
    assert!(connect.contains("Permission denied"), "{outcome:?}");
    // ...and with the socket opened up, the peer-credential check still denies each call.
    std::fs::set_permissions(&workspace.socket, std::fs::Permissions::from_mode(0o666))
        .expect("chmod socket");
    let outcome = probe(&workspace, &nobody);
    for method in READS.iter().chain(&WRITES) {
        assert_eq!(
            outcome.get(*method).map(String::as_str),
            Some("PermissionDenied"),
            "{method}: {outcome:?}"
        );
    }
    assert!(
        engine.log().contains("denied: the peer has no role"),
        "denials are logged: {}",
        engine.log()
    );
    assert!(engine.log().contains(&format!("uid {NOBODY}")));
    engine.stop();
}

#[test]
fn a_reader_can_read_but_not_change_anything() {
    let (_, readers) = groups();
    let workspace = Workspace::new("api-reader");
    let engine = start(&workspace);
    let before = std::fs::read_to_string(&workspace.policy).expect("policy");
    // Primary group, then supplementary: both make a reader.
    for groups in [
        vec![format!("--regid={readers}"), "--clear-groups".into()],
        vec![format!("--regid={NOBODY}"), format!("--groups={readers}")],
    ] {
        let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
        let outcome = probe(&workspace, &groups);
        for method in READS {
            assert_eq!(
                outcome.get(method).map(String::as_str),
                Some("Ok"),
                "{method}: {outcome:?}"
            );
        }
        for method in WRITES {
            assert_eq!(
                outcome.get(method).map(String::as_str),
                Some("PermissionDenied"),
                "{method}: {outcome:?}"
            );
        }
    }
    assert_eq!(
        std::fs::read_to_string(&workspace.policy).expect("policy"),
        before,
        "a reader changed the policy"
    );
    assert!(
        engine
            .log()
            .contains("denied: TriggerScan needs the owner role"),
        "{}",
        engine.log()
    );
    engine.stop();
}

#[test]
fn an_owner_group_member_can_trigger_scans() {
    let (owners, _) = groups();
    let workspace = Workspace::new("api-owner-group");
    let engine = start(&workspace);
    let groups = [format!("--regid={NOBODY}"), format!("--groups={owners}")];
    let groups: Vec<&str> = groups.iter().map(String::as_str).collect();
    let outcome = probe(&workspace, &groups);
    for method in READS.iter().chain(&WRITES) {
        assert_eq!(
            outcome.get(*method).map(String::as_str),
            Some("Ok"),
            "{method}: {outcome:?}"
        );
    }
    engine.stop();
}

#[test]
fn root_manages_entities_and_the_daemon_follows() {
    groups();
    let workspace = Workspace::new("api-root");
    let extra = workspace.tree.join("extra");
    std::fs::create_dir_all(&extra).expect("mkdir extra");
    let mut engine = start(&workspace);
    block_on(async {
        let mut client = unix_client(&workspace.socket).await;
        client
            .upsert_entity(pb::UpsertEntityRequest {
                entity: Some(pb::Entity {
                    name: "extra".into(),
                    kind: pb::EntityKind::FileContent as i32,
                    path: extra.display().to_string(),
                    recursive: true,
                    enabled: true,
                    ignore: vec!["*.tmp".into()],
                }),
            })
            .await
            .expect("root may upsert");
        let listed = client
            .list_entities(pb::ListEntitiesRequest {})
            .await
            .expect("list")
            .into_inner()
            .entities;
        let added = listed
            .iter()
            .find(|entity| entity.name == "extra")
            .unwrap_or_else(|| panic!("extra not listed: {listed:?}"));
        assert_eq!(added.kind, pb::EntityKind::FileContent as i32);
        assert_eq!(added.ignore, vec!["*.tmp".to_string()]);
    });
    engine.wait_for_log("policy reloaded", Duration::from_secs(15));
    assert!(
        engine.log().contains("added: [\"extra\"]") || engine.log().contains("added=[\"extra\"]"),
        "{}",
        engine.log()
    );
    block_on(async {
        let mut client = unix_client(&workspace.socket).await;
        // Replacing keeps one entity of that name.
        client
            .upsert_entity(pb::UpsertEntityRequest {
                entity: Some(pb::Entity {
                    name: "extra".into(),
                    kind: pb::EntityKind::LinuxFile as i32,
                    path: extra.display().to_string(),
                    recursive: true,
                    enabled: true,
                    ignore: Vec::new(),
                }),
            })
            .await
            .expect("replace");
        client
            .set_entity_enabled(pb::SetEntityEnabledRequest {
                name: "extra".into(),
                enabled: false,
            })
            .await
            .expect("disable");
        let listed = client
            .list_entities(pb::ListEntitiesRequest {})
            .await
            .expect("list")
            .into_inner()
            .entities;
        let extras: Vec<_> = listed.iter().filter(|e| e.name == "extra").collect();
        assert_eq!(extras.len(), 1, "{listed:?}");
        assert_eq!(extras[0].kind, pb::EntityKind::LinuxFile as i32);
        assert!(!extras[0].enabled);
        client
            .delete_entity(pb::DeleteEntityRequest {
                name: "extra".into(),
            })
            .await
            .expect("delete");
        let again = client
            .delete_entity(pb::DeleteEntityRequest {
                name: "extra".into(),
            })
            .await;
        assert_eq!(code(&again), "NotFound", "{again:?}");
        let invalid = client
            .upsert_entity(pb::UpsertEntityRequest {
                entity: Some(pb::Entity {
                    name: "bad".into(),
                    kind: pb::EntityKind::LinuxFile as i32,
                    path: format!("{}/*/x", workspace.tree.display()),
                    recursive: true,
                    enabled: true,
                    ignore: Vec::new(),
                }),
            })
            .await;
        let status = invalid.expect_err("a wildcard in the middle is invalid");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status
                .message()
                .contains(&workspace.policy.display().to_string()),
            "the diagnostic names the file: {}",
            status.message()
        );
        client
            .trigger_scan(pb::TriggerScanRequest {
                entities: vec!["tree".into()],
                full: true,
            })
            .await
            .expect("root may scan");
        let unknown = client
            .trigger_scan(pb::TriggerScanRequest {
                entities: vec!["tree".into(), "no-such-entity".into()],
                full: false,
            })
            .await
            .expect_err("unknown entity");
        assert_eq!(unknown.code(), tonic::Code::InvalidArgument);
        assert!(unknown.message().contains("no-such-entity"), "{unknown:?}");
    });
    engine.stop();
}
