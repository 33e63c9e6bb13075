//! `cargo xtask bench kernel`: the cost of the kernel pipeline, daemon off versus on.
//!
//! Machines here are noisy, so each workload runs with the daemon off and on in alternating
//! rounds, and the report gives medians and their ratio rather than absolute times:
//! - 1M 4 KiB writes to an unmonitored file (target: at most 2% slower),
//! - the same writes to a monitored file (target: at most 10% slower),
//! - 50k create+write+close+unlink cycles in a monitored directory (target: every cycle
//!   reported at the default ring-buffer size),
//! - 200k 4 KiB io_uring writes to an unmonitored file (what a database on io_uring pays),
//! - an io_uring write storm: 20k files created, written and closed through io_uring alone
//!   (no open, write or close syscall), then unlinked (every one reported),
//! - a dup/fork writer storm: 5k files each opened, dup'd, written by a forked child through
//!   the copy while the parent closes both (every write reported, by open file).
//!
//! It also reads bpf_stats (run_time_ns / run_cnt) for the daemon's programs.
use std::{
    collections::{BTreeMap, HashSet},
    ffi::CString,
    io::{BufRead, BufReader},
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

struct Config {
    fimd: PathBuf,
    strategy: String,
    writes: usize,
    cycles: usize,
    uring_files: usize,
    fork_files: usize,
    rounds: usize,
}

fn config() -> Result<Config> {
    let mut config = Config {
        fimd: PathBuf::from(
            std::env::var("FIMD_BIN").unwrap_or_else(|_| "target/release/fimd".into()),
        ),
        strategy: "auto".into(),
        writes: 1_000_000,
        cycles: 50_000,
        uring_files: 20_000,
        fork_files: 5_000,
        rounds: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--fimd" => config.fimd = value.into(),
            "--strategy" => config.strategy = value,
            "--writes" => config.writes = value.parse().context("--writes")?,
            "--cycles" => config.cycles = value.parse().context("--cycles")?,
            "--uring-files" => config.uring_files = value.parse().context("--uring-files")?,
            "--fork-files" => config.fork_files = value.parse().context("--fork-files")?,
            "--rounds" => config.rounds = value.parse().context("--rounds")?,
            other => bail!("unknown option {other}"),
        }
    }
    Ok(config)
}

fn cstring(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap_or_default()
}

/// `count` 4 KiB pwrites at offset 0 (stays in the page cache), timed.
fn time_writes(path: &Path, count: usize) -> Result<Duration> {
    let name = cstring(path);
    let block = [0x5au8; 4096];
    // SAFETY: raw syscalls on a valid path and buffer.
    let fd = unsafe { libc::open(name.as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o644) };
    if fd < 0 {
        bail!("cannot open {}", path.display());
    }
    let start = Instant::now();
    for _ in 0..count {
        // SAFETY: as above.
        if unsafe { libc::pwrite(fd, block.as_ptr().cast(), block.len(), 0) }
            != block.len() as isize
        {
            bail!("short write to {}", path.display());
        }
    }
    let elapsed = start.elapsed();
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
    Ok(elapsed)
}

/// `count` create+write+close+unlink cycles named `{prefix}{i}` in `dir`, timed.
fn time_cycles(dir: &Path, prefix: &str, count: usize) -> Result<Duration> {
    let names: Vec<CString> = (0..count)
        .map(|i| cstring(&dir.join(format!("{prefix}{i}"))))
        .collect();
    let block = [0x5au8; 4096];
    let start = Instant::now();
    for name in &names {
        // SAFETY: raw syscalls on valid paths and buffers.
        unsafe {
            let fd = libc::open(
                name.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
                0o644,
            );
            if fd < 0 {
                bail!("cannot create in {}", dir.display());
            }
            libc::write(fd, block.as_ptr().cast(), block.len());
            libc::close(fd);
            libc::unlink(name.as_ptr());
        }
    }
    Ok(start.elapsed())
}

