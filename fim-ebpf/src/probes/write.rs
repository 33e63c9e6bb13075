//! close(2): where writes are coalesced.
//!
//! A tracked fd yields one event at close, however many writes came between (and even with
//! none: mmap writes never call write(2)). write(2) itself is not hooked at all: a program on
//! every write cost 12% on small cached writes to *unmonitored* files (see BENCHMARKS.md),
//! while the open already says which files are being written. In-progress events for
//! long-lived writers come from user space, which polls the metadata of the files it knows
//! are open for writing, at most once a second.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use fim_common::{
    event::op,
    roots::{WriterKey, WriterState},
};

use super::{arg, current_tgid};
use crate::{
    emit::{begin, send},
    kernel::{dentry_ids, fd_file, file_path},
    maps::{WRITERS, WRITER_COUNTS},
    walk::walk,
};

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
    buf.header.arg = fd;
    send(buf, off);
}

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
