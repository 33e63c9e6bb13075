//! PostgreSQL 15 for the tests that need a real server (fim-kql's now, the collector's
//! later): installs Debian's postgresql-15 when its server binary is missing. The tests start
//! throwaway servers of their own from these binaries (fim-kql's `pg_test`), so nothing here
//! starts or configures a cluster. Idempotent: a machine that has the binary is left alone.

use std::{path::Path, process::Command};

use anyhow::{bail, Result};

use crate::{is_root, run_cmd};

/// The server binary the tests run (Debian's layout).
const POSTGRES_BIN: &str = "/usr/lib/postgresql/15/bin/postgres";
const PACKAGE: &str = "postgresql-15";

pub fn ensure() -> Result<()> {
    if Path::new(POSTGRES_BIN).is_file() {
        println!("setup: {PACKAGE} present ({POSTGRES_BIN})");
        return Ok(());
    }
    if !is_root() {
        bail!("setup needs root to install {PACKAGE}: run `cargo xtask setup` as root");
    }
    println!("setup: installing {PACKAGE} (the PostgreSQL tests start their own servers)");
    run_cmd(Command::new("apt-get").arg("update"))?;
    run_cmd(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends", PACKAGE]),
    )?;
    if !Path::new(POSTGRES_BIN).is_file() {
        bail!("{PACKAGE} installed but {POSTGRES_BIN} is still missing");
    }
    Ok(())
}
