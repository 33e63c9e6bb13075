//! Only root's configuration is believed: fimd refuses a policy file, policy directory or
//! state directory that others can change (at start: exits; live: keeps the previous policy),
//! and a FIFO at the policy path is refused at once instead of blocking the reader.
use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use fim_tests::engine::{fim_bin, path_of, Engine, Workspace};

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Runs `command` to its end (killed after `timeout`, which fails the test): status and stderr.
fn run_to_exit(command: &mut Command, timeout: Duration) -> (ExitStatus, String) {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            return (status, stderr);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} still running after {timeout:?}: it blocked");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn fimd_refuses(workspace: &Workspace, expected: &str) {
    let (status, stderr) = run_to_exit(
        &mut Engine::command(workspace, &[]),
        Duration::from_secs(30),
    );
    assert!(!status.success(), "fimd started; stderr:\n{stderr}");
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in stderr:\n{stderr}"
    );
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success());
}

#[test]
fn a_policy_writable_by_others_stops_fimd_at_start() {
    let workspace = Workspace::new("trust-file");
    chmod(&workspace.policy, 0o666);
    fimd_refuses(
        &workspace,
        &format!(
            "policy {} is writable by group or others (mode 0666); only root may be able to \
             change it",
            path_of(&workspace.policy)
        ),
    );
}

#[test]
fn a_policy_in_a_directory_writable_by_others_stops_fimd_at_start() {
    let mut workspace = Workspace::new("trust-dir");
    let conf = workspace.base.join("conf");
    std::fs::create_dir(&conf).unwrap();
    workspace.policy = conf.join("policy.toml");
    workspace.write_policy("");
    chmod(&conf, 0o777);
    fimd_refuses(
        &workspace,
        &format!(
            "policy directory {} is writable by group or others (mode 0777); only root may be \
             able to change it",
            path_of(&conf)
        ),
    );
}

#[test]
fn a_state_directory_writable_by_others_stops_fimd_at_start() {
    let workspace = Workspace::new("trust-state");
    chmod(&workspace.state, 0o777);
    fimd_refuses(
        &workspace,
        &format!(
            "state directory {} is writable by group or others (mode 0777); only root may be \
             able to change it",
            path_of(&workspace.state)
        ),
    );
}

#[test]
fn a_socket_directory_writable_by_others_stops_fimd_at_start() {
    let mut workspace = Workspace::new("trust-socket");
    let run = workspace.base.join("run");
    std::fs::create_dir(&run).unwrap();
    chmod(&run, 0o777);
    workspace.socket = run.join("fim.sock");
    fimd_refuses(
        &workspace,
        &format!(
            "refusing the API socket: API socket directory {} is writable by group or others \
             (mode 0777); only root may be able to change it",
            path_of(&run)
        ),
    );
    // Nothing was bound there, not even for a moment that left a trace.
    assert_eq!(std::fs::read_dir(&run).unwrap().count(), 0);
}

/// The socket appears at its path already with its final mode, and the private directory it
/// was prepared in is gone.
#[test]
fn the_socket_is_published_with_its_mode_and_leaves_no_staging_directory() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let workspace = Workspace::new("trust-socket-mode");
    let engine = Engine::start(&workspace);
    let meta = std::fs::symlink_metadata(&workspace.socket).expect("socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o7777, 0o660);
    assert_eq!(meta.uid(), 0);
    let staging: Vec<_> = std::fs::read_dir(&workspace.base)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with(".fimd-socket")
        })
        .collect();
    assert!(staging.is_empty(), "left behind: {staging:?}");
    engine.stop();
}

#[test]
fn a_policy_made_writable_by_others_is_not_reloaded() {
    let workspace = Workspace::new("trust-live");
    let mut engine = Engine::start(&workspace);
    // A new file (new inode) that the watcher sees as changed, already world-writable.
    let temp = workspace.policy.with_extension("new");
    std::fs::write(&temp, "").unwrap();
    chmod(&temp, 0o666);
    std::fs::rename(&temp, &workspace.policy).unwrap();
    let expected = format!(
        "the policy was not reloaded, keeping the previous one: policy {} is writable by group \
         or others (mode 0666); only root may be able to change it",
        path_of(&workspace.policy)
    );
    engine.wait_for_log(&expected, Duration::from_secs(10));
    let log = engine.stop();
    let line = log.lines().find(|line| line.contains(&expected)).unwrap();
    assert!(line.contains("ERROR"), "not logged as an error: {line}");
}

