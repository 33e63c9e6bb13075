//! Operations that name a path: unlink, rename, link, symlink, mkdir, rmdir, mknod, and the
//! attribute changes (chmod, chown, truncate, xattrs, timestamps), by path or by fd.
//!
//! A syscall tracepoint sees the path string before the kernel resolves it. The base directory
//! (root for absolute paths, cwd, or dirfd) is walked like any dentry; if the base is an
//! ancestor of roots, the string is matched against the prefix trie. Strings with `.`/`..`
//! components go to user space to be normalised. The event is sent at entry and stands only if
//! the syscall's result (sent from the matching sys_exit) is not an error.
use core::ffi::c_void;

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_loop, bpf_probe_read_kernel_str, bpf_probe_read_user_str},
    },
    macros::tracepoint,
    programs::TracePointContext,
};
use fim_common::{
    event::{flag, op, path_flag, EventBuf, MAX_USER_STRING},
    roots::PREFIX_PATH_BYTES,
};

use super::{arg, is_daemon, ret};
use crate::{
    emit::{begin, data_at, send_change, send_result},
    kernel::{base_dir, dentry_ids, fd_file, file_path},
    maps::{PENDING_RESULTS, PREFIXES, PREFIX_SCRATCH, SCAN_SCRATCH},
    walk::{walk, Found},
};

const AT_FDCWD: i64 = -100;
const AT_REMOVEDIR: u64 = 0x200;

/// Reads the string into the prefix scratch key and reports (len with NUL, absolute,
/// needs-user-space). Returns None for an unreadable pointer (the syscall fails with EFAULT).
#[inline(always)]
fn inspect_string(ptr: u64, kernel: bool) -> Option<(usize, bool, bool)> {
    let key = unsafe { &mut *PREFIX_SCRATCH.get_ptr_mut(0)? };
    let n = read_str(
        key.data.as_mut_ptr().wrapping_add(4),
        PREFIX_PATH_BYTES,
        ptr,
        kernel,
    );
    if n <= 0 {
        return None;
    }
    let len = n as usize;
    let absolute = key.data[4] == b'/';
    let scan = unsafe { &mut *SCAN_SCRATCH.get_ptr_mut(0)? };
    scan.len = len as u64;
    scan.odd = (len >= PREFIX_PATH_BYTES) as u64;
    if scan.odd == 0 {
        // bpf_loop: a 252-step open-coded loop multiplies verifier states in the callers.
        unsafe {
            bpf_loop(
                (PREFIX_PATH_BYTES - 1) as u32,
                scan_step as *mut c_void,
                core::ptr::null_mut(),
                0,
            );
        }
    }
    Some((len, absolute, scan.odd != 0))
}

/// Reads a NUL-terminated string from user memory (syscall arguments) or kernel memory
/// (io_uring's `struct filename`, already copied in at submission).
#[inline(always)]
fn read_str(dst: *mut u8, size: usize, ptr: u64, kernel: bool) -> i64 {
    unsafe {
        if kernel {
            bpf_probe_read_kernel_str(dst.cast(), size as u32, ptr as *const _)
        } else {
            bpf_probe_read_user_str(dst.cast(), size as u32, ptr as *const _)
        }
    }
}

/// Flags `//`, and `.` or `..` components: such strings are normalised in user space.
extern "C" fn scan_step(index: u64, _ctx: *mut c_void) -> i64 {
    let Some(scan) = SCAN_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    let scan = unsafe { &mut *scan };
    let i = index as usize;
    if i + 1 >= scan.len as usize || i >= PREFIX_PATH_BYTES - 1 {
        return 1;
    }
    let Some(key) = PREFIX_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    let data = unsafe { &(*key).data };
    let c = data[4 + i];
    // A component starts at index 0 or after a '/'. The leading '/' of an absolute path is
    // not itself an odd component (treating it as one sent every absolute-path operation on
    // the system to user space).
    if i == 0 && c == b'/' {
        return 0;
    }
    let prev = if i == 0 { b'/' } else { data[3 + i] };
    if prev != b'/' {
        return 0;
    }
    let next = data[5 + i];
    if c == b'/' || (c == b'.' && (next == b'/' || next == b'.' || next == 0)) {
        scan.odd = 1;
        return 1;
    }
    0
}

