//! What the Wine tests of fimsvc share: a running fimsvc with its records, a policy file, and
//! the Windows tools (reg.exe, sc.exe) the tests drive it with.
#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

/// A name no earlier run used: Wine reuses small process ids, and a failed run may leave its
/// service or key behind.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.subsec_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// fim.exe, built beside fimsvc.exe (`cargo build -p fim-cli --target ...`; `cargo xtask
/// wine-test` does it first).
pub fn fim_exe() -> PathBuf {
    let fim = Path::new(env!("CARGO_BIN_EXE_fimsvc")).with_file_name("fim.exe");
    assert!(
        fim.is_file(),
        "{} is missing: build it first (cargo xtask wine-test does, or cargo build -p fim-cli \
         --target x86_64-pc-windows-gnu)",
        fim.display()
    );
    fim
}

/// `tool` (reg.exe, sc.exe) with `args`; panics unless it succeeds.
pub fn run_ok(tool: &str, args: &[&str]) {
    let output = Command::new(tool)
        .args(args)
        .output()
        .expect("run the tool");
    assert!(
        output.status.success(),
        "{tool} {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A running fimsvc with its records and log collected.
pub struct Fimsvc {
    child: Child,
    records: Arc<Mutex<Vec<Value>>>,
    log: Arc<Mutex<String>>,
}

/// A policy of `(name, kind, path, recursive)` entities with a short coalescing window.
pub fn write_policy(dir: &Path, entities: &[(&str, &str, &str, bool)]) -> PathBuf {
    let mut text = String::from("[settings]\ncoalesce_ms = 200\n\n");
    for (name, kind, path, recursive) in entities {
        text.push_str(&format!(
            "[[entity]]\nname = \"{name}\"\nkind = \"{kind}\"\npath = '{path}'\nrecursive = {recursive}\n\n"
        ));
    }
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).expect("write the policy");
    path
}

impl Fimsvc {
    pub fn start(policy: &Path, state: &Path) -> Self {
        Self::start_with_env(policy, state, &[])
    }

    /// [`Fimsvc::start`] with extra environment variables (test-only settings). Without the
    /// API: tests run in parallel, and only one fimsvc may hold a pipe name (`api_wine.rs`
    /// gives each its own with [`Fimsvc::start_with_args`]).
    pub fn start_with_env(policy: &Path, state: &Path, env: &[(&str, &str)]) -> Self {
        Self::launch(policy, state, &["--no-api"], env)
    }

    /// [`Fimsvc::start`] with extra `fimsvc run` arguments (and the API unless they say
    /// `--no-api`).
    pub fn start_with_args(policy: &Path, state: &Path, args: &[&str]) -> Self {
        Self::launch(policy, state, args, &[])
    }

    pub fn start_with_args_env(
        policy: &Path,
        state: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        Self::launch(policy, state, args, env)
    }

    fn launch(policy: &Path, state: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fimsvc"))
            .args(["run", "--print-records", "--policy"])
            .arg(policy)
            .arg("--state-dir")
            .arg(state)
            .args(args)
            .env("FIM_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fimsvc");
        let records = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let into = records.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(record) = serde_json::from_str::<Value>(&line) {
                    into.lock().expect("records").push(record);
                }
            }
        });
        let into = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[fimsvc] {line}");
                let mut log = into.lock().expect("log");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let fimsvc = Fimsvc {
            child,
            records,
            log,
        };
        fimsvc.wait_for_log("start-up scan finished");
        fimsvc
    }

    pub fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.log.lock().expect("log").contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "fimsvc never logged {needle:?}:\n{}",
            self.log.lock().expect("log")
        );
    }

    /// Waits until `count` records arrived after the first `from`, then a little longer to
    /// catch any extra, and returns those after `from`.
    pub fn records_after(&self, from: usize, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline
            && self.records.lock().expect("records").len() < from + count
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(1200));
        self.records.lock().expect("records")[from..].to_vec()
    }

    /// What fimsvc logged so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    pub fn count(&self) -> usize {
        self.records.lock().expect("records").len()
    }
}

impl Drop for Fimsvc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sets the protected DACL `sddl` (`D:...`) on `path` as an administrator would (under Wine
/// only SYSTEM, the owner and Everyone survive: Wine maps a DACL onto the Unix mode).
pub fn set_dacl(path: &Path, sddl: &str) {
    use std::{os::windows::ffi::OsStrExt, ptr::null_mut};
    use windows_sys::Win32::{
        Foundation::{LocalFree, ERROR_SUCCESS},
        Security::{
            Authorization::{
                ConvertStringSecurityDescriptorToSecurityDescriptorW, SetNamedSecurityInfoW,
                SDDL_REVISION_1, SE_FILE_OBJECT,
            },
            GetSecurityDescriptorDacl, ACL, DACL_SECURITY_INFORMATION,
            PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
        },
    };
    let text: Vec<u16> = sddl.encode_utf16().chain(Some(0)).collect();
    let name: Vec<u16> = path.as_os_str().encode_wide().chain(Some(0)).collect();
    // SAFETY: NUL-terminated inputs; the descriptor is freed after its DACL is set.
    unsafe {
        let mut descriptor: PSECURITY_DESCRIPTOR = null_mut();
        let converted = ConvertStringSecurityDescriptorToSecurityDescriptorW(
            text.as_ptr(),
            SDDL_REVISION_1,
            &mut descriptor,
            null_mut(),
        );
        assert_ne!(converted, 0, "convert {sddl}");
        let (mut present, mut defaulted) = (0, 0);
        let mut dacl: *mut ACL = null_mut();
        GetSecurityDescriptorDacl(descriptor, &mut present, &mut dacl, &mut defaulted);
        let status = SetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            null_mut(),
            null_mut(),
            dacl,
            null_mut(),
        );
        LocalFree(descriptor.cast());
        assert_eq!(status, ERROR_SUCCESS, "set {sddl} on {}", path.display());
    }
}

/// A DACL giving Everyone full control beside SYSTEM and Administrators.
pub const EVERYONE_FULL: &str = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;WD)";