#[test]
fn a_fifo_policy_stops_fimd_at_once() {
    let workspace = Workspace::new("trust-fifo");
    std::fs::remove_file(&workspace.policy).unwrap();
    mkfifo(&workspace.policy);
    fimd_refuses(
        &workspace,
        &format!(
            "policy {} is a FIFO, not a regular file; refusing to read it",
            path_of(&workspace.policy)
        ),
    );
}

#[test]
fn policy_check_on_a_fifo_returns_at_once_with_an_error() {
    let workspace = Workspace::new("check-fifo");
    let fifo = workspace.base.join("fifo.toml");
    mkfifo(&fifo);
    let started = Instant::now();
    let (status, stderr) = run_to_exit(
        Command::new(fim_bin()).args(["policy", "check"]).arg(&fifo),
        Duration::from_secs(10),
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(!status.success());
    let expected = format!(
        "policy {} is a FIFO, not a regular file; refusing to read it",
        path_of(&fifo)
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn policy_check_on_binary_garbage_names_the_position() {
    let workspace = Workspace::new("check-binary");
    let file = workspace.base.join("binary.toml");
    std::fs::write(&file, b"[settings]\nscan_workers = \xff\xfe\n").unwrap();
    let (status, stderr) = run_to_exit(
        Command::new(fim_bin()).args(["policy", "check"]).arg(&file),
        Duration::from_secs(10),
    );
    assert!(!status.success());
    let expected = format!(
        "{}:2:16: the policy is not UTF-8 text (invalid byte at offset 26)",
        path_of(&file)
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn fimd_raises_its_open_file_limit_to_the_hard_limit() {
    let mut hard = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct passed in; fimd inherits this hard limit.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) },
        0
    );
    let workspace = Workspace::new("rlimit");
    let engine = Engine::start(&workspace);
    let log = engine.stop();
    let expected = format!("open file limit (RLIMIT_NOFILE): {}", hard.rlim_max);
    assert!(log.contains(&expected), "expected {expected:?} in:\n{log}");
}

/// A daemon out of descriptors (its limit pulled down under it, as a descriptor-hoarding
/// neighbour on a shared limit would) does not record "Too many open files" as the file's
/// state: the change is held, status says why, and once descriptors are back the record
/// comes with the file's real hash.
#[test]
fn running_out_of_descriptors_while_hashing_is_retried_not_recorded() {
    let workspace = Workspace::new("emfile");
    let engine = Engine::start(&workspace);
    let pid = engine.pid().to_string();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    // The soft limit only: taking it down and back up needs no privilege.
    let hard = std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .unwrap()
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(4).map(str::to_string))
        .expect("the hard limit");
    let limit = |value: &str| {
        let status = Command::new("prlimit")
            .args(["--pid", &pid, &format!("--nofile={value}:{hard}")])
            .status()
            .expect("prlimit");
        assert!(status.success());
    };
    // Below what it holds now: every new open fails until the limit is raised again.
    limit(&open.saturating_sub(8).to_string());
    let victim = workspace.tree.join("victim");
    std::fs::write(&victim, b"hashed once descriptors are back").unwrap();
    let want = path_of(&victim);
    let of_victim = || -> Vec<serde_json::Value> {
        engine
            .records()
            .into_iter()
            .filter(|record| record["File"]["FileSystemPath"] == want.as_str())
            .collect()
    };
    std::thread::sleep(Duration::from_secs(4));
    let early: Vec<_> = of_victim()
        .into_iter()
        .map(|record| record["File"].clone())
        .collect();
    assert_eq!(
        early,
        Vec::<serde_json::Value>::new(),
        "recorded while out of descriptors"
    );
    // (The API cannot accept a connection either now, so the log is where it shows.)
    let log = engine.log();
    limit(&hard);
    assert!(
        log.contains(&format!(
            "changes cannot be recorded: cannot open {want} to hash it: Too many open files"
        )),
        "{log}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while of_victim().is_empty() {
        assert!(
            Instant::now() < deadline,
            "never recorded:\n{}",
            engine.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let records = of_victim();
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["ChangeCategory"], "Added");
    assert_eq!(
        records[0]["File"]["FileContentChecksum"],
        blake3::hash(b"hashed once descriptors are back")
            .to_hex()
            .as_str()
    );
    engine.stop();
}
