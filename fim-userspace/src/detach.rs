//! Detaching the tracepoint programs without holding up fimd's exit.
//!
//! When a process drops the last reference to a perf-event tracepoint, the kernel tears it
//! down in that process before it may exit: each teardown waits for a tracepoint grace
//! period under the global event_mutex (about 60 ms here), so fimd's ~90 tracepoint programs
//! kept it alive for 5 s after its last record was journaled, and detaching from many threads
//! took as long. A link pinned in bpffs and then unpinned has its last reference dropped by
//! the kernel itself (`bpf_link_put` defers to a workqueue), so the same teardown runs in a
//! kernel worker and fimd exits at once. For those seconds the programs still run, but they
//! only write to a ring buffer that nobody reads and that is freed after them.
//!
//! A pin lives for the microseconds between pinning and unpinning; one left behind by a fimd
//! killed in between would keep its program attached, so [`remove_stale_pins`] removes pins
//! of processes that are gone before the next load. Where bpffs is missing or refuses the
//! pin, the links are detached the plain way, and the log says that the exit waits.
use std::path::{Path, PathBuf};

use aya::{
    programs::{links::FdLink, trace_point::TracePointLinkId, TracePoint},
    Ebpf,
};

/// Where the kernel's BPF filesystem is mounted (setup mounts it; so does systemd).
const BPFFS: &str = "/sys/fs/bpf";
/// The name prefix of this module's short-lived pins: `fim-detach-<pid>-<n>`.
const PIN_PREFIX: &str = "fim-detach-";

/// Detaches `links` (tracepoint links of `ebpf`'s programs) through bpffs, then drops the
/// object: its other programs and maps go the plain way, which does not wait.
pub(crate) fn in_background(mut ebpf: Ebpf, links: Vec<(String, TracePointLinkId)>) {
    let pid = std::process::id();
    let total = links.len();
    let mut handed = 0;
    for (index, (program, link)) in links.into_iter().enumerate() {
        let path = Path::new(BPFFS).join(format!("{PIN_PREFIX}{pid}-{index}"));
        match hand_to_kernel(&mut ebpf, &program, link, &path) {
            Ok(()) => handed += 1,
            Err(why) => {
                tracing::info!(
                    "detaching the remaining tracepoints in this process ({why}); \
                     the exit waits for the kernel"
                );
                break;
            }
        }
    }
    tracing::debug!(handed, total, "tracepoint links handed to the kernel");
    drop(ebpf);
}

/// Pins one link, closes fimd's reference to it, and unpins it: the kernel now holds the
/// last reference and releases it from its workqueue.
fn hand_to_kernel(
    ebpf: &mut Ebpf,
    program: &str,
    link: TracePointLinkId,
    path: &Path,
) -> Result<(), String> {
    let program_ref = ebpf
        .program_mut(program)
        .ok_or_else(|| format!("program {program} is gone"))?;
    let tracepoint: &mut TracePoint = program_ref
        .try_into()
        .map_err(|error| format!("{program}: {error}"))?;
    let owned = tracepoint
        .take_link(link)
        .map_err(|error| format!("{program}: {error}"))?;
    // Without BPF links (kernels before 5.15) the attachment is an ioctl and cannot be
    // pinned; the conversion fails and the link detaches as it is dropped.
    let fd_link = FdLink::try_from(owned).map_err(|error| format!("{program}: {error}"))?;
    let pinned = fd_link
        .pin(path)
        .map_err(|error| format!("cannot pin in {BPFFS}: {error}"))?;
    // Closing our descriptor leaves the pin's reference; removing the pin drops that one
    // from the kernel's side.
    drop(FdLink::from(pinned));
    std::fs::remove_file(path).map_err(|error| format!("cannot unpin {}: {error}", path.display()))
}

/// Removes pins that a fimd killed between pinning and unpinning left behind, so that their
/// programs detach. Pins of live processes (another fimd stopping now) are left alone.
pub(crate) fn remove_stale_pins() {
    let Ok(entries) = std::fs::read_dir(BPFFS) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(pin_owner) else {
            continue;
        };
        if Path::new("/proc").join(owner.to_string()).exists() {
            continue;
        }
        let path: PathBuf = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::warn!(
                "removed {}: a BPF link pinned by fimd process {owner}, which died before it \
                 could unpin it",
                path.display()
            ),
            Err(error) => tracing::warn!("cannot remove stale pin {}: {error}", path.display()),
        }
    }
}

/// The pid in a pin name of this module, `fim-detach-<pid>-<n>`.
fn pin_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PIN_PREFIX)?;
    let (pid, index) = rest.split_once('-')?;
    index.parse::<usize>().ok()?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::pin_owner;

    #[test]
    fn only_this_modules_pin_names_name_an_owner() {
        assert_eq!(pin_owner("fim-detach-4242-17"), Some(4242));
        assert_eq!(pin_owner("fim-detach-4242"), None);
        assert_eq!(pin_owner("fim-detach-x-1"), None);
        assert_eq!(pin_owner("fim-detach-12-x"), None);
        assert_eq!(pin_owner("other-12-1"), None);
    }
}
