//! `cargo xtask bench NAME`: the benchmarks.
//!
//! `kernel` builds the release daemon and the benchmark driver (`fim-tests`'s `bench_kernel`
//! binary) and runs them side by side. The driver does the measuring; this module only builds
//! and starts it, so the benchmark's logic has one home.
//!
//! `scan` lives in [`crate::bench_scan`]: it only runs processes (fim, aide, b3sum) and needs
//! no driver of its own inside the workspace.
use anyhow::{bail, Result};

use crate::{cargo, run_cmd, setup, target_dir};

/// Runs one benchmark by name, passing `args` to its driver.
pub(crate) fn run(name: &str, args: &[String]) -> Result<()> {
    match name {
        "kernel" => driver("bench_kernel", args),
        "scan" => crate::bench_scan::run(args),
        "grpc" => driver("bench_grpc", args),
        "policy" => {
            run_cmd(cargo().args(["build", "--release", "-p", "fim-cli", "--bin", "fim"]))?;
            let fim = target_dir().join("release/fim");
            let mut with_fim = vec!["--fim".to_string(), fim.display().to_string()];
            with_fim.extend_from_slice(args);
            driver("bench_policy", &with_fim)
        }
        "windows" => crate::wine::bench(args),
        "copy" => copy(args),
        "workspace" => workspace(args),
        other => {
            bail!(
                "unknown benchmark `{other}`; available: kernel, scan, grpc, policy, windows, \
                 copy, workspace"
            )
        }
    }
}

/// copy: `cp -r` of 100,000 small files (or the count given) into a monitored tree: fimd's
/// peak RSS beside the 100 MB target and every copied path's record (`bench_copy`).
fn copy(args: &[String]) -> Result<()> {
    setup::run()?;
    run_cmd(cargo().args(["build", "--release", "-p", "fim-userspace", "--bin", "fimd"]))?;
    run_cmd(cargo().args(["build", "--release", "-p", "fim-cli", "--bin", "fim"]))?;
    run_cmd(cargo().args([
        "build",
        "--release",
        "-p",
        "fim-tests",
        "--bin",
        "bench_copy",
    ]))?;
    let release = target_dir().join("release");
    run_cmd(
        std::process::Command::new(release.join("bench_copy"))
            .env("FIMD_BIN", release.join("fimd"))
            .env("FIM_BIN", release.join("fim"))
            .args(args),
    )
}

/// workspace: agents streaming flat out to a release collector on SQLite and on PostgreSQL
/// beside COPY (and a one-transaction SQLite insert), then the documented summary and a
/// drill-down through the Workspace API (`bench_workspace`).
fn workspace(args: &[String]) -> Result<()> {
    setup::run()?;
    run_cmd(cargo().args(["build", "--release", "-p", "fim-collector"]))?;
    run_cmd(cargo().args([
        "build",
        "--release",
        "-p",
        "fim-tests",
        "--bin",
        "bench_workspace",
    ]))?;
    let release = target_dir().join("release");
    run_cmd(
        std::process::Command::new(release.join("bench_workspace"))
            .arg("--collector")
            .arg(release.join("fim-collector"))
            .args(args),
    )
}

/// kernel: write overhead with the daemon off and on, event completeness (`bench_kernel`).
/// grpc: streaming throughput (1 and 8 subscribers, beside reading the journal directly) and
/// write-to-subscriber latency (beside the coalescing window) (`bench_grpc`).
/// policy: `fim policy check` on 20,000 entities beside reading and parsing the TOML alone,
/// fimd's start-up and reload on them, a change recorded during the reload (`bench_policy`).
/// The drivers start the release fimd themselves. windows: registry write-to-record latency
/// and a value-write storm under Wine (`crate::wine::bench`).
fn driver(name: &str, args: &[String]) -> Result<()> {
    setup::run()?;
    run_cmd(cargo().args(["build", "--release", "-p", "fim-userspace", "--bin", "fimd"]))?;
    run_cmd(cargo().args(["build", "--release", "-p", "fim-tests", "--bin", name]))?;
    let release = target_dir().join("release");
    run_cmd(
        std::process::Command::new(release.join(name))
            .arg("--fimd")
            .arg(release.join("fimd"))
            .args(args),
    )
}
