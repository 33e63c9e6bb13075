//! open/openat/openat2/creat/open_by_handle_at (tracepoint strategy): a writable open of a
//! file under a root starts tracking the open file.
//!
//! The decision is made at sys_exit, when the kernel has resolved the path to a `struct file`:
//! relative paths, dirfds, symlinks, bind mounts and other mount namespaces all arrive as the
//! same dentry. A read-only open costs nothing beyond the tracepoint itself.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use fim_common::event::flag;

use super::{arg, files::track_open, is_daemon, ret};
use crate::{
    kernel::{fd_file, file_path},
    maps::OPEN_STASH,
};

const O_ACCMODE: u64 = 0o3;
const O_CREAT: u64 = 0o100;
const O_TRUNC: u64 = 0o1000;

#[inline(always)]
fn stash_if_writable(flags: u64) -> u32 {
    if is_daemon() {
        return 0;
    }
    if flags & O_ACCMODE != 0 || flags & (O_CREAT | O_TRUNC) != 0 {
        let _ = OPEN_STASH.insert(&bpf_get_current_pid_tgid(), &(flags as u32), 0);
    }
    0
}

#[tracepoint]
pub fn sys_enter_open(ctx: TracePointContext) -> u32 {
    stash_if_writable(arg(&ctx, 1))
}

#[tracepoint]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    stash_if_writable(arg(&ctx, 2))
}

#[tracepoint]
pub fn sys_enter_creat(_ctx: TracePointContext) -> u32 {
    stash_if_writable(0o1 | O_CREAT | O_TRUNC)
}

#[tracepoint]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    // struct open_how starts with the u64 flags.
    let how = arg(&ctx, 2) as *const u64;
    let flags = unsafe { bpf_probe_read_user(how) }.unwrap_or(0);
    stash_if_writable(flags)
}

/// open_by_handle_at(mount_fd, handle, flags): opens a file with no path at all.
#[tracepoint]
pub fn sys_enter_open_by_handle_at(ctx: TracePointContext) -> u32 {
    stash_if_writable(arg(&ctx, 2))
}

#[tracepoint]
pub fn sys_exit_open(ctx: TracePointContext) -> u32 {
    on_open_exit(&ctx)
}

#[tracepoint]
pub fn sys_exit_openat(ctx: TracePointContext) -> u32 {
    on_open_exit(&ctx)
}

#[tracepoint]
pub fn sys_exit_openat2(ctx: TracePointContext) -> u32 {
    on_open_exit(&ctx)
}

#[tracepoint]
pub fn sys_exit_creat(ctx: TracePointContext) -> u32 {
    on_open_exit(&ctx)
}

#[tracepoint]
pub fn sys_exit_open_by_handle_at(ctx: TracePointContext) -> u32 {
    on_open_exit(&ctx)
}

#[inline(always)]
fn on_open_exit(ctx: &TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let open_flags = match unsafe { OPEN_STASH.get(&pid_tgid) } {
        Some(flags) => *flags as u64,
        None => return 0,
    };
    let _ = OPEN_STASH.remove(&pid_tgid);
    let fd = ret(ctx);
    if fd < 0 {
        return 0;
    }
    let file = fd_file(fd as u64);
    let extra = if open_flags & O_TRUNC != 0 {
        flag::OPEN_TRUNC
    } else {
        0
    };
    track_open(file_path(file), file, extra);
    0
}
