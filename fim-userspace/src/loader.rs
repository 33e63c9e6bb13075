//! Loading the embedded BPF object and attaching the chosen strategy's programs.
//!
//! [`load_preferred`] is what fimd starts with: kernel offsets from BTF, then the best
//! strategy the kernel loads ([`strategy::choose`]); [`load`] attaches one strategy.
use std::path::Path;

use aya::{
    programs::{trace_point::TracePointLinkId, FEntry, FExit, Lsm, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use fim_common::{maps, offsets::KernelOffsets};

use crate::{
    kernel_offsets::read_kernel_offsets,
    strategy::{self, Requested, SelectError, Selection, Strategy},
};

/// The object built by build.rs (empty when built with AYA_BUILD_SKIP=1).
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fim"));

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("this fimd was built without its BPF object (AYA_BUILD_SKIP was set)")]
    NoObject,
    #[error("loading the BPF object failed: {0}")]
    Object(#[from] aya::EbpfError),
    #[error("program {name} was refused by the kernel: {source}")]
    Program {
        name: String,
        source: aya::programs::ProgramError,
    },
    #[error("cannot read kernel BTF for attaching: {0}")]
    Btf(aya::BtfError),
}

pub struct Loaded {
    pub ebpf: Ebpf,
    /// Forwards the programs' aya-log records; poll its fd and call `flush`.
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// Tracepoints attached.
    pub attached: Vec<String>,
    /// Tracepoints this kernel does not have (syscalls newer than it), skipped.
    pub missing: Vec<String>,
    /// The tracepoint programs' links, by program name, for [`crate::detach::in_background`].
    pub tracepoint_links: Vec<(String, TracePointLinkId)>,
}

/// How one program attaches.
enum Attach {
    Tracepoint {
        category: &'static str,
        name: String,
    },
    Lsm(String),
    Fentry(String),
    Fexit(String),
}

/// The strategy's programs and where each attaches; None for programs of other strategies.
///
/// `any_<tracepoint>` programs attach in every strategy; `sys_*` and `io_uring_*` ones only in
/// the tracepoint strategy (the others see those operations in the VFS).
fn attach_point(
    strategy: Strategy,
    program: &str,
    offsets: &KernelOffsets,
    tracefs: &str,
) -> Option<Attach> {
    // Two builds of the inode_setattr hook: the kernel's signature picks one.
    let setattr_variant = if offsets.setattr_dentry_arg == 0 {
        "lsm_inode_setattr"
    } else {
        "lsm_inode_setattr_idmap"
    };
    if program.starts_with("lsm_inode_setattr") && program != setattr_variant {
        return None;
    }
    // Two builds of the fork program: the record layout in tracefs picks one.
    if program.starts_with("any_sched_process_fork") {
        let dataloc = fork_record_uses_dataloc(tracefs);
        let wanted = if dataloc {
            "any_sched_process_fork_dataloc"
        } else {
            "any_sched_process_fork"
        };
        return (program == wanted).then(|| Attach::Tracepoint {
            category: "sched",
            name: "sched_process_fork".to_string(),
        });
    }
    let tracepoint = |category, name: &str| {
        Some(Attach::Tracepoint {
            category,
            name: name.to_string(),
        })
    };
    if let Some(name) = program.strip_prefix("any_") {
        return if name.starts_with("sched_") {
            tracepoint("sched", name)
        } else {
            tracepoint("syscalls", name)
        };
    }
    match (strategy, program) {
        (Strategy::Tracepoint, name) if name.starts_with("sys_") => tracepoint("syscalls", name),
        (Strategy::Tracepoint, name) if name.starts_with("io_uring_") => {
            // Before 6.3 the submission tracepoint was called io_uring_submit_sqe (same
            // record layout up to the fields read).
            let exists = |event: &str| {
                Path::new(tracefs)
                    .join("events/io_uring")
                    .join(event)
                    .exists()
            };
            if name == "io_uring_submit_req" && !exists(name) && exists("io_uring_submit_sqe") {
                tracepoint("io_uring", "io_uring_submit_sqe")
            } else {
                tracepoint("io_uring", name)
            }
        }
        (Strategy::Lsm, name) => name
            .strip_prefix("lsm_")
            .map(|hook| Attach::Lsm(hook.to_string())),
        (Strategy::Fentry, name) => match name.strip_prefix("fentry_") {
            Some(function) => Some(Attach::Fentry(function.to_string())),
            None => name
                .strip_prefix("fexit_")
                .map(|function| Attach::Fexit(function.to_string())),
        },
        _ => None,
    }
}

/// Whether sched_process_fork's record has `__data_loc` comm fields (newer kernels) rather
/// than inline `char[16]` ones: the child pid sits at a different offset.
fn fork_record_uses_dataloc(tracefs: &str) -> bool {
    let format = Path::new(tracefs).join("events/sched/sched_process_fork/format");
    std::fs::read_to_string(format).is_ok_and(|text| text.contains("__data_loc char[] parent_comm"))
}

/// Programs whose refusal does not sink the strategy: the writer tracking falls back to
/// close(2) and exit, which every strategy has.
fn optional(program: &str) -> bool {
    matches!(
        program,
        "lsm_file_free_security" | "fentry_security_file_free"
    )
}

/// Where tracefs is looked for when it is not mounted and could not be mounted (every
/// strategy is then refused by its static checks, so nothing attaches through it).
const DEFAULT_TRACEFS: &str = "/sys/kernel/tracing";

/// Reads the kernel offsets from `btf` and loads the best strategy `requested` allows.
/// `Ok(None)` is scan-only, already logged in one line saying what is missing: no usable
/// offsets, or (for `auto`) no strategy that loads. A strategy asked for by name that cannot
/// run is an error.
pub fn load_preferred(
    requested: Requested,
    btf: &Path,
    ring_bytes: u32,
) -> Result<Option<(Strategy, Loaded)>, SelectError> {
    let offsets = match read_kernel_offsets(btf) {
        Ok(offsets) => offsets,
        Err(error) => {
            tracing::error!("{error}; no kernel events, falling back to scan-only");
            return Ok(None);
        }
    };
    tracing::debug!(?offsets, "kernel offsets from BTF");
    release_freed_memory();
    let (candidates, refused) = strategy::candidates(requested);
    let tracefs = strategy::tracefs_root().unwrap_or(DEFAULT_TRACEFS);
    let selection = strategy::choose(requested, candidates, refused, |candidate| {
        load(candidate, &offsets, ring_bytes, tracefs)
    });
    release_freed_memory();
    let (strategy, loaded) = match selection? {
        Selection::Chosen {
            strategy, loaded, ..
        } => (strategy, loaded),
        Selection::ScanOnly { .. } => return Ok(None),
    };
    if !loaded.missing.is_empty() {
        tracing::info!(
            "this kernel lacks {} tracepoints, skipped: {}",
            loaded.missing.len(),
            loaded.missing.join(", ")
        );
    }
    Ok(Some((strategy, loaded)))
}

/// Gives the heap the kernel BTF parses left behind back to the system. Reading offsets and
/// loading the programs parse all of /sys/kernel/btf/vmlinux (tens of MB of types), freed at
/// once but kept by the allocator: 55 MB of an idle daemon's 102 MB resident set.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Loads the object with the kernel's offsets and attaches the strategy's programs.
pub fn load(
    strategy: Strategy,
    offsets: &KernelOffsets,
    ring_bytes: u32,
    tracefs: &str,
) -> Result<Loaded, LoadError> {
    if BPF_OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    let daemon_tgid = std::process::id();
    crate::detach::remove_stale_pins();
    let mut loader = EbpfLoader::new();
    if strategy == Strategy::Tracepoint {
        // Rust programs carry no CO-RE relocations, so tracepoints need no kernel BTF; parsing
        // it anyway costs tens of MB of peak memory. LSM and fentry attach through the BTF
        // parsed below.
        loader.btf(None);
    }
    let mut ebpf = loader
        .override_global(maps::GLOBAL_OFFSETS, offsets, true)
        .override_global(maps::GLOBAL_DAEMON_TGID, &daemon_tgid, true)
        .map_max_entries(maps::EVENTS, ring_bytes)
        .load(BPF_OBJECT)?;
    // aya-log records go to the `log` facade, which tracing-subscriber forwards into tracing.
    let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(logger) => Some(logger),
        Err(error) => {
            tracing::debug!("BPF log forwarding not started: {error}");
            None
        }
    };
    let btf = match strategy {
        Strategy::Tracepoint => None,
        _ => Some(Btf::from_sys_fs().map_err(LoadError::Btf)?),
    };
    let mut attached = Vec::new();
    let mut missing = Vec::new();
    let mut tracepoint_links = Vec::new();
    let names: Vec<String> = ebpf.programs().map(|(name, _)| name.to_string()).collect();
    for name in names {
        let Some(attach) = attach_point(strategy, &name, offsets, tracefs) else {
            continue;
        };
        if let Attach::Tracepoint {
            category,
            name: event,
        } = &attach
        {
            if !Path::new(tracefs)
                .join("events")
                .join(category)
                .join(event)
                .exists()
            {
                missing.push(event.clone());
                continue;
            }
        }
        let program = ebpf.program_mut(&name).ok_or_else(|| LoadError::Program {
            name: name.clone(),
            source: aya::programs::ProgramError::NotLoaded,
        })?;
        let failed = |source| LoadError::Program {
            name: name.clone(),
            source,
        };
        let outcome: Result<Option<TracePointLinkId>, LoadError> = (|| {
            match (attach, btf.as_ref()) {
                (
                    Attach::Tracepoint {
                        category,
                        name: event,
                    },
                    _,
                ) => {
                    let program: &mut TracePoint = program.try_into().map_err(failed)?;
                    program.load().map_err(failed)?;
                    return Ok(Some(program.attach(category, &event).map_err(failed)?));
                }
                (Attach::Lsm(hook), Some(btf)) => {
                    let program: &mut Lsm = program.try_into().map_err(failed)?;
                    program.load(&hook, btf).map_err(failed)?;
                    program.attach().map_err(failed)?;
                }
                (Attach::Fentry(function), Some(btf)) => {
                    let program: &mut FEntry = program.try_into().map_err(failed)?;
                    program.load(&function, btf).map_err(failed)?;
                    program.attach().map_err(failed)?;
                }
                (Attach::Fexit(function), Some(btf)) => {
                    let program: &mut FExit = program.try_into().map_err(failed)?;
                    program.load(&function, btf).map_err(failed)?;
                    program.attach().map_err(failed)?;
                }
                _ => {}
            }
            Ok(None)
        })();
        match outcome {
            Ok(Some(link)) => tracepoint_links.push((name.clone(), link)),
            Ok(None) => {}
            Err(error) if optional(&name) => {
                tracing::warn!("{error}; writers end at close(2) and exit only");
                continue;
            }
            Err(error) => {
                if let LoadError::Program {
                    source: aya::programs::ProgramError::LoadError { verifier_log, .. },
                    ..
                } = &error
                {
                    // The last lines say why; the whole log is for `FIM_LOG=debug`.
                    let log = verifier_log.to_string();
                    let tail: Vec<&str> = log.lines().rev().take(12).collect();
                    tracing::debug!("verifier log of {name}:\n{log}");
                    tracing::warn!(
                        "verifier refused {name}; last lines:\n{}",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
                return Err(error);
            }
        }
        attached.push(name);
    }
    Ok(Loaded {
        ebpf,
        logger,
        attached,
        missing,
        tracepoint_links,
    })
}
