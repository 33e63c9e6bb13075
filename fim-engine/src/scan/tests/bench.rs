//! A quick local measurement (ignored by default; run it optimised):
//! `cargo test -p fim-engine --release --lib scan::tests::bench -- --ignored --nocapture`
//!
//! Knobs: `FIM_BENCH_FILES` (default 20000), `FIM_BENCH_SMALL=1` (only files of 1..4096 bytes),
//! `FIM_BENCH_DIR` (build the tree there once and reuse it, e.g. for profiling),
//! `FIM_BENCH_FULLS` / `FIM_BENCH_SWEEPS` (repetitions, default 1), `FIM_BENCH_WORKERS`
//! (default 2), `FIM_BENCH_IDLE_IO=1`, `FIM_BENCH_COLD=1` (drop the page cache before each
//! run: root only), `FIM_BENCH_NO_B3SUM=1`.
use std::{fs, path::Path, process::Command, time::Instant};

use super::{entity, observe_tests::pattern, options};
use crate::scan::{
    scan, KnownMap, QuickMeta, ScanBatch, ScanMode, ScanOptions, ScanOutcome, ScanSummary,
    ScanTarget,
};

/// Mixed sizes: mostly small config-like files, some binaries, a few large ones.
fn size_for(index: usize, small: bool) -> usize {
    match if small { 99 } else { index % 100 } {
        0 => 4 << 20,
        1..=5 => 256 << 10,
        6..=30 => 24 << 10,
        _ => 1 + (index * 37) % 4096,
    }
}

/// Builds the tree (unless `root` exists already) and returns its size in bytes.
fn make_tree(root: &Path, files: usize, small: bool) -> u64 {
    let exists = root.exists();
    let mut total = 0;
    for index in 0..files {
        let size = size_for(index, small);
        total += size as u64;
        if exists {
            continue;
        }
        let dir = root.join(format!("d{}/e{}", index % 20, index % 200));
        if index < 200 {
            fs::create_dir_all(&dir).expect("mkdir");
        }
        fs::write(dir.join(format!("file{index}")), pattern(size, index as u8)).expect("write");
    }
    total
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Scans like the daemon would, keeping only the quick metadata (as a store would), so the
/// process's peak RSS is the scanner's.
fn scan_to_known(targets: &[ScanTarget<'_>], options: &ScanOptions) -> (KnownMap, ScanSummary) {
    let (sender, receiver) = crossbeam_channel::bounded::<ScanBatch>(4);
    let consumer = std::thread::spawn(move || {
        let mut known = KnownMap::new();
        for item in receiver.iter().flatten() {
            if let ScanOutcome::State(state) = &item.outcome {
                known.insert(&item.path, QuickMeta::from(&**state));
            }
        }
        known
    });
    let summary = scan(targets, options, &sender).expect("scan");
    drop(sender);
    (consumer.join().expect("consumer"), summary)
}

/// With `FIM_BENCH_COLD`, empties the page, dentry and inode caches.
fn maybe_drop_caches() {
    if std::env::var_os("FIM_BENCH_COLD").is_some() {
        let status = Command::new("sh")
            .arg("-c")
            .arg("sync && echo 3 > /proc/sys/vm/drop_caches")
            .status()
            .expect("sh");
        assert!(status.success(), "dropping caches needs root");
    }
}

fn report(label: &str, files: u64, bytes: u64, seconds: f64) {
    println!(
        "{label:<24} {seconds:>7.3} s  {:>9.0} files/s  {:>8.1} MB/s",
        files as f64 / seconds,
        bytes as f64 / seconds / 1e6
    );
}

#[test]
#[ignore = "measurement; run with --release --ignored --nocapture"]
fn bench_scan_tree() {
    let files = env_number("FIM_BENCH_FILES", 20_000);
    let small = std::env::var_os("FIM_BENCH_SMALL").is_some();
    let temp = tempfile::tempdir().expect("tempdir");
    let root = match std::env::var_os("FIM_BENCH_DIR") {
        Some(dir) => Path::new(&dir).join(format!("tree-{files}-{small}")),
        None => temp.path().join("tree"),
    };
    let bytes = make_tree(&root, files, small);
    println!(
        "tree: {files} files, {:.1} MB (page cache warm)",
        bytes as f64 / 1e6
    );
    let target = entity(&root, true, None, &[]);
    let full = ScanOptions {
        workers: env_number("FIM_BENCH_WORKERS", 2),
        idle_io: std::env::var_os("FIM_BENCH_IDLE_IO").is_some(),
        ..options()
    };

    let mut known = KnownMap::new();
    for _ in 0..env_number("FIM_BENCH_FULLS", 1) {
        maybe_drop_caches();
        let started = Instant::now();
        let (built, summary) = scan_to_known(&[ScanTarget::new(&target)], &full);
        let seconds = started.elapsed().as_secs_f64();
        report("fim full", summary.files, summary.bytes_hashed, seconds);
        known = built;
    }

    let sweep = ScanOptions {
        mode: ScanMode::Sweep,
        ..full.clone()
    };
    for _ in 0..env_number("FIM_BENCH_SWEEPS", 1) {
        maybe_drop_caches();
        let started = Instant::now();
        let (_, summary) = scan_to_known(&[ScanTarget::with_known(&target, &known)], &sweep);
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(summary.unchanged, summary.files + summary.directories);
        report("fim sweep (unchanged)", summary.files, 0, seconds);
    }

    let skip_b3sum = std::env::var_os("FIM_BENCH_NO_B3SUM").is_some();
    if !skip_b3sum && Command::new("b3sum").arg("--version").output().is_ok() {
        maybe_drop_caches();
        let started = Instant::now();
        let status = Command::new("sh")
            .arg("-c")
            .arg("find \"$1\" -type f -print0 | xargs -0 -P2 b3sum > /dev/null")
            .arg("sh")
            .arg(&root)
            .status()
            .expect("sh");
        assert!(status.success());
        let seconds = started.elapsed().as_secs_f64();
        report("find | xargs -P2 b3sum", files as u64, bytes, seconds);
    }
}
