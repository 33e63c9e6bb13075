//! Who-data the kernel record does not carry: the executable and the cgroup path.
//!
//! Read from /proc when the event is decoded, which is within milliseconds of the syscall, so
//! most processes are still there; a process that already exited gets None ("unknown"), never
//! a guess. A small per-pid cache, emptied every tick, keeps a burst of events from one
//! process to one pair of reads while a reused pid cannot inherit stale data for long.
use std::collections::HashMap;

#[derive(Default)]
pub(crate) struct ProcessInfo {
    cache: HashMap<u32, (Option<String>, Option<String>)>,
}

impl ProcessInfo {
    /// (executable, cgroup path) of a thread group.
    pub(crate) fn lookup(&mut self, tgid: u32) -> (Option<String>, Option<String>) {
        self.cache
            .entry(tgid)
            .or_insert_with(|| (executable(tgid), cgroup(tgid)))
            .clone()
    }

    pub(crate) fn forget(&mut self) {
        self.cache.clear();
    }
}

fn executable(tgid: u32) -> Option<String> {
    let target = std::fs::read_link(format!("/proc/{tgid}/exe")).ok()?;
    Some(fim_engine::path_text::display_path(&target))
}

/// The unified-hierarchy path (`0::/system.slice/x.service`), or the first line otherwise.
fn cgroup(tgid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{tgid}/cgroup")).ok()?;
    let line = text
        .lines()
        .find(|line| line.starts_with("0::"))
        .or_else(|| text.lines().next())?;
    let path = line.splitn(3, ':').nth(2)?;
    Some(path.to_string())
}
