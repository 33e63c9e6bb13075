//! Process exit closes every fd without close(2): flush the writers the process still holds.
//!
//! The record carries only the fd (low half of `arg`); user space knows its path from the
//! open record. The fd scan runs under `bpf_loop` so the verifier checks one step, not 1024.
use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_loop},
    macros::tracepoint,
    programs::TracePointContext,
};
use fim_common::{
    event::{flag, op},
    roots::WriterKey,
};

use super::files::{emit_writer_event, exiting_with_writers};
use crate::{kernel::KPath, maps::WRITERS};

/// fds scanned at exit; writers above this are closed by user space's own bookkeeping.
const EXIT_FD_SCAN: u32 = 1024;

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    if !exiting_with_writers(&ctx) {
        return 0;
    }
    unsafe {
        bpf_loop(
            EXIT_FD_SCAN,
            flush_fd as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    0
}

extern "C" fn flush_fd(index: u64, _ctx: *mut c_void) -> i64 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let key = WriterKey {
        tgid,
        fd: index as u32,
    };
    let Some(state) = (unsafe { WRITERS.get(&key) }).copied() else {
        return 0;
    };
    let _ = WRITERS.remove(&key);
    let no_path = KPath { mnt: 0, dentry: 0 };
    emit_writer_event(op::WRITE_CLOSED, no_path, &state, index, flag::AT_EXIT);
    0
}
