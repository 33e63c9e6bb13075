//! open/openat/openat2/creat: a writable open of a file under a root starts tracking the fd.
//!
//! The decision is made at sys_exit, when the kernel has resolved the path to a `struct file`:
//! relative paths, dirfds, symlinks, bind mounts and other mount namespaces all arrive as the
//! same dentry. A read-only open costs nothing beyond the tracepoint itself.
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::tracepoint,
    programs::TracePointContext,
};
use fim_common::{
    event::{flag, op},
    roots::{WriterKey, WriterState},
};

use super::{arg, current_tgid, is_daemon, ret};
use crate::{
    emit::{begin, now_ns, send},
    kernel::{dentry_ids, fd_file, file_mode, file_path, fmode_created},
    maps::{OPEN_STASH, WRITERS, WRITER_COUNTS},
    walk::{walk, Found},
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
    let path = file_path(file);
    let Some(buf) = begin(op::WRITE_OPENED) else {
        return 0;
    };
    let mut off = 0usize;
    let root_id = match walk(buf, 0, path, &mut off, false) {
        Found::Root(id) => id,
        Found::Truncated => 0,
        _ => return 0,
    };
    if file_mode(file) & fmode_created() != 0 {
        buf.header.op = op::CREATE;
    }
    if open_flags & O_TRUNC != 0 {
        buf.header.flags |= flag::OPEN_TRUNC;
    }
    let (dev, ino, mode) = dentry_ids(path.dentry);
    buf.header.dev = dev;
    buf.header.ino = ino;
    buf.header.mode = mode;
    buf.header.arg = fd as u64;
    let tgid = current_tgid();
    let key = WriterKey {
        tgid,
        fd: fd as u32,
    };
    let state = WriterState {
        opened_ns: now_ns(),
        root_id,
        _pad: 0,
    };
    let _ = WRITERS.insert(&key, &state, 0);
    let count = unsafe { WRITER_COUNTS.get(&tgid) }.copied().unwrap_or(0);
    let _ = WRITER_COUNTS.insert(&tgid, &(count + 1), 0);
    send(buf, off);
    0
}
