//! Measurements, not assertions of speed: bulk puts, bytes per file, sweep load, journal
//! appends and verify. Run with
//! `cargo test --release -p fim-engine --lib store::tests::bench -- --ignored --nocapture`.
use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use super::{record, state, temp_store};
use crate::{change::ChangeCategory, store::ChangeFilter};

const FILES: u64 = 100_000;

/// Paths shaped like a default policy's files (average ~55 bytes).
fn typical_path(n: u64) -> PathBuf {
    const DIRS: [&str; 6] = [
        "/usr/bin",
        "/usr/sbin",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/python3/dist-packages/setuptools/_vendor",
        "/etc/systemd/system/multi-user.target.wants",
        "/boot/grub/x86_64-efi",
    ];
    const EXTS: [&str; 4] = ["", ".so.1", ".conf", ".py"];
    let dir = DIRS[(n % 6) as usize];
    let ext = EXTS[(n / 6 % 4) as usize];
    PathBuf::from(format!("{dir}/component-{n:06}{ext}"))
}

#[test]
#[ignore = "benchmark; run explicitly with --ignored --nocapture"]
fn measure_baseline_and_journal() {
    let (_dir, path, store) = temp_store();
    let paths: Vec<PathBuf> = (0..FILES).map(typical_path).collect();
    let average = paths.iter().map(|p| p.as_os_str().len()).sum::<usize>() as f64 / FILES as f64;

    let started = Instant::now();
    let mut batch = store.batch().unwrap();
    for (n, file) in paths.iter().enumerate() {
        batch.put(file, "usr-bin", &state(n as u64)).unwrap();
    }
    batch.commit().unwrap();
    let put_seconds = started.elapsed().as_secs_f64();
    store.checkpoint().unwrap();
    let bytes = store.database_bytes().unwrap();
    let file_bytes = std::fs::metadata(&path).unwrap().len();

    // Twice: the first load after the checkpoint reads the file, the second the page cache.
    let mut map_ms = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let map = store.quick_map("usr-bin").unwrap();
        map_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(map.len() as u64, FILES);
    }

    let started = Instant::now();
    for file in paths.iter().step_by(10) {
        assert!(store.get(file).unwrap().is_some());
    }
    let get_seconds = started.elapsed().as_secs_f64() / (FILES / 10) as f64;
    let under = store.paths_under(Path::new("/usr/bin")).unwrap();
    assert_eq!(under.len() as u64, FILES / 6 + 1);

    let started = Instant::now();
    for chunk in 0..(FILES / 1000) {
        let mut batch = store.batch().unwrap();
        for n in chunk * 1000..(chunk + 1) * 1000 {
            let file = typical_path(n).display().to_string();
            let mut change = record(&file, ChangeCategory::Modified, n as i64 * 1_000_000);
            batch.append(&mut change).unwrap();
        }
        batch.commit().unwrap();
    }
    let append_seconds = started.elapsed().as_secs_f64();
    store.checkpoint().unwrap();
    let journal_bytes = store.database_bytes().unwrap() - bytes;

    let started = Instant::now();
    let report = store.verify().unwrap();
    let verify_seconds = started.elapsed().as_secs_f64();
    assert!(report.is_ok(), "{report}");

    let started = Instant::now();
    let page = store.query(&ChangeFilter::default(), 1000).unwrap();
    let query_seconds = started.elapsed().as_secs_f64();
    assert_eq!(page.len(), 1000);
    let started = Instant::now();
    let summary = store
        .summary(
            &ChangeFilter::default(),
            &[crate::store::GroupKey::Computer],
        )
        .unwrap();
    let summary_seconds = started.elapsed().as_secs_f64();
    assert_eq!(summary[0].count, FILES);

    println!("store benchmark ({FILES} files, average path {average:.1} bytes):");
    println!(
        "  bulk put: {:.0} puts/s ({put_seconds:.2} s in one batch)",
        FILES as f64 / put_seconds
    );
    println!(
        "  baseline size: {bytes} bytes = {:.1} bytes/file (file {file_bytes} bytes)",
        bytes as f64 / FILES as f64
    );
    println!(
        "  quick_map: {:.0} ms, then {:.0} ms and {:.0} ms, for {FILES} rows",
        map_ms[0], map_ms[1], map_ms[2]
    );
    println!("  get: {:.1} µs per lookup", get_seconds * 1e6);
    println!(
        "  append: {:.0} records/s in batches of 1000 ({append_seconds:.2} s), {:.0} bytes/record",
        FILES as f64 / append_seconds,
        journal_bytes as f64 / FILES as f64
    );
    println!(
        "  verify: {verify_seconds:.2} s for {} records ({:.0} records/s)",
        report.checked,
        report.checked as f64 / verify_seconds
    );
    println!(
        "  query first 1000: {:.1} ms; summary by computer: {:.0} ms",
        query_seconds * 1000.0,
        summary_seconds * 1000.0
    );
}