/// `count` 4 KiB writes at offset 0 to `path` through io_uring, 32 per submission, timed.
fn time_uring_writes(path: &Path, count: usize) -> Result<Duration> {
    use io_uring::{opcode, types, IoUring};
    const BATCH: usize = 32;
    let name = cstring(path);
    // SAFETY: raw open on a valid path.
    let fd = unsafe { libc::open(name.as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o644) };
    if fd < 0 {
        bail!("cannot open {}", path.display());
    }
    let mut ring = IoUring::new(BATCH as u32).context("io_uring_setup")?;
    let block = [0x5au8; 4096];
    let start = Instant::now();
    let mut done = 0;
    while done < count {
        let batch = BATCH.min(count - done);
        for _ in 0..batch {
            let write = opcode::Write::new(types::Fd(fd), block.as_ptr(), block.len() as u32)
                .offset(0)
                .build();
            // SAFETY: `block` outlives the completions waited for below.
            unsafe { ring.submission().push(&write).context("submission queue")? };
        }
        ring.submit_and_wait(batch).context("io_uring_enter")?;
        let completed = ring.completion().count();
        if completed != batch {
            bail!("{completed} of {batch} io_uring writes completed");
        }
        done += batch;
    }
    let elapsed = start.elapsed();
    // SAFETY: our own fd.
    unsafe { libc::close(fd) };
    Ok(elapsed)
}

/// `count` files `{prefix}{i}` created, written and closed through io_uring only, then
/// unlinked with unlink(2), timed.
fn time_uring_files(dir: &Path, prefix: &str, count: usize) -> Result<Duration> {
    use io_uring::{opcode, types, IoUring};
    let names: Vec<CString> = (0..count)
        .map(|i| cstring(&dir.join(format!("{prefix}{i}"))))
        .collect();
    let mut ring = IoUring::new(8).context("io_uring_setup")?;
    let mut run = |entry: io_uring::squeue::Entry| -> Result<i32> {
        // SAFETY: the strings and buffers each entry names outlive its completion.
        unsafe { ring.submission().push(&entry).context("submission queue")? };
        ring.submit_and_wait(1).context("io_uring_enter")?;
        let result = ring.completion().next().context("no completion")?.result();
        if result < 0 {
            bail!(
                "io_uring operation failed: {}",
                std::io::Error::from_raw_os_error(-result)
            );
        }
        Ok(result)
    };
    let block = [0x5au8; 4096];
    let start = Instant::now();
    for name in &names {
        let open = opcode::OpenAt::new(types::Fd(libc::AT_FDCWD), name.as_ptr())
            .flags(libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)
            .mode(0o644)
            .build();
        let fd = run(open)?;
        run(opcode::Write::new(types::Fd(fd), block.as_ptr(), block.len() as u32).build())?;
        run(opcode::Close::new(types::Fd(fd)).build())?;
        // SAFETY: a valid path.
        unsafe { libc::unlink(name.as_ptr()) };
    }
    Ok(start.elapsed())
}

/// `count` files `{prefix}{i}`: opened, dup'd, written by a forked child through the copy
/// (which exits without closing) while the parent closes both, timed. The files are left
/// for the completeness count.
fn time_fork_writers(dir: &Path, prefix: &str, count: usize) -> Result<Duration> {
    let names: Vec<CString> = (0..count)
        .map(|i| cstring(&dir.join(format!("{prefix}{i}"))))
        .collect();
    let start = Instant::now();
    for name in &names {
        // SAFETY: raw syscalls; the child only writes and _exits.
        unsafe {
            let fd = libc::open(name.as_ptr(), libc::O_WRONLY | libc::O_CREAT, 0o644);
            if fd < 0 {
                bail!("cannot create in {}", dir.display());
            }
            let copy = libc::dup(fd);
            let child = libc::fork();
            if child == 0 {
                libc::write(copy, b"child".as_ptr().cast(), 5);
                libc::_exit(0);
            }
            libc::close(fd);
            libc::close(copy);
            let mut status = 0;
            libc::waitpid(child, &mut status, 0);
        }
    }
    Ok(start.elapsed())
}

struct Daemon {
    child: Child,
    events: PathBuf,
}

fn start_daemon(config: &Config, watched: &Path, events: &Path) -> Result<Daemon> {
    let output = std::fs::File::create(events).context("events file")?;
    let mut child = Command::new(&config.fimd)
        .args(["--strategy", &config.strategy, "--watch"])
        .arg(watched)
        .env("FIM_LOG", "info")
        .stdout(output)
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", config.fimd.display()))?;
    let stderr = child.stderr.take().context("fimd stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("monitoring started") => {
                eprintln!("  {line}");
                break;
            }
            Some(Ok(line)) if line.contains("scan-only") || line.contains("ERROR") => {
                bail!("fimd could not attach: {line}")
            }
            Some(Ok(_)) => {}
            _ => bail!("fimd exited before attaching"),
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    Ok(Daemon {
        child,
        events: events.to_path_buf(),
    })
}

impl Daemon {
    fn stop(mut self) -> Result<Vec<Value>> {
        // Let the consumer drain what is still in flight.
        std::thread::sleep(Duration::from_secs(2));
        // SAFETY: signalling our child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().context("waiting for fimd")?;
        let text = std::fs::read_to_string(&self.events).context("reading events")?;
        Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect())
    }
}

