//! A full disk is reported as such, loses nothing committed, and writes work again once space
//! is freed. Needs root (it mounts a 512 KiB tmpfs) and fails loudly without it: CI runs as root.
use std::{
    ffi::CString,
    io::Write,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use super::{record, state};
use crate::{change::ChangeCategory, state::FileState, store::Store};

/// A tmpfs mounted for the test, detached on drop (even when an assertion fails).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().ok()?;
        let target = CString::new(dir.path().as_os_str().as_bytes()).ok()?;
        let options = CString::new(format!("size={size},mode=0700")).ok()?;
        // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
        let status = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                options.as_ptr().cast(),
            )
        };
        if status != 0 {
            panic!(
                "the disk-full test cannot mount a tmpfs (it needs root): {}",
                std::io::Error::last_os_error()
            );
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Ok(target) = CString::new(self.dir.path().as_os_str().as_bytes()) {
            // SAFETY: a valid NUL-terminated path.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Writes zeros to `path` until the file system is full.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0u8; 4096];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(error) => {
                assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "{error}");
                break;
            }
        }
    }
}

fn with_content(n: u64) -> FileState {
    FileState {
        content: Some(vec![b'x'; 4096]),
        ..state(n)
    }
}

/// One batch of `files` content rows and their records.
fn write_batch(store: &Store, first: u64, files: u64) -> crate::store::Result<()> {
    let mut batch = store.batch()?;
    for n in first..first + files {
        let path = format!("/etc/file{n}");
        batch.put(Path::new(&path), "etc", &with_content(n))?;
        batch.append(&mut record(&path, ChangeCategory::Added, n as i64))?;
    }
    batch.commit()
}

#[test]
fn disk_full_is_recognised_and_recoverable() {
    let Some(tmpfs) = Tmpfs::mount("512k") else {
        return;
    };
    let db = tmpfs.path().join("fim.db");
    let store = Store::open(&db).unwrap();
    write_batch(&store, 0, 10).unwrap();
    store.checkpoint().unwrap();

    let filler = tmpfs.path().join("filler");
    fill(&filler);
    // ~400 KiB of new rows cannot fit any more.
    let error = write_batch(&store, 10, 100).unwrap_err();
    assert!(error.is_disk_full(), "{error:?}");
    assert!(error.to_string().contains("fim.db"), "{error}");
    // Nothing of the failed batch is visible, nothing committed is lost.
    assert_eq!(store.count().unwrap(), 10);
    assert_eq!(store.last_sequence().unwrap(), 10);

    std::fs::remove_file(&filler).unwrap();
    write_batch(&store, 10, 20).unwrap();
    assert_eq!(store.count().unwrap(), 30);
    assert_eq!(store.last_sequence().unwrap(), 30);
    assert!(store.verify().unwrap().is_ok());
    assert_eq!(store.integrity_check().unwrap(), Vec::<String>::new());
    drop(store);
    let reopened = Store::open(&db).unwrap();
    assert_eq!(reopened.count().unwrap(), 30);
    assert!(reopened.verify().unwrap().is_ok());
    drop(reopened);
    drop(tmpfs);
}

#[test]
fn other_errors_are_not_disk_full() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_db = dir.path().join("garbage.db");
    std::fs::write(&not_a_db, vec![0x55u8; 8192]).unwrap();
    let error = Store::open(&not_a_db).unwrap_err();
    assert!(!error.is_disk_full(), "{error:?}");
    assert_eq!(error.path(), not_a_db);
}
