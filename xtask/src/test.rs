//! `cargo xtask test`: everything CI checks, in one command (`.ci/run` runs exactly this).
//!
//! Why one driver: the host kernel can only run the tracepoint strategy, so a green run needs
//! both the host test suite and a VM run per strategy on Debian's stock kernel. Every part runs
//! even after an earlier one failed, so a single CI run shows all breakages; the summary table
//! at the end names each part, and any failure, hang or missing result marker makes the
//! command exit non-zero.

use std::{
    env,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use crate::{cargo, is_root, run_cmd, setup, target_dir, vm};

/// The strategy the host kernel supports (it refuses fentry and LSM programs).
const HOST_STRATEGY: &str = "tracepoint";
/// Run in this order: LSM first, as it is the preferred strategy on kernels that allow it.
/// The tracepoint strategy runs every suite on the host already; in the VM it runs only the
/// suite about what differs between kernels (io_uring, mappings, descriptors: the evasion
/// suite), which also loads every tracepoint program past the stock kernel's verifier. That
/// keeps a cold `cargo xtask test` under 45 minutes on two cores; `cargo xtask vm --strategy
/// tracepoint` runs all of them.
const VM_STRATEGIES: &[(vm::Strategy, &[&str])] = &[
    (vm::Strategy::Lsm, &[]),
    (vm::Strategy::Fentry, &[]),
    (vm::Strategy::Tracepoint, &["evasion_realtime"]),
];

struct Row {
    name: String,
    elapsed: Duration,
    result: Result<String>,
}

pub fn run(vm_timeout: Duration, binary_timeout: Duration) -> Result<()> {
    if !is_root() {
        bail!(
            "cargo xtask test needs root: the host tests load BPF programs and setup installs \
             packages and mounts bpffs/tracefs/securityfs"
        );
    }
    let started = Instant::now();
    setup::run()?;
    let mut rows = Vec::new();
    rows.push(timed("host: cargo test", host_tests));
    for &(strategy, binaries) in VM_STRATEGIES {
        let opts = vm::VmOpts {
            strategy,
            keep: false,
            timeout: vm_timeout,
            binary_timeout,
            binaries: binaries.iter().map(|name| name.to_string()).collect(),
            test_args: Vec::new(),
        };
        rows.push(timed(&format!("vm: {strategy}"), || {
            run_vm_once_more_on_lockup(&opts)
        }));
    }
    summary(&rows, started.elapsed());
    let failed: Vec<&str> = rows
        .iter()
        .filter(|row| row.result.is_err())
        .map(|row| row.name.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} parts failed: {}",
            failed.len(),
            rows.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

fn timed(name: &str, part: impl FnOnce() -> Result<String>) -> Row {
    println!("==> {name}");
    let started = Instant::now();
    let result = part();
    if let Err(err) = &result {
        eprintln!("xtask: {name} FAILED: {err:#}");
    }
    Row {
        name: name.to_owned(),
        elapsed: started.elapsed(),
        result,
    }
}

/// `cargo test` over the workspace on the host kernel. fim-ebpf is excluded: it is a no_std
/// BPF binary that cannot link for the host (fim-userspace's build.rs builds it for BPF).
/// The integration tests find the daemon through FIMD_BIN and use the host's strategy.
fn host_tests() -> Result<String> {
    crate::build::run(false)?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--exclude", "fim-ebpf"]);
    if env::var_os("FIMD_BIN").is_none() {
        cmd.env("FIMD_BIN", target_dir().join("debug").join("fimd"));
    }
    if env::var_os("FIM_STRATEGY").is_none() {
        cmd.env("FIM_STRATEGY", HOST_STRATEGY);
    }
    run_cmd(&mut cmd)?;
    Ok("passed".to_owned())
}

fn summary(rows: &[Row], total: Duration) {
    println!();
    println!("{:<22} {:<6} {:>8}  detail", "part", "result", "time");
    println!("{}", "-".repeat(72));
    for row in rows {
        let (verdict, detail) = match &row.result {
            Ok(detail) => ("PASS", detail.clone()),
            Err(err) => ("FAIL", format!("{err:#}")),
        };
        println!(
            "{:<22} {:<6} {:>7.1}s  {}",
            row.name,
            verdict,
            row.elapsed.as_secs_f64(),
            detail
        );
    }
    println!("{}", "-".repeat(72));
    println!("total {:.1}s", total.as_secs_f64());
}

/// Runs one VM suite. If it failed and the guest kernel reported a soft lockup, runs it once
/// more, loudly: once in about eight fentry runs the emulated 6.1 guest locked up both vCPUs
/// (test thread and fimd, no backtrace captured yet), which looks like an emulator/kernel
/// problem rather than a test verdict. A second failure of any kind fails the part, and the
/// lockup is always printed.
fn run_vm_once_more_on_lockup(opts: &vm::VmOpts) -> Result<String> {
    let first = vm::run(opts);
    let Err(error) = first else {
        return first.map(|report| format!("{} test binaries passed", report.tests));
    };
    let log = crate::vm_cache_dir().join(format!("serial-{}.log", opts.strategy));
    let serial = std::fs::read_to_string(&log).unwrap_or_default();
    if !serial.contains("soft lockup") {
        return Err(error);
    }
    let saved = log.with_extension("lockup.log");
    let _ = std::fs::copy(&log, &saved);
    eprintln!(
        "xtask: WARNING: vm {} failed with a guest soft lockup (log kept at {}); running it once more",
        opts.strategy,
        saved.display()
    );
    vm::run(opts).map(|report| {
        format!(
            "{} test binaries passed on the second boot (first: guest soft lockup)",
            report.tests
        )
    })
}
