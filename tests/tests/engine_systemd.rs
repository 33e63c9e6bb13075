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
