//! Opening, creating, migrating and refusing databases.

use super::{raw, state, temp_store};
use crate::store::{schema, Store, StoreError};

fn table_names(path: &std::path::Path) -> Vec<String> {
    let conn = raw(path);
    let mut statement = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap();
    statement
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn creates_the_schema_and_reopens() {
    let (_dir, path, store) = temp_store();
    assert_eq!(store.schema_version().unwrap(), schema::CURRENT_VERSION);
    assert_eq!(schema::CURRENT_VERSION, 2);
    assert_eq!(
        table_names(&path),
        [
            "baseline",
            "chain_head",
            "entity",
            "journal",
            "meta",
            "registry_baseline",
            "scan_run",
            "service_baseline"
        ]
    );
    let conn = raw(&path);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let application_id: i32 = conn
        .query_row("PRAGMA application_id", [], |row| row.get(0))
        .unwrap();
    assert_eq!(application_id, schema::APPLICATION_ID);
    let synchronous: i64 = store
        .conn
        .query_row("PRAGMA synchronous", [], |row| row.get(0))
        .unwrap();
    assert_eq!(synchronous, 2, "FULL");
    let foreign_keys: i64 = store
        .conn
        .query_row("PRAGMA foreign_keys", [], |row| row.get(0))
        .unwrap();
    assert_eq!(foreign_keys, 1);
    // Only the owner may read it: file-content entities keep contents here.
    // (Modes are Unix's; a Windows file keeps its directory's DACL.)
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let permissions = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(permissions & 0o777, 0o600);
    }

    let mut batch = store.batch().unwrap();
    batch.put("/etc/passwd".as_ref(), "etc", &state(1)).unwrap();
    batch.commit().unwrap();
    drop(store);
    let again = Store::open(&path).unwrap();
    assert_eq!(again.schema_version().unwrap(), schema::CURRENT_VERSION);
    assert_eq!(again.count().unwrap(), 1);
    assert_eq!(
        again.get("/etc/passwd".as_ref()).unwrap().unwrap().state,
        state(1)
    );
}

#[test]
fn migrates_an_empty_database_from_version_zero() {
    let dir = tempfile::tempdir().unwrap();
    // A zero-byte file, and an SQLite file that has a header but no tables.
    let zero = dir.path().join("zero.db");
    std::fs::write(&zero, b"").unwrap();
    let empty = dir.path().join("empty.db");
    {
        let conn = raw(&empty);
        conn.execute_batch("PRAGMA page_size = 4096; VACUUM;")
            .unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, 0);
    }
    for path in [zero, empty] {
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.schema_version().unwrap(),
            schema::CURRENT_VERSION,
            "{}",
            path.display()
        );
        assert_eq!(store.last_sequence().unwrap(), 0);
        assert!(store.verify().unwrap().is_ok());
    }
}

#[test]
fn a_migration_that_fails_half_way_leaves_the_old_database_as_it_was() {
    let (dir, path, store) = temp_store();
    let mut batch = store.batch().unwrap();
    batch.put("/etc/passwd".as_ref(), "etc", &state(1)).unwrap();
    batch.commit().unwrap();
    drop(store);
    // A next version whose second statement fails after the first changed the file.
    let failing = "CREATE TABLE added_by_v2 (x INTEGER); \
                   ALTER TABLE baseline ADD COLUMN v2 INTEGER; \
                   INSERT INTO no_such_table VALUES (1);";
    let conn = raw(&path);
    let steps: Vec<&str> = schema::MIGRATIONS
        .iter()
        .copied()
        .chain([failing])
        .collect();
    let error = schema::migrate_through(&conn, &steps).unwrap_err();
    assert!(error.to_string().contains("no_such_table"), "{error}");
    drop(conn);
    assert!(!table_names(&path).contains(&"added_by_v2".to_string()));
    let columns: Vec<String> = {
        let conn = raw(&path);
        let mut statement = conn
            .prepare("SELECT name FROM pragma_table_info('baseline')")
            .unwrap();
        let names = statement.query_map([], |row| row.get(0)).unwrap();
        names.collect::<Result<_, _>>().unwrap()
    };
    assert!(!columns.contains(&"v2".to_string()), "{columns:?}");
    let again = Store::open(&path).unwrap();
    assert_eq!(again.schema_version().unwrap(), schema::CURRENT_VERSION);
    assert_eq!(
        again.get("/etc/passwd".as_ref()).unwrap().unwrap().state,
        state(1)
    );
    drop(dir);
}

