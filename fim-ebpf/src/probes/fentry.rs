//! The fentry strategy: trampolines on the VFS functions, for kernels with BTF but without
//! BPF in their LSM list (Ubuntu's and RHEL's default boot lines). fexit is used where the
//! return value says whether the operation happened and the dentry still names the file
//! afterwards; rename uses fentry because d_move renames the old dentry in place.
use aya_ebpf::{
    macros::{fentry, fexit},
    programs::{FEntryContext, FExitContext},
};
use fim_common::event::op;

use super::{
    files::{file_released, track_open},
    resolved::{dentry_op, setattr_op, symlink_op, two_dentry_op},
};
use crate::kernel::{offset, read_path, read_u64};

#[inline(always)]
fn succeeded(ctx: &FExitContext) -> bool {
    matches!(ctx.ret::<i32>(), Ok(ret) if ret >= 0)
}

#[fentry(function = "vfs_open")]
pub fn fentry_vfs_open(ctx: FEntryContext) -> u32 {
    let path: u64 = ctx.arg(0);
    track_open(read_path(path), ctx.arg(1), 0);
    0
}

/// The last reference to a file is gone: the writer ends here, however it was closed.
#[fentry(function = "security_file_free")]
pub fn fentry_security_file_free(ctx: FEntryContext) -> u32 {
    file_released(ctx.arg(0));
    0
}

#[fexit(function = "vfs_unlink")]
pub fn fexit_vfs_unlink(ctx: FExitContext) -> u32 {
    if succeeded(&ctx) {
        dentry_op(op::UNLINK, ctx.arg(2), 0, 0, 0);
    }
    0
}

#[fexit(function = "vfs_rmdir")]
pub fn fexit_vfs_rmdir(ctx: FExitContext) -> u32 {
    if succeeded(&ctx) {
        dentry_op(op::RMDIR, ctx.arg(2), 0, 0, 0);
    }
    0
}

#[fexit(function = "vfs_mkdir")]
pub fn fexit_vfs_mkdir(ctx: FExitContext) -> u32 {
    // Since 6.15 vfs_mkdir returns the dentry (or an ERR_PTR) instead of an int.
    let ok = if offset!(mkdir_returns_ptr) != 0 {
        matches!(ctx.ret::<u64>(), Ok(ret) if ret != 0 && ret < (-4095i64) as u64)
    } else {
        succeeded(&ctx)
    };
    if ok {
        let mode: u64 = ctx.arg(3);
        dentry_op(op::MKDIR, ctx.arg(2), 0, 0, mode as u32);
    }
    0
}

#[fexit(function = "vfs_mknod")]
pub fn fexit_vfs_mknod(ctx: FExitContext) -> u32 {
    if succeeded(&ctx) {
        let mode: u64 = ctx.arg(3);
        dentry_op(op::CREATE, ctx.arg(2), 0, ctx.arg(4), mode as u32);
    }
    0
}

#[fexit(function = "vfs_symlink")]
pub fn fexit_vfs_symlink(ctx: FExitContext) -> u32 {
    if succeeded(&ctx) {
        symlink_op(ctx.arg(2), 0, ctx.arg(3));
    }
    0
}

#[fexit(function = "vfs_link")]
pub fn fexit_vfs_link(ctx: FExitContext) -> u32 {
    if succeeded(&ctx) {
        two_dentry_op(op::LINK, ctx.arg(0), 0, ctx.arg(3), 0);
    }
    0
}

#[fentry(function = "vfs_rename")]
pub fn fentry_vfs_rename(ctx: FEntryContext) -> u32 {
    let data: u64 = ctx.arg(0);
    let old = read_u64(data, offset!(renamedata_old_dentry));
    let new = read_u64(data, offset!(renamedata_new_dentry));
    two_dentry_op(op::RENAME, old, 0, new, 0);
    0
}

#[fexit(function = "notify_change")]
pub fn fexit_notify_change(ctx: FExitContext) -> u32 {
    if succeeded(&ctx) {
        setattr_op(ctx.arg(1), 0, ctx.arg(2));
    }
    0
}

#[fexit(function = "vfs_setxattr")]
pub fn fexit_vfs_setxattr(ctx: FExitContext) -> u32 {
    if succeeded(&ctx) {
        dentry_op(op::XATTR, ctx.arg(1), 0, 0, 0);
    }
    0
}

#[fexit(function = "vfs_removexattr")]
pub fn fexit_vfs_removexattr(ctx: FExitContext) -> u32 {
    if succeeded(&ctx) {
        dentry_op(op::XATTR, ctx.arg(1), 0, 0, 0);
    }
    0
}
