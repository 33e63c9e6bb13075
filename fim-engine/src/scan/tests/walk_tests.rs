//! `scan`: which paths a walk reports, sweeps, filesystems, cancellation, odd trees.
use std::{
    collections::{BTreeMap, HashMap},
    fs::{self, File},
    os::unix::fs::{symlink, MetadataExt},
    path::{Path, PathBuf},
    process::Command,
    sync::{atomic::AtomicBool, Arc},
    thread,
    time::Duration,
};

use super::{by_path, entity, mkfifo, options, raw_path, run, scan_all, skip_unless_root};
use crate::{
    policy::EntityKind,
    scan::{scan, KnownMap, QuickMeta, ScanMode, ScanOptions, ScanOutcome, ScanTarget},
    state::{FileState, FileType},
};

/// root/{a.txt, x.conf, sub/{b.conf, deep/c.txt}, link -> a.txt, dangling, fifo,
/// bad\xffname, new\nline}
fn make_tree(root: &Path) -> BTreeMap<PathBuf, &'static [u8]> {
    fs::create_dir_all(root.join("sub/deep")).expect("mkdir");
    let files: [(&[u8], &'static [u8]); 6] = [
        (b"a.txt", b"alpha"),
        (b"x.conf", b"x = 1\n"),
        (b"sub/b.conf", b"beta"),
        (b"sub/deep/c.txt", b"gamma"),
        (b"bad\xffname", b"not utf-8"),
        (b"new\nline", b"newline"),
    ];
    let mut contents = BTreeMap::new();
    for (name, content) in files {
        let path = root.join(raw_path(name));
        fs::write(&path, content).expect("write");
        contents.insert(path, content);
    }
    symlink("a.txt", root.join("link")).expect("symlink");
    symlink("/nowhere", root.join("dangling")).expect("symlink");
    mkfifo(&root.join("fifo"));
    contents
}

fn state(outcome: &ScanOutcome) -> &FileState {
    match outcome {
        ScanOutcome::State(state) => state,
        other => panic!("expected a state, got {other:?}"),
    }
}

fn names(root: &Path, items: &BTreeMap<PathBuf, ScanOutcome>) -> Vec<String> {
    items
        .keys()
        .map(|path| {
            let relative = path.strip_prefix(root).expect("below root");
            crate::path_text::display_path(relative)
        })
        .collect()
}

#[test]
fn full_scan_reports_every_path_once_with_exact_states() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let contents = make_tree(&root);
    let target = entity(&root, true, None, &[]);
    let (items, summary) = scan_all(&[ScanTarget::new(&target)], &options());
    let items = by_path(items);
    assert_eq!(
        names(&root, &items),
        [
            "",
            "a.txt",
            "bad\\xffname",
            "dangling",
            "fifo",
            "link",
            "new\\x0aline",
            "sub",
            "sub/b.conf",
            "sub/deep",
            "sub/deep/c.txt",
            "x.conf"
        ]
    );
    for (path, content) in &contents {
        let state = state(&items[path]);
        assert_eq!(state.file_type, FileType::Regular);
        assert_eq!(
            state.hash,
            Some(*blake3::hash(content).as_bytes()),
            "{path:?}"
        );
        assert_eq!(state.size, content.len() as u64);
    }
    let link = state(&items[&root.join("link")]);
    assert_eq!(
        (link.file_type, link.symlink_target.as_deref()),
        (FileType::Symlink, Some(&b"a.txt"[..]))
    );
    let fifo = state(&items[&root.join("fifo")]);
    assert_eq!((fifo.file_type, fifo.hash), (FileType::Fifo, None));
    assert_eq!(state(&items[&root]).file_type, FileType::Directory);
    assert_eq!(
        state(&items[&root]).ino,
        fs::metadata(&root).expect("stat").ino()
    );
    assert_eq!(summary.files, 9);
    assert_eq!(summary.directories, 3);
    assert_eq!(
        (summary.errors, summary.unstable, summary.unchanged),
        (0, 0, 0)
    );
    let bytes: usize = contents.values().map(|content| content.len()).sum();
    assert_eq!(summary.bytes_hashed, bytes as u64);
    assert!(!summary.cancelled);
}

