//! A quick local measurement (ignored by default; run it optimised):
//! `cargo test -p fim-engine --release --lib scan::tests::bench -- --ignored --nocapture`
//! Set `FIM_BENCH_FILES` for another tree size.
use std::{fs, path::Path, process::Command, time::Instant};

use super::{entity, observe_tests::pattern, options, scan_all};
use crate::scan::{KnownMap, QuickMeta, ScanMode, ScanOptions, ScanOutcome, ScanTarget};

/// Mixed sizes: mostly small config-like files, some binaries, a few large ones.
fn size_for(index: usize) -> usize {
    match index % 100 {
        0 => 4 << 20,
        1..=5 => 256 << 10,
        6..=30 => 24 << 10,
        _ => 1 + (index * 37) % 4096,
    }
}

fn make_tree(root: &Path, files: usize) -> u64 {
    let mut total = 0;
    for index in 0..files {
        let dir = root.join(format!("d{}/e{}", index % 20, index % 200));
        if index < 200 {
            fs::create_dir_all(&dir).expect("mkdir");
        }
        let content = pattern(size_for(index), index as u8);
        total += content.len() as u64;
        fs::write(dir.join(format!("file{index}")), content).expect("write");
    }
    total
}

fn report(label: &str, files: u64, bytes: u64, seconds: f64) {
    println!(
        "{label:<28} {seconds:>7.3} s  {:>9.0} files/s  {:>8.1} MB/s",
        files as f64 / seconds,
        bytes as f64 / seconds / 1e6
    );
}

#[test]
#[ignore = "measurement; run with --release --ignored --nocapture"]
fn bench_scan_tree() {
    let files: usize = std::env::var("FIM_BENCH_FILES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("tree");
    let bytes = make_tree(&root, files);
    println!(
        "tree: {files} files, {:.1} MB (page cache warm)",
        bytes as f64 / 1e6
    );
    let target = entity(&root, true, None, &[]);

    let started = Instant::now();
    let (items, summary) = scan_all(&[ScanTarget::new(&target)], &options());
    report(
        "fim full",
        summary.files,
        summary.bytes_hashed,
        started.elapsed().as_secs_f64(),
    );
    let known: KnownMap = items
        .iter()
        .filter_map(|item| match &item.outcome {
            ScanOutcome::State(state) => Some((item.path.clone(), QuickMeta::from(&**state))),
            _ => None,
        })
        .collect();
    drop(items);

    let sweep = ScanOptions {
        mode: ScanMode::Sweep,
        ..options()
    };
    let started = Instant::now();
    let (_, summary) = scan_all(&[ScanTarget::with_known(&target, &known)], &sweep);
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(summary.unchanged, summary.files + summary.directories);
    report("fim sweep (unchanged)", summary.files, 0, seconds);

    let started = Instant::now();
    let (_, summary) = scan_all(&[ScanTarget::new(&target)], &options());
    report(
        "fim full (again)",
        summary.files,
        summary.bytes_hashed,
        started.elapsed().as_secs_f64(),
    );

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
        report(
            "find | xargs -P2 b3sum",
            files as u64,
            bytes,
            started.elapsed().as_secs_f64(),
        );
    }
}
