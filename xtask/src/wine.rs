//! The Wine lane: the engine's platform-neutral tests, the API's named pipe, `fim.exe` and
//! fimsvc built for `x86_64-pc-windows-gnu` and run under Debian's Wine 8.0, from this Linux
//! machine (`cargo xtask wine-test`, and a row of `cargo xtask test`).
//!
//! Why Wine and not a Windows machine: CI has only this host, and what the engine shares with
//! the Windows companion (policy, coalescing, diffing, the journal chain, the store, the
//! filter, and the minimal Windows file observer) runs the same under Wine. It is not a
//! Windows test: Wine 8.0 lacks ETW, the USN journal and more (see the platform notes), so
//! what this lane proves is "builds and runs its tests under Wine".
//!
//! Everything lives under the target directory: the prefix (`target/wine-prefix`) and the
//! ProcessPrng shim built from `xtask/wine/` (`target/wine-shim`). Rust's std (1.78+) imports
//! ProcessPrng from bcryptprimitives.dll, which Wine 8.0 does not have, so without the shim
//! every test binary dies at start with c0000135. The runner and linker are passed to cargo
//! as environment variables, so no `.cargo/config` changes what plain cargo does.
use std::{
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context as _, Result};

use crate::{cargo, probe, run_cmd, show, target_dir, workspace_root};

pub(crate) const TARGET: &str = "x86_64-pc-windows-gnu";
const LINKER: &str = "x86_64-w64-mingw32-gcc";
/// Debian's wine64 loader (the `wine` wrapper would look for a 32-bit Wine first).
const WINE: &str = "/usr/lib/wine/wine64";
const WINESERVER: &str = "/usr/lib/wine/wineserver";
/// The crates whose tests the lane runs.
const CRATES: &[&str] = &[
    "fim-model",
    "fim-engine",
    "fim-api",
    "fim-cli",
    "fim-windows",
];
/// Wine's debug channels off: its fixme lines would drown the test output.
const WINEDEBUG: &str = "-all";
/// No Mono or Gecko installer dialogs when the prefix is made (nothing here needs them).
const DLL_OVERRIDES: &str = "mscoree,mshtml=";

fn prefix_dir() -> PathBuf {
    target_dir().join("wine-prefix")
}

fn shim_dll() -> PathBuf {
    target_dir().join("wine-shim").join("bcryptprimitives.dll")
}

fn installed_shim() -> PathBuf {
    prefix_dir()
        .join("drive_c")
        .join("windows")
        .join("system32")
        .join("bcryptprimitives.dll")
}

/// A command with the prefix and quiet Wine settings.
fn wine_env(cmd: &mut Command) -> &mut Command {
    cmd.env("WINEPREFIX", prefix_dir())
        .env("WINEDEBUG", WINEDEBUG)
        .env("WINEDLLOVERRIDES", DLL_OVERRIDES)
}

/// `cargo xtask setup`'s Wine part (after the apt packages): the rustup target, the prefix and
/// the shim. Each step checks first, so a warm run only compares a few files.
pub(crate) fn setup() -> Result<()> {
    rustup_target()?;
    prefix()?;
    shim()
}

fn rustup_target() -> Result<()> {
    let installed = probe(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|line| line.trim() == TARGET)
    {
        println!("setup: rustup target {TARGET} present");
        return Ok(());
    }
    println!("setup: adding rustup target {TARGET} (the Wine lane)");
    run_cmd(Command::new("rustup").args(["target", "add", TARGET]))
}

fn prefix() -> Result<()> {
    let prefix = prefix_dir();
    // Wine writes system.reg last when it initialises a prefix.
    if prefix.join("system.reg").is_file() && prefix.join("drive_c/windows/system32").is_dir() {
        println!("setup: Wine prefix present at {}", shown(&prefix));
        return Ok(());
    }
    println!("setup: creating the Wine prefix at {}", shown(&prefix));
    fs::create_dir_all(&prefix).with_context(|| format!("creating {}", prefix.display()))?;
    // It says syswow64\rundll32.exe is missing (c0000135): Debian's wine64 has no 32-bit
    // half, which nothing here needs.
    run_cmd(wine_env(Command::new(WINE).args(["wineboot", "-i"])))?;
    // wineboot returns before the server has written the registry to disk.
    run_cmd(wine_env(Command::new(WINESERVER).arg("-w")))?;
    if !prefix.join("system.reg").is_file() {
        bail!("wineboot ran but {} has no system.reg", prefix.display());
    }
    Ok(())
}

