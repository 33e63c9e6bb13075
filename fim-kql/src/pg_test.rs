//! A throwaway PostgreSQL 15 server for tests: initdb into a fresh temporary directory,
//! `pg_ctl start` on a free loopback port (its Unix socket in the same directory), and on
//! drop an immediate stop and the directory removed.
//!
//! initdb refuses to run as root, so as root the server runs as the `postgres` system user
//! (the postgresql-15 package creates it) and the directory is handed to that user. Missing
//! binaries are an error, never a skip: `cargo xtask setup` installs postgresql-15, and a
//! test that quietly passed without a server would prove nothing.
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where Debian's postgresql-15 puts its server binaries; `FIM_PG_BIN` overrides it.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// The superuser of the test cluster (trust authentication on loopback).
pub const USER: &str = "fim";

#[derive(Debug, thiserror::Error)]
pub enum PgTestError {
    #[error(
        "PostgreSQL binaries not found at {0} (install postgresql-15: `cargo xtask setup`, \
         or set FIM_PG_BIN)"
    )]
    Missing(PathBuf),
    #[error("running as root but there is no `postgres` user to run the test server as")]
    NoUser,
    #[error("{step} failed: {detail}")]
    Step { step: String, detail: String },
    #[error("test server I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A running throwaway server; stopped and deleted on drop.
pub struct TestServer {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    owner: Option<(u32, u32)>,
    running: bool,
}

fn step_error(step: &str, output: &Output) -> PgTestError {
    PgTestError::Step {
        step: step.to_string(),
        detail: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// The uid and gid of `postgres` when we are root (None when we are not root).
fn owner() -> Result<Option<(u32, u32)>, PgTestError> {
    let id = |flag: &str, user: Option<&str>| -> Option<u32> {
        let output = Command::new("id").arg(flag).args(user).output().ok()?;
        String::from_utf8_lossy(&output.stdout).trim().parse().ok()
    };
    if id("-u", None) != Some(0) {
        return Ok(None);
    }
    match (id("-u", Some("postgres")), id("-g", Some("postgres"))) {
        (Some(uid), Some(gid)) => Ok(Some((uid, gid))),
        _ => Err(PgTestError::NoUser),
    }
}

fn free_port() -> Result<u16, PgTestError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

fn fresh_dir() -> Result<PathBuf, PgTestError> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "fim-pg-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

impl TestServer {
    /// Creates and starts a cluster; fails loudly when PostgreSQL is not installed.
    pub fn start() -> Result<Self, PgTestError> {
        let bin = std::env::var_os("FIM_PG_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BIN_DIR));
        if !bin.join("postgres").is_file() || !bin.join("initdb").is_file() {
            return Err(PgTestError::Missing(bin));
        }
        let owner = owner()?;
        let dir = fresh_dir()?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))?;
        }
        let mut server = TestServer {
            dir,
            bin,
            port: 0,
            owner,
            running: false,
        };
        server.initdb()?;
        // A port found free may be taken before the server binds it: try a few.
        let mut last = None;
        for _ in 0..3 {
            server.port = free_port()?;
            match server.pg_ctl_start() {
                Ok(()) => {
                    server.running = true;
                    return Ok(server);
                }
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or(PgTestError::Step {
            step: "pg_ctl start".to_string(),
            detail: "no attempt".to_string(),
        }))
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.current_dir(&self.dir);
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn initdb(&self) -> Result<(), PgTestError> {
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args([
                "-U",
                USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-N",
            ])
            .output()?;
        if !output.status.success() {
            return Err(step_error("initdb", &output));
        }
        Ok(())
    }

    fn pg_ctl_start(&self) -> Result<(), PgTestError> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let output = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &options, "start"])
            .output()?;
        if !output.status.success() {
            let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
            return Err(PgTestError::Step {
                step: "pg_ctl start".to_string(),
                detail: format!("{}{log}", String::from_utf8_lossy(&output.stderr)),
            });
        }
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the data, the log and the Unix socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A libpq-style connection string for the `postgres` database over loopback TCP.
    pub fn connection_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={USER} dbname=postgres",
            self.port
        )
    }

    /// The same as a URL.
    pub fn url(&self) -> String {
        format!("postgresql://{USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts a stopped server again, on the same port and data.
    pub fn start_again(&mut self) -> Result<(), PgTestError> {
        if !self.running {
            self.pg_ctl_start()?;
            self.running = true;
        }
        Ok(())
    }

    /// Stops the server now (drop does it too).
    pub fn stop(&mut self) -> Result<(), PgTestError> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        let output = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output()?;
        if !output.status.success() {
            return Err(step_error("pg_ctl stop", &output));
        }
        Ok(())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Best effort: a failing stop must not hide the test's own failure.
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
