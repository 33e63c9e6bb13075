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

use crate::{
    emit::{begin, send},
    maps::{WRITERS, WRITER_COUNTS},
};

/// fds scanned at exit; writers above this are closed by user space's own bookkeeping.
const EXIT_FD_SCAN: u32 = 1024;

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if pid_tgid as u32 != tgid {
        return 0;
    }
    if unsafe { WRITER_COUNTS.get(&tgid) }.is_none() {
        return 0;
    }
    let _ = WRITER_COUNTS.remove(&tgid);
    // Rare and worth seeing when chasing a lost close; aya-log routes it into tracing.
    aya_log_ebpf::debug!(&ctx, "tgid {} exited with files open for writing", tgid);
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
    let fd = index as u32;
    let key = WriterKey { tgid, fd };
    let Some(state) = (unsafe { WRITERS.get(&key) }).copied() else {
        return 0;
    };
    let _ = WRITERS.remove(&key);
    let Some(buf) = begin(op::WRITE_CLOSED) else {
        return 0;
    };
    buf.header.flags |= flag::AT_EXIT;
    buf.header.arg = fd as u64;
    buf.header.paths[0].root_id = state.root_id;
    send(buf, 0);
    0
}
