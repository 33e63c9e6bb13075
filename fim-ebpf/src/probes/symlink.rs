//! symlink/symlinkat (and io_uring's SYMLINKAT): a new name under a root, or a new way into
//! one.
//!
//! The tracepoint strategy matches name operations by the path string the process passes, so
//! `ln -s /etc /tmp/x; rm /tmp/x/passwd` would go unseen: `/tmp/x/passwd` is no prefix of a
//! root. So a symlink is also reported when its *target* leads to a root or to a directory
//! above one (matched through the prefix trie from the task's root, like an absolute path),
//! or when the target is relative (user space resolves it against the link's directory).
//! User space then registers the link as another spelling of the roots it leads to, and
//! the kernel matches operations through it like through the canonical path.
use fim_common::event::{flag, op, path_flag};

use super::{
    is_daemon,
    names::{copy_string, resolve, send_matched, Origin},
};
use crate::emit::begin;

const AT_FDCWD: i64 = -100;

#[inline(always)]
pub fn symlink_from(origin: Origin, target: u64, dirfd: i64, linkpath: u64) -> u32 {
    if is_daemon() {
        return 0;
    }
    let kernel = origin == Origin::IoUring;
    let Some(buf) = begin(op::SYMLINK) else {
        return 0;
    };
    let mut off = 0usize;
    if resolve(buf, 0, dirfd, linkpath, &mut off, kernel) {
        copy_string(buf, 1, target, &mut off, kernel);
        send_matched(buf, off, origin);
        return 0;
    }
    // Not under a root itself: does it lead into one? `resolve` copies the target string
    // when it matches; a relative target is sent for user space to resolve.
    let leads_in = resolve(buf, 1, AT_FDCWD, target, &mut off, kernel);
    if !leads_in {
        if first_byte(target, kernel) == b'/' {
            return 0;
        }
        copy_string(buf, 1, target, &mut off, kernel);
    }
    // The link's own path (walk from its base, as `resolve` left it, plus the string).
    copy_string(buf, 0, linkpath, &mut off, kernel);
    buf.header.paths[0].flags |= path_flag::PRESENT;
    buf.header.flags |= flag::ALIAS;
    send_matched(buf, off, origin);
    0
}

#[inline(always)]
fn first_byte(ptr: u64, kernel: bool) -> u8 {
    unsafe {
        if kernel {
            aya_ebpf::helpers::bpf_probe_read_kernel(ptr as *const u8).unwrap_or(0)
        } else {
            aya_ebpf::helpers::bpf_probe_read_user(ptr as *const u8).unwrap_or(0)
        }
    }
}
