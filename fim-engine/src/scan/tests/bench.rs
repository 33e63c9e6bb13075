//! A quick local measurement (ignored by default; run it optimised):
//! `cargo test -p fim-engine --release --lib scan::tests::bench -- --ignored --nocapture`
//!
//! Knobs: `FIM_BENCH_FILES` (default 20000), `FIM_BENCH_SMALL=1` (only files of 1..4096 bytes),
//! `FIM_BENCH_DIR` (build the tree there once and reuse it, e.g. for profiling),
//! `FIM_BENCH_FULLS` / `FIM_BENCH_SWEEPS` (repetitions, default 1).
use std::{fs, path::Path, process::Command, time::Instant};

use super::{entity, observe_tests::pattern, options, scan_all};
use crate::scan::{KnownMap, QuickMeta, ScanMode, ScanOptions, ScanOutcome, ScanTarget};

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

    let mut known = KnownMap::new();
    for _ in 0..env_number("FIM_BENCH_FULLS", 1) {
        let started = Instant::now();
        let (items, summary) = scan_all(&[ScanTarget::new(&target)], &options());
        let seconds = started.elapsed().as_secs_f64();
        report("fim full", summary.files, summary.bytes_hashed, seconds);
        known = items
            .iter()
            .filter_map(|item| match &item.outcome {
                ScanOutcome::State(state) => Some((item.path.clone(), QuickMeta::from(&**state))),
                _ => None,
            })
            .collect();
    }

    let sweep = ScanOptions {
        mode: ScanMode::Sweep,
        ..options()
    };
    for _ in 0..env_number("FIM_BENCH_SWEEPS", 1) {
        let started = Instant::now();
        let (_, summary) = scan_all(&[ScanTarget::with_known(&target, &known)], &sweep);
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(summary.unchanged, summary.files + summary.directories);
        report("fim sweep (unchanged)", summary.files, 0, seconds);
    }

    if Command::new("b3sum").arg("--version").output().is_ok() {
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
