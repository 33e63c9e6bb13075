//! `cargo xtask`: the project's developer and CI entry point.
//!
//! Why an xtask rather than shell scripts: the steps (installing the BPF toolchain, building the
//! BPF object through aya-build, booting a stock kernel under QEMU and judging its serial log)
//! have enough logic that they deserve a type checker, `anyhow` context on every failure, and
//! one place that CI (`.ci/run` runs `cargo xtask test`) and developers share. Each subcommand
//! lives in its own module; this file holds the CLI and the small process helpers they share.

mod bench;
mod bench_scan;
mod build;
mod postgres;
mod run;
mod setup;
mod test;
mod vm;
mod wine;

use std::{
    env,
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Output},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Developer and CI tasks for fim"
)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing: apt packages, nightly + rust-src, bpf-linker, the pseudo
    /// filesystems, and the Debian kernel the VM tests boot. Idempotent and fast when done.
    Setup,
    /// Build fimd (its build.rs builds the BPF object), fim, and fimsvc.exe for Windows. Does
    /// not run setup.
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Run setup, build release, then exec target/release/fimd with the given arguments.
    Run {
        /// Arguments passed to fimd (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// What CI runs: setup, the host test suite, the engine's tests under Wine, then the VM
    /// runs for every strategy.
    Test {
        /// Hard time limit for each VM run, in seconds.
        #[arg(long, default_value_t = vm::DEFAULT_TIMEOUT_SECS)]
        vm_timeout: u64,
        /// Time limit for each test binary inside the VM, in seconds.
        #[arg(long, default_value_t = vm::DEFAULT_BINARY_TIMEOUT_SECS)]
        binary_timeout: u64,
    },
    /// Build the engine's and fimsvc's tests (fim-model, fim-engine, fim-windows) for
    /// x86_64-pc-windows-gnu and run them under Wine 8.0 (runs setup's Wine part first).
    WineTest,
    /// Run the fim-tests suite inside QEMU on Debian's stock kernel.
    Vm {
        /// The strategy fimd and the tests use inside the VM (FIM_STRATEGY).
        #[arg(long, value_enum)]
        strategy: vm::Strategy,
        /// Keep the VM work directory (init script, initramfs) under .cache/vm/work/.
        #[arg(long)]
        keep: bool,
        /// Hard time limit for the whole boot, in seconds.
        #[arg(long, default_value_t = vm::DEFAULT_TIMEOUT_SECS)]
        timeout: u64,
        /// Time limit for each test binary inside the guest, in seconds.
        #[arg(long, default_value_t = vm::DEFAULT_BINARY_TIMEOUT_SECS)]
        binary_timeout: u64,
        /// Run only this test binary (repeatable; e.g. `--binary writes`). Default: all.
        #[arg(long = "binary", value_name = "NAME")]
        binaries: Vec<String>,
        /// Extra arguments for every test binary (e.g. a test name filter), after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        test_args: Vec<String>,
    },
    /// Run a benchmark (`kernel`: write overhead with the daemon off and on, event
    /// completeness, BPF run time; `scan`: baseline and rescan speed beside AIDE and b3sum,
    /// `cargo xtask bench scan -- --help`). Results go to stdout; record them in BENCHMARKS.md.
    Bench {
        /// Which benchmark.
        name: String,
        /// Extra options for the benchmark driver (e.g. `--rounds 5`), after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match dispatch(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Task::Setup => setup::run(),
        Task::Bench { name, args } => bench::run(&name, &args),
        Task::Build { release } => build::run(release),
        Task::Run { args } => run::run(&args),
        Task::WineTest => wine::run(),
        Task::Test {
            vm_timeout,
            binary_timeout,
        } => test::run(
            Duration::from_secs(vm_timeout),
            Duration::from_secs(binary_timeout),
        ),
        Task::Vm {
            strategy,
            keep,
            timeout,
            binary_timeout,
            binaries,
            test_args,
        } => {
            setup::run()?;
            let opts = vm::VmOpts {
                strategy,
                keep,
                timeout: Duration::from_secs(timeout),
                binary_timeout: Duration::from_secs(binary_timeout),
                binaries,
                test_args,
            };
            vm::run(&opts).map(|_| ())
        }
    }
}

/// The workspace root (the directory holding xtask/).
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set, else `<root>/target`.
pub(crate) fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root().join(dir),
        _ => workspace_root().join("target"),
    }
}

/// `.cache/vm/` under the workspace root (gitignored): the VM kernel, work dirs and logs.
pub(crate) fn vm_cache_dir() -> PathBuf {
    workspace_root().join(".cache").join("vm")
}

/// A `cargo` command (the same cargo that runs us, when known), run from the workspace root.
pub(crate) fn cargo() -> Command {
    let program = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(workspace_root());
    cmd
}

/// Whether we run with effective uid 0 (read from /proc/self/status, no libc needed).
pub(crate) fn is_root() -> bool {
    let Ok(status) = fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .is_some_and(|euid| euid == "0")
}

/// A command as a shell-like line, with the environment it sets, for logs and errors.
pub(crate) fn show(cmd: &Command) -> String {
    let quote = |s: &OsStr| {
        let s = s.to_string_lossy();
        if s.is_empty() || s.contains(|c: char| c.is_whitespace() || "'\"$\\".contains(c)) {
            format!("'{}'", s.replace('\'', r"'\''"))
        } else {
            s.into_owned()
        }
    };
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| format!("{}={}", k.to_string_lossy(), quote(v))))
        .collect();
    let program = Path::new(cmd.get_program());
    parts.push(quote(program.file_name().unwrap_or(program.as_os_str())));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

/// Runs a command with inherited stdio, printing it first; fails unless it exits 0.
pub(crate) fn run_cmd(cmd: &mut Command) -> Result<()> {
    let line = show(cmd);
    eprintln!("xtask: $ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("failed to start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs a command quietly and returns its output, whatever its exit status. Errors only when
/// it cannot be started (e.g. the program is not installed).
pub(crate) fn probe(cmd: &mut Command) -> Result<Output> {
    cmd.output()
        .with_context(|| format!("failed to start `{}`", show(cmd)))
}
