//! close(2): where writes are coalesced.
//!
//! A tracked fd yields one event at close, however many writes came between (and even with
//! none: mmap writes never call write(2)). write(2) itself is not hooked at all: a program on
//! every write cost 12% on small cached writes to *unmonitored* files (see BENCHMARKS.md),
//! while the open already says which files are being written. In-progress events for
//! long-lived writers come from user space, which polls the metadata of the files it knows
//! are open for writing, at most once a second.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use fim_common::{event::op, roots::WriterKey};

use super::{arg, current_tgid, files::emit_writer_event};
use crate::{
    kernel::{fd_file, file_path},
    maps::{WRITERS, WRITER_COUNTS},
};

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
    emit_writer_event(op::WRITE_CLOSED, file_path(fd_file(fd)), &state, fd, 0);
    0
}
