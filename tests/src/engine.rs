//! Harness for the engine tests: fimd on a policy and a state directory, its change records
//! (printed with --print-records), and the `fim` tool run against the same state.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{fimd_bin, require_root, spawn_collecting, strategy};

/// The `fim` binary next to fimd (or FIM_BIN).
pub fn fim_bin() -> PathBuf {
    if let Ok(path) = std::env::var("FIM_BIN") {
        return PathBuf::from(path);
    }
    let fimd = fimd_bin();
    let fim = fimd.with_file_name("fim");
    assert!(
        fim.exists(),
        "fim binary not found next to {} (cargo build -p fim-cli) or set FIM_BIN",
        fimd.display()
    );
    fim
}

/// A scratch area: `tree/` to monitor, `state/` for the database, `policy.toml`, and
/// `fim.sock` for the daemon's API (so parallel daemons never share /run/fim/fim.sock).
pub struct Workspace {
    pub base: PathBuf,
    pub tree: PathBuf,
    pub state: PathBuf,
    pub policy: PathBuf,
    pub socket: PathBuf,
}

impl Workspace {
    pub fn new(name: &str) -> Self {
        let base = std::env::temp_dir().join(format!("fim-engine-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("tree")).expect("create tree");
        std::fs::create_dir_all(base.join("state")).expect("create state");
        let base = std::fs::canonicalize(&base).expect("canonicalize");
        let workspace = Workspace {
            tree: base.join("tree"),
            state: base.join("state"),
            policy: base.join("policy.toml"),
            socket: base.join("fim.sock"),
            base,
        };
        workspace.write_policy(&format!(
            "[settings]\nscan_idle_io = false\n\n[[entity]]\nname = \"tree\"\nkind = \"linux-file\"\npath = \"{}\"\n",
            workspace.tree.display()
        ));
        workspace
    }

    pub fn write_policy(&self, text: &str) {
        let temp = self.policy.with_extension("tmp");
        std::fs::write(&temp, text).expect("write policy");
        std::fs::rename(&temp, &self.policy).expect("replace policy");
    }

    /// Runs `fim` with this workspace's state and policy.
    pub fn fim(&self, args: &[&str]) -> Output {
        Command::new(fim_bin())
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--policy")
            .arg(&self.policy)
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run fim")
    }

    /// Runs `fim` and asserts it succeeded.
    pub fn fim_ok(&self, args: &[&str]) {
        let output = self.fim(args);
        assert!(
            output.status.success(),
            "fim {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `fim --local verify EXTRA..`: whether it said intact, and what it printed.
    pub fn verify(&self, extra: &[&str]) -> (bool, String) {
        let mut args = vec!["--local", "verify"];
        args.extend_from_slice(extra);
        let output = self.fim(&args);
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    }

    /// `fim changes --format jsonl` as values, read from the database itself (`--local`).
    pub fn journal(&self) -> Vec<Value> {
        let output = self.fim(&[
            "--local", "changes", "--format", "jsonl", "--limit", "1000000",
        ]);
        assert!(
            output.status.success(),
            "fim changes failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| serde_json::from_str(line).expect("jsonl record"))
            .collect()
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

/// A running fimd in engine mode.
pub struct Engine {
    child: Child,
    records: Arc<Mutex<Vec<Value>>>,
    log: Arc<Mutex<String>>,
}

impl Engine {
    /// Starts fimd and waits for its start-up scan to finish.
    pub fn start(workspace: &Workspace) -> Self {
        Self::start_with(workspace, &[])
    }

    /// `extra` goes last; unless it has `--api-socket` or `--no-api`, the API listens on the
    /// workspace's socket.
    pub fn start_with(workspace: &Workspace, extra: &[&str]) -> Self {
        let mut command = Self::command(workspace, extra);
        let (child, records, log) = spawn_collecting(&mut command);
        let mut engine = Engine {
            child,
            records,
            log,
        };
        engine.wait_for_log("start-up scan finished", Duration::from_secs(120));
        engine
    }

    /// The fimd command line for this workspace (for tests that start it themselves).
    pub fn command(workspace: &Workspace, extra: &[&str]) -> Command {
        require_root();
        let mut command = Command::new(fimd_bin());
        if !extra
            .iter()
            .any(|arg| *arg == "--api-socket" || *arg == "--no-api")
        {
            command.arg("--api-socket").arg(&workspace.socket);
        }
        command
            .arg("--strategy")
            .arg(strategy())
            .arg("--policy")
            .arg(&workspace.policy)
            .arg("--state-dir")
            .arg(&workspace.state)
            .arg("--print-records")
            .args(extra)
            .env("FIM_LOG", "info");
        command
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return;
            }
            if self.log().contains("scan-only") {
                panic!("fimd fell back to scan-only:\n{}", self.log());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "fimd exited with {status} before {needle:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("fimd never logged {needle:?}:\n{}", self.log());
    }

    /// fimd's process id (for /proc measurements).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn records(&self) -> Vec<Value> {
        self.records.lock().expect("records lock").clone()
    }

    /// Waits for `count` records, then a little longer so that extra ones would show.
    pub fn settle(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline && self.records().len() < count {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(600));
        self.records()
    }

    /// SIGTERM and a clean exit.
    pub fn stop(mut self) -> String {
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait fimd");
        std::thread::sleep(Duration::from_millis(100));
        let log = self.log();
        assert!(status.success(), "fimd exited with {status}; log:\n{log}");
        log
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(mut self) {
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The records about monitored objects, without the monitor's own (policy changes).
pub fn object_records(records: &[Value]) -> Vec<Value> {
    records
        .iter()
        .filter(|record| record["ConfigChangeType"] != "Monitor")
        .cloned()
        .collect()
}

/// (ChangeCategory, FileSystemPath, FieldsChanged) of each record, for exact comparisons.
pub fn summary(records: &[Value]) -> Vec<(String, String, Vec<String>)> {
    records
        .iter()
        .map(|record| {
            (
                record["ChangeCategory"].as_str().unwrap_or("?").to_string(),
                record["File"]["FileSystemPath"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
                record["FieldsChanged"]
                    .as_array()
                    .map(|fields| {
                        fields
                            .iter()
                            .map(|field| field.as_str().unwrap_or("?").to_string())
                            .collect()
                    })
                    .unwrap_or_default(),
            )
        })
        .collect()
}

pub fn path_of(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}
