//! io_uring (tracepoint strategy): file operations that never pass through the syscalls the
//! other tracepoint programs see. The LSM and fentry strategies see them in the VFS already.
//!
//! Two of io_uring's own tracepoints carry the request (`struct io_kiocb *`):
//! - `io_uring_submit_req`, after the request was prepared: name operations (renameat,
//!   unlinkat, mkdirat, symlinkat, linkat) have their path strings copied into kernel memory
//!   (`struct filename`) by then, and are matched like the syscalls; a CLOSE names its fd,
//!   which still refers to the file.
//! - `io_uring_complete`, when the request finished: an OPENAT's result is the new fd, and a
//!   write-like request's `file` is set (also for fixed, registered files).
//!
//! The per-opcode structs live in the request's first 64 bytes (the `io_cmd_data` union); their layouts have been the
//! same since io_uring's ops were split out (5.19) and are checked against BTF in user space.
//! An operation that touches files but that these programs cannot follow (a path-based
//! SETXATTR, an opcode newer than this list) is sent as `UNRESOLVED`, and user space rescans.
use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use fim_common::event::{flag, op};

use super::{
    field_u32, field_u64,
    files::{closing, track_open, written},
    is_daemon,
    names::{one_path_from, two_paths_from, Origin},
    symlink::symlink_from,
};
use crate::{
    emit::{begin, send_change},
    kernel::{fd_file, file_path, offset, read_u32, read_u64},
};

const OP_WRITEV: u8 = 2;
const OP_WRITE_FIXED: u8 = 5;
const OP_FALLOCATE: u8 = 17;
const OP_OPENAT: u8 = 18;
const OP_CLOSE: u8 = 19;
const OP_WRITE: u8 = 23;
const OP_OPENAT2: u8 = 28;
const OP_SPLICE: u8 = 30;
const OP_TEE: u8 = 33;
const OP_RENAMEAT: u8 = 35;
const OP_UNLINKAT: u8 = 36;
const OP_MKDIRAT: u8 = 37;
const OP_SYMLINKAT: u8 = 38;
const OP_LINKAT: u8 = 39;
const OP_FSETXATTR: u8 = 41;
const OP_SETXATTR: u8 = 42;
const OP_FTRUNCATE: u8 = 55;
const OP_WRITEV_FIXED: u8 = 61;

const AT_REMOVEDIR: u32 = 0x200;
const O_TRUNC: u64 = 0o1000;

/// Offsets in the tracepoint records (the same in 6.1 and 6.18; see the formats in tracefs).
const REC_REQ: usize = 16;
const REC_SUBMIT_OPCODE: usize = 32;
const REC_COMPLETE_RES: usize = 32;

/// `struct filename *` -> the kernel copy of the path string.
#[inline(always)]
fn name_of(req: u64, at: u64) -> u64 {
    read_u64(read_u64(req, at), 0)
}

#[inline(always)]
fn dfd(req: u64, at: u64) -> i64 {
    read_u32(req, at) as i32 as i64
}

#[tracepoint]
pub fn io_uring_submit_req(ctx: TracePointContext) -> u32 {
    if is_daemon() {
        return 0;
    }
    let req = field_u64(&ctx, REC_REQ);
    let opcode = field_u32(&ctx, REC_SUBMIT_OPCODE) as u8;
    let io = Origin::IoUring;
    match opcode {
        // struct io_close { file; int fd; u32 file_slot; }
        OP_CLOSE => {
            let file = fd_file(read_u32(req, 8) as u64);
            closing(file, file_path(file), flag::IO_URING);
        }
        // struct io_rename / io_link { file; int old_dfd; int new_dfd; oldpath; newpath; flags }
        OP_RENAMEAT | OP_LINKAT => {
            let event_op = if opcode == OP_RENAMEAT {
                op::RENAME
            } else {
                op::LINK
            };
            two_paths_from(
                io,
                event_op,
                (dfd(req, 8), name_of(req, 16)),
                (dfd(req, 12), name_of(req, 24)),
                0,
            );
        }
        // symlinkat: oldpath is the target text, newpath the link, new_dfd its base.
        OP_SYMLINKAT => {
            symlink_from(io, name_of(req, 16), dfd(req, 12), name_of(req, 24));
        }
        // struct io_unlink { file; int dfd; int flags; filename }
        OP_UNLINKAT => {
            let event_op = if read_u32(req, 12) & AT_REMOVEDIR != 0 {
                op::RMDIR
            } else {
                op::UNLINK
            };
            one_path_from(io, event_op, dfd(req, 8), name_of(req, 16), 0, 0);
        }
        // struct io_mkdir { file; int dfd; umode_t mode; filename }
        OP_MKDIRAT => {
            let mode = read_u32(req, 12) & 0xffff;
            one_path_from(io, op::MKDIR, dfd(req, 8), name_of(req, 16), 0, mode);
        }
        // Path-based xattrs: the path is in a struct this program does not follow.
        OP_SETXATTR => unresolved(opcode),
        _ => {}
    }
    0
}

#[tracepoint]
pub fn io_uring_complete(ctx: TracePointContext) -> u32 {
    if is_daemon() {
        return 0;
    }
    let req = field_u64(&ctx, REC_REQ);
    let res = field_u32(&ctx, REC_COMPLETE_RES) as i32;
    if res < 0 {
        return 0;
    }
    let opcode = (read_u32(req, offset!(io_req_opcode)) & 0xff) as u8;
    match opcode {
        // struct io_open { file; int dfd; u32 file_slot; filename; struct open_how how; }
        OP_OPENAT | OP_OPENAT2 => {
            if read_u32(req, 12) != 0 {
                // Opened straight into a fixed slot: no fd; its writes are seen at completion.
                return 0;
            }
            let file = fd_file(res as u64);
            let extra = if read_u64(req, 24) & O_TRUNC != 0 {
                flag::OPEN_TRUNC | flag::IO_URING
            } else {
                flag::IO_URING
            };
            track_open(file_path(file), file, extra);
        }
        OP_WRITEV | OP_WRITE_FIXED | OP_FALLOCATE | OP_WRITE | OP_SPLICE | OP_TEE
        | OP_FSETXATTR | OP_FTRUNCATE | OP_WRITEV_FIXED => {
            // The request's file: the one written (for splice and tee, the output).
            written(read_u64(req, 0), flag::IO_URING);
        }
        _ => {}
    }
    0
}

/// An io_uring operation on files this program cannot follow: user space rescans.
#[inline(always)]
fn unresolved(opcode: u8) {
    if let Some(buf) = begin(op::XATTR) {
        buf.header.flags |= flag::IO_URING | flag::UNRESOLVED;
        buf.header.arg = opcode as u64;
        send_change(buf, 0);
    }
}
