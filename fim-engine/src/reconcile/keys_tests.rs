//! Registry entities reconciled against the in-memory registry: each case asserts the exact
//! records (category, key, value, both sides) a user would look for.
use fim_model::{ChangeCategory, ChangeRecord, Detection};

use super::*;
use crate::{
    identity::Computer,
    policy::CompiledPolicy,
    registry::{
        memory::MemoryRegistry,
        text::{REG_DWORD, REG_SZ},
    },
    store::Store,
};

const ROOT: &str = r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Run";

fn utf16z(text: &str) -> Vec<u8> {
    text.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

struct Setup {
    _dir: tempfile::TempDir,
    reconciler: Reconciler,
    registry: MemoryRegistry,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("fim.db")).expect("store");
    let computer = Computer {
        name: "win1".into(),
        id: "guid".into(),
    };
    Setup {
        _dir: dir,
        reconciler: Reconciler::new(store, CompiledPolicy::default(), computer),
        registry: MemoryRegistry::new(),
    }
}

fn root(recursive: bool) -> KeyRoot {
    KeyRoot {
        entity: "run".into(),
        key: ROOT.into(),
        subkeys: None,
        recursive,
        view: RegistryView::Native,
    }
}

impl Setup {
    fn sweep(&mut self, root: &KeyRoot) -> Vec<ChangeRecord> {
        self.reconciler
            .reconcile_key_tree(
                &self.registry,
                root,
                Detection::Realtime,
                KeyCause::default(),
            )
            .expect("reconcile")
            .records
    }

    /// The first sweep: a silent baseline.
    fn baseline(&mut self, root: &KeyRoot) {
        assert_eq!(self.sweep(root), Vec::new(), "a first baseline is silent");
        self.reconciler.mark_baselined(&root.entity).expect("mark");
    }
}

