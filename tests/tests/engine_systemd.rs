//! fimd under systemd: Type=notify readiness (READY=1 once the kernel programs are attached)
//! and STOPPING=1 on SIGTERM, over a real notification socket.
use std::{os::unix::net::UnixDatagram, time::Duration};

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
