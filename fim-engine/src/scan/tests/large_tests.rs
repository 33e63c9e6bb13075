//! Sparse files (hashed around their holes, to the standard BLAKE3), cancellation mid-file,
//! and paths longer than PATH_MAX (observed and walked through directory descriptors).
use std::{
    ffi::{CString, OsStr},
    fs::{self, OpenOptions},
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::{ffi::OsStrExt, fs::FileExt},
    },
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use super::{by_path, entity, options, scan_all};
use crate::{
    scan::{observe, symlink_metadata, ObserveOptions, ScanError, ScanOutcome, ScanTarget},
    state::FileType,
};

/// Data written at an offset.
type Extent<'a> = (u64, &'a [u8]);

/// A file of `size` bytes that holds `data` at each given offset and holes elsewhere.
fn sparse(path: &Path, size: u64, data: &[Extent<'_>]) {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .expect("create");
    file.set_len(size).expect("truncate");
    for (offset, bytes) in data {
        file.write_all_at(bytes, *offset).expect("write");
    }
}

/// The reference digest: every byte read, holes as the zeros read(2) returns.
fn reference(path: &Path) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(fs::File::open(path).expect("open"))
        .expect("read");
    *hasher.finalize().as_bytes()
}

#[test]
fn sparse_files_hash_to_the_standard_blake3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: [(&str, u64, Vec<Extent<'_>>); 4] = [
        ("all-hole", 64 << 20, vec![]),
        ("data-at-start", 40 << 20, vec![(0, b"head")]),
        (
            "data-in-middle",
            40 << 20,
            vec![(17 << 20, b"middle"), (33 << 20, b"x")],
        ),
        (
            "data-at-end",
            (40 << 20) + 5,
            vec![((40 << 20) + 1, b"tail")],
        ),
    ];
    for (name, size, data) in cases {
        let path = dir.path().join(name);
        sparse(&path, size, &data);
        let meta = fs::metadata(&path).expect("stat");
        assert!(
            std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < size,
            "{name} is not sparse on this filesystem"
        );
        let state = observe(&path, &ObserveOptions::default())
            .expect("observe")
            .expect("exists");
        assert_eq!(state.size, size, "{name}");
        assert_eq!(state.hash, Some(reference(&path)), "{name}");
    }
}

#[test]
fn sparse_content_is_kept_with_its_zeros() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sparse.conf");
    sparse(&path, 3 << 20, &[(1 << 20, b"key = value\n")]);
    let state = observe(
        &path,
        &ObserveOptions {
            keep_content: Some((1 << 20) + 4),
            ..ObserveOptions::default()
        },
    )
    .expect("observe")
    .expect("exists");
    let mut expected = vec![0; 1 << 20];
    expected.extend_from_slice(b"key ");
    assert_eq!(state.content, Some(expected));
    assert!(state.content_truncated);
}

#[test]
fn cancel_stops_a_hash_and_progress_counts_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("big");
    sparse(&path, 8 << 30, &[]);
    let cancel = AtomicBool::new(false);
    let progress = AtomicU64::new(0);
    let observed = std::thread::scope(|scope| {
        let observer = scope.spawn(|| {
            observe(
                &path,
                &ObserveOptions {
                    cancel: Some(&cancel),
                    progress: Some(&progress),
                    ..ObserveOptions::default()
                },
            )
        });
        // Progress moves, then the cancel lands long before 8 GiB could be hashed.
        while progress.load(Ordering::Relaxed) == 0 && !observer.is_finished() {
            std::thread::yield_now();
        }
        cancel.store(true, Ordering::Relaxed);
        observer.join().expect("observer")
    });
    assert!(
        matches!(observed, Err(ScanError::Cancelled)),
        "{observed:?}"
    );
    let done = progress.load(Ordering::Relaxed);
    assert!(done > 0 && done < 8 << 30, "{done}");
}

fn open_dir(directory: Option<&OwnedFd>, name: &OsStr) -> OwnedFd {
    let name = CString::new(name.as_bytes()).expect("no NUL");
    let base = directory.map_or(libc::AT_FDCWD, AsRawFd::as_raw_fd);
    // SAFETY: a NUL-terminated name and our own descriptor.
    let fd = unsafe { libc::openat(base, name.as_ptr(), libc::O_PATH | libc::O_DIRECTORY) };
    assert!(fd >= 0, "openat: {}", io::Error::last_os_error());
    // SAFETY: a fresh descriptor.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// `levels` nested directories named `name` below `base`, made with mkdirat (no path limit),
/// and a file `leaf` with `content` at the bottom; returns the file's path.
fn deep_file(base: &Path, name: &str, levels: usize, content: &[u8]) -> PathBuf {
    let mut fd = open_dir(None, base.as_os_str());
    let cname = CString::new(name).expect("no NUL");
    let mut path = base.to_path_buf();
    for _ in 0..levels {
        // SAFETY: our descriptor and a NUL-terminated name.
        let made = unsafe { libc::mkdirat(fd.as_raw_fd(), cname.as_ptr(), 0o755) };
        assert_eq!(made, 0, "mkdirat: {}", io::Error::last_os_error());
        fd = open_dir(Some(&fd), OsStr::new(name));
        path.push(name);
    }
    let leaf = CString::new("leaf").expect("no NUL");
    // SAFETY: our descriptor and a NUL-terminated name.
    let raw = unsafe {
        libc::openat(
            fd.as_raw_fd(),
            leaf.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
            0o644,
        )
    };
    assert!(raw >= 0, "create leaf: {}", io::Error::last_os_error());
    // SAFETY: a fresh descriptor.
    let file = fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    file.write_all_at(content, 0).expect("write leaf");
    path.join("leaf")
}

#[test]
fn paths_longer_than_path_max_are_observed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let leaf = deep_file(dir.path(), &"n".repeat(250), 20, b"deep secret\n");
    assert!(leaf.as_os_str().len() > 5000);
    let error = fs::symlink_metadata(&leaf).expect_err("too long for a plain lstat");
    assert_eq!(error.raw_os_error(), Some(libc::ENAMETOOLONG));
    let state = observe(&leaf, &ObserveOptions::default())
        .expect("observe")
        .expect("exists");
    assert_eq!(state.file_type, FileType::Regular);
    assert_eq!(state.size, 12);
    assert_eq!(state.hash, Some(*blake3::hash(b"deep secret\n").as_bytes()));
    assert!(symlink_metadata(leaf.parent().expect("parent"))
        .expect("lstat")
        .is_dir());
    let missing = leaf.with_file_name("missing");
    assert_eq!(
        observe(&missing, &ObserveOptions::default()).expect("observe"),
        None
    );
}

#[test]
fn the_walk_reaches_below_path_max() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    fs::create_dir(&root).expect("mkdir");
    let leaf = deep_file(&root, &"m".repeat(200), 30, b"at the bottom\n");
    let target = entity(&root, true, None, &[]);
    let (items, summary) = scan_all(&[ScanTarget::new(&target)], &options());
    assert_eq!(summary.errors, 0, "{items:?}");
    let items = by_path(items);
    // The root, 30 directories and the leaf.
    assert_eq!(items.len(), 32);
    match items.get(&leaf) {
        Some(ScanOutcome::State(state)) => {
            assert_eq!(
                state.hash,
                Some(*blake3::hash(b"at the bottom\n").as_bytes())
            )
        }
        other => panic!("leaf: {other:?}"),
    }
    assert!(items.keys().all(|path| !path.starts_with("/proc")));
}