/// Decides whether the path `(dirfd, ptr)` is under a root, writing the walk and the string
/// into `paths[slot]`. Returns whether it matched.
#[inline(always)]
pub(super) fn resolve(
    buf: &mut EventBuf,
    slot: usize,
    dirfd: i64,
    ptr: u64,
    off: &mut usize,
    kernel: bool,
) -> bool {
    let Some((len, absolute, odd)) = inspect_string(ptr, kernel) else {
        return false;
    };
    let base = base_dir(dirfd, absolute);
    let matched = match walk(buf, slot, base, off, odd) {
        Found::Root(_) | Found::Truncated => true,
        Found::BaseAncestor(id) => {
            if odd {
                true
            } else {
                prefix_lookup(buf, slot, id, len)
            }
        }
        Found::Nothing => odd,
    };
    if matched {
        if odd {
            buf.header.paths[slot & 1].flags |= path_flag::UNNORMALISED;
        }
        copy_string(buf, slot, ptr, off, kernel);
    }
    matched
}

#[inline(always)]
fn prefix_lookup(buf: &mut EventBuf, slot: usize, ancestor_id: u32, len: usize) -> bool {
    let Some(key) = PREFIX_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    let key = unsafe { &mut *key };
    let id = ancestor_id.to_be_bytes();
    key.data[0] = id[0];
    key.data[1] = id[1];
    key.data[2] = id[2];
    key.data[3] = id[3];
    key.prefix_len = ((4 + len) * 8) as u32;
    match PREFIXES.get(&*key) {
        Some(entry) => {
            let desc = &mut buf.header.paths[slot & 1];
            desc.root_id = entry.root_id;
            desc.flags |= path_flag::VIA_PREFIX;
            true
        }
        None => false,
    }
}

/// Appends the user string to the record's data for `paths[slot]`.
#[inline(always)]
pub(super) fn copy_string(
    buf: &mut EventBuf,
    slot: usize,
    ptr: u64,
    off: &mut usize,
    kernel: bool,
) {
    let Some(dst) = data_at(buf, *off, MAX_USER_STRING) else {
        buf.header.paths[slot & 1].flags |= path_flag::STRING_TRUNCATED;
        return;
    };
    let n = read_str(dst, MAX_USER_STRING, ptr, kernel);
    let desc = &mut buf.header.paths[slot & 1];
    desc.flags |= path_flag::PRESENT;
    if n <= 0 {
        return;
    }
    let n = (n as usize) & (2 * MAX_USER_STRING - 1);
    if n >= MAX_USER_STRING {
        desc.flags |= path_flag::STRING_TRUNCATED;
    }
    desc.str_off = *off as u16;
    desc.str_len = (n - 1) as u16;
    *off += n;
}

/// Where a path string comes from and how its outcome is learnt.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A syscall argument (user memory); the result follows from sys_exit.
    Syscall,
    /// An io_uring submission (kernel memory); no result follows: user space judges the
    /// path by looking at it, as it does for every event.
    IoUring,
}

/// Sends a matched event; for a syscall, remembers that its result must follow.
#[inline(always)]
pub(super) fn send_matched(buf: &mut EventBuf, off: usize, origin: Origin) {
    if origin == Origin::Syscall {
        buf.header.flags |= flag::AWAITS_RESULT;
        let _ = PENDING_RESULTS.insert(&bpf_get_current_pid_tgid(), &1u8, 0);
    } else {
        buf.header.flags |= flag::IO_URING;
    }
    send_change(buf, off);
}

#[inline(always)]
fn one_path(event_op: u8, dirfd: i64, ptr: u64, arg_value: u64, mode: u32) -> u32 {
    one_path_from(Origin::Syscall, event_op, dirfd, ptr, arg_value, mode)
}

/// An operation on one named path. `arg_value` and `mode` go into the header.
#[inline(always)]
pub fn one_path_from(
    origin: Origin,
    event_op: u8,
    dirfd: i64,
    ptr: u64,
    arg_value: u64,
    mode: u32,
) -> u32 {
    if is_daemon() {
        return 0;
    }
    let Some(buf) = begin(event_op) else { return 0 };
    let mut off = 0usize;
    if !resolve(buf, 0, dirfd, ptr, &mut off, origin == Origin::IoUring) {
        return 0;
    }
    buf.header.arg = arg_value;
    buf.header.mode = mode;
    send_matched(buf, off, origin);
    0
}