/// (category, key, value name, previous data, data) of one record.
type Summary = (
    ChangeCategory,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The [`Summary`] of each record.
fn summary(records: &[ChangeRecord]) -> Vec<Summary> {
    records
        .iter()
        .map(|record| {
            let columns = record.registry.clone().expect("registry columns");
            (
                record.change_category,
                columns.registry_key,
                columns.value_name,
                columns.previous_value_data,
                columns.value_data,
            )
        })
        .collect()
}

fn some(text: &str) -> Option<String> {
    Some(text.to_string())
}

#[test]
fn a_value_set_changed_and_deleted_gives_one_record_each() {
    let mut setup = setup();
    setup.registry.create_key(ROOT);
    setup.baseline(&root(false));
    setup
        .registry
        .set_value(ROOT, "Updater", REG_SZ, &utf16z(r"C:\good.exe"));
    let added = setup.sweep(&root(false));
    assert_eq!(
        summary(&added),
        vec![(
            ChangeCategory::Added,
            ROOT.into(),
            some("Updater"),
            None,
            some(r"C:\good.exe")
        )]
    );
    assert_eq!(added[0].detected_by, Detection::Realtime);
    assert_eq!(added[0].entity, "run");
    assert!(added[0].sequence > 0);
    setup
        .registry
        .set_value(ROOT, "updater", REG_SZ, &utf16z(r"C:\evil.exe"));
    let changed = setup.sweep(&root(false));
    assert_eq!(
        summary(&changed),
        vec![(
            ChangeCategory::Modified,
            ROOT.into(),
            some("updater"),
            some(r"C:\good.exe"),
            some(r"C:\evil.exe")
        )]
    );
    assert_eq!(changed[0].fields_changed, vec!["ValueData"]);
    setup.registry.delete_value(ROOT, "Updater");
    assert_eq!(
        summary(&setup.sweep(&root(false))),
        vec![(
            ChangeCategory::Removed,
            ROOT.into(),
            some("updater"),
            some(r"C:\evil.exe"),
            None
        )]
    );
    // Nothing changed: nothing reported.
    assert!(setup.sweep(&root(false)).is_empty());
}

#[test]
fn without_recursion_subkeys_report_only_their_existence() {
    let mut setup = setup();
    setup.registry.create_key(ROOT);
    setup.baseline(&root(false));
    let child = format!(r"{ROOT}\Child");
    setup
        .registry
        .set_value(&child, "Deep", REG_DWORD, &[1, 0, 0, 0]);
    assert_eq!(
        summary(&setup.sweep(&root(false))),
        vec![(ChangeCategory::Added, child.clone(), None, None, None)]
    );
    // A value inside the subkey is beyond a non-recursive entity.
    setup
        .registry
        .set_value(&child, "Deep", REG_DWORD, &[2, 0, 0, 0]);
    assert!(setup.sweep(&root(false)).is_empty());
    setup.registry.delete_key(&child);
    assert_eq!(
        summary(&setup.sweep(&root(false))),
        vec![(ChangeCategory::Removed, child, None, None, None)]
    );
}

#[test]
fn a_change_deep_under_a_recursive_entity_is_found_and_only_changed_keys_are_read_whole() {
    let mut setup = setup();
    let deep = format!(r"{ROOT}\A\B\C");
    setup
        .registry
        .set_value(&deep, "v", REG_DWORD, &[1, 0, 0, 0]);
    for index in 0..20 {
        setup
            .registry
            .set_value(&format!(r"{ROOT}\Other{index}"), "x", REG_DWORD, &[0; 4]);
    }
    setup.baseline(&root(true));
    setup
        .registry
        .set_value(&deep, "v", REG_DWORD, &[9, 0, 0, 0]);
    let sweep = setup
        .reconciler
        .reconcile_key_tree(
            &setup.registry,
            &root(true),
            Detection::Realtime,
            KeyCause::default(),
        )
        .expect("reconcile");
    assert_eq!(
        summary(&sweep.records),
        vec![(
            ChangeCategory::Modified,
            deep,
            some("v"),
            some("1"),
            some("9")
        )]
    );
    // The root, A, B, C and the 20 others were listed; only C was read whole.
    assert_eq!((sweep.keys, sweep.keys_read_whole), (24, 1));
}

#[test]
fn a_deleted_subtree_reports_every_key_and_value_it_held_and_a_recreated_key_is_new() {
    let mut setup = setup();
    let a = format!(r"{ROOT}\A");
    let b = format!(r"{ROOT}\A\B");
    setup
        .registry
        .set_value(&a, "one", REG_DWORD, &[1, 0, 0, 0]);
    setup
        .registry
        .set_value(&b, "two", REG_DWORD, &[2, 0, 0, 0]);
    setup.baseline(&root(true));
    setup.registry.delete_key(&a);
    assert_eq!(
        summary(&setup.sweep(&root(true))),
        vec![
            (ChangeCategory::Removed, a.clone(), None, None, None),
            (
                ChangeCategory::Removed,
                a.clone(),
                some("one"),
                some("1"),
                None
            ),
            (ChangeCategory::Removed, b.clone(), None, None, None),
            (
                ChangeCategory::Removed,
                b.clone(),
                some("two"),
                some("2"),
                None
            ),
        ]
    );
    assert!(setup.sweep(&root(true)).is_empty(), "reported once");
    setup
        .registry
        .set_value(&a, "one", REG_DWORD, &[3, 0, 0, 0]);
    assert_eq!(
        summary(&setup.sweep(&root(true))),
        vec![
            (ChangeCategory::Added, a.clone(), None, None, None),
            (ChangeCategory::Added, a, some("one"), None, some("3")),
        ]
    );
}

#[test]
fn a_root_key_that_appears_after_start_is_picked_up_and_its_removal_reported() {
    let mut setup = setup();
    setup.baseline(&root(true));
    setup.registry.set_value(ROOT, "Late", REG_SZ, &utf16z("x"));
    assert_eq!(
        summary(&setup.sweep(&root(true))),
        vec![
            (ChangeCategory::Added, ROOT.into(), None, None, None),
            (
                ChangeCategory::Added,
                ROOT.into(),
                some("Late"),
                None,
                some("x")
            ),
        ]
    );
    setup.registry.delete_key(ROOT);
    assert_eq!(
        summary(&setup.sweep(&root(true))),
        vec![
            (ChangeCategory::Removed, ROOT.into(), None, None, None),
            (
                ChangeCategory::Removed,
                ROOT.into(),
                some("Late"),
                some("x"),
                None
            ),
        ]
    );
}

#[test]
fn an_acl_change_is_found_though_it_does_not_move_the_last_write_time() {
    let mut setup = setup();
    setup.registry.create_key(ROOT);
    setup.registry.set_sddl(ROOT, "O:SYG:SYD:(A;;KA;;;SY)");
    setup.baseline(&root(false));
    setup.registry.set_sddl(ROOT, "O:SYG:SYD:(A;;KA;;;WD)");
    let records = setup.sweep(&root(false));
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].fields_changed, vec!["Acls"]);
    let columns = records[0].registry.clone().expect("columns");
    assert_eq!(columns.acls.as_deref(), Some("O:SYG:SYD:(A;;KA;;;WD)"));
    assert_eq!(
        columns.previous_acls.as_deref(),
        Some("O:SYG:SYD:(A;;KA;;;SY)")
    );
}