/// Builds the shim when its sources are newer than the DLL, and installs it when the prefix's
/// copy differs.
fn shim() -> Result<()> {
    let sources = workspace_root().join("xtask").join("wine");
    let c = sources.join("processprng.c");
    let def = sources.join("processprng.def");
    let dll = shim_dll();
    let modified = |path: &Path| fs::metadata(path).and_then(|meta| meta.modified()).ok();
    let stale = match modified(&dll) {
        None => true,
        Some(built) => [&c, &def]
            .iter()
            .any(|source| modified(source).is_none_or(|source| source > built)),
    };
    if stale {
        println!(
            "setup: building the ProcessPrng shim for Wine ({})",
            shown(&dll)
        );
        if let Some(dir) = dll.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        run_cmd(
            Command::new(LINKER)
                .args(["-shared", "-O2", "-o"])
                .arg(&dll)
                .arg(&c)
                .arg(&def)
                .arg("-lbcrypt"),
        )?;
    }
    let installed = installed_shim();
    let same = fs::read(&installed).ok() == Some(fs::read(&dll).context("reading the shim")?);
    if same {
        println!("setup: ProcessPrng shim installed in the Wine prefix");
        return Ok(());
    }
    println!(
        "setup: installing the ProcessPrng shim as {}",
        shown(&installed)
    );
    fs::copy(&dll, &installed)
        .with_context(|| format!("copying {} to {}", dll.display(), installed.display()))?;
    Ok(())
}