#[test]
fn non_recursive_entity_is_root_and_children() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    make_tree(&root);
    let target = entity(&root, false, None, &[]);
    let (items, _) = scan_all(&[ScanTarget::new(&target)], &options());
    assert_eq!(
        names(&root, &by_path(items)),
        [
            "",
            "a.txt",
            "bad\\xffname",
            "dangling",
            "fifo",
            "link",
            "new\\x0aline",
            "sub",
            "x.conf"
        ]
    );
}

#[test]
fn name_glob_and_ignore_are_honoured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    make_tree(&root);
    let flat = entity(&root, false, Some("*.conf"), &[]);
    let (items, _) = scan_all(&[ScanTarget::new(&flat)], &options());
    assert_eq!(names(&root, &by_path(items)), ["x.conf"]);

    let deep = entity(&root, true, Some("*.conf"), &[]);
    let (items, summary) = scan_all(&[ScanTarget::new(&deep)], &options());
    assert_eq!(names(&root, &by_path(items)), ["sub/b.conf", "x.conf"]);
    assert_eq!((summary.files, summary.directories), (2, 0));

    let ignoring = entity(&root, true, None, &["*.txt", "*/sub/deep", "fifo"]);
    let (items, _) = scan_all(&[ScanTarget::new(&ignoring)], &options());
    assert_eq!(
        names(&root, &by_path(items)),
        [
            "",
            "bad\\xffname",
            "dangling",
            "link",
            "new\\x0aline",
            "sub",
            "sub/b.conf",
            "x.conf"
        ]
    );
}

#[test]
fn single_file_and_missing_roots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    make_tree(&root);
    let file = entity(&root.join("a.txt"), false, None, &[]);
    let missing = entity(&dir.path().join("absent/dir"), true, None, &[]);
    // A root that is a symlink to a directory is the link, not the directory.
    symlink(&root, dir.path().join("root-link")).expect("symlink");
    let link = entity(&dir.path().join("root-link"), true, None, &[]);
    let (items, summary) = scan_all(
        &[
            ScanTarget::new(&file),
            ScanTarget::new(&missing),
            ScanTarget::new(&link),
        ],
        &options(),
    );
    let mut items: Vec<_> = items
        .into_iter()
        .map(|item| (item.entity, item.path, item.outcome))
        .collect();
    items.sort_by_key(|item| item.0);
    assert_eq!(items.len(), 3);
    assert_eq!(items[2].1, dir.path().join("root-link"));
    let link_state = state(&items[2].2);
    assert_eq!(link_state.file_type, FileType::Symlink);
    assert_eq!(
        link_state.symlink_target.as_deref(),
        Some(root.as_os_str().as_encoded_bytes())
    );
    assert_eq!((items[0].0, &items[0].1), (0, &root.join("a.txt")));
    assert_eq!(
        state(&items[0].2).hash,
        Some(*blake3::hash(b"alpha").as_bytes())
    );
    assert_eq!(
        items[1],
        (1, dir.path().join("absent/dir"), ScanOutcome::Missing)
    );
    assert_eq!(
        (summary.files, summary.missing_roots, summary.errors),
        (2, 1, 0)
    );
}

#[test]
fn file_content_entities_keep_content() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    make_tree(&root);
    let mut target = entity(&root, false, Some("*.conf"), &[]);
    target.kind = EntityKind::FileContent;
    target.keep_content = true;
    let scan_options = ScanOptions {
        content_limit: 3,
        ..options()
    };
    let (items, _) = scan_all(&[ScanTarget::new(&target)], &scan_options);
    let items = by_path(items);
    let conf = state(&items[&root.join("x.conf")]);
    assert_eq!(
        (conf.content.as_deref(), conf.content_truncated),
        (Some(&b"x ="[..]), true)
    );
}

