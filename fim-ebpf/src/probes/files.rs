//! Writers, tracked by open file (`struct file *`) in every strategy.
//!
//! A descriptor number is not a writer: `dup`, `dup2`, `fcntl(F_DUPFD)`, a fork and a
//! descriptor passed over a Unix socket all reach the same open file under other numbers or
//! in other processes, and closing the original first must not end the tracking. So writers
//! are keyed by the file, and a close reports the writes made so far (attributed to the
//! closing process) while `file_shared` says whether the file stays open elsewhere
//! (`STILL_OPEN`: user space keeps watching it). The LSM and fentry strategies also see the
//! release of the last reference (`file_released`), which ends the tracking exactly, also
//! for mappings and io_uring closes.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use fim_common::{
    event::{flag, op},
    roots::WriterState,
};

use super::{arg, current_tgid, is_daemon};
use crate::{
    emit::{begin, now_ns, send_change},
    kernel::{dentry_ids, fd_file, file_mode, file_path, file_shared, fmode_created, KPath},
    maps::{FILE_WRITERS, OUTSIDE_ROOTS, ROOTS_GENERATION, WRITER_COUNTS},
    walk::{walk, Found},
};

const FMODE_WRITE: u32 = 0x2;

/// A file was opened: report a creation under a root, and start tracking a writable one.
/// `extra_flags` carries what only the caller knows (O_TRUNC, io_uring).
#[inline(always)]
pub fn track_open(path: KPath, file: u64, extra_flags: u8) {
    if is_daemon() || file == 0 {
        return;
    }
    let _ = OUTSIDE_ROOTS.remove(&file);
    let mode = file_mode(file);
    let created = mode & fmode_created() != 0;
    let writable = mode & FMODE_WRITE != 0;
    if !writable && !created {
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
    if created {
        buf.header.op = op::CREATE;
    }
    buf.header.flags |= extra_flags;
    fill_ids(buf, path, file);
    if writable {
        start_tracking(file, root_id);
    }
    send_change(buf, off);
}

#[inline(always)]
fn start_tracking(file: u64, root_id: u32) {
    let state = WriterState {
        opened_ns: now_ns(),
        root_id,
        _pad: 0,
    };
    let _ = FILE_WRITERS.insert(&file, &state, 0);
    let _ = WRITER_COUNTS.insert(&current_tgid(), &1, 0);
}

#[inline(always)]
fn fill_ids(buf: &mut fim_common::event::EventBuf, path: KPath, file: u64) {
    let (dev, ino, mode) = dentry_ids(path.dentry);
    buf.header.dev = dev;
    buf.header.ino = ino;
    buf.header.mode = mode;
    buf.header.arg = file;
}

/// A file written without a tracked open (an io_uring write through a fixed file, or a file
/// opened by io_uring): report it, and track it from now on, if it is under a root.
#[inline(always)]
pub fn written(file: u64, extra_flags: u8) {
    if is_daemon() || file == 0 {
        return;
    }
    if let Some(state) = unsafe { FILE_WRITERS.get(&file) }.copied() {
        emit_writer_event(
            file_path(file),
            &state,
            file,
            flag::STILL_OPEN | extra_flags,
        );
        return;
    }
    let generation = roots_generation();
    if unsafe { OUTSIDE_ROOTS.get(&file) }.is_some_and(|seen| *seen == generation) {
        return;
    }
    let path = file_path(file);
    let Some(buf) = begin(op::WRITE_OPENED) else {
        return;
    };
    let mut off = 0usize;
    let root_id = match walk(buf, 0, path, &mut off, false) {
        Found::Root(id) => id,
        Found::Truncated => 0,
        _ => {
            let _ = OUTSIDE_ROOTS.insert(&file, &generation, 0);
            return;
        }
    };
    // An open record first (user space learns the path by the writer id), then the write.
    buf.header.flags |= extra_flags;
    fill_ids(buf, path, file);
    start_tracking(file, root_id);
    send_change(buf, off);
    if let Some(state) = unsafe { FILE_WRITERS.get(&file) }.copied() {
        emit_writer_event(path, &state, file, flag::STILL_OPEN | extra_flags);
    }
}

#[inline(always)]
fn roots_generation() -> u32 {
    ROOTS_GENERATION.get(0).copied().unwrap_or(0)
}

/// A descriptor of `file` is being closed (close(2), io_uring's CLOSE, process exit).
#[inline(always)]
pub fn closing(file: u64, path: KPath, extra_flags: u8) {
    if file == 0 {
        return;
    }
    let Some(state) = (unsafe { FILE_WRITERS.get(&file) }).copied() else {
        return;
    };
    let mut flags = extra_flags;
    if file_shared(file) {
        flags |= flag::STILL_OPEN;
    } else {
        let _ = FILE_WRITERS.remove(&file);
    }
    emit_writer_event(path, &state, file, flags);
}

/// A writer's record (write-closed) for the file behind `path`, identified by the file
/// pointer. Without a path (`AT_EXIT`) the walk is skipped: user space knows the path from
/// the open record.
#[inline(always)]
pub fn emit_writer_event(path: KPath, state: &WriterState, file: u64, flags: u8) {
    let Some(buf) = begin(op::WRITE_CLOSED) else {
        return;
    };
    buf.header.flags |= flags;
    let mut off = 0usize;
    if flags & flag::AT_EXIT == 0 {
        walk(buf, 0, path, &mut off, false);
    }
    buf.header.paths[0].root_id = state.root_id;
    fill_ids(buf, path, file);
    send_change(buf, off);
}

/// The last reference to a file is gone (LSM file_free_security, fentry security_file_free).
#[inline(always)]
pub fn file_released(file: u64) {
    let Some(state) = (unsafe { FILE_WRITERS.get(&file) }).copied() else {
        return;
    };
    let _ = FILE_WRITERS.remove(&file);
    let no_path = KPath { mnt: 0, dentry: 0 };
    emit_writer_event(no_path, &state, file, flag::AT_EXIT);
}

/// close(2), in every strategy.
#[tracepoint]
pub fn any_sys_enter_close(ctx: TracePointContext) -> u32 {
    if is_daemon() {
        return 0;
    }
    let file = fd_file(arg(&ctx, 0));
    closing(file, file_path(file), 0);
    0
}

/// dup2/dup3 onto a descriptor closes what it held, without close(2) (a shell restoring its
/// stdout after `echo x >> f` does exactly this).
#[inline(always)]
fn replacing(oldfd: u64, newfd: u64) {
    if is_daemon() || oldfd as u32 == newfd as u32 {
        return;
    }
    let file = fd_file(newfd);
    closing(file, file_path(file), 0);
}

#[tracepoint]
pub fn any_sys_enter_dup2(ctx: TracePointContext) -> u32 {
    replacing(arg(&ctx, 0), arg(&ctx, 1));
    0
}

#[tracepoint]
pub fn any_sys_enter_dup3(ctx: TracePointContext) -> u32 {
    replacing(arg(&ctx, 0), arg(&ctx, 1));
    0
}
