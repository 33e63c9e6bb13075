//! Tracking files open for writing by `struct file *`, for the LSM and fentry strategies.
//!
//! Those strategies see an open in the kernel (file_open / vfs_open) before the fd exists, so
//! writers are keyed by the file pointer. Close and process exit are still syscall and sched
//! tracepoints, which every kernel has: `file_close` and `file_process_exit` below.
use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_loop},
    macros::tracepoint,
    programs::TracePointContext,
};
use fim_common::{
    event::{flag, op},
    roots::WriterState,
};

use super::{arg, current_tgid, is_daemon};
use crate::{
    emit::{begin, now_ns, send},
    kernel::{dentry_ids, fd_file, file_mode, file_path, fmode_created, KPath},
    maps::{FILE_WRITERS, WRITER_COUNTS},
    walk::{walk, Found},
};

const FMODE_WRITE: u32 = 0x2;
const EXIT_FD_SCAN: u32 = 1024;

/// A file was opened: if for writing under a root, start tracking it.
#[inline(always)]
pub fn track_open(path: KPath, file: u64) {
    if is_daemon() || file_mode(file) & FMODE_WRITE == 0 {
        return;
    }
    let Some(buf) = begin(op::WRITE_OPENED) else {
        return;
    };
    let mut off = 0usize;
    let root_id = match walk(buf, 0, path, &mut off, false) {
        Found::Root(id) => id,
        Found::Truncated => 0,
        _ => return,
    };
    if file_mode(file) & fmode_created() != 0 {
        buf.header.op = op::CREATE;
    }
    let (dev, ino, mode) = dentry_ids(path.dentry);
    buf.header.dev = dev;
    buf.header.ino = ino;
    buf.header.mode = mode;
    buf.header.arg = file;
    let state = WriterState {
        opened_ns: now_ns(),
        root_id,
        _pad: 0,
    };
    let _ = FILE_WRITERS.insert(&file, &state, 0);
    let tgid = current_tgid();
    let count = unsafe { WRITER_COUNTS.get(&tgid) }.copied().unwrap_or(0);
    let _ = WRITER_COUNTS.insert(&tgid, &(count + 1), 0);
    send(buf, off);
}

/// A writer's record (write-closed) for the file behind `path`, identified by `writer_id`
/// (the fd or the `struct file *`). At process exit the walk is skipped: user space already
/// knows the path from the open record.
#[inline(always)]
pub fn emit_writer_event(
    event_op: u8,
    path: KPath,
    state: &WriterState,
    writer_id: u64,
    flags: u8,
) {
    let Some(buf) = begin(event_op) else { return };
    buf.header.flags |= flags;
    let mut off = 0usize;
    if flags & flag::AT_EXIT == 0 {
        walk(buf, 0, path, &mut off, false);
    }
    buf.header.paths[0].root_id = state.root_id;
    let (dev, ino, mode) = dentry_ids(path.dentry);
    buf.header.dev = dev;
    buf.header.ino = ino;
    buf.header.mode = mode;
    buf.header.arg = writer_id;
    send(buf, off);
}

/// Shared start of both process-exit programs: true when the exiting task is a thread-group
/// leader that still holds writers (which are then flushed by the caller's loop).
#[inline(always)]
pub fn exiting_with_writers(ctx: &TracePointContext) -> bool {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if pid_tgid as u32 != tgid || unsafe { WRITER_COUNTS.get(&tgid) }.is_none() {
        return false;
    }
    let _ = WRITER_COUNTS.remove(&tgid);
    // Rare and worth seeing when chasing a lost close; aya-log routes it into tracing.
    aya_log_ebpf::debug!(ctx, "tgid {} exited with files open for writing", tgid);
    true
}

/// Attached to syscalls/sys_enter_close in the LSM and fentry strategies.
#[tracepoint]
pub fn file_close(ctx: TracePointContext) -> u32 {
    let file = fd_file(arg(&ctx, 0));
    if file == 0 {
        return 0;
    }
    let Some(state) = (unsafe { FILE_WRITERS.get(&file) }).copied() else {
        return 0;
    };
    let _ = FILE_WRITERS.remove(&file);
    let tgid = current_tgid();
    if let Some(count) = WRITER_COUNTS.get_ptr_mut(&tgid) {
        unsafe { *count = (*count).saturating_sub(1) };
    }
    emit_writer_event(op::WRITE_CLOSED, file_path(file), &state, file, 0);
    0
}

/// Attached to sched/sched_process_exit in the LSM and fentry strategies.
#[tracepoint]
pub fn file_process_exit(ctx: TracePointContext) -> u32 {
    if !exiting_with_writers(&ctx) {
        return 0;
    }
    unsafe {
        bpf_loop(
            EXIT_FD_SCAN,
            flush_file as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    0
}

extern "C" fn flush_file(index: u64, _ctx: *mut c_void) -> i64 {
    let file = fd_file(index);
    if file == 0 {
        return 0;
    }
    let Some(state) = (unsafe { FILE_WRITERS.get(&file) }).copied() else {
        return 0;
    };
    let _ = FILE_WRITERS.remove(&file);
    emit_writer_event(
        op::WRITE_CLOSED,
        file_path(file),
        &state,
        file,
        flag::AT_EXIT,
    );
    0
}
