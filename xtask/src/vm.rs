//! `cargo xtask vm --strategy S`: run the fim-tests suite inside QEMU on Debian's stock kernel.
//!
//! Why a VM: the development and CI machines' own kernel refuses fentry and LSM programs, so
//! those strategies (and the stock distribution kernel users actually run) can only be tested
//! in a guest. KVM does not boot stock kernels here, so QEMU runs under TCG. The guest is a
//! busybox initramfs holding statically linked binaries (built in target/vm so the host build
//! stays fresh); its /init runs each test binary and prints result markers on the serial
//! console, which this module captures, times out, and judges.

mod initramfs;
mod qemu;

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context as _, Result};
use initramfs::Entry;

use crate::{cargo, run_cmd, setup, show, target_dir, vm_cache_dir};

/// Generous because `cargo xtask test` runs guests beside the host suite and each other on two
/// cores: alone, the slowest guest (fentry, all suites) runs about 500 s and the slowest
/// binary (evasion_realtime under tracepoint) about 290 s.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30 * 60;
pub const DEFAULT_BINARY_TIMEOUT_SECS: u64 = 10 * 60;
const TARGET: &str = "x86_64-unknown-linux-gnu";
const MARK_KERNEL: &str = "FIM-VM-KERNEL ";
const MARK_LSM: &str = "FIM-VM-LSM ";
const MARK_START: &str = "FIM-VM-START ";
const MARK_EXIT: &str = "FIM-VM-EXIT ";
const MARK_DONE: &str = "FIM-VM-DONE";

pub use fim_common::strategy::Strategy;

pub struct VmOpts {
    pub strategy: Strategy,
    pub keep: bool,
    pub timeout: Duration,
    /// Time limit for each test binary inside the guest.
    pub binary_timeout: Duration,
    /// Only these test binaries (empty: all of them).
    pub binaries: Vec<String>,
    pub test_args: Vec<String>,
}

/// What a passing run reports.
pub struct VmReport {
    pub tests: usize,
}

/// Builds the static binaries, then boots the guest with them.
pub fn run(opts: &VmOpts) -> Result<VmReport> {
    run_built(opts, &build_static()?)
}

/// Boots the guest with binaries built already (several strategies can share one build).
pub fn run_built(opts: &VmOpts, bins: &StaticBuild) -> Result<VmReport> {
    let strategy = opts.strategy;
    let cache = vm_cache_dir();
    let (kernel, release) = setup::cached_kernel(&cache)?.ok_or_else(|| {
        anyhow!(
            "no VM kernel in {}: run `cargo xtask setup`",
            cache.display()
        )
    })?;
    if bins.tests.is_empty() {
        bail!("fim-tests built no test executables");
    }
    let work = cache.join("work").join(strategy.to_string());
    initramfs::fresh_dir(&work)?;
    let initrd = work.join("initramfs.cpio.gz");
    let names: Vec<&str> = bins
        .tests
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| opts.binaries.is_empty() || opts.binaries.iter().any(|only| only == name))
        .collect();
    if let Some(unknown) = opts
        .binaries
        .iter()
        .find(|only| !names.contains(&only.as_str()))
    {
        bail!(
            "no test binary named {unknown:?} (fim-tests builds {:?})",
            bins.tests.iter().map(|(name, _)| name).collect::<Vec<_>>()
        );
    }
    let init = init_script(opts, &names);
    std::fs::write(work.join("init"), &init).context("writing the init script")?;
    initramfs::write_gz(&initrd, &image_entries(bins, init)?)?;
    println!(
        "vm {strategy}: booting {release} with {} test binaries (timeout {}s)",
        names.len(),
        opts.timeout.as_secs()
    );
    let log = cache.join(format!("serial-{strategy}.log"));
    let started = Instant::now();
    let booted = qemu::boot(&kernel, &initrd, &log, strategy, opts.timeout);
    if !opts.keep {
        std::fs::remove_dir_all(&work).with_context(|| format!("removing {}", work.display()))?;
    }
    let booted = booted?;
    println!(
        "vm {strategy}: guest ran {:.1}s; serial log {}",
        started.elapsed().as_secs_f64(),
        log.display()
    );
    let outcome = qemu::Outcome::parse(&booted.console);
    outcome.judge(strategy, &names, booted.problem.as_deref(), &log)?;
    Ok(VmReport { tests: names.len() })
}

