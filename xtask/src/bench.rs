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
        "kernel" => kernel(args),
        "scan" => crate::bench_scan::run(args),
        "grpc" => grpc(args),
        other => bail!("unknown benchmark `{other}`; available: kernel, scan, grpc"),
    }
}

/// Streaming throughput (1 and 8 subscribers, beside reading the journal directly) and
/// write-to-subscriber latency (beside the coalescing window); see `bench_grpc`.
fn grpc(args: &[String]) -> Result<()> {
    setup::run()?;
    run_cmd(cargo().args(["build", "--release", "-p", "fim-userspace", "--bin", "fimd"]))?;
    run_cmd(cargo().args([
        "build",
        "--release",
        "-p",
        "fim-tests",
        "--bin",
        "bench_grpc",
    ]))?;
    let release = target_dir().join("release");
    run_cmd(
        std::process::Command::new(release.join("bench_grpc"))
            .arg("--fimd")
            .arg(release.join("fimd"))
            .args(args),
    )
}

fn kernel(args: &[String]) -> Result<()> {
    setup::run()?;
    run_cmd(cargo().args(["build", "--release", "-p", "fim-userspace", "--bin", "fimd"]))?;
    run_cmd(cargo().args([
        "build",
        "--release",
        "-p",
        "fim-tests",
        "--bin",
        "bench_kernel",
    ]))?;
    let release = target_dir().join("release");
    run_cmd(
        std::process::Command::new(release.join("bench_kernel"))
            .arg("--fimd")
            .arg(release.join("fimd"))
            .args(args),
    )
}
