//! Loading the embedded BPF object and attaching the chosen strategy's programs.
use aya::{programs::TracePoint, Ebpf, EbpfLoader};
use fim_common::{maps, offsets::KernelOffsets};

use crate::strategy::Strategy;

/// The object built by build.rs (empty when built with AYA_BUILD_SKIP=1).
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fim"));

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("this fimd was built without its BPF object (AYA_BUILD_SKIP was set)")]
    NoObject,
    #[error("loading the BPF object failed: {0}")]
    Object(#[from] aya::EbpfError),
    #[error("program {name} was refused by the kernel: {source}")]
    Program { name: String, source: aya::programs::ProgramError },
    #[error("the {0} strategy has no programs in this build")]
    NotBuilt(Strategy),
}

pub struct Loaded {
    pub ebpf: Ebpf,
    /// Forwards the programs' aya-log records; poll its fd and call `flush`.
    pub logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// Tracepoints attached.
    pub attached: Vec<String>,
    /// Tracepoints this kernel does not have (syscalls newer than it), skipped.
    pub missing: Vec<String>,
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
    if strategy != Strategy::Tracepoint {
        return Err(LoadError::NotBuilt(strategy));
    }
    let daemon_tgid = std::process::id();
    let mut ebpf = EbpfLoader::new()
        .override_global(maps::GLOBAL_OFFSETS, offsets, true)
        .override_global(maps::GLOBAL_DAEMON_TGID, &daemon_tgid, true)
        .map_max_entries(maps::EVENTS, ring_bytes)
        .load(BPF_OBJECT)?;
    // aya-log records go to the `log` facade, which tracing-log forwards into tracing.
    let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(logger) => Some(logger),
        Err(error) => {
            tracing::debug!("BPF log forwarding not started: {error}");
            None
        }
    };
    let mut attached = Vec::new();
    let mut missing = Vec::new();
    let names: Vec<String> = ebpf.programs().map(|(name, _)| name.to_string()).collect();
    for name in names {
        let category = if name.starts_with("sys_") { "syscalls" } else { "sched" };
        if !std::path::Path::new(tracefs).join("events").join(category).join(&name).exists() {
            missing.push(name);
            continue;
        }
        let program = ebpf.program_mut(&name).ok_or_else(|| LoadError::Program {
            name: name.clone(),
            source: aya::programs::ProgramError::NotLoaded,
        })?;
        let tracepoint: &mut TracePoint = program
            .try_into()
            .map_err(|source| LoadError::Program { name: name.clone(), source })?;
        tracepoint.load().map_err(|source| LoadError::Program { name: name.clone(), source })?;
        tracepoint
            .attach(category, &name)
            .map_err(|source| LoadError::Program { name: name.clone(), source })?;
        attached.push(name);
    }
    Ok(Loaded { ebpf, logger, attached, missing })
}