pub struct StaticBuild {
    fimd: PathBuf,
    tests: Vec<(String, PathBuf)>,
}

impl StaticBuild {
    /// How many test executables the guests can run.
    pub fn test_binaries(&self) -> usize {
        self.tests.len()
    }
}

/// Builds fimd and the fim-tests executables as static binaries in target/vm.
pub fn build_static() -> Result<StaticBuild> {
    let target = target_dir().join("vm");
    let with_env = |cmd: &mut Command| {
        cmd.env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env("CARGO_TARGET_DIR", &target);
    };
    let mut daemon = cargo();
    with_env(&mut daemon);
    daemon.args(["build", "--release", "-p", "fim-userspace", "--bin", "fimd"]);
    daemon.args(["--target", TARGET]);
    run_cmd(&mut daemon)?;
    let fimd = target.join(TARGET).join("release").join("fimd");

    let mut tests = cargo();
    with_env(&mut tests);
    tests.args([
        "test",
        "--release",
        "-p",
        "fim-tests",
        "--no-run",
        "--target",
        TARGET,
    ]);
    // Artifacts as JSON on stdout; diagnostics still rendered for humans on stderr.
    tests.arg("--message-format=json-render-diagnostics");
    tests.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let line = show(&tests);
    eprintln!("xtask: $ {line}");
    let output = tests
        .output()
        .with_context(|| format!("failed to start `{line}`"))?;
    if !output.status.success() {
        bail!("`{line}` failed ({})", output.status);
    }
    let mut found = test_executables(&String::from_utf8_lossy(&output.stdout))?;
    // The engine and API suites (engine_*, api_*) test reconcile, the store, the CLI and
    // gRPC, which do not depend on the attach strategy, and need tools the VM's busybox
    // userland lacks (setpriv, groupadd, the fim binary); they run on the host. The VM runs
    // every kernel-pipeline suite.
    found.retain(|(name, _)| !name.starts_with("engine_") && !name.starts_with("api_"));
    found.sort();
    for (_, path) in std::iter::once(&(String::new(), fimd.clone())).chain(&found) {
        initramfs::check_static(path)?;
    }
    Ok(StaticBuild { fimd, tests: found })
}

/// Test executables from cargo's JSON messages, named by their target (made unique).
fn test_executables(json_lines: &str) -> Result<Vec<(String, PathBuf)>> {
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    for line in json_lines.lines().filter(|l| l.starts_with('{')) {
        let msg: serde_json::Value =
            serde_json::from_str(line).context("parsing cargo's JSON output")?;
        let is_test = msg["profile"]["test"].as_bool() == Some(true);
        let (Some("compiler-artifact"), Some(exe), true) =
            (msg["reason"].as_str(), msg["executable"].as_str(), is_test)
        else {
            continue;
        };
        let target = msg["target"]["name"].as_str().unwrap_or("test");
        let mut name: String = target
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if found.iter().any(|(n, _)| *n == name) {
            let kind = msg["target"]["kind"][0].as_str().unwrap_or("x");
            name = format!("{name}-{kind}-{}", found.len());
        }
        found.push((name, PathBuf::from(exe)));
    }
    Ok(found)
}

