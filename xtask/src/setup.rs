//! `cargo xtask setup`: make a fresh Debian bookworm machine able to build and test fim
//! (the Wine lane's rustup target, prefix and shim included: `wine.rs`).
//!
//! Why: machines are handed over fresh (CI included), so whatever the project needs must be
//! installed by the project's own files. Each step checks first and only installs what is
//! missing, so the command is idempotent and takes seconds once everything is present. Every
//! action it takes is printed.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{anyhow, bail, Context as _, Result};

use crate::{is_root, probe, run_cmd, show, vm_cache_dir};

/// Debian packages the build and the tests need.
const REQUIRED_PACKAGES: &[&str] = &[
    "llvm-22-dev",     // bpf-linker links against LLVM 22, like rustc 1.95 / nightly
    "qemu-system-x86", // the VM tests
    "busybox-static",  // the VM's userland
    "cpio",            // inspecting initramfs images by hand
    "bpftool",         // inspecting loaded programs and maps
    "linux-perf",      // profiling fimd
    "acl",             // setfacl: the engine tests change POSIX ACLs
    "libcap2-bin",     // setcap: the engine tests change file capabilities
    "systemd",         // systemd-analyze verify: the shipped unit file is checked
    // The Wine lane (xtask/src/wine.rs):
    "gcc-mingw-w64-x86-64", // linker for x86_64-pc-windows-gnu, compiler of the ProcessPrng shim
    "wine",                 // Wine 8.0
    "wine64",               // its 64-bit loader: the cargo runner
];
/// Python packages the API tests use as a standard gRPC client (reflection over the socket).
const PYTHON_PACKAGES: &[&str] = &["grpcio", "grpcio-reflection"];
/// Nice to have; a failure to install them is only a warning.
const OPTIONAL_PACKAGES: &[&str] = &["hyperfine"];
/// Only `cargo xtask bench scan` needs these (the peers it runs beside us, and sqlite3 to
/// checkpoint fim.db before weighing it), so the benchmark installs them itself and plain
/// setup (CI) does not. Installed without recommends: aide's recommended aide-common would
/// add a system-wide config and a daily cron job that has no business on a build machine.
const SCAN_BENCH_PACKAGES: &[&str] = &[
    "aide",    // AIDE 0.18 on bookworm: the peer
    "b3sum",   // the hashing limit (BLAKE3, like us)
    "sqlite3", // PRAGMA wal_checkpoint before measuring the database
];
const BPF_LINKER_VERSION: &str = "0.13.0";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// (fstype, mount point) pairs fimd and the tests need.
const MOUNTS: &[(&str, &str)] = &[
    ("bpf", "/sys/fs/bpf"),
    ("tracefs", "/sys/kernel/tracing"),
    ("securityfs", "/sys/kernel/security"),
];
/// The Debian meta package whose dependency is the current stock kernel image.
const KERNEL_META_PACKAGE: &str = "linux-image-amd64";
/// File in the VM cache naming the cached kernel's release (`uname -r`).
const KERNEL_VERSION_FILE: &str = "kernel-version";

