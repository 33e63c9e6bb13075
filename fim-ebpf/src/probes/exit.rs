//! Process exit closes every fd without close(2); fork gives the child the parent's writers.
//!
//! At exit the dying process's descriptors are scanned (under `bpf_loop`, so the verifier
//! checks one step) for tracked files; the records carry only the file pointer, user space
//! knows the path. Only processes marked in `WRITER_COUNTS` are scanned, and a fork copies the
//! mark, so a child that inherited a writable descriptor is scanned too.
use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_loop},
    macros::tracepoint,
    programs::TracePointContext,
};
use fim_common::event::flag;

use super::{current_tgid, files::closing, write::mappings_synced};
use crate::{
    kernel::{current_task, fd_file, offset, read_u32, read_u64, KPath},
    maps::{MAPPERS, WRITER_COUNTS},
};

/// Most descriptors scanned at exit. Beyond them the LSM/fentry release hook (or user space's
/// check that the holder is gone) ends the tracking.
const EXIT_FD_SCAN_MAX: u32 = 1 << 20;

#[tracepoint]
pub fn any_sched_process_exit(_ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if pid_tgid as u32 != tgid {
        return 0;
    }
    mappings_synced(flag::AT_EXIT);
    if unsafe { WRITER_COUNTS.get(&tgid) }.is_none() {
        return 0;
    }
    let _ = WRITER_COUNTS.remove(&tgid);
    let files = read_u64(current_task(), offset!(task_files));
    let fdt = read_u64(files, offset!(files_fdt));
    let max_fds = read_u32(fdt, offset!(fdtable_max_fds));
    let count = if max_fds > EXIT_FD_SCAN_MAX {
        EXIT_FD_SCAN_MAX
    } else {
        max_fds
    };
    unsafe { bpf_loop(count, flush_fd as *mut c_void, core::ptr::null_mut(), 0) };
    0
}

extern "C" fn flush_fd(index: u64, _ctx: *mut c_void) -> i64 {
    let no_path = KPath { mnt: 0, dentry: 0 };
    closing(fd_file(index), no_path, flag::AT_EXIT);
    0
}

/// A fork's child shares the parent's open files: mark it like the parent.
#[inline(always)]
fn on_fork(child: u32) {
    let parent = current_tgid();
    if unsafe { WRITER_COUNTS.get(&parent) }.is_some() {
        let _ = WRITER_COUNTS.insert(&child, &1, 0);
    }
    if unsafe { MAPPERS.get(&parent) }.is_some() {
        let _ = MAPPERS.insert(&child, &1, 0);
    }
}

/// sched_process_fork with `char parent_comm[16]` inline (before 6.x changed it): child_pid
/// at offset 44. The loader attaches the variant whose layout tracefs describes.
#[tracepoint]
pub fn any_sched_process_fork(ctx: TracePointContext) -> u32 {
    let child = super::field_u32(&ctx, 44);
    on_fork(child);
    0
}

/// sched_process_fork with `__data_loc` comm fields: child_pid at offset 20.
#[tracepoint]
pub fn any_sched_process_fork_dataloc(ctx: TracePointContext) -> u32 {
    let child = super::field_u32(&ctx, 20);
    on_fork(child);
    0
}