#[test]
fn records_and_baselines_survive_a_reopen_of_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fim.db");
    let registry = MemoryRegistry::new();
    registry.set_value(ROOT, "Updater", REG_SZ, &utf16z("a"));
    let computer = Computer {
        name: "win1".into(),
        id: "guid".into(),
    };
    {
        let store = Store::open(&path).expect("store");
        let mut reconciler = Reconciler::new(store, CompiledPolicy::default(), computer.clone());
        reconciler
            .reconcile_key_tree(&registry, &root(true), Detection::Scan, KeyCause::default())
            .expect("baseline");
        reconciler.mark_baselined("run").expect("mark");
    }
    registry.set_value(ROOT, "Updater", REG_SZ, &utf16z("b"));
    let store = Store::open(&path).expect("reopen");
    let mut reconciler = Reconciler::new(store, CompiledPolicy::default(), computer);
    let sweep = reconciler
        .reconcile_key_tree(&registry, &root(true), Detection::Scan, KeyCause::default())
        .expect("sweep");
    assert_eq!(
        summary(&sweep.records),
        vec![(
            ChangeCategory::Modified,
            ROOT.into(),
            some("Updater"),
            some("a"),
            some("b")
        )]
    );
    assert_eq!(sweep.records[0].detected_by, Detection::Scan);
    assert!(reconciler.store().verify().expect("verify").is_ok());
}

#[test]
fn a_wildcard_entity_is_the_matching_subkeys_not_their_parent() {
    let mut setup = setup();
    let services = r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services";
    let root = KeyRoot {
        entity: "net".into(),
        key: services.into(),
        subkeys: Some("Net*".into()),
        recursive: false,
        view: RegistryView::Native,
    };
    setup.registry.set_value(
        &format!(r"{services}\Netlogon"),
        "Start",
        REG_DWORD,
        &[2, 0, 0, 0],
    );
    setup.registry.set_value(
        &format!(r"{services}\Spooler"),
        "Start",
        REG_DWORD,
        &[2, 0, 0, 0],
    );
    setup.baseline(&root);
    // The parent's own values and a subkey that does not match are not the entity's.
    setup
        .registry
        .set_value(services, "Parent", REG_DWORD, &[1, 0, 0, 0]);
    setup.registry.set_value(
        &format!(r"{services}\Spooler"),
        "Start",
        REG_DWORD,
        &[4, 0, 0, 0],
    );
    assert!(setup.sweep(&root).is_empty());
    setup.registry.set_value(
        &format!(r"{services}\netlogon"),
        "Start",
        REG_DWORD,
        &[4, 0, 0, 0],
    );
    setup.registry.set_value(
        &format!(r"{services}\NetEvil"),
        "ImagePath",
        REG_SZ,
        &utf16z("x"),
    );
    assert_eq!(
        summary(&setup.sweep(&root)),
        vec![
            (
                ChangeCategory::Added,
                format!(r"{services}\NetEvil"),
                None,
                None,
                None
            ),
            (
                ChangeCategory::Added,
                format!(r"{services}\NetEvil"),
                some("ImagePath"),
                None,
                some("x")
            ),
            (
                ChangeCategory::Modified,
                format!(r"{services}\Netlogon"),
                some("Start"),
                some("2"),
                some("4")
            ),
        ]
    );
    setup.registry.delete_key(&format!(r"{services}\NetEvil"));
    assert_eq!(
        summary(&setup.sweep(&root)),
        vec![
            (
                ChangeCategory::Removed,
                format!(r"{services}\NetEvil"),
                None,
                None,
                None
            ),
            (
                ChangeCategory::Removed,
                format!(r"{services}\NetEvil"),
                some("ImagePath"),
                some("x"),
                None
            ),
        ]
    );
    assert!(root.covers(&format!(r"{services}\NETLOGON")));
    assert!(
        !root.covers(&format!(r"{services}\Netlogon\Parameters")),
        "not recursive"
    );
    assert!(!root.covers(&format!(r"{services}\Spooler")));
    assert!(!root.covers(services));
}

