//! Kernel struct member offsets, in bytes.
//!
//! Rust BPF programs get no CO-RE relocations, and these offsets differ between kernel builds
//! (task_struct.fs moves with every config change). User space reads them from the running
//! kernel's BTF and passes them in as a global at load time.

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_fs: u32,
    pub task_files: u32,
    /// 0 when the kernel has no audit support (no login uid).
    pub task_loginuid: u32,
    pub fs_root: u32,
    pub fs_pwd: u32,
    pub files_fdt: u32,
    pub fdtable_max_fds: u32,
    pub fdtable_fd: u32,
    pub file_path: u32,
    pub file_mode: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub dentry_parent: u32,
    pub dentry_name_ptr: u32,
    pub dentry_inode: u32,
    pub inode_ino: u32,
    pub inode_sb: u32,
    pub inode_mode: u32,
    pub sb_dev: u32,
    pub vfsmount_root: u32,
    /// Offset of `struct vfsmount mnt` inside `struct mount`.
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_mountpoint: u32,
    pub iattr_valid: u32,
    pub iattr_mode: u32,
    pub iattr_uid: u32,
    pub iattr_gid: u32,
    pub iattr_size: u32,
    pub renamedata_old_dentry: u32,
    pub renamedata_new_dentry: u32,
    /// Which argument of the `inode_setattr` LSM hook is the dentry (0 before 6.3, 1 after,
    /// when an idmap argument was added in front).
    pub setattr_dentry_arg: u32,
    /// 1 when `vfs_mkdir` returns a dentry pointer (6.15+) rather than an int.
    pub mkdir_returns_ptr: u32,
    pub task_mm: u32,
    pub mm_exe_file: u32,
    /// `file.f_count` (atomic_long_t, counts from 1) or, since 6.13, `file.f_ref` (file_ref_t,
    /// counts from 0): see `file_ref_one`.
    pub file_count: u32,
    /// The raw counter value of a file with exactly one reference (1 for f_count, 0 for f_ref).
    pub file_ref_one: u32,
    /// `io_kiocb.opcode` (after the 64-byte per-opcode union).
    pub io_req_opcode: u32,
    pub _pad: u32,
}
