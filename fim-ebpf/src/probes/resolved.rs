//! Operations the kernel has already resolved to dentries (LSM hooks, VFS fentry/fexit): no
//! path strings, no prefix trie, just the walk from the dentry.
use fim_common::event::{op, path_flag, EventBuf, MAX_NAME};

use aya_ebpf::helpers::generated::bpf_probe_read_kernel_str;

use super::is_daemon;
use crate::{
    emit::{begin, data_at, send_change},
    kernel::{dentry_ids, offset, read_u16, read_u32, read_u64, KPath},
    walk::{walk, Found},
};

const ATTR_MODE: u32 = 1;
const ATTR_UID: u32 = 2;
const ATTR_GID: u32 = 4;
const ATTR_SIZE: u32 = 8;
const ATTR_ATIME: u32 = 16;
const ATTR_MTIME: u32 = 32;
/// Truncation as part of open(O_TRUNC): reported with the write, not as a truncate.
const ATTR_OPEN: u32 = 0x8000;

#[inline(always)]
fn matched(found: Found) -> bool {
    matches!(found, Found::Root(_) | Found::Truncated)
}

/// Renaming or removing a directory above a root moves the root away (`mv /etc /etc.old`):
/// user space must hear of it to re-plan the roots, though nothing monitored changed yet.
#[inline(always)]
fn matched_or_moves_root(found: Found, event_op: u8) -> bool {
    matched(found)
        || (matches!(found, Found::BaseAncestor(_))
            && matches!(event_op, op::RENAME | op::RMDIR | op::UNLINK))
}

/// One dentry (with the mount it was reached through, or 0 when unknown).
#[inline(always)]
pub fn dentry_op(event_op: u8, dentry: u64, mnt: u64, arg_value: u64, mode: u32) -> u32 {
    if is_daemon() {
        return 0;
    }
    let Some(buf) = begin(event_op) else { return 0 };
    let mut off = 0usize;
    let found = walk(buf, 0, KPath { mnt, dentry }, &mut off, false);
    if !matched_or_moves_root(found, event_op) {
        return 0;
    }
    let (dev, ino, _) = dentry_ids(dentry);
    buf.header.dev = dev;
    buf.header.ino = ino;
    buf.header.arg = arg_value;
    buf.header.mode = mode;
    send_change(buf, off);
    0
}

/// Source and destination dentries (rename, link): sent if either is under a root.
#[inline(always)]
pub fn two_dentry_op(event_op: u8, old: u64, old_mnt: u64, new: u64, new_mnt: u64) -> u32 {
    if is_daemon() {
        return 0;
    }
    let Some(buf) = begin(event_op) else { return 0 };
    let mut off = 0usize;
    let old_matched = matched_or_moves_root(
        walk(
            buf,
            0,
            KPath {
                mnt: old_mnt,
                dentry: old,
            },
            &mut off,
            false,
        ),
        event_op,
    );
    let new_matched = matched_or_moves_root(
        walk(
            buf,
            1,
            KPath {
                mnt: new_mnt,
                dentry: new,
            },
            &mut off,
            false,
        ),
        event_op,
    );
    if !old_matched && !new_matched {
        return 0;
    }
    let (dev, ino, _) = dentry_ids(old);
    buf.header.dev = dev;
    buf.header.ino = ino;
    send_change(buf, off);
    0
}

/// symlink: the target is kernel text, kept as paths[1]'s string.
#[inline(always)]
pub fn symlink_op(dentry: u64, mnt: u64, target: u64) -> u32 {
    if is_daemon() {
        return 0;
    }
    let Some(buf) = begin(op::SYMLINK) else {
        return 0;
    };
    let mut off = 0usize;
    if !matched(walk(buf, 0, KPath { mnt, dentry }, &mut off, false)) {
        return 0;
    }
    append_kernel_string(buf, 1, target, &mut off);
    send_change(buf, off);
    0
}

#[inline(always)]
fn append_kernel_string(buf: &mut EventBuf, slot: usize, ptr: u64, off: &mut usize) {
    let Some(dst) = data_at(buf, *off, MAX_NAME) else {
        return;
    };
    let n = unsafe { bpf_probe_read_kernel_str(dst.cast(), MAX_NAME as u32, ptr as *const _) };
    let desc = &mut buf.header.paths[slot & 1];
    desc.flags |= path_flag::PRESENT;
    if n <= 0 {
        return;
    }
    let n = (n as usize) & (2 * MAX_NAME - 1);
    desc.str_off = *off as u16;
    desc.str_len = (n - 1) as u16;
    *off += n;
}

/// An attribute change (`struct iattr`): chmod, chown, truncate or timestamps.
#[inline(always)]
pub fn setattr_op(dentry: u64, mnt: u64, attr: u64) -> u32 {
    let valid = read_u32(attr, offset!(iattr_valid));
    if valid & ATTR_SIZE != 0 {
        if valid & ATTR_OPEN != 0 {
            return 0;
        }
        return dentry_op(
            op::TRUNCATE,
            dentry,
            mnt,
            read_u64(attr, offset!(iattr_size)),
            0,
        );
    }
    if valid & ATTR_MODE != 0 {
        let mode = read_u16(attr, offset!(iattr_mode)) as u32;
        return dentry_op(op::CHMOD, dentry, mnt, 0, mode);
    }
    if valid & (ATTR_UID | ATTR_GID) != 0 {
        let uid = if valid & ATTR_UID != 0 {
            read_u32(attr, offset!(iattr_uid))
        } else {
            u32::MAX
        };
        let gid = if valid & ATTR_GID != 0 {
            read_u32(attr, offset!(iattr_gid))
        } else {
            u32::MAX
        };
        return dentry_op(op::CHOWN, dentry, mnt, uid as u64 | ((gid as u64) << 32), 0);
    }
    if valid & (ATTR_ATIME | ATTR_MTIME) != 0 {
        return dentry_op(op::SETATTR, dentry, mnt, 0, 0);
    }
    0
}
