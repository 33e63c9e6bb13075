use fim_model::{ChangeCategory, ConfigChangeType, Detection};

use super::*;
use crate::registry::text::{REG_DWORD, REG_SZ};

const RUN: &str = r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Run";

fn utf16z(text: &str) -> Vec<u8> {
    text.encode_utf16()
        .chain([0])
        .flat_map(u16::to_le_bytes)
        .collect()
}

fn value(name: &str, kind: u32, data: &[u8]) -> RegistryValue {
    RegistryValue {
        name: name.into(),
        kind,
        data: data.to_vec(),
    }
}

fn key(values: &[RegistryValue], subkeys: &[&str], sddl: Option<&str>) -> KeySnapshot {
    let mut snapshot = KeySnapshot {
        sddl: sddl.map(str::to_string),
        ..KeySnapshot::default()
    };
    for value in values {
        snapshot.insert_value(value.clone());
    }
    for subkey in subkeys {
        snapshot.insert_subkey(subkey);
    }
    snapshot
}

fn context(computer: &Computer) -> RecordContext<'_> {
    RecordContext {
        computer,
        entity: "run-keys",
        detection: Detection::Realtime,
        actor: None,
        operations: vec!["registry-notification".into()],
    }
}

#[test]
fn values_added_removed_and_set_are_one_change_each_in_name_order() {
    let before = key(
        &[
            value("Updater", REG_SZ, &utf16z(r"C:\good.exe")),
            value("Gone", REG_DWORD, &[1, 0, 0, 0]),
            value("Same", REG_DWORD, &[2, 0, 0, 0]),
        ],
        &["Old"],
        Some("O:BAG:SYD:(A;;KA;;;SY)"),
    );
    let after = key(
        &[
            value("UPDATER", REG_SZ, &utf16z(r"C:\evil.exe")),
            value("Same", REG_DWORD, &[2, 0, 0, 0]),
            value("New", REG_DWORD, &[3, 0, 0, 0]),
        ],
        &["New"],
        Some("O:BAG:SYD:(A;;KA;;;WD)"),
    );
    let changes = compare(Some(&before), Some(&after));
    assert_eq!(
        changes,
        vec![
            KeyChange::AclChanged {
                before: "O:BAG:SYD:(A;;KA;;;SY)".into(),
                after: "O:BAG:SYD:(A;;KA;;;WD)".into()
            },
            KeyChange::ValueRemoved(value("Gone", REG_DWORD, &[1, 0, 0, 0])),
            KeyChange::ValueChanged {
                before: value("Updater", REG_SZ, &utf16z(r"C:\good.exe")),
                after: value("UPDATER", REG_SZ, &utf16z(r"C:\evil.exe")),
            },
            KeyChange::ValueAdded(value("New", REG_DWORD, &[3, 0, 0, 0])),
            KeyChange::SubkeyRemoved("Old".into()),
            KeyChange::SubkeyAdded("New".into()),
        ]
    );
    assert!(compare(Some(&after), Some(&after)).is_empty());
    // An ACL unreadable on one side is no change.
    let unreadable = KeySnapshot {
        sddl: None,
        ..after.clone()
    };
    assert!(compare(Some(&after), Some(&unreadable)).is_empty());
}

#[test]
fn a_removed_key_reports_itself_then_each_of_its_values_and_subkeys() {
    let before = key(
        &[value("Updater", REG_SZ, &utf16z("x"))],
        &["Sub"],
        Some("O:BA"),
    );
    assert_eq!(
        compare(Some(&before), None),
        vec![
            KeyChange::KeyRemoved {
                sddl: Some("O:BA".into())
            },
            KeyChange::ValueRemoved(value("Updater", REG_SZ, &utf16z("x"))),
            KeyChange::SubkeyRemoved("Sub".into()),
        ]
    );
    assert_eq!(
        compare(None, Some(&before))[0],
        KeyChange::KeyAdded {
            sddl: Some("O:BA".into())
        }
    );
    assert!(compare(None, None).is_empty());
}

#[test]
fn a_value_set_becomes_a_modified_registry_record_with_both_sides() {
    let computer = Computer {
        name: "win1".into(),
        id: "guid".into(),
    };
    let change = KeyChange::ValueChanged {
        before: value("Updater", REG_SZ, &utf16z(r"C:\good.exe")),
        after: value("Updater", REG_DWORD, &[7, 0, 0, 0]),
    };
    let record = change.record(RUN, &context(&computer));
    assert_eq!(record.config_change_type, ConfigChangeType::Registry);
    assert_eq!(record.change_category, ChangeCategory::Modified);
    assert_eq!(record.fields_changed, vec!["ValueType", "ValueData"]);
    assert_eq!(record.entity, "run-keys");
    assert_eq!(record.computer, "win1");
    assert_eq!(record.operations, vec!["registry-notification"]);
    assert_eq!(record.subject(), Some(RUN));
    assert!(record.file.is_none() && record.service.is_none());
    let columns = record.registry.expect("registry columns");
    assert_eq!(columns.registry_key, RUN);
    assert_eq!(columns.hive, "HKEY_LOCAL_MACHINE");
    assert_eq!(columns.value_name.as_deref(), Some("Updater"));
    assert_eq!(columns.previous_value_type.as_deref(), Some("REG_SZ"));
    assert_eq!(columns.value_type.as_deref(), Some("REG_DWORD"));
    assert_eq!(columns.previous_value_data.as_deref(), Some(r"C:\good.exe"));
    assert_eq!(columns.value_data.as_deref(), Some("7"));
    assert_eq!(columns.value_data_size, Some(4));
    assert_eq!(columns.previous_value_data_size, Some(24));
    assert_eq!(
        columns.value_data_checksum,
        Some(blake3::hash(&[7, 0, 0, 0]).to_hex().to_string())
    );
}

#[test]
fn subkey_acl_and_key_records_name_the_right_key() {
    let computer = Computer {
        name: "win1".into(),
        id: "guid".into(),
    };
    let context = RecordContext {
        detection: Detection::Scan,
        actor: Some(fim_model::samples::windows_actor()),
        ..context(&computer)
    };
    let added = KeyChange::SubkeyAdded("Evil".into()).record(RUN, &context);
    assert_eq!(added.change_category, ChangeCategory::Added);
    let columns = added.registry.expect("columns");
    assert_eq!(columns.registry_key, format!(r"{RUN}\Evil"));
    assert_eq!(columns.value_name, None);
    // Scans never name an actor.
    assert_eq!(added.actor, None);
    let acl = KeyChange::AclChanged {
        before: "O:SY".into(),
        after: "O:WD".into(),
    }
    .record(RUN, &context);
    assert_eq!(acl.fields_changed, vec!["Acls"]);
    let columns = acl.registry.expect("columns");
    assert_eq!(
        (columns.previous_acls.as_deref(), columns.acls.as_deref()),
        (Some("O:SY"), Some("O:WD"))
    );
    let removed = KeyChange::KeyRemoved { sddl: None }.record(RUN, &context);
    assert_eq!(removed.change_category, ChangeCategory::Removed);
    assert_eq!(removed.registry.expect("columns").registry_key, RUN);
}
