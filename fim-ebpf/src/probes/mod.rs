//! The programs of the three strategies, one file per event family.
//!
//! - tracepoint (`open`, `write`, `names`, `exit`): syscall tracepoints, which every kernel
//!   with BPF permits. Each program is named after the tracepoint it attaches to
//!   (`sys_enter_unlinkat` attaches to `syscalls/sys_enter_unlinkat`).
//! - LSM (`lsm`) and fentry (`fentry`): programs named `lsm_<hook>`, `fentry_<function>`,
//!   `fexit_<function>`, sharing `resolved` (dentry operations).
//! - every strategy (`any_<tracepoint>`): `files` (writers keyed by `struct file *`, closed at
//!   close(2)), `write` (shared mappings), `exit` (process exit and fork).
//! - tracepoint only, `io_uring`: io_uring's own tracepoints, for the operations that never
//!   pass through a syscall the other tracepoints see.
mod exit;
mod fentry;
mod files;
mod io_uring;
mod lsm;
mod names;
mod open;
mod resolved;
mod symlink;
mod write;

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, programs::TracePointContext, EbpfContext};

use crate::kernel::daemon_tgid;

/// State of the path-string scan in `names.rs`, kept in a per-CPU map for the verifier.
#[repr(C)]
pub struct Scan {
    pub len: u64,
    pub odd: u64,
}

/// Syscall argument `n` (tracepoint records: 8 bytes of common fields, the syscall number
/// padded to 8, then six 8-byte arguments). Read directly: tracepoint programs may read ctx.
#[inline(always)]
pub fn arg(ctx: &TracePointContext, n: usize) -> u64 {
    unsafe { core::ptr::read_volatile((ctx.as_ptr() as *const u8).add(16 + 8 * n) as *const u64) }
}

/// A 4-byte tracepoint field at a constant offset (read directly, like [`arg`]).
#[inline(always)]
pub fn field_u32(ctx: &TracePointContext, offset: usize) -> u32 {
    unsafe { core::ptr::read_volatile((ctx.as_ptr() as *const u8).add(offset) as *const u32) }
}

/// An 8-byte tracepoint field at a constant offset.
#[inline(always)]
pub fn field_u64(ctx: &TracePointContext, offset: usize) -> u64 {
    unsafe { core::ptr::read_volatile((ctx.as_ptr() as *const u8).add(offset) as *const u64) }
}

/// The return value in a sys_exit record.
#[inline(always)]
pub fn ret(ctx: &TracePointContext) -> i64 {
    unsafe { core::ptr::read_volatile((ctx.as_ptr() as *const u8).add(16) as *const i64) }
}

#[inline(always)]
pub fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}

/// The daemon's own file activity is excluded in the kernel.
#[inline(always)]
pub fn is_daemon() -> bool {
    current_tgid() == daemon_tgid()
}