/// The reconciler as the daemon drives it: a scan baselines the policy's registry entities,
/// then a real-time event for a key (either hive spelling) sweeps that key's entity.
#[test]
fn the_daemon_path_scans_registry_entities_and_reconciles_key_events() {
    use std::sync::{Arc, Mutex};

    use crate::{
        policy,
        reconcile::{sweep, Hint},
        scan::ScanOptions,
    };
    let text = format!(
        "[[entity]]\nname = \"run\"\nkind = \"windows-registry\"\npath = '{}'\n",
        r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run"
    );
    let parsed = policy::parse(&text, std::path::Path::new("test.toml")).expect("policy");
    let compiled = policy::compile(&parsed.policy).expect("compiles");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("fim.db")).expect("store");
    let computer = Computer {
        name: "win1".into(),
        id: "guid".into(),
    };
    let registry = Arc::new(MemoryRegistry::new());
    registry.set_value(ROOT, "Updater", REG_SZ, &utf16z("a"));
    let mut reconciler = Reconciler::new(store, compiled, computer);
    let key = fim_model::MonitoredObject::RegistryKey {
        key: r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run\Sub".to_string(),
        value: None,
    };
    let hint = Hint {
        operations: vec!["registry-notification".into()],
        ..Hint::default()
    };
    // Without a reader (fimd on Linux) a key event is refused, not recorded.
    registry.set_value(&format!(r"{ROOT}\Sub"), "x", REG_DWORD, &[1, 0, 0, 0]);
    let none = reconciler
        .reconcile(&[(key.clone(), hint.clone())], Detection::Realtime)
        .expect("reconcile");
    assert!(none.is_empty());
    reconciler.set_key_reader(registry.clone());
    let reconciler = Mutex::new(reconciler);
    let outcome = sweep::sweep(
        &reconciler,
        None,
        sweep::SweepKind::Metadata,
        Detection::Scan,
        &ScanOptions::default(),
    )
    .expect("scan");
    assert_eq!(outcome.baselined, vec!["run".to_string()]);
    assert_eq!((outcome.keys, outcome.changes), (2, 0));
    registry.set_value(&format!(r"{ROOT}\Sub"), "x", REG_DWORD, &[2, 0, 0, 0]);
    let records = lock(&reconciler)
        .reconcile(&[(key, hint)], Detection::Realtime)
        .expect("reconcile");
    assert_eq!(
        summary(&records),
        vec![(
            ChangeCategory::Modified,
            format!(r"{ROOT}\Sub"),
            some("x"),
            some("1"),
            some("2")
        )]
    );
    assert_eq!(records[0].operations, vec!["registry-notification"]);
    assert_eq!(records[0].detected_by, Detection::Realtime);
    assert_eq!(records[0].entity, "run");
}

/// Hands out one fixed actor and counts who asked.
struct FixedWho {
    asked: std::sync::Mutex<Vec<String>>,
}

impl crate::attribution::Attributor for FixedWho {
    fn actor_for(&self, record: &ChangeRecord) -> Option<fim_model::Actor> {
        let mut asked = self.asked.lock().unwrap();
        asked.push(record.subject().unwrap_or_default().to_string());
        Some(fim_model::Actor {
            process_id: 4242,
            thread_id: 4300,
            process_name: "reg.exe".into(),
            executable: Some(r"C:\Windows\System32\reg.exe".into()),
            parent_process_id: 1000,
            user: fim_model::UserIdentity::Windows(fim_model::actor::WindowsUser {
                user_sid: "S-1-5-21-1-2-3-500".into(),
                logon_id: None,
                account_name: None,
            }),
        })
    }
}

#[test]
fn real_time_records_take_their_actor_from_the_who_data_source_and_scans_do_not() {
    let mut setup = setup();
    setup.registry.create_key(ROOT);
    setup.baseline(&root(false));
    let who = std::sync::Arc::new(FixedWho {
        asked: Default::default(),
    });
    setup.reconciler.set_attributor(who.clone());
    setup
        .registry
        .set_value(ROOT, "Updater", REG_SZ, &utf16z(r"C:\evil.exe"));
    let added = setup.sweep(&root(false));
    let actor = added[0].actor.clone().expect("an actor");
    assert_eq!(
        (actor.process_id, actor.process_name.as_str()),
        (4242, "reg.exe")
    );
    assert_eq!(
        actor.windows().map(|user| user.user_sid.as_str()),
        Some("S-1-5-21-1-2-3-500")
    );
    // Journaled with it: the chain's hash covers the actor.
    assert!(added[0].sequence > 0);
    setup
        .registry
        .set_value(ROOT, "Updater", REG_SZ, &utf16z(r"C:\other.exe"));
    let scanned = setup
        .reconciler
        .reconcile_key_tree(
            &setup.registry,
            &root(false),
            Detection::Scan,
            KeyCause::default(),
        )
        .expect("reconcile")
        .records;
    assert_eq!(scanned.len(), 1);
    assert_eq!(scanned[0].actor, None, "a scan does not guess who");
    assert_eq!(*who.asked.lock().unwrap(), vec![ROOT.to_string()]);
}
