//! Baseline rows: round trips, lookups, prefix listing, entities, rollback.
use std::path::Path;

use super::{raw, state, temp_store};
use crate::{
    state::{FileState, FileType},
    store::{BaselineEntry, QuickMeta},
};

fn put_all(store: &crate::store::Store, rows: &[(&str, &str)]) {
    let mut batch = store.batch().unwrap();
    for (n, (path, entity)) in rows.iter().enumerate() {
        batch
            .put(Path::new(path), entity, &state(n as u64))
            .unwrap();
    }
    batch.commit().unwrap();
}

#[test]
fn every_field_round_trips_with_a_non_utf8_path() {
    let (_dir, path, store) = temp_store();
    // On Windows the byte decodes to U+FFFD (names are UTF-16): still an odd name.
    let file = crate::path_text::path_from_bytes(b"/etc/odd\xff\nname");
    let full = FileState {
        file_type: FileType::Symlink,
        size: u64::MAX,
        mode: 0o4755,
        uid: 4_000_000_000,
        gid: 65534,
        mtime_ns: -1_500_000_000,
        ctime_ns: i64::MAX,
        ino: u64::MAX - 1,
        dev: 1 << 63,
        nlink: 3,
        symlink_target: Some(b"../target\x80".to_vec()),
        hash: Some([0xab; 32]),
        acl: Some("user::rw-,user:1000:r--,group::r--,mask::r--,other::---".into()),
        selinux: Some(b"system_u:object_r:etc_t:s0\0".to_vec()),
        capability: Some(vec![1, 0, 0, 2, 0x20, 0, 0, 0]),
        attributes: 0x20,
        content: Some(b"root:x:0:0\n\0binary".to_vec()),
        content_truncated: true,
        error: Some("Permission denied (os error 13)".into()),
        unstable: true,
    };
    let mut batch = store.batch().unwrap();
    batch.put(&file, "etc-content", &full).unwrap();
    batch.commit().unwrap();
    let expected = BaselineEntry {
        entity: "etc-content".into(),
        state: full.clone(),
    };
    assert_eq!(store.get(&file).unwrap(), Some(expected.clone()));
    assert_eq!(store.get(Path::new("/etc/odd")).unwrap(), None);
    // The key is the raw bytes.
    let key: Vec<u8> = raw(&path)
        .query_row("SELECT path FROM baseline", [], |row| row.get(0))
        .unwrap();
    assert_eq!(key, crate::path_text::path_bytes(&file));
    #[cfg(unix)]
    assert_eq!(key, b"/etc/odd\xff\nname");
    // And it survives a reopen.
    drop(store);
    let store = crate::store::Store::open(&path).unwrap();
    assert_eq!(store.get(&file).unwrap(), Some(expected));
    // All-None optional fields round-trip too.
    let plain = state(9);
    let mut batch = store.batch().unwrap();
    batch.put(&file, "etc", &plain).unwrap();
    batch.commit().unwrap();
    let entry = store.get(&file).unwrap().unwrap();
    assert_eq!((entry.entity.as_str(), entry.state), ("etc", plain));
    assert_eq!(store.count().unwrap(), 1);
}

#[test]
fn put_replaces_and_delete_removes() {
    let (_dir, _path, store) = temp_store();
    put_all(&store, &[("/etc/a", "etc"), ("/etc/b", "etc")]);
    let mut batch = store.batch().unwrap();
    batch.put(Path::new("/etc/a"), "etc", &state(50)).unwrap();
    assert!(batch.delete(Path::new("/etc/b")).unwrap());
    assert!(!batch.delete(Path::new("/etc/nothing")).unwrap());
    batch.commit().unwrap();
    assert_eq!(store.count().unwrap(), 1);
    assert_eq!(
        store.get(Path::new("/etc/a")).unwrap().unwrap().state,
        state(50)
    );
    assert_eq!(store.get(Path::new("/etc/b")).unwrap(), None);
}

#[test]
fn quick_map_loads_one_entity() {
    let (_dir, _path, store) = temp_store();
    put_all(
        &store,
        &[("/etc/a", "etc"), ("/usr/bin/ls", "bin"), ("/etc/b", "etc")],
    );
    let map = store.quick_map("etc").unwrap();
    assert_eq!(map.len(), 2);
    assert_eq!(
        map.get(Path::new("/etc/a")),
        Some(&QuickMeta::from(&state(0)))
    );
    assert_eq!(
        map.get(Path::new("/etc/b")),
        Some(&QuickMeta::from(&state(2)))
    );
    let bin = store.quick_map("bin").unwrap();
    assert_eq!(bin.paths().collect::<Vec<_>>(), [Path::new("/usr/bin/ls")]);
    assert!(store.quick_map("nobody").unwrap().is_empty());
}

