//! fimd under systemd: Type=notify readiness (READY=1 once the kernel programs are attached)
//! and STOPPING=1 on SIGTERM, over a real notification socket.
use std::{
    os::unix::net::UnixDatagram,
    time::{Duration, Instant},
};

use fim_tests::{
    engine::{Engine, Workspace},
    spawn_collecting, strategy,
};

#[test]
fn readiness_and_stopping_are_notified() {
    let workspace = Workspace::new("notify");
    let socket_path = workspace.base.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notification socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut command = Engine::command(&workspace, &[]);
    command.env("NOTIFY_SOCKET", &socket_path);
    let (mut child, _records, log) = spawn_collecting(&mut command);
    let mut buffer = [0u8; 512];
    let length = socket.recv(&mut buffer).expect("a notification");
    let message = String::from_utf8_lossy(&buffer[..length]).to_string();
    assert!(message.contains("READY=1"), "{message}");
    assert!(
        message.contains(&format!("STATUS=monitoring ({})", strategy())),
        "{message}"
    );
    assert!(log.lock().unwrap().contains("monitoring started"));
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let length = socket.recv(&mut buffer).expect("a stopping notification");
    assert!(String::from_utf8_lossy(&buffer[..length]).contains("STOPPING=1"));
    assert!(child.wait().unwrap().success());
}

/// The shipped unit passes `systemd-analyze verify` (with ExecStart pointed at the fimd under
/// test, since /usr/local/sbin/fimd is not installed here). Fails loudly without systemd.
#[test]
fn the_unit_file_verifies() {
    let unit = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/fimd.service");
    let text = std::fs::read_to_string(&unit).expect("read packaging/fimd.service");
    let fimd = fim_tests::fimd_bin();
    let text = text.replace("/usr/local/sbin/fimd", &fimd.to_string_lossy());
    let dir = std::env::temp_dir().join(format!("fim-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the scratch directory");
    let copy = dir.join("fimd.service");
    std::fs::write(&copy, text).expect("write the unit copy");
    let output = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze must be installed to verify packaging/fimd.service");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "systemd-analyze verify failed:\n{stderr}"
    );
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify complained:\n{stderr}"
    );
}

/// BPF program ids that `pid` holds descriptors to (from /proc/PID/fdinfo: `prog_id:`).
fn program_ids_of(pid: u32) -> std::collections::BTreeSet<u32> {
    let mut ids = std::collections::BTreeSet::new();
    let dir = format!("/proc/{pid}/fdinfo");
    for entry in std::fs::read_dir(&dir).expect("read fdinfo").flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines() {
            if let Some(id) = line.strip_prefix("prog_id:") {
                ids.insert(id.trim().parse().expect("a program id"));
            }
        }
    }
    ids
}

/// Whether the kernel still has program `id` (bpftool fails for an id that is gone).
fn program_exists(id: u32) -> bool {
    std::process::Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .output()
        .expect("bpftool must be installed (cargo xtask setup)")
        .status
        .success()
}

fn detach_pins_of(pid: u32) -> Vec<String> {
    std::fs::read_dir("/sys/fs/bpf")
        .expect("bpffs at /sys/fs/bpf")
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().to_string())
        .filter(|name| name.starts_with(&format!("fim-detach-{pid}-")))
        .collect()
}

/// SIGTERM is honoured within 2 s with the last changes journaled, although the kernel
/// needs seconds to tear ~90 tracepoints down: that teardown is handed to the kernel, and
/// every program fimd attached is still gone soon after, with no pin left behind.
#[test]
fn sigterm_exits_within_two_seconds_and_every_program_still_detaches() {
    let workspace = Workspace::new("fast-stop");
    let mut engine = Engine::start(&workspace);
    engine.wait_for_log("monitoring started", Duration::from_secs(60));
    let pid = engine.pid();
    let programs = program_ids_of(pid);
    assert!(programs.len() >= 3, "fimd holds no programs? {programs:?}");
    for index in 0..50 {
        std::fs::write(workspace.tree.join(format!("late-{index}")), b"x").expect("write");
    }
    // The last of them is on record before the signal (the harness reads them as printed).
    let last = fim_tests::engine::path_of(&workspace.tree.join("late-49"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !engine
        .records()
        .iter()
        .any(|record| record["File"]["FileSystemPath"] == last.as_str())
    {
        assert!(Instant::now() < deadline, "no record for {last}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let started = Instant::now();
    let log = engine.stop();
    let took = started.elapsed();
    eprintln!(
        "fimd exited {took:?} after SIGTERM ({} programs)",
        programs.len()
    );
    assert!(
        took < fim_tests::sigterm_limit(),
        "fimd took {took:?} to exit after SIGTERM:\n{log}"
    );
    assert!(log.contains("all programs detached"), "{log}");
    assert!(
        !log.contains("the exit waits for the kernel"),
        "the teardown was not handed to the kernel:\n{log}"
    );
    assert_eq!(
        detach_pins_of(pid),
        Vec::<String>::new(),
        "pins left behind"
    );
    let journaled = workspace.journal();
    for index in 0..50 {
        let path = fim_tests::engine::path_of(&workspace.tree.join(format!("late-{index}")));
        assert!(
            journaled
                .iter()
                .any(|record| record["File"]["FileSystemPath"] == path.as_str()
                    && record["ChangeCategory"] == "Added"),
            "{path} is not in the journal"
        );
    }
    let (verified, report) = workspace.verify(&[]);
    assert!(verified, "{report}");
    // The kernel finishes the teardown by itself.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let left: Vec<u32> = programs
            .iter()
            .copied()
            .filter(|id| program_exists(*id))
            .collect();
        if left.is_empty() {
            eprintln!("all programs gone {:?} after SIGTERM", started.elapsed());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "programs {left:?} still loaded 90 s after fimd exited"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A pin left by a fimd killed between pinning and unpinning would keep its program
/// attached for ever: the next fimd removes it (and leaves pins of live processes alone).
#[test]
fn a_detach_pin_of_a_dead_fimd_is_removed_at_start() {
    let dead = std::process::Command::new("true")
        .spawn()
        .expect("spawn true");
    let dead_pid = dead.id();
    let mut dead = dead;
    dead.wait().expect("wait true");
    let stale = format!("/sys/fs/bpf/fim-detach-{dead_pid}-0");
    let live = format!("/sys/fs/bpf/fim-detach-{}-0", std::process::id());
    for pin in [&stale, &live] {
        let _ = std::fs::remove_file(pin);
        let created = std::process::Command::new("bpftool")
            .args([
                "map", "create", pin, "type", "array", "key", "4", "value", "4",
            ])
            .args(["entries", "1", "name", "fim_stale_pin"])
            .output()
            .expect("bpftool must be installed (cargo xtask setup)");
        assert!(
            created.status.success(),
            "bpftool map create {pin}: {}",
            String::from_utf8_lossy(&created.stderr)
        );
    }
    let workspace = Workspace::new("stale-pin");
    let engine = Engine::start(&workspace);
    let log = engine.stop();
    // (Any fimd starting meanwhile may be the one that removed it: all of them do.)
    let live_kept = std::path::Path::new(&live).exists();
    let _ = std::fs::remove_file(&live);
    assert!(
        !std::path::Path::new(&stale).exists(),
        "{stale} is still there:\n{log}"
    );
    assert!(live_kept, "the pin of a live process was removed:\n{log}");
}
