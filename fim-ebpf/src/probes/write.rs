//! The write family and close: coalesced in the kernel.
//!
//! A tracked fd yields one event at close, however many writes came between (and even with
//! none: mmap writes never call write(2)). A writer that keeps the file open gets at most one
//! in-progress event per second. For an fd that is not tracked, a write costs one hash lookup.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use fim_common::{
    event::op,
    roots::{WriterKey, WriterState},
};

use super::{arg, current_tgid};
use crate::{
    emit::{begin, now_ns, send},
    kernel::{dentry_ids, fd_file, file_path},
    maps::{WRITERS, WRITER_COUNTS},
    walk::walk,
};

const IN_PROGRESS_INTERVAL_NS: u64 = 1_000_000_000;

#[inline(always)]
fn on_write(fd: u64) -> u32 {
    let key = WriterKey {
        tgid: current_tgid(),
        fd: fd as u32,
    };
    let Some(state) = WRITERS.get_ptr_mut(&key) else {
        return 0;
    };
    let state = unsafe { &mut *state };
    state.writes = state.writes.wrapping_add(1);
    let now = now_ns();
    if now.wrapping_sub(state.last_event_ns) < IN_PROGRESS_INTERVAL_NS {
        return 0;
    }
    state.last_event_ns = now;
    emit_for_fd(op::WRITE_IN_PROGRESS, fd, state);
    0
}

#[inline(always)]
fn emit_for_fd(event_op: u8, fd: u64, state: &WriterState) {
    let path = file_path(fd_file(fd));
    let Some(buf) = begin(event_op) else { return };
    let mut off = 0usize;
    walk(buf, 0, path, &mut off, false);
    buf.header.paths[0].root_id = state.root_id;
    let (dev, ino, mode) = dentry_ids(path.dentry);
    buf.header.dev = dev;
    buf.header.ino = ino;
    buf.header.mode = mode;
    buf.header.arg = fd | ((state.writes as u64) << 32);
    send(buf, off);
}

macro_rules! write_probe {
    ($name:ident, $fd_arg:expr) => {
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            on_write(arg(&ctx, $fd_arg))
        }
    };
}

write_probe!(sys_enter_write, 0);
write_probe!(sys_enter_pwrite64, 0);
write_probe!(sys_enter_writev, 0);
write_probe!(sys_enter_pwritev, 0);
write_probe!(sys_enter_pwritev2, 0);
write_probe!(sys_enter_fallocate, 0);
write_probe!(sys_enter_copy_file_range, 2);
write_probe!(sys_enter_sendfile64, 0);
write_probe!(sys_enter_splice, 2);

#[tracepoint]
pub fn sys_enter_close(ctx: TracePointContext) -> u32 {
    let fd = arg(&ctx, 0);
    let tgid = current_tgid();
    let key = WriterKey {
        tgid,
        fd: fd as u32,
    };
    let Some(state) = (unsafe { WRITERS.get(&key) }).copied() else {
        return 0;
    };
    let _ = WRITERS.remove(&key);
    if let Some(count) = WRITER_COUNTS.get_ptr_mut(&tgid) {
        unsafe { *count = (*count).saturating_sub(1) };
    }
    emit_for_fd(op::WRITE_CLOSED, fd, &state);
    0
}
