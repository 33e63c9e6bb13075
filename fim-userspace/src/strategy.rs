//! Which attach strategy the running kernel permits.
//!
//! Preference: BPF LSM (sees every resolved path, cannot be raced), then fentry/fexit on VFS
//! functions, then syscall tracepoints, which every kernel with BPF permits. Without any of
//! them the daemon falls back to scan-only and says so.
use std::{fmt, path::Path, str::FromStr};

use aya::programs::ProgramType;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    Lsm,
    Fentry,
    Tracepoint,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Lsm => "lsm",
            Strategy::Fentry => "fentry",
            Strategy::Tracepoint => "tracepoint",
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requested {
    Auto,
    Only(Strategy),
}

impl FromStr for Requested {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(Requested::Auto),
            "lsm" => Ok(Requested::Only(Strategy::Lsm)),
            "fentry" => Ok(Requested::Only(Strategy::Fentry)),
            "tracepoint" => Ok(Requested::Only(Strategy::Tracepoint)),
            other => Err(format!("unknown strategy `{other}`: use auto, lsm, fentry or tracepoint")),
        }
    }
}

/// Why a strategy cannot be used here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unavailable {
    pub strategy: Strategy,
    pub reason: String,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.strategy, self.reason)
    }
}

/// Checks one strategy against the running kernel.
pub fn probe(strategy: Strategy) -> Result<(), Unavailable> {
    let unavailable = |reason: String| Unavailable { strategy, reason };
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(unavailable("the kernel has no BTF (/sys/kernel/btf/vmlinux)".into()));
    }
    match strategy {
        Strategy::Lsm | Strategy::Fentry => {
            // The kernel may well permit these (see the VM tests), but this build carries only
            // the tracepoint programs.
            Err(unavailable("this build has no programs for it yet".into()))
        }
        Strategy::Tracepoint => {
            let supported = aya::sys::is_program_supported(ProgramType::TracePoint)
                .map_err(|error| unavailable(format!("cannot probe BPF: {error}")))?;
            if !supported {
                return Err(unavailable("BPF tracepoint programs are not permitted".into()));
            }
            if tracefs_root().is_none() {
                return Err(unavailable("tracefs is not mounted and could not be mounted".into()));
            }
            Ok(())
        }
    }
}

/// Picks the best permitted strategy, or reports why each was refused.
pub fn choose(requested: Requested) -> Result<(Strategy, Vec<Unavailable>), Vec<Unavailable>> {
    let candidates: &[Strategy] = match requested {
        Requested::Auto => &[Strategy::Lsm, Strategy::Fentry, Strategy::Tracepoint],
        Requested::Only(Strategy::Lsm) => &[Strategy::Lsm],
        Requested::Only(Strategy::Fentry) => &[Strategy::Fentry],
        Requested::Only(Strategy::Tracepoint) => &[Strategy::Tracepoint],
    };
    let mut refused = Vec::new();
    for strategy in candidates {
        match probe(*strategy) {
            Ok(()) => return Ok((*strategy, refused)),
            Err(reason) => refused.push(reason),
        }
    }
    Err(refused)
}

/// Where tracefs is mounted, mounting it at /sys/kernel/tracing when it is not.
pub fn tracefs_root() -> Option<&'static str> {
    const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
    let mounted = || CANDIDATES.into_iter().find(|root| Path::new(root).join("events").exists());
    if let Some(root) = mounted() {
        return Some(root);
    }
    // SAFETY: plain mount(2) with static NUL-terminated strings.
    unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        );
    }
    mounted()
}
