//! `cargo xtask build [--release]`: build the daemon and, through its build.rs (aya-build), the
//! BPF object it embeds, the CLI, and for x86_64-pc-windows-gnu (with mingw) the Windows
//! companion `fimsvc.exe` and the CLI again as `fim.exe`; also the workspace collector.
//!
//! Why a task for a single cargo call: it is the one place that names the package to build, so
//! `run` and `test` build exactly what a developer builds. It deliberately does not run setup,
//! which keeps the edit-build loop free of apt and rustup checks.

use anyhow::Result;

use crate::{cargo, run_cmd};

pub fn run(release: bool) -> Result<()> {
    let mut cmd = cargo();
    cmd.args([
        "build",
        "-p",
        "fim-userspace",
        "-p",
        "fim-cli",
        "-p",
        "fim-collector",
    ]);
    if release {
        cmd.arg("--release");
    }
    run_cmd(&mut cmd)?;
    crate::wine::build_windows(release)
}
