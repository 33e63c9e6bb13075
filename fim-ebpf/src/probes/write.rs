//! Shared writable mappings: writes through them need neither write(2) nor an open fd.
//!
//! mmap(MAP_SHARED) of a tracked file marks the process as a mapper (the mapping holds the
//! file, so a close only reports `STILL_OPEN`); msync, munmap and exit of a mapper tell user
//! space to look at every file that process mapped. write(2) itself is never hooked: a
//! program on every write cost 12% on small cached writes to unmonitored files (BENCHMARKS.md).
//! A shared mapping is tracked whatever its protection, since mprotect can add PROT_WRITE.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use fim_common::event::{flag, op};

use super::{arg, current_tgid, is_daemon};
use crate::{
    emit::{begin, send_change},
    kernel::fd_file,
    maps::{FILE_WRITERS, MAPPERS},
};

const MAP_SHARED: u64 = 0x01;

#[tracepoint]
pub fn any_sys_enter_mmap(ctx: TracePointContext) -> u32 {
    if is_daemon() || arg(&ctx, 3) & MAP_SHARED == 0 {
        return 0;
    }
    let file = fd_file(arg(&ctx, 4));
    if file == 0 {
        return 0;
    }
    if unsafe { FILE_WRITERS.get(&file) }.is_none() {
        return 0;
    }
    let _ = MAPPERS.insert(&current_tgid(), &1, 0);
    if let Some(buf) = begin(op::WRITE_MAPPED) {
        buf.header.arg = file;
        send_change(buf, 0);
    }
    0
}

/// msync or munmap by a mapper: its mapped files may have been written.
#[inline(always)]
pub fn mappings_synced(extra_flags: u8) {
    let tgid = current_tgid();
    if unsafe { MAPPERS.get(&tgid) }.is_none() {
        return;
    }
    if extra_flags & flag::AT_EXIT != 0 {
        let _ = MAPPERS.remove(&tgid);
    }
    if let Some(buf) = begin(op::MAPPINGS_SYNCED) {
        buf.header.flags |= extra_flags;
        send_change(buf, 0);
    }
}

#[tracepoint]
pub fn any_sys_enter_msync(_ctx: TracePointContext) -> u32 {
    mappings_synced(0);
    0
}

#[tracepoint]
pub fn any_sys_enter_munmap(_ctx: TracePointContext) -> u32 {
    mappings_synced(0);
    0
}