#[test]
fn paths_under_respects_components() {
    let (_dir, _path, store) = temp_store();
    put_all(
        &store,
        &[
            ("/etc/a", "etc"),
            ("/etc/a/x", "etc"),
            ("/etc/a/x/y", "etc"),
            ("/etc/a.conf", "etc"),
            ("/etc/a-b", "etc"),
            ("/etc/ab", "etc"),
            ("/etc/a0", "etc"),
            ("/etc/b", "etc"),
            ("/usr/bin/ls", "bin"),
        ],
    );
    let under = |prefix: &str| -> Vec<String> {
        store
            .paths_under(Path::new(prefix))
            .unwrap()
            .into_iter()
            .map(|path| path.display().to_string())
            .collect()
    };
    assert_eq!(under("/etc/a"), ["/etc/a", "/etc/a/x", "/etc/a/x/y"]);
    assert_eq!(under("/etc/a/"), ["/etc/a", "/etc/a/x", "/etc/a/x/y"]);
    assert_eq!(under("/etc/a/x"), ["/etc/a/x", "/etc/a/x/y"]);
    assert_eq!(under("/etc/ab"), ["/etc/ab"]);
    assert_eq!(under("/etc/zzz"), Vec::<String>::new());
    assert_eq!(under("/usr").len(), 1);
    assert_eq!(under("/").len(), 9);
    assert_eq!(under("/etc").len(), 8);
}

#[test]
fn entities_and_delete_entity() {
    let (_dir, _path, store) = temp_store();
    put_all(
        &store,
        &[("/etc/a", "etc"), ("/usr/bin/ls", "bin"), ("/etc/b", "etc")],
    );
    assert_eq!(store.entities_in_baseline().unwrap(), ["bin", "etc"]);
    assert_eq!(store.delete_entity("etc").unwrap(), 2);
    assert_eq!(store.delete_entity("never-seen").unwrap(), 0);
    assert_eq!(store.entities_in_baseline().unwrap(), ["bin"]);
    assert_eq!(store.count().unwrap(), 1);
    // The name can come back later.
    put_all(&store, &[("/etc/c", "etc")]);
    assert_eq!(store.entities_in_baseline().unwrap(), ["bin", "etc"]);
    assert_eq!(
        store.get(Path::new("/etc/c")).unwrap().unwrap().entity,
        "etc"
    );
}

#[test]
fn a_dropped_batch_leaves_nothing() {
    let (_dir, path, store) = temp_store();
    put_all(&store, &[("/etc/kept", "etc")]);
    {
        let mut batch = store.batch().unwrap();
        batch
            .put(Path::new("/etc/new"), "fresh-entity", &state(1))
            .unwrap();
        batch.delete(Path::new("/etc/kept")).unwrap();
        let mut record = super::record("/etc/new", crate::change::ChangeCategory::Added, 0);
        assert_eq!(batch.append(&mut record).unwrap(), 1);
        // Inside the batch, reads see its writes.
        assert_eq!(store.count().unwrap(), 1);
        assert!(store.get(Path::new("/etc/new")).unwrap().is_some());
        // Dropped without commit.
    }
    assert_eq!(store.count().unwrap(), 1);
    assert!(store.get(Path::new("/etc/kept")).unwrap().is_some());
    assert_eq!(store.get(Path::new("/etc/new")).unwrap(), None);
    assert_eq!(store.last_sequence().unwrap(), 0);
    let conn = raw(&path);
    let journal: i64 = conn
        .query_row("SELECT count(*) FROM journal", [], |row| row.get(0))
        .unwrap();
    let entities: i64 = conn
        .query_row(
            "SELECT count(*) FROM entity WHERE name = 'fresh-entity'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!((journal, entities), (0, 0));
    // The rolled-back entity id was not cached: the same name works in the next batch.
    put_all(&store, &[("/etc/new", "fresh-entity")]);
    assert_eq!(
        store.get(Path::new("/etc/new")).unwrap().unwrap().entity,
        "fresh-entity"
    );
    assert!(store.verify().unwrap().is_ok());
}

#[test]
fn entity_digests_ignore_what_differs_per_machine_and_see_what_a_change_makes() {
    let make = |tweak: &dyn Fn(&mut FileState)| {
        let (dir, _path, store) = temp_store();
        let mut batch = store.batch().unwrap();
        for (n, file) in ["/etc/a", "/etc/b"].iter().enumerate() {
            let mut state = state(n as u64);
            tweak(&mut state);
            batch.put(Path::new(file), "etc", &state).unwrap();
        }
        batch.put(Path::new("/srv/x"), "srv", &state(9)).unwrap();
        batch.commit().unwrap();
        let digests = store.entity_digests().unwrap();
        drop(dir);
        digests
    };
    let here = make(&|_| {});
    assert_eq!(here.len(), 2);
    assert_eq!((here[0].entity.as_str(), here[0].objects), ("etc", 2));
    assert_eq!((here[1].entity.as_str(), here[1].objects), ("srv", 1));
    // Another machine: other inodes, devices and times, same tree.
    let there = make(&|state| {
        state.ino += 1000;
        state.dev += 7;
        state.mtime_ns += 5;
        state.ctime_ns += 5;
        state.nlink += 1;
    });
    assert_eq!(here, there);
    // A permission or content difference shows, in that entity only.
    let chmod = make(&|state| state.mode ^= 0o002);
    assert_ne!(chmod[0].digest, here[0].digest);
    assert_eq!(chmod[1], here[1]);
    let edited = make(&|state| state.hash = Some([0x5a; 32]));
    assert_ne!(edited[0].digest, here[0].digest);
}
