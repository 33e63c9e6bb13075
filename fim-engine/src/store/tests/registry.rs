//! The registry keys' baseline: case-insensitive keys, views kept apart, subtree ranges, and
//! a key's baseline committed with its records or not at all.
use super::{raw, temp_store};
use crate::registry::{KeySnapshot, RegistryValue, RegistryView};

const RUN: &str = r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Run";

fn snapshot(value: &str, data: &[u8]) -> KeySnapshot {
    let mut snapshot = KeySnapshot {
        sddl: Some("O:BAG:SYD:(A;;KA;;;SY)".into()),
        last_write: 133_000_000_000_000_000,
        ..KeySnapshot::default()
    };
    snapshot.insert_value(RegistryValue {
        name: value.into(),
        kind: 3,
        data: data.to_vec(),
    });
    snapshot.insert_subkey("Child");
    snapshot
}

#[test]
fn a_key_baseline_round_trips_with_its_spelling_and_is_found_without_case() {
    let (_dir, _path, store) = temp_store();
    let big = vec![0xa5u8; 2 * 1024 * 1024];
    let written = snapshot("Updater", &big);
    let mut batch = store.batch().unwrap();
    batch
        .put_key(RUN, RegistryView::Native, "run-keys", &written)
        .unwrap();
    batch.commit().unwrap();
    let read = store
        .key_baseline(&RUN.to_uppercase(), RegistryView::Native)
        .unwrap()
        .expect("a baseline");
    assert_eq!(read.key, RUN);
    assert_eq!(read.entity, "run-keys");
    assert_eq!(read.snapshot, written);
    // The 32-bit view is another key.
    assert_eq!(store.key_baseline(RUN, RegistryView::Wow32).unwrap(), None);
    assert_eq!(store.key_count("run-keys").unwrap(), 1);
}

#[test]
fn keys_under_is_the_subtree_and_nothing_beside_it() {
    let (_dir, _path, store) = temp_store();
    let root = r"HKEY_LOCAL_MACHINE\SOFTWARE\Tree";
    let mut batch = store.batch().unwrap();
    for key in [
        root.to_string(),
        format!(r"{root}\A"),
        format!(r"{root}\A\Deep"),
        format!(r"{root}\b"),
        // Beside the tree, sorting right after it: not below it.
        format!(r"{root}2"),
        format!(r"{root}2\X"),
        r"HKEY_LOCAL_MACHINE\SOFTWARE\Tre".to_string(),
    ] {
        batch
            .put_key(&key, RegistryView::Native, "tree", &snapshot("v", b"x"))
            .unwrap();
    }
    batch
        .put_key(
            &format!(r"{root}\Wow"),
            RegistryView::Wow32,
            "tree",
            &snapshot("v", b"x"),
        )
        .unwrap();
    batch.commit().unwrap();
    let below: Vec<String> = store
        .keys_under(&format!("{}\\", root.to_lowercase()), RegistryView::Native)
        .unwrap()
        .into_iter()
        .map(|baseline| baseline.key)
        .collect();
    assert_eq!(
        below,
        vec![
            format!(r"{root}\A"),
            format!(r"{root}\A\Deep"),
            format!(r"{root}\b")
        ]
    );
    let mut batch = store.batch().unwrap();
    assert!(batch
        .delete_key(&format!(r"{root}\a"), RegistryView::Native)
        .unwrap());
    assert!(!batch
        .delete_key(&format!(r"{root}\a"), RegistryView::Native)
        .unwrap());
    batch.commit().unwrap();
    assert_eq!(
        store.keys_under(root, RegistryView::Native).unwrap().len(),
        2
    );
    // Removing the entity removes its keys in both views.
    let mut batch = store.batch().unwrap();
    assert_eq!(batch.delete_entity("tree").unwrap(), 7);
    batch.commit().unwrap();
    assert_eq!(store.key_count("tree").unwrap(), 0);
}

#[test]
fn a_key_baseline_rolled_back_leaves_the_old_one_and_no_record() {
    let (_dir, path, store) = temp_store();
    let mut batch = store.batch().unwrap();
    batch
        .put_key(
            RUN,
            RegistryView::Native,
            "run-keys",
            &snapshot("Old", b"1"),
        )
        .unwrap();
    batch.commit().unwrap();
    let mut batch = store.batch().unwrap();
    batch
        .put_key(
            RUN,
            RegistryView::Native,
            "run-keys",
            &snapshot("New", b"2"),
        )
        .unwrap();
    let mut record = fim_model::samples::registry_record();
    batch.append(&mut record).unwrap();
    drop(batch);
    let kept = store.key_baseline(RUN, RegistryView::Native).unwrap();
    assert_eq!(
        kept.map(|baseline| baseline.snapshot),
        Some(snapshot("Old", b"1"))
    );
    let records: i64 = raw(&path)
        .query_row("SELECT count(*) FROM journal", [], |row| row.get(0))
        .unwrap();
    assert_eq!(records, 0);
}

#[test]
fn a_damaged_key_baseline_is_refused_as_corrupt_naming_the_key() {
    let (_dir, path, store) = temp_store();
    let mut batch = store.batch().unwrap();
    batch
        .put_key(RUN, RegistryView::Native, "run-keys", &snapshot("v", b"1"))
        .unwrap();
    batch.commit().unwrap();
    raw(&path)
        .execute(
            "UPDATE registry_baseline SET snapshot = '{\"values\": 7}'",
            [],
        )
        .unwrap();
    let error = store
        .key_baseline(RUN, RegistryView::Native)
        .expect_err("refused");
    assert!(error.to_string().contains(RUN), "{error}");
}