/// Mounts a tmpfs at `path` for the guard's lifetime.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path) -> Self {
        fs::create_dir_all(path).expect("mkdir");
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "fim-test"])
            .arg(path));
        Tmpfs(path.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn other_filesystems_are_not_entered_unless_asked() {
    if skip_unless_root("other_filesystems_are_not_entered_unless_asked") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("plain")).expect("mkdir");
    fs::write(root.join("plain/file"), b"on disk").expect("write");
    let mount = Tmpfs::mount(&root.join("mnt"));
    fs::create_dir(root.join("mnt/inner")).expect("mkdir");
    fs::write(root.join("mnt/inner/file"), b"in memory").expect("write");
    let target = entity(&root, true, None, &[]);

    let (items, _) = scan_all(&[ScanTarget::new(&target)], &options());
    let items = by_path(items);
    assert_eq!(names(&root, &items), ["", "mnt", "plain", "plain/file"]);
    // The mount point is reported as it is seen: the tmpfs root, another device.
    let mnt = state(&items[&root.join("mnt")]);
    assert_ne!(mnt.dev, state(&items[&root]).dev);

    let crossing = ScanOptions {
        cross_filesystems: true,
        ..options()
    };
    let (items, _) = scan_all(&[ScanTarget::new(&target)], &crossing);
    assert_eq!(
        names(&root, &by_path(items)),
        [
            "",
            "mnt",
            "mnt/inner",
            "mnt/inner/file",
            "plain",
            "plain/file"
        ]
    );
    drop(mount);
}

fn known_from(items: &BTreeMap<PathBuf, ScanOutcome>) -> KnownMap {
    items
        .iter()
        .map(|(path, outcome)| (path.clone(), QuickMeta::from(state(outcome))))
        .collect()
}

#[test]
fn sweep_reads_only_what_changed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    make_tree(&root);
    let target = entity(&root, true, None, &[]);
    let (items, _) = scan_all(&[ScanTarget::new(&target)], &options());
    let known = known_from(&by_path(items));

    // Same size, mtime restored: only ctime tells.
    let changed = root.join("sub/b.conf");
    let mtime = fs::metadata(&changed)
        .expect("stat")
        .modified()
        .expect("mtime");
    thread::sleep(Duration::from_millis(20));
    fs::write(&changed, b"BETA").expect("write");
    File::options()
        .write(true)
        .open(&changed)
        .expect("open")
        .set_modified(mtime)
        .expect("utimensat");
    fs::write(root.join("sub/deep/new"), b"new file").expect("write");

    let sweep = ScanOptions {
        mode: ScanMode::Sweep,
        ..options()
    };
    let (items, summary) = scan_all(&[ScanTarget::with_known(&target, &known)], &sweep);
    let items = by_path(items);
    let fresh: Vec<String> = items
        .iter()
        .filter(|(_, outcome)| **outcome != ScanOutcome::Unchanged)
        .map(|(path, _)| crate::path_text::display_path(path.strip_prefix(&root).expect("below")))
        .collect();
    assert_eq!(fresh, ["sub/b.conf", "sub/deep", "sub/deep/new"]);
    assert_eq!(
        state(&items[&changed]).hash,
        Some(*blake3::hash(b"BETA").as_bytes())
    );
    assert_eq!(items.len(), 13);
    assert_eq!(summary.unchanged, 10);
    assert_eq!(summary.bytes_hashed, 4 + 8);

    assert_eq!(known.unseen().count(), 0);

    // A full scan ignores the baseline.
    let (items, summary) = scan_all(&[ScanTarget::with_known(&target, &known)], &options());
    assert!(items
        .iter()
        .all(|item| matches!(item.outcome, ScanOutcome::State(_))));
    assert_eq!(summary.unchanged, 0);

    // Without Unchanged items: only what changed is sent, removals come from `unseen`.
    let mut known = known;
    known.clear_seen();
    fs::remove_file(root.join("x.conf")).expect("rm");
    let quiet = ScanOptions {
        report_unchanged: false,
        ..sweep
    };
    let (items, summary) = scan_all(&[ScanTarget::with_known(&target, &known)], &quiet);
    let items = by_path(items);
    assert_eq!(
        names(&root, &items),
        ["", "sub/b.conf", "sub/deep", "sub/deep/new"]
    );
    assert_eq!(summary.unchanged, 8);
    let unseen: Vec<&Path> = known.unseen().collect();
    assert_eq!(unseen, [root.join("x.conf")]);
}