/// Quotes for the guest's busybox sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn init_script(opts: &VmOpts, tests: &[&str]) -> String {
    let strategy = opts.strategy;
    let limit = opts.binary_timeout.as_secs().max(1);
    let mut s = String::from("#!/bin/busybox sh\n/bin/busybox --install -s /bin\n");
    s.push_str("export PATH=/bin HOME=/root TMPDIR=/tmp\n");
    let mounts = [
        ("proc", "/proc"),
        ("sysfs", "/sys"),
        ("devtmpfs", "/dev"),
        ("tmpfs", "/tmp"),
        ("bpf", "/sys/fs/bpf"),
        ("tracefs", "/sys/kernel/tracing"),
        ("securityfs", "/sys/kernel/security"),
    ];
    for (fstype, dir) in mounts {
        s.push_str(&format!(
            "mount -t {fstype} {fstype} {dir} || echo 'FIM-VM-WARN mount {fstype} {dir} failed'\n"
        ));
    }
    s.push_str(&format!("echo \"{MARK_KERNEL}$(uname -r)\"\n"));
    s.push_str(&format!(
        "echo \"{MARK_LSM}$(cat /sys/kernel/security/lsm)\"\n"
    ));
    s.push_str("cd /tmp\n");
    let args: Vec<String> = opts.test_args.iter().map(|a| sh_quote(a)).collect();
    for name in tests {
        s.push_str(&format!("echo '{MARK_START}{name}'\n"));
        // A hung binary is killed so the others still run; fimd instances it left behind are
        // killed so they cannot disturb the next binary.
        s.push_str(&format!(
            "FIMD_BIN=/bin/fimd FIM_STRATEGY={strategy} FIM_EMULATED=1 RUST_BACKTRACE=1 \
             timeout -s KILL {limit} /tests/{name} --test-threads=1 {}\n",
            args.join(" ")
        ));
        s.push_str(&format!("echo \"{MARK_EXIT}{name} $?\"\n"));
        s.push_str(&format!(
            "if pidof fimd >/dev/null; then echo 'FIM-VM-WARN fimd left running after {name}'; \
             killall -9 fimd; fi\n"
        ));
    }
    s.push_str(&format!("echo {MARK_DONE}\nsync\npoweroff -f\n"));
    // Should poweroff return, ask the kernel directly; if init exits, panic=-1 reboots and
    // QEMU's -no-reboot ends the run anyway.
    s.push_str("sleep 5\necho o > /proc/sysrq-trigger\n");
    s
}

fn image_entries(bins: &StaticBuild, init: String) -> Result<Vec<Entry>> {
    let dir = |path: &str| Entry::Dir {
        path: path.into(),
        mode: 0o755,
    };
    let busybox = PathBuf::from("/bin/busybox");
    initramfs::check_static(&busybox).context("busybox-static provides /bin/busybox")?;
    let mut entries = vec![
        dir("bin"),
        dir("dev"),
        dir("proc"),
        dir("sys"),
        dir("tmp"),
        dir("root"),
        dir("tests"),
        Entry::CharDev {
            path: "dev/console".into(),
            mode: 0o600,
            major: 5,
            minor: 1,
        },
        Entry::File {
            path: "bin/busybox".into(),
            source: busybox,
            mode: 0o755,
        },
        Entry::File {
            path: "bin/fimd".into(),
            source: bins.fimd.clone(),
            mode: 0o755,
        },
        Entry::Bytes {
            path: "init".into(),
            data: init.into_bytes(),
            mode: 0o755,
        },
    ];
    for (name, exe) in &bins.tests {
        entries.push(Entry::File {
            path: format!("tests/{name}"),
            source: exe.clone(),
            mode: 0o755,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::test_executables;

    #[test]
    fn finds_test_executables() -> anyhow::Result<()> {
        let json = concat!(
            r#"{"reason":"compiler-artifact","target":{"name":"fim_tests","kind":["lib"]},"#,
            r#""profile":{"test":true},"executable":"/t/fim_tests-1"}"#,
            "\n",
            r#"{"reason":"compiler-artifact","target":{"name":"libc","kind":["lib"]},"#,
            r#""profile":{"test":false},"executable":null}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
        );
        let found = test_executables(json)?;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "fim_tests");
        Ok(())
    }
}
