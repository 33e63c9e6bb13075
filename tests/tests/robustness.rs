//! Loss, limits and self-exclusion: ring-buffer overflow raises a gap notice naming the root,
//! paths deeper than the kernel walk are still reported, a root that does not exist yet is
//! picked up when it appears, and the daemon never reports its own writes.
use std::path::Path;

use fim_tests::*;

#[test]
fn ring_buffer_overflow_raises_gap_notice_naming_the_root() {
    let scratch = Scratch::new("flood");
    // One page of ring: a burst of creates cannot fit.
    let daemon = Daemon::start(&[&scratch.watched], &["--ring-bytes", "4096"]);
    let names: Vec<_> = (0..3000)
        .map(|i| c(&scratch.watched.join(format!("f{i}"))))
        .collect();
    in_child(|| {
        names
            .iter()
            .map(|name| raw_write(name, libc::O_WRONLY | libc::O_CREAT, b"x"))
            .sum()
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let root = scratch.watched.to_string_lossy().to_string();
    loop {
        let gaps: Vec<_> = daemon
            .all_events()
            .into_iter()
            .filter(|event| event["op"] == "gap")
            .collect();
        if let Some(gap) = gaps.first() {
            assert_eq!(
                gap["roots"],
                serde_json::json!([root]),
                "gap must name the watched root: {gap}"
            );
            assert!(gap["dropped"].as_u64().unwrap_or(0) > 0);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no gap notice after overflowing a 4 KiB ring"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    daemon.stop();
}

#[test]
fn path_deeper_than_the_kernel_walk_is_reported_truncated_and_resolved() {
    let scratch = Scratch::new("deep");
    let mut deep = scratch.watched.clone();
    for level in 0..40 {
        deep.push(format!("d{level}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    let daemon = Daemon::start(&[&scratch.watched], &[]);
    let file = deep.join("leaf");
    let path = c(&file);
    let pid = in_child(|| raw_write(&path, libc::O_WRONLY | libc::O_CREAT, b"x"));
    let events = daemon.settle(&scratch.watched, 2);
    assert_eq!(
        ops(&events),
        vec![
            ("create".into(), file.to_string_lossy().to_string()),
            ("write-closed".into(), file.to_string_lossy().to_string())
        ]
    );
    assert_eq!(events[0]["truncated"], serde_json::json!(true));
    assert_actor(&events, pid);
    daemon.stop();
}

#[test]
fn missing_root_is_picked_up_when_it_appears() {
    let scratch = Scratch::new("later");
    let root = scratch.watched.join("a/b");
    let daemon = Daemon::start(&[&root], &[]);
    std::fs::create_dir_all(&root).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let file = root.join("new");
    let path = c(&file);
    let pid = in_child(|| raw_write(&path, libc::O_WRONLY | libc::O_CREAT, b"x"));
    let events = daemon.settle(&root, 2);
    let (create, closed) = (
        ("create".to_string(), file.to_string_lossy().to_string()),
        (
            "write-closed".to_string(),
            file.to_string_lossy().to_string(),
        ),
    );
    let tail: Vec<_> = ops(&events)
        .into_iter()
        .filter(|(_, path)| Path::new(path) == file)
        .collect();
    assert_eq!(tail, vec![create, closed]);
    assert_actor(
        &events
            .iter()
            .filter(|event| event["path"] == file.to_string_lossy().as_ref())
            .cloned()
            .collect::<Vec<_>>(),
        pid,
    );
    daemon.stop();
}

#[test]
fn unmonitored_tree_produces_nothing() {
    let scratch = Scratch::new("quiet");
    let daemon = Daemon::start(&[&scratch.watched], &[]);
    let names: Vec<_> = (0..50)
        .map(|i| c(&scratch.other.join(format!("n{i}"))))
        .collect();
    in_child(|| unsafe {
        names
            .iter()
            .map(|name| {
                raw_write(name, libc::O_WRONLY | libc::O_CREAT, b"x")
                    + libc::unlink(name.as_ptr()).abs()
            })
            .sum()
    });
    std::thread::sleep(std::time::Duration::from_millis(800));
    assert_eq!(
        daemon.events_under(&scratch.base),
        Vec::<serde_json::Value>::new()
    );
    daemon.stop();
}

/// A kernel the daemon cannot use gets one clear line naming what is missing and the
/// fallback, and the daemon keeps running (scan-only) until told to stop.
#[test]
fn unusable_kernel_falls_back_to_scan_only_with_one_clear_line() {
    require_root();
    let scratch = Scratch::new("nobtf");
    let mut child = std::process::Command::new(fimd_bin())
        .args(["--btf", "/nonexistent/vmlinux", "--watch"])
        .arg(&scratch.watched)
        .env("FIM_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn fimd");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(
        child.try_wait().expect("poll fimd").is_none(),
        "fimd must keep running scan-only"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = child.wait_with_output().expect("wait fimd");
    assert!(output.status.success(), "exit status {}", output.status);
    let log = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("scan-only"))
        .collect();
    assert_eq!(lines.len(), 1, "exactly one fallback line expected:\n{log}");
    assert!(
        lines[0].contains("/nonexistent/vmlinux") && lines[0].contains("BTF"),
        "{}",
        lines[0]
    );
    assert!(!log.contains("panicked"), "{log}");
    assert!(output.stdout.is_empty());
}

#[test]
fn bad_ring_size_is_rejected_with_a_clear_error() {
    let output = std::process::Command::new(fimd_bin())
        .args(["--ring-bytes", "5000", "--watch", "/tmp"])
        .output()
        .expect("run fimd");
    assert!(!output.status.success());
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("--ring-bytes 5000 must be a power of two"),
        "{log}"
    );
}