/// An operation with a source and a destination path (rename, link): sent if either side is
/// monitored, so moves into and out of a root are both seen.
#[inline(always)]
fn two_paths(
    event_op: u8,
    old_dirfd: i64,
    old: u64,
    new_dirfd: i64,
    new: u64,
    arg_value: u64,
) -> u32 {
    two_paths_from(
        Origin::Syscall,
        event_op,
        (old_dirfd, old),
        (new_dirfd, new),
        arg_value,
    )
}

/// `two_paths` for either origin; each side is (dirfd, string pointer).
#[inline(always)]
pub fn two_paths_from(
    origin: Origin,
    event_op: u8,
    old: (i64, u64),
    new: (i64, u64),
    arg_value: u64,
) -> u32 {
    if is_daemon() {
        return 0;
    }
    let kernel = origin == Origin::IoUring;
    let Some(buf) = begin(event_op) else { return 0 };
    let mut off = 0usize;
    let old_matched = resolve(buf, 0, old.0, old.1, &mut off, kernel);
    let new_matched = resolve(buf, 1, new.0, new.1, &mut off, kernel);
    if !old_matched && !new_matched {
        return 0;
    }
    if !old_matched {
        copy_string(buf, 0, old.1, &mut off, kernel);
    }
    if !new_matched {
        copy_string(buf, 1, new.1, &mut off, kernel);
    }
    buf.header.arg = arg_value;
    send_matched(buf, off, origin);
    0
}

/// An operation on an open fd (fchmod, fchown, ftruncate, fsetxattr…).
#[inline(always)]
fn on_fd(event_op: u8, fd: u64, arg_value: u64, mode: u32) -> u32 {
    if is_daemon() {
        return 0;
    }
    let path = file_path(fd_file(fd));
    let Some(buf) = begin(event_op) else { return 0 };
    let mut off = 0usize;
    match walk(buf, 0, path, &mut off, false) {
        Found::Root(_) | Found::Truncated => {}
        _ => return 0,
    }
    let (dev, ino, _) = dentry_ids(path.dentry);
    buf.header.dev = dev;
    buf.header.ino = ino;
    buf.header.arg = arg_value;
    buf.header.mode = mode;
    send_matched(buf, off, Origin::Syscall);
    0
}

/// sys_exit of an operation sent at entry: its return value decides whether it happened.
#[inline(always)]
fn on_result(ctx: &TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if unsafe { PENDING_RESULTS.get(&pid_tgid) }.is_none() {
        return 0;
    }
    let _ = PENDING_RESULTS.remove(&pid_tgid);
    send_result(ret(ctx));
    0
}

/// The fd-or-path form (utimensat with a NULL path, AT_EMPTY_PATH variants).
#[inline(always)]
fn path_or_fd(event_op: u8, dirfd: u64, ptr: u64, arg_value: u64, mode: u32) -> u32 {
    if ptr == 0 {
        return on_fd(event_op, dirfd, arg_value, mode);
    }
    one_path(event_op, dirfd as i64, ptr, arg_value, mode)
}

fn chown_arg(uid: u64, gid: u64) -> u64 {
    (uid & 0xffff_ffff) | (gid << 32)
}

macro_rules! enter {
    ($name:ident, |$ctx:ident| $body:expr) => {
        #[tracepoint]
        pub fn $name($ctx: TracePointContext) -> u32 {
            $body
        }
    };
}

macro_rules! results {
    ($($name:ident),* $(,)?) => {
        $(
            #[tracepoint]
            pub fn $name(ctx: TracePointContext) -> u32 {
                on_result(&ctx)
            }
        )*
    };
}

