//! Timing one child process and reading its resource usage; dropping the page cache.
//!
//! Why wait4 rather than `/usr/bin/time -v`: the kernel hands us the child's peak RSS and CPU
//! times directly (for a shell pipeline, the maximum and the sum over every process it reaped),
//! with no extra process in the measured path and no output format to parse.

use std::{
    fs,
    io::Read as _,
    os::unix::process::ExitStatusExt as _,
    process::{Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::show;

/// One measured run.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub wall: Duration,
    /// User plus system CPU time of the child and everything it waited for.
    pub cpu: Duration,
    /// Peak resident set of the child (or of the largest process it waited for), in bytes.
    pub max_rss: u64,
    pub stdout: Vec<u8>,
}

/// Runs `cmd` to completion with stdin closed and stdout captured (stderr is inherited) and
/// measures it. Fails, printing what it wrote, unless it exits 0.
pub(crate) fn run(cmd: &mut Command) -> Result<Sample> {
    let line = show(cmd);
    eprintln!("bench scan: $ {line}");
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("failed to start `{line}`"))?;
    let mut stdout = Vec::new();
    if let Some(mut pipe) = child.stdout.take() {
        pipe.read_to_end(&mut stdout)
            .with_context(|| format!("reading the output of `{line}`"))?;
    }
    let pid = libc::pid_t::try_from(child.id()).context("child pid out of range")?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; zeroed is a valid value for it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own unreaped child; both out-pointers are valid for writes.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err).with_context(|| format!("waiting for `{line}`"));
        }
    }
    let wall = started.elapsed();
    // The child is reaped; dropping `child` does not wait again.
    drop(child);
    eprintln!("bench scan:   {:.2} s", wall.as_secs_f64());
    let status = ExitStatus::from_raw(status);
    if !status.success() {
        let text = String::from_utf8_lossy(&stdout);
        bail!(
            "`{line}` failed ({status}); its stdout:\n{}",
            text.trim_end()
        );
    }
    let timeval = |tv: libc::timeval| {
        Duration::from_secs(tv.tv_sec.max(0) as u64)
            + Duration::from_micros(tv.tv_usec.max(0) as u64)
    };
    Ok(Sample {
        wall,
        cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
        max_rss: (usage.ru_maxrss.max(0) as u64) * 1024,
        stdout,
    })
}

const DROP_CACHES: &str = "/proc/sys/vm/drop_caches";

/// Writes back dirty data, then drops the page cache, dentries and inodes: the next run reads
/// everything from the disk.
pub(crate) fn drop_caches() -> Result<()> {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    fs::write(DROP_CACHES, "3\n").with_context(|| format!("writing 3 to {DROP_CACHES}"))
}

/// Whether this process may drop caches (root, and /proc/sys writable here); tries it once.
pub(crate) fn can_drop_caches() -> bool {
    fs::OpenOptions::new().write(true).open(DROP_CACHES).is_ok() && drop_caches().is_ok()
}
