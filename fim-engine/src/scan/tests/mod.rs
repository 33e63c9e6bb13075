//! Scanner tests on real files in temporary directories.
//!
//! Some need root (mounting a tmpfs, setting capabilities and security xattrs): they say so and
//! return early otherwise. `setfacl`/`setcap` (Debian packages `acl`, `libcap2-bin`) are used
//! when installed; the same kernel paths are also covered by writing the raw xattrs directly.
use std::{
    collections::BTreeMap,
    ffi::{CString, OsStr},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::Command,
    thread,
};

use globset::{Glob, GlobSetBuilder};

use super::{scan, ScanItem, ScanOptions, ScanOutcome, ScanSummary, ScanTarget};
use crate::policy::{CompiledEntity, EntityKind};

mod bench;
mod large_tests;
mod observe_tests;
mod walk_tests;

pub(super) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Fails loudly when not root: CI runs as root, so a silent skip would hide a lost test.
/// Returns false so call sites read `if skip_unless_root(..) { return }` and never return.
pub(super) fn skip_unless_root(test: &str) -> bool {
    assert!(is_root(), "{test} needs root (CI runs it as root)");
    false
}

/// Fails loudly when a tool the test needs is missing (`cargo xtask setup` installs it).
pub(super) fn tool_available(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().is_ok()
        || std::path::Path::new("/usr/sbin").join(tool).exists();
    assert!(
        found,
        "{tool} is missing: run `cargo xtask setup` (packages acl, libcap2-bin)"
    );
    true
}

pub(super) fn run(command: &mut Command) {
    let output = command.output().expect("spawn");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

pub(super) fn mkfifo(path: &Path) {
    let name = CString::new(path.as_os_str().as_bytes()).expect("no NUL");
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let result = unsafe { libc::mkfifo(name.as_ptr(), 0o644) };
    assert_eq!(result, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

pub(super) fn raw_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

pub(super) fn entity(
    root: &Path,
    recursive: bool,
    glob: Option<&str>,
    ignore: &[&str],
) -> CompiledEntity {
    let mut set = GlobSetBuilder::new();
    for pattern in ignore {
        set.add(Glob::new(pattern).expect("glob"));
    }
    CompiledEntity {
        name: "test".to_string(),
        kind: EntityKind::LinuxFile,
        root: root.to_path_buf(),
        recursive,
        name_glob: glob.map(|glob| Glob::new(glob).expect("glob").compile_matcher()),
        ignore: set.build().expect("globset"),
        keep_content: false,
        excluded: Vec::new(),
    }
}

/// Runs a scan with a small bounded channel drained on another thread, as the daemon does.
pub(super) fn scan_all(
    targets: &[ScanTarget<'_>],
    options: &ScanOptions,
) -> (Vec<ScanItem>, ScanSummary) {
    let (sender, receiver) = crossbeam_channel::bounded(16);
    let collector = thread::spawn(move || receiver.iter().flatten().collect::<Vec<_>>());
    let summary = scan(targets, options, &sender).expect("scan");
    drop(sender);
    (collector.join().expect("collector"), summary)
}

/// Items by path (for one target), asserting each path came exactly once.
pub(super) fn by_path(items: Vec<ScanItem>) -> BTreeMap<PathBuf, ScanOutcome> {
    let mut out = BTreeMap::new();
    for item in items {
        assert_eq!(item.entity, 0);
        let path = item.path.clone();
        assert!(
            out.insert(item.path, item.outcome).is_none(),
            "{path:?} reported twice"
        );
    }
    out
}

pub(super) fn options() -> ScanOptions {
    ScanOptions {
        workers: 2,
        idle_io: false,
        ..ScanOptions::default()
    }
}
