//! The LSM strategy: BPF LSM hooks see every operation with its path already resolved, on
//! the kernel's own decision path, so nothing can race or alias them.
use aya_ebpf::{macros::lsm, programs::LsmContext};
use fim_common::event::op;

use super::{
    files::{file_released, track_open},
    resolved::{dentry_op, setattr_op, symlink_op, two_dentry_op},
};
use crate::kernel::{file_path, read_path};

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;

/// The mount of a `const struct path *` argument.
#[inline(always)]
fn mnt_of(path: u64) -> u64 {
    read_path(path).mnt
}

#[lsm(hook = "file_open")]
pub fn lsm_file_open(ctx: LsmContext) -> i32 {
    let file: u64 = ctx.arg(0);
    track_open(file_path(file), file, 0);
    0
}

/// The last reference to a file is gone: the writer ends here, however it was closed.
#[lsm(hook = "file_free_security")]
pub fn lsm_file_free_security(ctx: LsmContext) -> i32 {
    file_released(ctx.arg(0));
    0
}

#[lsm(hook = "path_unlink")]
pub fn lsm_path_unlink(ctx: LsmContext) -> i32 {
    let dir: u64 = ctx.arg(0);
    dentry_op(op::UNLINK, ctx.arg(1), mnt_of(dir), 0, 0);
    0
}

#[lsm(hook = "path_mkdir")]
pub fn lsm_path_mkdir(ctx: LsmContext) -> i32 {
    let dir: u64 = ctx.arg(0);
    let mode: u64 = ctx.arg(2);
    dentry_op(op::MKDIR, ctx.arg(1), mnt_of(dir), 0, mode as u32);
    0
}

#[lsm(hook = "path_rmdir")]
pub fn lsm_path_rmdir(ctx: LsmContext) -> i32 {
    let dir: u64 = ctx.arg(0);
    dentry_op(op::RMDIR, ctx.arg(1), mnt_of(dir), 0, 0);
    0
}

#[lsm(hook = "path_mknod")]
pub fn lsm_path_mknod(ctx: LsmContext) -> i32 {
    let dir: u64 = ctx.arg(0);
    let mode: u64 = ctx.arg(2);
    // open(O_CREAT) also passes through this hook (may_o_create); its regular file is
    // reported by file_open with FMODE_CREATED. Only special files are reported here.
    if mode as u32 & S_IFMT == S_IFREG {
        return 0;
    }
    dentry_op(op::CREATE, ctx.arg(1), mnt_of(dir), ctx.arg(3), mode as u32);
    0
}

#[lsm(hook = "path_symlink")]
pub fn lsm_path_symlink(ctx: LsmContext) -> i32 {
    let dir: u64 = ctx.arg(0);
    symlink_op(ctx.arg(1), mnt_of(dir), ctx.arg(2));
    0
}

#[lsm(hook = "path_link")]
pub fn lsm_path_link(ctx: LsmContext) -> i32 {
    let new_dir: u64 = ctx.arg(1);
    let mnt = mnt_of(new_dir);
    two_dentry_op(op::LINK, ctx.arg(0), mnt, ctx.arg(2), mnt);
    0
}

#[lsm(hook = "path_rename")]
pub fn lsm_path_rename(ctx: LsmContext) -> i32 {
    let (old_dir, new_dir): (u64, u64) = (ctx.arg(0), ctx.arg(2));
    two_dentry_op(
        op::RENAME,
        ctx.arg(1),
        mnt_of(old_dir),
        ctx.arg(3),
        mnt_of(new_dir),
    );
    0
}

/// inode_setattr(dentry, attr), before 6.3. The loader attaches this one or the next,
/// whichever matches the kernel's signature: a ctx offset chosen at run time is refused.
#[lsm(hook = "inode_setattr")]
pub fn lsm_inode_setattr(ctx: LsmContext) -> i32 {
    setattr_op(ctx.arg(0), 0, ctx.arg(1));
    0
}

/// inode_setattr(idmap, dentry, attr), 6.3 and later.
#[lsm(hook = "inode_setattr")]
pub fn lsm_inode_setattr_idmap(ctx: LsmContext) -> i32 {
    setattr_op(ctx.arg(1), 0, ctx.arg(2));
    0
}

#[lsm(hook = "inode_setxattr")]
pub fn lsm_inode_setxattr(ctx: LsmContext) -> i32 {
    dentry_op(op::XATTR, ctx.arg(1), 0, 0, 0);
    0
}

#[lsm(hook = "inode_removexattr")]
pub fn lsm_inode_removexattr(ctx: LsmContext) -> i32 {
    dentry_op(op::XATTR, ctx.arg(1), 0, 0, 0);
    0
}