// Removal and creation of names.
enter!(sys_enter_unlink, |c| one_path(
    op::UNLINK,
    AT_FDCWD,
    arg(&c, 0),
    0,
    0
));
enter!(sys_enter_unlinkat, |c| {
    let removes_dir = arg(&c, 2) & AT_REMOVEDIR != 0;
    let event_op = if removes_dir { op::RMDIR } else { op::UNLINK };
    one_path(event_op, arg(&c, 0) as i64, arg(&c, 1), 0, 0)
});
enter!(sys_enter_rmdir, |c| one_path(
    op::RMDIR,
    AT_FDCWD,
    arg(&c, 0),
    0,
    0
));
enter!(sys_enter_mkdir, |c| one_path(
    op::MKDIR,
    AT_FDCWD,
    arg(&c, 0),
    0,
    arg(&c, 1) as u32
));
enter!(sys_enter_mkdirat, |c| one_path(
    op::MKDIR,
    arg(&c, 0) as i64,
    arg(&c, 1),
    0,
    arg(&c, 2) as u32
));
enter!(sys_enter_mknod, |c| one_path(
    op::CREATE,
    AT_FDCWD,
    arg(&c, 0),
    arg(&c, 2),
    arg(&c, 1) as u32
));
enter!(sys_enter_mknodat, |c| one_path(
    op::CREATE,
    arg(&c, 0) as i64,
    arg(&c, 1),
    arg(&c, 3),
    arg(&c, 2) as u32
));
enter!(sys_enter_rename, |c| two_paths(
    op::RENAME,
    AT_FDCWD,
    arg(&c, 0),
    AT_FDCWD,
    arg(&c, 1),
    0
));
enter!(sys_enter_renameat, |c| two_paths(
    op::RENAME,
    arg(&c, 0) as i64,
    arg(&c, 1),
    arg(&c, 2) as i64,
    arg(&c, 3),
    0
));
enter!(sys_enter_renameat2, |c| two_paths(
    op::RENAME,
    arg(&c, 0) as i64,
    arg(&c, 1),
    arg(&c, 2) as i64,
    arg(&c, 3),
    arg(&c, 4)
));
enter!(sys_enter_link, |c| two_paths(
    op::LINK,
    AT_FDCWD,
    arg(&c, 0),
    AT_FDCWD,
    arg(&c, 1),
    0
));
enter!(sys_enter_linkat, |c| two_paths(
    op::LINK,
    arg(&c, 0) as i64,
    arg(&c, 1),
    arg(&c, 2) as i64,
    arg(&c, 3),
    arg(&c, 4)
));
enter!(sys_enter_symlink, |c| symlink(
    arg(&c, 0),
    AT_FDCWD,
    arg(&c, 1)
));
enter!(sys_enter_symlinkat, |c| symlink(
    arg(&c, 0),
    arg(&c, 1) as i64,
    arg(&c, 2)
));

