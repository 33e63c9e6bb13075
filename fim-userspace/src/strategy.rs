//! Which attach strategy the running kernel permits.
//!
//! Preference: BPF LSM (sees every resolved path, cannot be raced), then fentry/fexit on VFS
//! functions, then syscall tracepoints, which every kernel with BPF permits. Without any of
//! them the daemon falls back to scan-only and says so.
use std::{fmt, path::Path, str::FromStr};

use aya::programs::ProgramType;

pub use fim_common::strategy::Strategy;

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
            other => other.parse().map(Requested::Only).map_err(|_| {
                format!("unknown strategy `{other}`: use auto, lsm, fentry or tracepoint")
            }),
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
        return Err(unavailable(
            "the kernel has no BTF (/sys/kernel/btf/vmlinux)".into(),
        ));
    }
    if tracefs_root().is_none() {
        // Every strategy closes files through syscall tracepoints.
        return Err(unavailable(
            "tracefs is not mounted and could not be mounted".into(),
        ));
    }
    match strategy {
        Strategy::Lsm => {
            let active = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
            if !active.split(',').any(|lsm| lsm.trim() == "bpf") {
                return Err(unavailable(format!(
                    "`bpf` is not among the active LSMs ({}); boot with lsm=...,bpf",
                    active.trim()
                )));
            }
            Ok(())
        }
        // Whether the kernel lets trampolines load is only known by loading: the caller
        // falls through to the next strategy when that fails.
        Strategy::Fentry => Ok(()),
        Strategy::Tracepoint => {
            let supported = aya::sys::is_program_supported(ProgramType::TracePoint)
                .map_err(|error| unavailable(format!("cannot probe BPF: {error}")))?;
            if !supported {
                return Err(unavailable(
                    "BPF tracepoint programs are not permitted".into(),
                ));
            }
            Ok(())
        }
    }
}

/// The strategies to try, best first, that pass the static checks; and why the others
/// were refused. The caller loads them in order and keeps the first that loads.
pub fn candidates(requested: Requested) -> (Vec<Strategy>, Vec<Unavailable>) {
    let wanted: &[Strategy] = match requested {
        Requested::Auto => &[Strategy::Lsm, Strategy::Fentry, Strategy::Tracepoint],
        Requested::Only(Strategy::Lsm) => &[Strategy::Lsm],
        Requested::Only(Strategy::Fentry) => &[Strategy::Fentry],
        Requested::Only(Strategy::Tracepoint) => &[Strategy::Tracepoint],
    };
    let mut usable = Vec::new();
    let mut refused = Vec::new();
    for strategy in wanted {
        match probe(*strategy) {
            Ok(()) => usable.push(*strategy),
            Err(reason) => refused.push(reason),
        }
    }
    (usable, refused)
}

/// Where tracefs is mounted, mounting it at /sys/kernel/tracing when it is not.
pub fn tracefs_root() -> Option<&'static str> {
    const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];
    let mounted = || {
        CANDIDATES
            .into_iter()
            .find(|root| Path::new(root).join("events").exists())
    };
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
