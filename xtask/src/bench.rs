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
        other => bail!("unknown benchmark `{other}`; available: kernel, scan, grpc"),
    }
}

/// kernel: write overhead with the daemon off and on, event completeness (`bench_kernel`).
/// grpc: streaming throughput (1 and 8 subscribers, beside reading the journal directly) and
/// write-to-subscriber latency (beside the coalescing window) (`bench_grpc`).
/// Both drivers start the release fimd themselves.
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
