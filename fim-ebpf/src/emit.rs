//! Assembling a record in per-CPU scratch and sending it through the ring buffer.
//!
//! Records are variable-length (header + used path bytes), so a burst of small events does
//! not fill the ring with empty path space. A failed send is never silent: it bumps the
//! per-CPU drop counter of the root the event belonged to, which user space turns into a
//! gap notice.
use core::ffi::c_void;

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    generated::{bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns, bpf_loop},
};
use fim_common::{
    event::{
        op, EventBuf, EventHeader, PathDesc, DATA_SIZE, EXE_SLOT, HEADER_SIZE, LOGINUID_UNSET,
    },
    maps::MAX_ROOT_IDS,
};

use crate::{
    kernel::{current_exe, current_task, offset, read_u32, read_u64},
    maps::{DROPS, EVENTS, EXE_WALK, LAST_WAKEUP, ROOTS_GENERATION, SCRATCH},
    walk::walk,
};

#[inline(always)]
pub fn now_ns() -> u64 {
    unsafe { bpf_ktime_get_boot_ns() }
}

/// Starts a record for the current task in this CPU's scratch buffer.
#[inline(always)]
pub fn begin(op: u8) -> Option<&'static mut EventBuf> {
    let buf = unsafe { &mut *SCRATCH.get_ptr_mut(0)? };
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    let task = current_task();
    let loginuid_off = offset!(task_loginuid);
    let loginuid = if loginuid_off == 0 {
        LOGINUID_UNSET
    } else {
        read_u32(task, loginuid_off)
    };
    let parent = read_u64(task, offset!(task_real_parent));
    buf.header = EventHeader {
        op,
        flags: 0,
        _pad: 0,
        data_len: 0,
        time_ns: now_ns(),
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        ppid: read_u32(parent, offset!(task_tgid)),
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        loginuid,
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        dev: 0,
        mode: 0,
        ino: 0,
        arg: 0,
        paths: [PathDesc::default(); 3],
    };
    Some(buf)
}

/// Sends a change record with the process's executable appended: taken now, in the kernel,
/// so a process that execs right after the change (`echo x >> f; exec sleep`) is still named
/// by the program that made it, not by what /proc says later.
///
/// The walk runs in a one-step `bpf_loop` callback: verified once, on its own, instead of as
/// one more inlined walk in every program (which pushed LLVM into the `R5 !read_ok` trap).
#[inline(always)]
pub fn send_change(buf: &mut EventBuf, used: usize) {
    if matches!(buf.header.op, op::RENAME | op::LINK) {
        // A file may have moved into a root while open: io_uring's "outside" cache is stale.
        if let Some(generation) = ROOTS_GENERATION.get_ptr_mut(0) {
            unsafe { *generation = (*generation).wrapping_add(1) };
        }
    }
    let Some(request) = EXE_WALK.get_ptr_mut(0) else {
        return send(buf, used);
    };
    unsafe { *request = used as u64 };
    unsafe { bpf_loop(1, walk_exe as *mut c_void, core::ptr::null_mut(), 0) };
    let off = unsafe { *request } as usize;
    send(buf, off);
}

extern "C" fn walk_exe(_index: u64, _ctx: *mut c_void) -> i64 {
    let (Some(buf), Some(request)) = (SCRATCH.get_ptr_mut(0), EXE_WALK.get_ptr_mut(0)) else {
        return 1;
    };
    let mut off = unsafe { *request } as usize;
    walk(
        unsafe { &mut *buf },
        EXE_SLOT,
        current_exe(),
        &mut off,
        true,
    );
    unsafe { *request = off as u64 };
    1
}

/// Sends `HEADER_SIZE + used` bytes of the scratch record; counts a drop against `root_id`.
#[inline(always)]
pub fn send(buf: &mut EventBuf, used: usize) {
    let used = if used > DATA_SIZE { DATA_SIZE } else { used };
    buf.header.data_len = used as u32;
    let len = (HEADER_SIZE + used) & (2 * DATA_SIZE - 1);
    let bytes = unsafe { core::slice::from_raw_parts(buf as *const EventBuf as *const u8, len) };
    if EVENTS
        .output::<[u8]>(bytes, wakeup_flag(buf.header.time_ns))
        .is_err()
    {
        let root = buf.header.paths[0].root_id.max(buf.header.paths[1].root_id);
        count_drop(root);
    }
}

/// Waking the consumer costs more than sending a small record. Wake it at most once a
/// millisecond per CPU; user space keeps polling for a
/// few milliseconds after every batch, so a record sent without a wakeup is still read.
#[inline(always)]
fn wakeup_flag(now: u64) -> u64 {
    const BPF_RB_NO_WAKEUP: u64 = 1;
    const BPF_RB_FORCE_WAKEUP: u64 = 2;
    const WAKEUP_INTERVAL_NS: u64 = 1_000_000;
    let Some(last) = LAST_WAKEUP.get_ptr_mut(0) else {
        return 0;
    };
    let last = unsafe { &mut *last };
    if now.wrapping_sub(*last) >= WAKEUP_INTERVAL_NS {
        *last = now;
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// A syscall's result, paired in user space with its entry record by thread id: only the
/// pairing fields, none of the task details the entry record already carries.
#[inline(always)]
pub fn send_result(ret: i64) {
    let Some(buf) = SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let buf = unsafe { &mut *buf };
    let pid_tgid = bpf_get_current_pid_tgid();
    // Only the pairing fields are written; user space ignores the rest of a result header.
    let header = &mut buf.header;
    header.op = fim_common::event::op::SYSCALL_RESULT;
    header.flags = 0;
    header.time_ns = now_ns();
    header.pid = pid_tgid as u32;
    header.tgid = (pid_tgid >> 32) as u32;
    header.arg = ret as u64;
    header.paths[0].flags = 0;
    header.paths[1].flags = 0;
    header.paths[EXE_SLOT].flags = 0;
    send(buf, 0);
}

#[inline(always)]
pub fn count_drop(root_id: u32) {
    let slot = if root_id < MAX_ROOT_IDS { root_id } else { 0 };
    if let Some(counter) = DROPS.get_ptr_mut(slot) {
        unsafe { *counter += 1 };
    }
}

/// A pointer `off` bytes into the data area when `room` bytes fit there.
///
/// The offset is masked before it is compared, never after: if the comparison came first the
/// compiler would drop the mask as redundant, and older verifiers (6.1) do not carry the
/// comparison's bound over to the pointer arithmetic, so they reject the program.
#[inline(always)]
pub fn data_at(buf: &mut EventBuf, off: usize, room: usize) -> Option<*mut u8> {
    let masked = off & (DATA_SIZE - 1);
    if masked > DATA_SIZE - room {
        return None;
    }
    Some(unsafe { buf.data.as_mut_ptr().add(masked) })
}
