//! `cargo xtask test`: everything CI checks, in one command (`.ci/run` runs exactly this).
//!
//! Why one driver: the host kernel can only run the tracepoint strategy, so a green run needs
//! both the host test suite and a VM run per strategy on Debian's stock kernel. Every part runs
//! even after an earlier one failed, so a single CI run shows all breakages; the summary table
//! at the end names each part, and any failure, hang or missing result marker makes the
//! command exit non-zero. The parts run in two lanes on the two cores (see [`run`]); the host
//! suite's lines are prefixed `[host]`, the Wine run's `[wine]`, each guest's `[vm STRATEGY]`.

use std::{
    env,
    io::{BufRead, BufReader, Read},
    process::{Command, Stdio},
    sync::{mpsc, Arc},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};

use crate::{cargo, is_root, setup, target_dir, vm};

/// The strategy the host kernel supports (it refuses fentry and LSM programs).
const HOST_STRATEGY: &str = "tracepoint";
/// The test binaries each guest runs (empty: all). LSM and fentry run one after the other
/// beside the host suite; tracepoint runs once the host suite is done (see [`run`]).
/// The tracepoint strategy runs every suite on the host already; in the VM it runs only the
/// suite about what differs between kernels (io_uring, mappings, descriptors: the evasion
/// suite), which also loads every tracepoint program past the stock kernel's verifier. That
/// keeps a cold `cargo xtask test` under 45 minutes on two cores; `cargo xtask vm --strategy
/// tracepoint` runs all of them.
fn guest_binaries(strategy: vm::Strategy) -> &'static [&'static str] {
    match strategy {
        vm::Strategy::Lsm | vm::Strategy::Fentry => &[],
        vm::Strategy::Tracepoint => &["evasion_realtime"],
    }
}

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
    let opts = |strategy: vm::Strategy| vm::VmOpts {
        strategy,
        keep: false,
        timeout: vm_timeout,
        binary_timeout,
        binaries: guest_binaries(strategy)
            .iter()
            .map(|name| name.to_string())
            .collect(),
        test_args: Vec::new(),
    };
    // Two lanes, because neither the host suite nor an emulated guest keeps two cores busy
    // (measured: about 0.6 and 0.8 cores): the host suite, the Wine run and the tracepoint
    // guest, beside the VM build then the LSM and fentry guests (the longer lane, so the Wine
    // run's few minutes cold do not lengthen the whole). One static build serves all three
    // guests.
    let (built, wait_for_build) = mpsc::channel::<Option<Arc<vm::StaticBuild>>>();
    let (host_lane, vm_lane) = std::thread::scope(|scope| {
        let host_lane = scope.spawn(move || {
            let mut rows = vec![timed("host: cargo test", host_tests)];
            rows.push(timed("wine: engine and fimsvc", wine_tests));
            let bins = wait_for_build.recv().ok().flatten();
            rows.push(guest(&opts(vm::Strategy::Tracepoint), bins.as_deref()));
            rows
        });
        let vm_lane = scope.spawn(move || {
            let build_started = Instant::now();
            println!("==> vm: build");
            let build = vm::build_static().map(Arc::new);
            if let Err(error) = &build {
                eprintln!("xtask: vm: build FAILED: {error:#}");
            }
            let bins = build.as_ref().ok().cloned();
            let _ = built.send(bins.clone());
            let mut rows = vec![Row {
                name: "vm: build".to_owned(),
                elapsed: build_started.elapsed(),
                result: build
                    .map(|bins| format!("fimd and {} test binaries", bins.test_binaries())),
            }];
            for strategy in [vm::Strategy::Lsm, vm::Strategy::Fentry] {
                rows.push(guest(&opts(strategy), bins.as_deref()));
            }
            rows
        });
        (join(host_lane), join(vm_lane))
    });
    let mut rows = host_lane;
    rows.extend(vm_lane);
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

/// A lane's rows, or one failed row if its thread panicked.
fn join(lane: std::thread::ScopedJoinHandle<'_, Vec<Row>>) -> Vec<Row> {
    lane.join().unwrap_or_else(|_| {
        vec![Row {
            name: "lane".to_owned(),
            elapsed: Duration::ZERO,
            result: Err(anyhow!("the lane's thread panicked")),
        }]
    })
}

/// One guest run, or a failed row saying why it could not run.
fn guest(opts: &vm::VmOpts, bins: Option<&vm::StaticBuild>) -> Row {
    let name = format!("vm: {}", opts.strategy);
    match bins {
        Some(bins) => timed(&name, || run_vm_once_more_on_lockup(opts, bins)),
        None => Row {
            name,
            elapsed: Duration::ZERO,
            result: Err(anyhow!("not run: the VM build failed")),
        },
    }
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
    // Every test binary runs even after one fails, so one CI run shows every failure.
    cmd.args([
        "test",
        "--workspace",
        "--exclude",
        "fim-ebpf",
        "--no-fail-fast",
    ]);
    if env::var_os("FIMD_BIN").is_none() {
        cmd.env("FIMD_BIN", target_dir().join("debug").join("fimd"));
    }
    if env::var_os("FIM_STRATEGY").is_none() {
        cmd.env("FIM_STRATEGY", HOST_STRATEGY);
    }
    run_prefixed(&mut cmd, "[host] ")?;
    Ok("passed".to_owned())
}

/// The engine's tests under Wine (`cargo xtask wine-test` without its setup: ours ran).
fn wine_tests() -> Result<String> {
    let passed = crate::wine::test("[wine] ")?;
    Ok(format!("{passed} tests passed under Wine"))
}

/// Runs `cmd` with every line it prints prefixed, so that the host suite reads apart from
/// the guest consoles printing beside it.
fn run_prefixed(cmd: &mut Command, prefix: &str) -> Result<()> {
    let line = crate::show(cmd);
    eprintln!("xtask: $ {line}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start `{line}`"))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    std::thread::scope(|scope| {
        scope.spawn(|| copy_lines(stdout, prefix));
        scope.spawn(|| copy_lines(stderr, prefix));
    });
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

fn copy_lines(from: Option<impl Read>, prefix: &str) {
    let Some(from) = from else { return };
    for line in BufReader::new(from).split(b'\n').map_while(Result::ok) {
        println!("{prefix}{}", String::from_utf8_lossy(&line));
    }
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
fn run_vm_once_more_on_lockup(opts: &vm::VmOpts, bins: &vm::StaticBuild) -> Result<String> {
    let first = vm::run_built(opts, bins);
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
    vm::run_built(opts, bins).map(|report| {
        format!(
            "{} test binaries passed on the second boot (first: guest soft lockup)",
            report.tests
        )
    })
}