/// (run_time_ns, run_cnt) per program id, from bpftool.
fn bpf_stats() -> BTreeMap<u64, (String, u64, u64)> {
    let output = Command::new("bpftool")
        .args(["prog", "show", "-j"])
        .output();
    let Ok(output) = output else {
        return BTreeMap::new();
    };
    let Ok(Value::Array(programs)) = serde_json::from_slice::<Value>(&output.stdout) else {
        return BTreeMap::new();
    };
    programs
        .iter()
        .filter_map(|program| {
            Some((
                program["id"].as_u64()?,
                (
                    program["name"].as_str().unwrap_or("?").to_string(),
                    program["run_time_ns"].as_u64().unwrap_or(0),
                    program["run_cnt"].as_u64().unwrap_or(0),
                ),
            ))
        })
        .collect()
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() -> Result<()> {
    let config = config()?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the kernel benchmark loads BPF programs and must run as root");
    }
    let base = std::env::temp_dir().join("fim-bench-kernel");
    let _ = std::fs::remove_dir_all(&base);
    let (watched, other) = (base.join("watched"), base.join("other"));
    std::fs::create_dir_all(&watched)?;
    std::fs::create_dir_all(&other)?;
    // bpf_stats adds its own cost to every run: keep it off while timing.
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0");

    let mut results: BTreeMap<&str, (Vec<Duration>, Vec<Duration>)> = BTreeMap::new();
    let mut reported = Vec::new();
    let mut storms = Vec::new();
    let mut stats_on = BTreeMap::new();
    // The timed rounds, then one untimed pass with bpf_stats on.
    for round in 0..=config.rounds {
        let stats_pass = round == config.rounds;
        if stats_pass {
            eprintln!("bpf_stats pass");
            let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "1");
        } else {
            eprintln!("round {}/{}", round + 1, config.rounds);
        }
        for on in [false, true] {
            if stats_pass && !on {
                continue;
            }
            let before = bpf_stats();
            let daemon = if on {
                Some(start_daemon(&config, &watched, &base.join("events.jsonl"))?)
            } else {
                None
            };
            let prefix = format!("r{round}{}_", if on { "on" } else { "off" });
            let unmonitored = time_writes(&other.join("data"), config.writes)?;
            let monitored = time_writes(&watched.join("data"), config.writes)?;
            let cycles = time_cycles(&watched, &prefix, config.cycles)?;
            let uring_unmonitored = time_uring_writes(&other.join("uring"), config.writes / 5)?;
            let uring = time_uring_files(&watched, &format!("{prefix}u"), config.uring_files)?;
            let forks = time_fork_writers(&watched, &format!("{prefix}f"), config.fork_files)?;
            for (name, elapsed) in [
                ("writes_unmonitored", unmonitored),
                ("writes_monitored", monitored),
                ("cycles", cycles),
                ("uring_unmonitored", uring_unmonitored),
                ("uring", uring),
                ("forks", forks),
            ] {
                if stats_pass {
                    break;
                }
                let entry = results.entry(name).or_default();
                if on {
                    entry.1.push(elapsed)
                } else {
                    entry.0.push(elapsed)
                }
            }
            if let Some(daemon) = daemon {
                let after = if stats_pass {
                    bpf_stats()
                } else {
                    BTreeMap::new()
                };
                for (id, (name, ns, count)) in &after {
                    if before.contains_key(id) {
                        continue;
                    }
                    let total = stats_on.entry(name.clone()).or_insert((0u64, 0u64));
                    total.0 += ns;
                    total.1 += count;
                }
                let events = daemon.stop()?;
                let names: HashSet<String> = (0..config.cycles)
                    .map(|i| {
                        watched
                            .join(format!("{prefix}{i}"))
                            .to_string_lossy()
                            .to_string()
                    })
                    .collect();
                let count = |op: &str| {
                    events
                        .iter()
                        .filter(|e| {
                            e["op"] == op && e["path"].as_str().is_some_and(|p| names.contains(p))
                        })
                        .count()
                };
                let gaps = events.iter().filter(|e| e["op"] == "gap").count();
                // Files of the two storms with at least one event of `op`.
                let covered = |letter: &str, files: usize, op: &str| {
                    let names: HashSet<String> = (0..files)
                        .map(|i| {
                            watched
                                .join(format!("{prefix}{letter}{i}"))
                                .to_string_lossy()
                                .to_string()
                        })
                        .collect();
                    let seen: HashSet<&str> = events
                        .iter()
                        .filter(|e| e["op"] == op)
                        .filter_map(|e| e["path"].as_str())
                        .filter(|p| names.contains(*p))
                        .collect();
                    seen.len()
                };
                reported.push((
                    count("create"),
                    count("write-closed"),
                    count("unlink"),
                    gaps,
                ));
                storms.push((
                    covered("u", config.uring_files, "create"),
                    covered("u", config.uring_files, "write-closed"),
                    covered("u", config.uring_files, "unlink"),
                    covered("f", config.fork_files, "write-closed"),
                ));
                for i in 0..config.fork_files {
                    let _ = std::fs::remove_file(watched.join(format!("{prefix}f{i}")));
                }
            }
        }
    }

    println!(
        "\nkernel pipeline benchmark: {} rounds, medians, daemon off vs on (strategy {})",
        config.rounds, config.strategy
    );
    println!(
        "{:<44} {:>12} {:>12} {:>9} {:>8}",
        "workload", "off", "on", "on/off", "target"
    );
    let rows = [
        (
            "writes_unmonitored",
            format!("{}x 4 KiB pwrite, unmonitored file", config.writes),
            1.02,
        ),
        (
            "writes_monitored",
            format!("{}x 4 KiB pwrite, monitored file", config.writes),
            1.10,
        ),
        (
            "cycles",
            format!(
                "{}x create+write+close+unlink, monitored dir",
                config.cycles
            ),
            f64::NAN,
        ),
        (
            "uring_unmonitored",
            format!("{}x 4 KiB io_uring write, unmonitored", config.writes / 5),
            f64::NAN,
        ),
        (
            "uring",
            format!("{}x io_uring open+write+close, unlink", config.uring_files),
            f64::NAN,
        ),
        (
            "forks",
            format!("{}x open+dup+fork, child writes", config.fork_files),
            f64::NAN,
        ),
    ];
    for (key, label, target) in rows {
        let (off, on) = &results[key];
        let (off, on) = (median(off.clone()), median(on.clone()));
        let ratio = on.as_secs_f64() / off.as_secs_f64();
        let verdict = if target.is_nan() {
            "-".to_string()
        } else if ratio <= target {
            format!("<={target} ok")
        } else {
            format!("<={target} MISS")
        };
        println!(
            "{label:<44} {:>10.3}s {:>10.3}s {ratio:>9.3} {verdict:>8}",
            off.as_secs_f64(),
            on.as_secs_f64()
        );
    }
    for (round, (create, closed, unlink, gaps)) in reported.iter().enumerate() {
        let all = *create == config.cycles && *closed == config.cycles && *unlink == config.cycles;
        let label = if round == config.rounds {
            "stats pass".to_string()
        } else {
            format!("round {}", round + 1)
        };
        println!(
            "{label}: cycles reported: create {create}, write-closed {closed}, unlink {unlink} of {} each; gap notices {gaps} -> {}",
            config.cycles,
            if all { "all reported" } else { "MISSING EVENTS" }
        );
    }
    for (round, (created, closed, unlinked, forked)) in storms.iter().enumerate() {
        let all = *created == config.uring_files
            && *closed == config.uring_files
            && *unlinked == config.uring_files
            && *forked == config.fork_files;
        println!(
            "round {}: io_uring files with create {created}, write-closed {closed}, unlink {unlinked} of {}; fork-written files with write-closed {forked} of {} -> {}",
            round + 1,
            config.uring_files,
            config.fork_files,
            if all { "all reported" } else { "MISSING EVENTS" }
        );
    }
    let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", "0");
    println!("\nBPF run time (bpf_stats, one extra pass with the daemon on; not in the timings):");
    println!(
        "{:<18} {:>12} {:>14} {:>10}",
        "program", "run_cnt", "run_time_ns", "ns/run"
    );
    let mut rows: Vec<_> = stats_on
        .into_iter()
        .filter(|(_, (_, count))| *count > 0)
        .collect();
    rows.sort_by_key(|(_, (ns, _))| std::cmp::Reverse(*ns));
    let (mut total_ns, mut total_cnt) = (0u64, 0u64);
    for (name, (ns, count)) in &rows {
        total_ns += ns;
        total_cnt += count;
        println!(
            "{name:<18} {count:>12} {ns:>14} {:>10.1}",
            *ns as f64 / *count as f64
        );
    }
    if total_cnt > 0 {
        println!(
            "{:<18} {total_cnt:>12} {total_ns:>14} {:>10.1}",
            "all",
            total_ns as f64 / total_cnt as f64
        );
    }
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}