fn shown(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Checks that Wine is there and the prefix is ready, loudly: a lane that cannot run must fail,
/// not pass with nothing run.
fn ready() -> Result<()> {
    if !Path::new(WINE).is_file() {
        bail!("{WINE} is missing: run `cargo xtask setup` (Debian packages wine, wine64)");
    }
    if !installed_shim().is_file() {
        bail!(
            "the Wine prefix at {} is missing or has no ProcessPrng shim: run `cargo xtask setup`",
            prefix_dir().display()
        );
    }
    Ok(())
}

/// `fimsvc.exe` and `fim.exe` for x86_64-pc-windows-gnu (part of `cargo xtask build`; needs
/// setup's rustup target and mingw, and says so when they are missing).
pub(crate) fn build_windows(release: bool) -> Result<()> {
    let linker_works = Command::new(LINKER)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !linker_works {
        bail!("{LINKER} is missing: run `cargo xtask setup` (Debian package gcc-mingw-w64-x86-64)");
    }
    let mut cmd = cargo();
    cmd.args([
        "build",
        "-p",
        "fim-windows",
        "-p",
        "fim-cli",
        "--target",
        TARGET,
    ])
    .env("AYA_BUILD_SKIP", "1")
    .env("CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER", LINKER);
    if release {
        cmd.arg("--release");
    }
    run_cmd(&mut cmd)?;
    let profile = if release { "release" } else { "debug" };
    let built = target_dir().join(TARGET).join(profile);
    println!(
        "xtask: for Windows: {} and {}",
        built.join("fimsvc.exe").display(),
        built.join("fim.exe").display()
    );
    Ok(())
}

/// `cargo xtask bench windows`: the release fimsvc and the `bench_windows` driver (an example
/// of fim-windows) built for Windows and run under Wine; the driver measures and prints.
pub(crate) fn bench(args: &[String]) -> Result<()> {
    setup()?;
    ready()?;
    build_windows(true)?;
    let mut build = cargo();
    build
        .args([
            "build",
            "--release",
            "-p",
            "fim-windows",
            "--example",
            "bench_windows",
        ])
        .args(["--target", TARGET])
        .env("AYA_BUILD_SKIP", "1")
        .env("CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER", LINKER);
    run_cmd(&mut build)?;
    let release = target_dir().join(TARGET).join("release");
    // Wine maps the Unix root to drive Z:.
    let fimsvc = format!("Z:{}", release.join("fimsvc.exe").display()).replace('/', "\\");
    let mut bench = Command::new(WINE);
    bench
        .arg(release.join("examples").join("bench_windows.exe"))
        .args(["--fimsvc", &fimsvc])
        .args(args);
    wine_env(&mut bench);
    run_cmd(&mut bench)
}

/// `cargo test -p fim-model -p fim-engine ... --target x86_64-pc-windows-gnu` under Wine, each
/// line prefixed with `prefix`. Returns the number of tests that passed; fails if any test
/// failed, if a test binary could not run, or if nothing ran at all.
///
/// fim.exe is built first: fim-windows's `api_wine.rs` runs it against fimsvc, and cargo
/// builds only the binaries of the package whose integration tests it runs.
pub(crate) fn test(prefix: &str) -> Result<u64> {
    ready()?;
    let mut fim = cargo();
    fim.args(["build", "-p", "fim-cli", "--bin", "fim", "--target", TARGET])
        .env("AYA_BUILD_SKIP", "1")
        .env("CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER", LINKER);
    run_cmd(&mut fim)?;
    let mut cmd = cargo();
    cmd.arg("test");
    for krate in CRATES {
        cmd.args(["-p", krate]);
    }
    cmd.args(["--target", TARGET, "--no-fail-fast"])
        .env("AYA_BUILD_SKIP", "1")
        .env("CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER", LINKER)
        .env("CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER", WINE);
    wine_env(&mut cmd);
    let line = show(&cmd);
    eprintln!("xtask: $ {line}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start `{line}`"))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let counts = std::thread::scope(|scope| {
        let errors = scope.spawn(|| copy_and_count(stderr, prefix));
        let counts = copy_and_count(stdout, prefix);
        let _ = errors.join();
        counts
    });
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{line}`"))?;
    if !status.success() {
        bail!(
            "`{line}` failed ({status}); {} passed, {} failed under Wine",
            counts.passed,
            counts.failed
        );
    }
    if counts.passed == 0 {
        bail!("no test passed under Wine: did any test binary run?");
    }
    Ok(counts.passed)
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    passed: u64,
    failed: u64,
}

/// Prints every line with the prefix and adds up libtest's `test result:` lines.
fn copy_and_count(from: Option<impl std::io::Read>, prefix: &str) -> Counts {
    let mut counts = Counts::default();
    let Some(from) = from else { return counts };
    for line in BufReader::new(from).split(b'\n').map_while(Result::ok) {
        let line = String::from_utf8_lossy(&line);
        println!("{prefix}{line}");
        if let Some(found) = test_result(&line) {
            counts.passed += found.passed;
            counts.failed += found.failed;
        }
    }
    counts
}

/// `test result: ok. 118 passed; 0 failed; 2 ignored; ...` as counts.
fn test_result(line: &str) -> Option<Counts> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let count = |what: &str| {
        rest.split(';')
            .find_map(|part| {
                part.trim()
                    .strip_suffix(what)?
                    .trim()
                    .rsplit(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    };
    Some(Counts {
        passed: count("passed"),
        failed: count("failed"),
    })
}

/// `cargo xtask wine-test`: setup's Wine part, then the tests.
pub(crate) fn run() -> Result<()> {
    setup()?;
    let started = std::time::Instant::now();
    let passed = test("[wine] ")?;
    println!(
        "wine-test: {passed} tests passed under Wine ({}) in {:.1}s",
        CRATES.join(", "),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libtest_summaries() {
        assert_eq!(
            test_result("test result: ok. 118 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 4.29s"),
            Some(Counts { passed: 118, failed: 0 })
        );
        assert_eq!(
            test_result("test result: FAILED. 107 passed; 7 failed; 2 ignored; 0 measured"),
            Some(Counts {
                passed: 107,
                failed: 7
            })
        );
        assert_eq!(test_result("test foo ... ok"), None);
    }
}