pub fn run() -> Result<()> {
    let started = Instant::now();
    let mut apt = Apt::default();
    apt_packages(&mut apt)?;
    crate::postgres::ensure()?;
    nightly_toolchain()?;
    crate::wine::setup()?;
    bpf_linker()?;
    pseudo_filesystems()?;
    python_packages()?;
    let (kernel, release) = vm_kernel(&mut apt)?;
    println!(
        "setup: VM kernel {release} at {}",
        kernel
            .strip_prefix(crate::workspace_root())
            .unwrap_or(&kernel)
            .display()
    );
    println!("setup: done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs `apt-get update` at most once per setup, and only when something must be fetched.
#[derive(Default)]
struct Apt {
    updated: bool,
}

impl Apt {
    fn update(&mut self) -> Result<()> {
        if !self.updated {
            need_root("apt-get update")?;
            run_cmd(Command::new("apt-get").arg("update"))?;
            self.updated = true;
        }
        Ok(())
    }

    fn install(&mut self, packages: &[&str]) -> Result<()> {
        self.install_with(packages, true)
    }

    fn install_with(&mut self, packages: &[&str], recommends: bool) -> Result<()> {
        need_root("apt-get install")?;
        self.update()?;
        let mut cmd = Command::new("apt-get");
        cmd.env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y"]);
        if !recommends {
            cmd.arg("--no-install-recommends");
        }
        run_cmd(cmd.args(packages))
    }
}

/// pip install, only when an import fails (so a warm machine does not touch PyPI).
fn python_packages() -> Result<()> {
    let present = Command::new("python3")
        .args(["-c", "import grpc, grpc_reflection"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if present {
        println!(
            "setup: python packages present: {}",
            PYTHON_PACKAGES.join(" ")
        );
        return Ok(());
    }
    println!(
        "setup: installing python packages: {}",
        PYTHON_PACKAGES.join(" ")
    );
    run_cmd(
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet"])
            .args(PYTHON_PACKAGES),
    )
}

fn need_root(what: &str) -> Result<()> {
    if is_root() {
        Ok(())
    } else {
        bail!("setup needs root for `{what}`: run `cargo xtask setup` as root")
    }
}

/// The subset of `packages` that dpkg does not report as installed.
fn missing_packages<'a>(packages: &[&'a str]) -> Result<Vec<&'a str>> {
    // dpkg-query prints a line per known package and exits 1 if any is unknown; read the lines.
    let output = probe(
        Command::new("dpkg-query")
            .args(["-W", "-f=${Package} ${db:Status-Status}\\n"])
            .args(packages),
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let installed: Vec<&str> = stdout
        .lines()
        .filter_map(|line| line.strip_suffix(" installed"))
        .collect();
    Ok(packages
        .iter()
        .copied()
        .filter(|p| !installed.contains(p))
        .collect())
}

fn apt_packages(apt: &mut Apt) -> Result<()> {
    let missing = missing_packages(REQUIRED_PACKAGES)?;
    if missing.is_empty() {
        println!(
            "setup: apt packages present: {}",
            REQUIRED_PACKAGES.join(" ")
        );
    } else {
        println!("setup: installing apt packages: {}", missing.join(" "));
        apt.install(&missing)?;
        let still = missing_packages(REQUIRED_PACKAGES)?;
        if !still.is_empty() {
            bail!(
                "apt packages still missing after install: {}",
                still.join(" ")
            );
        }
    }
    let optional = missing_packages(OPTIONAL_PACKAGES)?;
    if !optional.is_empty() {
        println!(
            "setup: installing optional apt packages: {}",
            optional.join(" ")
        );
        if let Err(err) = apt.install(&optional) {
            println!("setup: warning: optional packages not installed: {err:#}");
        }
    }
    Ok(())
}

/// Installs what `cargo xtask bench scan` runs beside fim (see [`SCAN_BENCH_PACKAGES`]).
/// Idempotent: a dpkg query and nothing else when they are present.
pub(crate) fn scan_bench_tools() -> Result<()> {
    let missing = missing_packages(SCAN_BENCH_PACKAGES)?;
    if missing.is_empty() {
        println!(
            "setup: bench packages present: {}",
            SCAN_BENCH_PACKAGES.join(" ")
        );
        return Ok(());
    }
    println!("setup: installing bench packages: {}", missing.join(" "));
    Apt::default().install_with(&missing, false)?;
    let still = missing_packages(SCAN_BENCH_PACKAGES)?;
    if !still.is_empty() {
        bail!(
            "bench packages still missing after install: {}",
            still.join(" ")
        );
    }
    Ok(())
}

fn nightly_toolchain() -> Result<()> {
    let toolchains = probe(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed (aya-build runs `rustup run nightly cargo`)")?;
    let has_nightly = String::from_utf8_lossy(&toolchains.stdout)
        .lines()
        .any(|line| line.starts_with("nightly-"));
    if !has_nightly {
        println!("setup: installing the nightly toolchain (builds the BPF crate)");
        run_cmd(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let components = probe(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    let has_src = String::from_utf8_lossy(&components.stdout)
        .lines()
        .any(|line| line.trim() == "rust-src");
    if !has_src {
        println!("setup: adding rust-src to nightly (-Z build-std=core for bpfel-unknown-none)");
        run_cmd(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    if has_nightly && has_src {
        println!("setup: nightly toolchain with rust-src present");
    }
    Ok(())
}

/// `Some(version line)` when `bpf-linker --version` runs.
fn bpf_linker_version() -> Option<String> {
    let output = Command::new("bpf-linker").arg("--version").output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn bpf_linker() -> Result<()> {
    let current = bpf_linker_version();
    if let Some(version) = &current {
        if version
            .split_whitespace()
            .any(|word| word == BPF_LINKER_VERSION)
        {
            println!("setup: {version} present");
            return Ok(());
        }
        println!("setup: replacing {version} with bpf-linker {BPF_LINKER_VERSION}");
    } else {
        println!("setup: installing bpf-linker {BPF_LINKER_VERSION} (about 2 minutes)");
    }
    let mut install = crate::cargo();
    install
        .env("LLVM_PREFIX", LLVM_PREFIX)
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args(["--no-default-features", "--features", "llvm-22"]);
    if current.is_some() {
        install.arg("--force");
    }
    run_cmd(&mut install)?;
    bpf_linker_version().map(|_| ()).ok_or_else(|| {
        anyhow!("bpf-linker installed but `bpf-linker --version` fails: is ~/.cargo/bin on PATH?")
    })
}

fn is_mounted(mounts: &str, fstype: &str, mount_point: &str) -> bool {
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace().skip(1);
        fields.next() == Some(mount_point) && fields.next() == Some(fstype)
    })
}

fn pseudo_filesystems() -> Result<()> {
    let mounts = fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    for &(fstype, mount_point) in MOUNTS {
        if is_mounted(&mounts, fstype, mount_point) {
            println!("setup: {fstype} mounted at {mount_point}");
            continue;
        }
        println!("setup: mounting {fstype} at {mount_point}");
        need_root("mount")?;
        run_cmd(Command::new("mount").args(["-t", fstype, fstype, mount_point]))?;
    }
    Ok(())
}

/// The cached VM kernel and its release, if setup has fetched one.
pub(crate) fn cached_kernel(cache: &Path) -> Result<Option<(PathBuf, String)>> {
    let version_file = cache.join(KERNEL_VERSION_FILE);
    if version_file.exists() {
        let text = fs::read_to_string(&version_file)
            .with_context(|| format!("reading {}", version_file.display()))?;
        let release = text.lines().next().unwrap_or_default().trim().to_owned();
        let kernel = cache.join(format!("vmlinuz-{release}"));
        if !release.is_empty() && kernel.is_file() {
            return Ok(Some((kernel, release)));
        }
    }
    Ok(None)
}

/// Ensures `.cache/vm/vmlinuz-<release>` exists: Debian's current stock kernel image.
fn vm_kernel(apt: &mut Apt) -> Result<(PathBuf, String)> {
    let cache = vm_cache_dir();
    if let Some(found) = cached_kernel(&cache)? {
        return Ok(found);
    }
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let package = match kernel_image_package()? {
        Some(package) => package,
        None => {
            apt.update()?;
            kernel_image_package()?.ok_or_else(|| {
                anyhow!("`apt-cache depends {KERNEL_META_PACKAGE}` names no linux-image package")
            })?
        }
    };
    println!("setup: fetching the VM kernel from Debian's {package}");
    let download = cache.join("download");
    if download.exists() {
        fs::remove_dir_all(&download)
            .with_context(|| format!("removing {}", download.display()))?;
    }
    fs::create_dir_all(&download).with_context(|| format!("creating {}", download.display()))?;
    let mut get = Command::new("apt-get");
    get.current_dir(&download).arg("download").arg(&package);
    if is_root() {
        // apt's sandbox user cannot write into a root-owned cache dir; say so instead of warning.
        get.args(["-o", "APT::Sandbox::User=root"]);
    }
    run_cmd(&mut get)?;
    let deb = only_entry(&download, |name| name.ends_with(".deb"))?;
    let extracted = download.join("root");
    run_cmd(Command::new("dpkg").arg("-x").arg(&deb).arg(&extracted))?;
    let boot = extracted.join("boot");
    let image = only_entry(&boot, |name| name.starts_with("vmlinuz-"))?;
    let release = image
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.strip_prefix("vmlinuz-"))
        .ok_or_else(|| anyhow!("odd kernel image name {}", image.display()))?
        .to_owned();
    let kernel = cache.join(format!("vmlinuz-{release}"));
    fs::copy(&image, &kernel)
        .with_context(|| format!("copying {} to {}", image.display(), kernel.display()))?;
    // The config says what the VM kernel can do (CONFIG_BPF_LSM, default LSM list, ...).
    let config = boot.join(format!("config-{release}"));
    if config.is_file() {
        let dest = cache.join(format!("config-{release}"));
        fs::copy(&config, &dest).with_context(|| format!("copying {}", config.display()))?;
    }
    let deb_name = deb.file_name().map(|n| n.to_string_lossy().into_owned());
    fs::write(
        cache.join(KERNEL_VERSION_FILE),
        format!("{release}\n{}\n", deb_name.unwrap_or_default()),
    )
    .context("recording the VM kernel version")?;
    fs::remove_dir_all(&download).with_context(|| format!("removing {}", download.display()))?;
    println!("setup: cached {}", kernel.display());
    Ok((kernel, release))
}

/// The kernel image package the meta package depends on, e.g. `linux-image-6.1.0-56-amd64`;
/// `None` when apt knows nothing yet (no package lists).
fn kernel_image_package() -> Result<Option<String>> {
    let mut cmd = Command::new("apt-cache");
    cmd.args(["depends", KERNEL_META_PACKAGE]);
    let output = probe(&mut cmd)?;
    if !output.status.success() {
        eprintln!("xtask: `{}` failed; updating package lists", show(&cmd));
        return Ok(None);
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Depends:"))
        .map(|name| name.trim().trim_start_matches('<').trim_end_matches('>'))
        .find(|name| name.starts_with("linux-image-"))
        .map(str::to_owned))
}

/// The single entry of `dir` whose file name satisfies `pred`.
fn only_entry(dir: &Path, pred: impl Fn(&str) -> bool) -> Result<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        if entry.file_name().to_str().is_some_and(&pred) {
            found.push(entry.path());
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "expected exactly one match in {}, found {found:?}",
            dir.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::is_mounted;

    #[test]
    fn finds_mounts_by_type_and_point() {
        let mounts = "proc /proc proc rw 0 0\nbpf /sys/fs/bpf bpf rw 0 0\n";
        assert!(is_mounted(mounts, "bpf", "/sys/fs/bpf"));
        assert!(!is_mounted(mounts, "tracefs", "/sys/kernel/tracing"));
        assert!(!is_mounted(mounts, "bpf", "/proc"));
    }
}