#[test]
fn creates_missing_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("var/lib/fim/fim.db");
    let store = Store::open(&path).unwrap();
    assert_eq!(store.count().unwrap(), 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }
    assert!(path.parent().unwrap().is_dir());
}

#[test]
fn refuses_a_newer_schema_naming_file_and_versions() {
    let (_dir, path, store) = temp_store();
    drop(store);
    raw(&path).pragma_update(None, "user_version", 7).unwrap();
    let error = Store::open(&path).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::TooNew {
                found: 7,
                supported: 2,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.starts_with(&path.display().to_string()),
        "{message}"
    );
    assert!(message.contains("schema version 7"), "{message}");
    assert!(message.contains("versions up to 2"), "{message}");
    assert!(!error.is_disk_full());
    let read_only = Store::open_read_only(&path).unwrap_err();
    assert!(
        matches!(read_only, StoreError::TooNew { found: 7, .. }),
        "{read_only:?}"
    );
    // Left as it was.
    let version: i64 = raw(&path)
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 7);
}

#[test]
fn refuses_a_foreign_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    raw(&path)
        .execute_batch("CREATE TABLE things (id INTEGER PRIMARY KEY)")
        .unwrap();
    let error = Store::open(&path).unwrap_err();
    assert!(matches!(error, StoreError::NotFim { .. }), "{error:?}");
    assert!(error.to_string().contains("`things`"), "{error}");
    let mode: String = raw(&path)
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "delete", "a refused file is not switched to WAL");
}

#[test]
fn read_only_reads_while_refusing_writes() {
    let (_dir, path, store) = temp_store();
    super::journal_of(&store, 3);
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(reader.last_sequence().unwrap(), 3);
    assert!(reader.verify().unwrap().is_ok());
    // The writer keeps going while the reader is open.
    super::journal_of(&store, 2);
    assert_eq!(reader.last_sequence().unwrap(), 5);
    let error = reader.batch().map(|_| ()).unwrap_err();
    assert!(matches!(error, StoreError::ReadOnly { .. }), "{error:?}");
    assert!(!error.is_disk_full());
    assert!(matches!(
        reader.set_meta("k", "v"),
        Err(StoreError::ReadOnly { .. })
    ));
    // Even past the store's own check, SQLite refuses.
    let sqlite = reader.conn.execute("DELETE FROM journal", []).unwrap_err();
    assert_eq!(
        sqlite.sqlite_error_code(),
        Some(rusqlite::ErrorCode::ReadOnly)
    );
    assert_eq!(reader.last_sequence().unwrap(), 5);
}

#[test]
fn read_only_opens_after_the_writer_closed() {
    let (_dir, path, store) = temp_store();
    super::journal_of(&store, 2);
    drop(store);
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(reader.last_sequence().unwrap(), 2);
    assert_eq!(reader.verify().unwrap().checked, 2);
}

#[test]
fn read_only_needs_an_existing_migrated_database() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.db");
    let error = Store::open_read_only(&missing).unwrap_err();
    assert!(matches!(error, StoreError::Io { .. }), "{error:?}");
    assert_eq!(error.path(), missing);
    assert!(!missing.exists());

    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let error = Store::open_read_only(&empty).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::NotMigrated {
                found: 0,
                supported: 2,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn read_only_reads_a_version_1_database_the_daemon_has_not_migrated_yet() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    schema::migrate_through(&raw(&path), &schema::MIGRATIONS[..1]).unwrap();
    let store = Store::open_read_only(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), 1);
    assert_eq!(store.last_sequence().unwrap(), 0);
    assert!(store.verify().unwrap().is_ok());
    // Left as it was: reading never migrates.
    drop(store);
    let version: i64 = raw(&path)
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 1);
}

#[test]
fn a_second_batch_on_one_store_is_an_error_not_a_panic() {
    let (_dir, _path, store) = temp_store();
    let first = store.batch().unwrap();
    assert!(store.batch().is_err());
    drop(first);
    assert!(store.batch().is_ok());
}
