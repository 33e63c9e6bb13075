//! Which attach strategy the running kernel permits, and which one fimd runs.
//!
//! Preference: BPF LSM (sees every resolved path, cannot be raced), then fentry/fexit on VFS
//! functions, then syscall tracepoints, which every kernel with BPF permits. Without any of
//! them the daemon falls back to scan-only and says so; a strategy asked for by name
//! (`--strategy`) that cannot run is an error instead, since the caller wanted that one.
//!
//! [`candidates`] makes the static checks, [`choose`] loads the candidates in order and keeps
//! the first that loads (a kernel that refuses trampolines or a program is only found out by
//! loading). `choose` takes the loading as a function, so its rules are tested without BPF.
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
/// were refused. The caller loads them in order and keeps the first that loads ([`choose`]).
pub fn candidates(requested: Requested) -> (Vec<Strategy>, Vec<Unavailable>) {
    candidates_with(requested, probe)
}

/// [`candidates`] with the kernel's checks given as `probe`.
fn candidates_with(
    requested: Requested,
    mut probe: impl FnMut(Strategy) -> Result<(), Unavailable>,
) -> (Vec<Strategy>, Vec<Unavailable>) {
    let wanted: &[Strategy] = match &requested {
        Requested::Auto => &Strategy::ALL,
        Requested::Only(strategy) => std::slice::from_ref(strategy),
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

/// What [`choose`] settled on.
#[derive(Debug)]
pub enum Selection<L> {
    /// `strategy` loaded; `refused` says, one line each, why the better ones did not.
    Chosen {
        strategy: Strategy,
        loaded: L,
        refused: Vec<String>,
    },
    /// `auto` found nothing that loads: the daemon runs scan-only, for `refused`.
    ScanOnly { refused: Vec<String> },
}

/// A strategy asked for by name that cannot run here.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the requested strategy cannot run here: {}", .refused.join("; "))]
pub struct SelectError {
    /// One line per strategy tried: `name: why`.
    pub refused: Vec<String>,
}

/// Loads `candidates` in order with `load` and keeps the first that loads. The refusals (the
/// static ones from [`candidates`] and the failed loads) are logged in one line each; a
/// failed load's whole message (the verifier's log) only at debug level.
pub fn choose<L, E: fmt::Display>(
    requested: Requested,
    candidates: Vec<Strategy>,
    mut refused: Vec<Unavailable>,
    mut load: impl FnMut(Strategy) -> Result<L, E>,
) -> Result<Selection<L>, SelectError> {
    let mut chosen = None;
    for candidate in candidates {
        match load(candidate) {
            Ok(loaded) => {
                chosen = Some((candidate, loaded));
                break;
            }
            Err(error) => {
                // The verifier's full log, for whoever debugs a refusal.
                tracing::debug!(strategy = %candidate, "load failed: {error}");
                refused.push(Unavailable {
                    strategy: candidate,
                    reason: error.to_string(),
                });
            }
        }
    }
    let refused: Vec<String> = refused
        .iter()
        .map(|reason| first_line(&reason.to_string()))
        .collect();
    let Some((strategy, loaded)) = chosen else {
        if requested != Requested::Auto {
            return Err(SelectError { refused });
        }
        tracing::error!(
            "no kernel event strategy is usable ({}); falling back to scan-only",
            refused.join("; ")
        );
        return Ok(Selection::ScanOnly { refused });
    };
    if !refused.is_empty() {
        tracing::info!(
            "attach strategy {strategy} chosen; not usable here: {}",
            refused.join("; ")
        );
    }
    Ok(Selection::Chosen {
        strategy,
        loaded,
        refused,
    })
}

/// The verifier's log can be thousands of lines: keep the summary line.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.find("Verifier output") {
        Some(cut) => line[..cut].trim_end_matches([' ', '.']).to_string(),
        None => line.to_string(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse(strategy: Strategy, reason: &str) -> Unavailable {
        Unavailable {
            strategy,
            reason: reason.to_string(),
        }
    }

    /// A kernel where only `loads` load; every other load fails with a verifier-style log.
    fn kernel(loads: &[Strategy]) -> impl FnMut(Strategy) -> Result<Strategy, String> + '_ {
        move |strategy| {
            if loads.contains(&strategy) {
                Ok(strategy)
            } else {
                Err(format!(
                    "program x was refused by the kernel. Verifier output: 0: (b7) r0 = 0\n\
                     1: (95) exit\nprocessed 2 insns for {strategy}"
                ))
            }
        }
    }

    #[test]
    fn requests_parse_as_auto_or_one_strategy() {
        assert_eq!("auto".parse(), Ok(Requested::Auto));
        assert_eq!("fentry".parse(), Ok(Requested::Only(Strategy::Fentry)));
        assert_eq!(
            "kprobe".parse::<Requested>(),
            Err("unknown strategy `kprobe`: use auto, lsm, fentry or tracepoint".to_string())
        );
    }

    #[test]
    fn auto_probes_every_strategy_best_first_and_keeps_the_refusals() {
        let mut probed = Vec::new();
        let (usable, refused) = candidates_with(Requested::Auto, |strategy| {
            probed.push(strategy);
            match strategy {
                Strategy::Lsm => Err(refuse(strategy, "`bpf` is not among the active LSMs")),
                _ => Ok(()),
            }
        });
        assert_eq!(probed, Strategy::ALL);
        assert_eq!(usable, [Strategy::Fentry, Strategy::Tracepoint]);
        assert_eq!(
            refused,
            [refuse(Strategy::Lsm, "`bpf` is not among the active LSMs")]
        );
    }

    #[test]
    fn a_named_strategy_is_the_only_one_probed() {
        let mut probed = Vec::new();
        let (usable, refused) = candidates_with(Requested::Only(Strategy::Tracepoint), |s| {
            probed.push(s);
            Ok(())
        });
        assert_eq!(probed, [Strategy::Tracepoint]);
        assert_eq!(usable, [Strategy::Tracepoint]);
        assert!(refused.is_empty());
    }

    #[test]
    fn the_first_candidate_that_loads_is_chosen() {
        let selection = choose(
            Requested::Auto,
            vec![Strategy::Fentry, Strategy::Tracepoint],
            vec![refuse(Strategy::Lsm, "no bpf LSM")],
            kernel(&[Strategy::Tracepoint]),
        );
        let Ok(Selection::Chosen {
            strategy,
            loaded,
            refused,
        }) = selection
        else {
            panic!("nothing chosen: {selection:?}");
        };
        assert_eq!(
            (strategy, loaded),
            (Strategy::Tracepoint, Strategy::Tracepoint)
        );
        // Static refusals first, then failed loads, each cut to its summary line.
        assert_eq!(
            refused,
            [
                "lsm: no bpf LSM",
                "fentry: program x was refused by the kernel"
            ]
        );
    }

    #[test]
    fn later_candidates_are_not_loaded_once_one_loads() {
        let mut loaded = Vec::new();
        let selection = choose(
            Requested::Auto,
            Strategy::ALL.to_vec(),
            Vec::new(),
            |strategy| {
                loaded.push(strategy);
                Ok::<_, String>(())
            },
        );
        assert!(matches!(
            selection,
            Ok(Selection::Chosen { strategy: Strategy::Lsm, ref refused, .. }) if refused.is_empty()
        ));
        assert_eq!(loaded, [Strategy::Lsm]);
    }

    #[test]
    fn auto_with_nothing_loadable_falls_back_to_scan_only() {
        let selection = choose(
            Requested::Auto,
            vec![Strategy::Tracepoint],
            vec![
                refuse(Strategy::Lsm, "no bpf LSM"),
                refuse(Strategy::Fentry, "no BTF"),
            ],
            kernel(&[]),
        );
        let Ok(Selection::ScanOnly { refused }) = selection else {
            panic!("expected scan-only: {selection:?}");
        };
        assert_eq!(
            refused,
            [
                "lsm: no bpf LSM",
                "fentry: no BTF",
                "tracepoint: program x was refused by the kernel"
            ]
        );
    }

    #[test]
    fn a_named_strategy_that_cannot_run_is_an_error() {
        let refused_statically = choose(
            Requested::Only(Strategy::Lsm),
            Vec::new(),
            vec![refuse(Strategy::Lsm, "no bpf LSM")],
            kernel(&[Strategy::Lsm]),
        );
        let error = refused_statically.expect_err("lsm was refused");
        assert_eq!(
            error.to_string(),
            "the requested strategy cannot run here: lsm: no bpf LSM"
        );

        let refused_by_the_verifier = choose(
            Requested::Only(Strategy::Fentry),
            vec![Strategy::Fentry],
            Vec::new(),
            kernel(&[]),
        );
        assert_eq!(
            refused_by_the_verifier.expect_err("fentry did not load"),
            SelectError {
                refused: vec!["fentry: program x was refused by the kernel".to_string()]
            }
        );
    }

    #[test]
    fn first_line_keeps_the_summary_of_a_verifier_log() {
        assert_eq!(first_line("one\ntwo"), "one");
        assert_eq!(first_line("refused. Verifier output: 0: r0 = 0"), "refused");
        assert_eq!(first_line(""), "");
    }
}