// Attribute changes.
enter!(sys_enter_chmod, |c| one_path(
    op::CHMOD,
    AT_FDCWD,
    arg(&c, 0),
    0,
    arg(&c, 1) as u32
));
enter!(sys_enter_fchmodat, |c| one_path(
    op::CHMOD,
    arg(&c, 0) as i64,
    arg(&c, 1),
    0,
    arg(&c, 2) as u32
));
enter!(sys_enter_fchmodat2, |c| path_or_fd(
    op::CHMOD,
    arg(&c, 0),
    empty_to_null(arg(&c, 1)),
    0,
    arg(&c, 2) as u32
));
enter!(sys_enter_fchmod, |c| on_fd(
    op::CHMOD,
    arg(&c, 0),
    0,
    arg(&c, 1) as u32
));
enter!(sys_enter_chown, |c| one_path(
    op::CHOWN,
    AT_FDCWD,
    arg(&c, 0),
    chown_arg(arg(&c, 1), arg(&c, 2)),
    0
));
enter!(sys_enter_lchown, |c| one_path(
    op::CHOWN,
    AT_FDCWD,
    arg(&c, 0),
    chown_arg(arg(&c, 1), arg(&c, 2)),
    0
));
enter!(sys_enter_fchownat, |c| path_or_fd(
    op::CHOWN,
    arg(&c, 0),
    empty_to_null(arg(&c, 1)),
    chown_arg(arg(&c, 2), arg(&c, 3)),
    0
));
enter!(sys_enter_fchown, |c| on_fd(
    op::CHOWN,
    arg(&c, 0),
    chown_arg(arg(&c, 1), arg(&c, 2)),
    0
));
enter!(sys_enter_truncate, |c| one_path(
    op::TRUNCATE,
    AT_FDCWD,
    arg(&c, 0),
    arg(&c, 1),
    0
));
enter!(sys_enter_ftruncate, |c| on_fd(
    op::TRUNCATE,
    arg(&c, 0),
    arg(&c, 1),
    0
));
enter!(sys_enter_setxattr, |c| one_path(
    op::XATTR,
    AT_FDCWD,
    arg(&c, 0),
    0,
    0
));
enter!(sys_enter_lsetxattr, |c| one_path(
    op::XATTR,
    AT_FDCWD,
    arg(&c, 0),
    0,
    0
));
enter!(sys_enter_fsetxattr, |c| on_fd(op::XATTR, arg(&c, 0), 0, 0));
enter!(sys_enter_removexattr, |c| one_path(
    op::XATTR,
    AT_FDCWD,
    arg(&c, 0),
    0,
    0
));
enter!(sys_enter_lremovexattr, |c| one_path(
    op::XATTR,
    AT_FDCWD,
    arg(&c, 0),
    0,
    0
));
enter!(sys_enter_fremovexattr, |c| on_fd(
    op::XATTR,
    arg(&c, 0),
    0,
    0
));
enter!(sys_enter_setxattrat, |c| path_or_fd(
    op::XATTR,
    arg(&c, 0),
    empty_to_null(arg(&c, 1)),
    0,
    0
));
enter!(sys_enter_removexattrat, |c| path_or_fd(
    op::XATTR,
    arg(&c, 0),
    empty_to_null(arg(&c, 1)),
    0,
    0
));
enter!(sys_enter_utimensat, |c| path_or_fd(
    op::SETATTR,
    arg(&c, 0),
    arg(&c, 1),
    0,
    0
));
enter!(sys_enter_futimesat, |c| path_or_fd(
    op::SETATTR,
    arg(&c, 0),
    arg(&c, 1),
    0,
    0
));
enter!(sys_enter_utimes, |c| one_path(
    op::SETATTR,
    AT_FDCWD,
    arg(&c, 0),
    0,
    0
));
enter!(sys_enter_utime, |c| one_path(
    op::SETATTR,
    AT_FDCWD,
    arg(&c, 0),
    0,
    0
));

results!(
    sys_exit_unlink,
    sys_exit_unlinkat,
    sys_exit_rmdir,
    sys_exit_mkdir,
    sys_exit_mkdirat,
    sys_exit_mknod,
    sys_exit_mknodat,
    sys_exit_rename,
    sys_exit_renameat,
    sys_exit_renameat2,
    sys_exit_link,
    sys_exit_linkat,
    sys_exit_symlink,
    sys_exit_symlinkat,
    sys_exit_chmod,
    sys_exit_fchmodat,
    sys_exit_fchmodat2,
    sys_exit_fchmod,
    sys_exit_chown,
    sys_exit_lchown,
    sys_exit_fchownat,
    sys_exit_fchown,
    sys_exit_truncate,
    sys_exit_ftruncate,
    sys_exit_setxattr,
    sys_exit_lsetxattr,
    sys_exit_fsetxattr,
    sys_exit_removexattr,
    sys_exit_lremovexattr,
    sys_exit_fremovexattr,
    sys_exit_setxattrat,
    sys_exit_removexattrat,
    sys_exit_utimensat,
    sys_exit_futimesat,
    sys_exit_utimes,
    sys_exit_utime,
);

#[inline(always)]
fn symlink(target: u64, dirfd: i64, linkpath: u64) -> u32 {
    super::symlink::symlink_from(Origin::Syscall, target, dirfd, linkpath)
}

/// An empty path string with AT_EMPTY_PATH means "the fd itself": treat it as no path.
#[inline(always)]
fn empty_to_null(ptr: u64) -> u64 {
    let first = unsafe { aya_ebpf::helpers::bpf_probe_read_user(ptr as *const u8) }.unwrap_or(0);
    if first == 0 {
        0
    } else {
        ptr
    }
}