#[test]
fn wide_and_deep_trees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wide = dir.path().join("wide");
    fs::create_dir(&wide).expect("mkdir");
    for index in 0..1500 {
        fs::write(wide.join(format!("f{index}")), index.to_string()).expect("write");
    }
    let mut deep = dir.path().join("deep");
    for _ in 0..1000 {
        deep.push("d");
    }
    fs::create_dir_all(&deep).expect("mkdir");
    fs::write(deep.join("bottom"), b"bottom").expect("write");
    let wide_target = entity(&wide, true, None, &[]);
    let deep_target = entity(&dir.path().join("deep"), true, None, &[]);
    let counted = std::sync::Arc::new(CountedProgress::default());
    let (items, summary) = scan_all(
        &[ScanTarget::new(&wide_target), ScanTarget::new(&deep_target)],
        &ScanOptions {
            progress: Some(counted.clone()),
            ..options()
        },
    );
    assert_eq!(items.len(), 1 + 1500 + 1001 + 1);
    // Every reported path went through the progress, and the walk said it was over once.
    assert_eq!(
        counted.paths.load(std::sync::atomic::Ordering::Relaxed),
        items.len() as u64
    );
    assert_eq!(
        counted.finished.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!((summary.files, summary.directories), (1501, 1002));
    let mut seen = HashMap::new();
    for item in &items {
        assert!(
            seen.insert(item.path.clone(), item.entity).is_none(),
            "{:?} twice",
            item.path
        );
        if item.entity == 0 && item.path != wide {
            let name = item
                .path
                .file_name()
                .and_then(|name| name.to_str())
                .expect("name");
            let content = name.trim_start_matches('f');
            assert_eq!(
                state(&item.outcome).hash,
                Some(*blake3::hash(content.as_bytes()).as_bytes())
            );
        }
    }
    assert_eq!(seen[&deep.join("bottom")], 1);
}

#[test]
fn dropped_receiver_or_cancel_stops_the_scan() {
    let dir = tempfile::tempdir().expect("tempdir");
    for index in 0..2000 {
        fs::write(dir.path().join(format!("f{index}")), b"x").expect("write");
    }
    let target = entity(dir.path(), true, None, &[]);
    let (sender, receiver) = crossbeam_channel::bounded(1);
    let reader = thread::spawn(move || {
        let first = receiver.recv().expect("one item");
        drop(receiver);
        first
    });
    let summary = scan(&[ScanTarget::new(&target)], &options(), &sender).expect("scan");
    reader.join().expect("reader");
    assert!(summary.cancelled);
    assert!(summary.files + summary.directories < 2001);

    let cancel = Arc::new(AtomicBool::new(true));
    let cancelled = ScanOptions {
        cancel: Some(Arc::clone(&cancel)),
        ..options()
    };
    let (items, summary) = scan_all(&[ScanTarget::new(&target)], &cancelled);
    assert!(summary.cancelled);
    assert!(items.len() <= 1, "{}", items.len());
}

#[test]
fn budget_and_idle_io_still_hash_correctly() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("file"), vec![7u8; 300_000]).expect("write");
    let target = entity(dir.path(), true, None, &[]);
    let budgeted = ScanOptions {
        bytes_per_second: Some(1 << 20),
        idle_io: true,
        workers: 0,
        ..ScanOptions::default()
    };
    let started = std::time::Instant::now();
    let (items, summary) = scan_all(&[ScanTarget::new(&target)], &budgeted);
    let items = by_path(items);
    // 300 kB at 1 MiB/s with a 100 kB burst: about 0.2 s of waiting.
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(
        state(&items[&dir.path().join("file")]).hash,
        Some(*blake3::hash(&vec![7u8; 300_000]).as_bytes())
    );
    assert_eq!(summary.bytes_hashed, 300_000);
}

/// Counts what a scan tells its progress.
#[derive(Debug, Default)]
struct CountedProgress {
    paths: std::sync::atomic::AtomicU64,
    finished: std::sync::atomic::AtomicU64,
}

impl crate::scan::ScanProgress for CountedProgress {
    fn path_done(&self, _bytes: u64) {
        self.paths
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn finish(&self) {
        self.finished
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}
