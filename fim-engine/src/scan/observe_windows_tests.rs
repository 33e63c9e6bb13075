//! The Windows file observer and the walk through it, on real files (under Wine in this
//! project's CI: `cargo xtask wine-test`).
use std::{collections::BTreeMap, fs, path::PathBuf, thread};

use super::{
    observe, quick_metadata, scan, KnownMap, ObserveOptions, QuickMeta, ScanItem, ScanMode,
    ScanOptions, ScanOutcome, ScanTarget,
};
use crate::{
    policy::{CompiledEntity, EntityKind},
    state::FileType,
};

fn entity(root: &std::path::Path) -> CompiledEntity {
    CompiledEntity {
        name: "test".to_string(),
        kind: EntityKind::WindowsFile,
        root: root.to_path_buf(),
        recursive: true,
        name_glob: None,
        ignore: globset::GlobSet::empty(),
        keep_content: false,
        excluded: Vec::new(),
    }
}

fn scan_all(target: ScanTarget<'_>, mode: ScanMode) -> BTreeMap<PathBuf, ScanOutcome> {
    let options = ScanOptions {
        mode,
        workers: 2,
        idle_io: false,
        ..ScanOptions::default()
    };
    let (sender, receiver) = crossbeam_channel::bounded(16);
    let collector = thread::spawn(move || receiver.iter().flatten().collect::<Vec<ScanItem>>());
    scan(&[target], &options, &sender).expect("scan");
    drop(sender);
    let items = collector.join().expect("collector");
    items
        .into_iter()
        .map(|item| (item.path, item.outcome))
        .collect()
}

#[test]
fn a_regular_file_is_hashed_with_its_identity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.txt");
    fs::write(&path, b"hello windows").unwrap();
    let options = ObserveOptions {
        keep_content: Some(5),
        ..ObserveOptions::default()
    };
    let state = observe(&path, &options).unwrap().expect("exists");
    assert_eq!(state.file_type, FileType::Regular);
    assert_eq!(state.size, 13);
    assert_eq!(state.hash, Some(*blake3::hash(b"hello windows").as_bytes()));
    assert_eq!(state.content.as_deref(), Some(&b"hello"[..]));
    assert!(state.content_truncated);
    assert_eq!(state.nlink, 1);
    assert_ne!(state.ino, 0, "the file index is the inode");
    assert!(state.mtime_ns > 0 && state.ctime_ns > 0);
    assert_eq!(state.error, None);
    // The quick metadata of the path now is the observed one, identity included.
    assert_eq!(quick_metadata(&path).unwrap(), QuickMeta::from(&state));
    // Another file has another identity.
    let other = dir.path().join("b.txt");
    fs::write(&other, b"hello windows").unwrap();
    let other = observe(&other, &ObserveOptions::default())
        .unwrap()
        .unwrap();
    assert_ne!((other.dev, other.ino), (state.dev, state.ino));
}

#[test]
fn directories_and_missing_paths() {
    let dir = tempfile::tempdir().unwrap();
    let state = observe(dir.path(), &ObserveOptions::default())
        .unwrap()
        .expect("exists");
    assert_eq!(state.file_type, FileType::Directory);
    assert_eq!(state.hash, None);
    let missing = dir.path().join("nope");
    assert_eq!(observe(&missing, &ObserveOptions::default()).unwrap(), None);
    assert_eq!(
        observe(&missing.join("deeper"), &ObserveOptions::default()).unwrap(),
        None
    );
    let file = dir.path().join("file");
    fs::write(&file, b"x").unwrap();
    // A file is no directory: nothing below it exists.
    assert_eq!(
        observe(&file.join("child"), &ObserveOptions::default()).unwrap(),
        None
    );
}

#[test]
fn large_files_are_left_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big");
    fs::write(&path, vec![7u8; 4096]).unwrap();
    let options = ObserveOptions {
        hash_below: Some(4096),
        ..ObserveOptions::default()
    };
    let state = observe(&path, &options).unwrap().unwrap();
    assert_eq!((state.size, state.hash), (4096, None));
}

#[test]
fn a_sweep_after_a_full_scan_finds_everything_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("sub")).unwrap();
    fs::write(dir.path().join("sub").join("one"), b"1").unwrap();
    fs::write(dir.path().join("two"), b"22").unwrap();
    let entity = entity(dir.path());
    let full = scan_all(ScanTarget::new(&entity), ScanMode::Full);
    assert_eq!(full.len(), 4, "{full:?}");
    let mut known = KnownMap::new();
    for (path, outcome) in &full {
        let ScanOutcome::State(state) = outcome else {
            panic!("{path:?}: {outcome:?}");
        };
        known.insert(path, QuickMeta::from(&**state));
    }
    let swept = scan_all(ScanTarget::with_known(&entity, &known), ScanMode::Sweep);
    assert!(
        swept
            .values()
            .all(|outcome| *outcome == ScanOutcome::Unchanged),
        "{swept:?}"
    );
    // A rewrite is seen.
    fs::write(dir.path().join("two"), b"333").unwrap();
    let swept = scan_all(ScanTarget::with_known(&entity, &known), ScanMode::Sweep);
    let two = &swept[&dir.path().join("two")];
    assert!(
        matches!(two, ScanOutcome::State(state) if state.size == 3),
        "{two:?}"
    );
    assert_eq!(known.unseen().count(), 0);
}

#[test]
fn owner_group_and_dacl_are_read_and_a_dacl_change_is_an_acls_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secured.txt");
    fs::write(&path, b"x").unwrap();
    let before = observe(&path, &ObserveOptions::default())
        .unwrap()
        .expect("exists");
    let sddl = before.acl.clone().expect("the security descriptor is read");
    let parts = crate::sddl::split(&sddl).expect("SDDL");
    let me = crate::security_windows::own_sid().unwrap();
    assert_eq!(parts.owner, Some(me.as_str()), "{sddl}");
    assert!(parts.dacl.is_some(), "{sddl}");
    // The record names the owner as an account and shows the DACL.
    let columns = crate::change::file_columns(&path, None, Some(&before));
    assert_eq!(
        columns.owner,
        Some(crate::users::sid_name(&me)),
        "{columns:?}"
    );
    assert!(
        columns
            .acls
            .as_deref()
            .is_some_and(|acl| acl.starts_with("D:")),
        "{columns:?}"
    );
    // Everyone given full control (under Wine: the file's mode gains o+rwx).
    crate::trust_windows::tests::set_dacl(
        &path,
        &crate::trust_windows::tests::everyone_may_write(),
    );
    let after = observe(&path, &ObserveOptions::default())
        .unwrap()
        .expect("exists");
    assert_eq!(
        crate::change::fields_changed(&before, &after),
        vec!["Acls"],
        "{:?} -> {:?}",
        before.acl,
        after.acl
    );
    assert!(after.acl.unwrap().contains(";;;WD)"));
}
