//! Reading kernel structs without CO-RE: every member offset comes from the `OFFSETS` global,
//! which user space fills from the running kernel's BTF before loading.
use aya_ebpf::helpers::{bpf_get_current_task, bpf_probe_read_kernel};
use fim_common::offsets::KernelOffsets;

#[no_mangle]
pub(crate) static OFFSETS: KernelOffsets = KernelOffsets {
    task_real_parent: 0,
    task_tgid: 0,
    task_fs: 0,
    task_files: 0,
    task_loginuid: 0,
    fs_root: 0,
    fs_pwd: 0,
    files_fdt: 0,
    fdtable_max_fds: 0,
    fdtable_fd: 0,
    file_path: 0,
    file_mode: 0,
    path_mnt: 0,
    path_dentry: 0,
    dentry_parent: 0,
    dentry_name_ptr: 0,
    dentry_inode: 0,
    inode_ino: 0,
    inode_sb: 0,
    inode_mode: 0,
    sb_dev: 0,
    vfsmount_root: 0,
    mount_mnt: 0,
    mount_parent: 0,
    mount_mountpoint: 0,
    iattr_valid: 0,
    iattr_mode: 0,
    iattr_uid: 0,
    iattr_gid: 0,
    iattr_size: 0,
    renamedata_old_dentry: 0,
    renamedata_new_dentry: 0,
    setattr_dentry_arg: 0,
    mkdir_returns_ptr: 0,
    task_mm: 0,
    mm_exe_file: 0,
    file_count: 0,
    file_ref_one: 0,
    io_req_opcode: 0,
    _pad: 0,
};

/// The daemon's own tgid: its file activity (database, logs) is never reported.
#[no_mangle]
static DAEMON_TGID: u32 = 0;

/// Bit of `file->f_mode` the kernel sets when an open created the file (FMODE_CREATED).
#[no_mangle]
static FMODE_CREATED: u32 = 0x0010_0000;

macro_rules! offset {
    ($field:ident) => {
        // Volatile: the loader patches .rodata after compilation, so the compiler must not
        // fold the zero initialiser into the code.
        unsafe { core::ptr::read_volatile(&$crate::kernel::OFFSETS.$field) } as u64
    };
}
pub(crate) use offset;

#[inline(always)]
pub fn daemon_tgid() -> u32 {
    unsafe { core::ptr::read_volatile(&DAEMON_TGID) }
}

#[inline(always)]
pub fn fmode_created() -> u32 {
    unsafe { core::ptr::read_volatile(&FMODE_CREATED) }
}

#[inline(always)]
pub fn read_u64(base: u64, off: u64) -> u64 {
    if base == 0 {
        return 0;
    }
    unsafe { bpf_probe_read_kernel((base + off) as *const u64) }.unwrap_or(0)
}

#[inline(always)]
pub fn read_u32(base: u64, off: u64) -> u32 {
    if base == 0 {
        return 0;
    }
    unsafe { bpf_probe_read_kernel((base + off) as *const u32) }.unwrap_or(0)
}

#[inline(always)]
pub fn read_u16(base: u64, off: u64) -> u16 {
    if base == 0 {
        return 0;
    }
    unsafe { bpf_probe_read_kernel((base + off) as *const u16) }.unwrap_or(0)
}

#[inline(always)]
pub fn current_task() -> u64 {
    unsafe { bpf_get_current_task() }
}

/// A `struct path`: the mount and the dentry.
#[derive(Clone, Copy)]
pub struct KPath {
    pub mnt: u64,
    pub dentry: u64,
}

#[inline(always)]
pub fn read_path(at: u64) -> KPath {
    KPath {
        mnt: read_u64(at, offset!(path_mnt)),
        dentry: read_u64(at, offset!(path_dentry)),
    }
}

/// The `struct file *` behind `fd` in the current task, or 0.
#[inline(always)]
pub fn fd_file(fd: u64) -> u64 {
    // An `int` argument: the upper half of the register is not defined.
    let fd = fd & 0xffff_ffff;
    let files = read_u64(current_task(), offset!(task_files));
    let fdt = read_u64(files, offset!(files_fdt));
    let max_fds = read_u32(fdt, offset!(fdtable_max_fds)) as u64;
    if fd >= max_fds {
        return 0;
    }
    let array = read_u64(fdt, offset!(fdtable_fd));
    if array == 0 {
        return 0;
    }
    read_u64(array + fd * 8, 0)
}

#[inline(always)]
pub fn file_path(file: u64) -> KPath {
    if file == 0 {
        return KPath { mnt: 0, dentry: 0 };
    }
    read_path(file + offset!(file_path))
}

#[inline(always)]
pub fn file_mode(file: u64) -> u32 {
    read_u32(file, offset!(file_mode))
}

/// Does anything besides the caller's own descriptor hold `file` (another fd from dup or
/// fork, a descriptor in flight over a socket, a mapping)? Then closing this descriptor does
/// not end the writer.
#[inline(always)]
pub fn file_shared(file: u64) -> bool {
    let raw = read_u64(file, offset!(file_count)) as i64;
    // file_ref_t (6.13+) parks released and dead files at huge values: they are not "shared".
    raw > offset!(file_ref_one) as i64 && raw < (1i64 << 40)
}

/// The current process's executable, or a null path for kernel threads.
#[inline(always)]
pub fn current_exe() -> KPath {
    let mm = read_u64(current_task(), offset!(task_mm));
    file_path(read_u64(mm, offset!(mm_exe_file)))
}

/// The directory a path string is resolved from: the task's root for absolute paths, its cwd
/// for AT_FDCWD, or the directory open as `dirfd`.
#[inline(always)]
pub fn base_dir(dirfd: i64, absolute: bool) -> KPath {
    const AT_FDCWD: i64 = -100;
    // dirfd is an `int`: only the low half of the register is defined.
    let dirfd = dirfd as i32 as i64;
    if absolute || dirfd == AT_FDCWD {
        let fs = read_u64(current_task(), offset!(task_fs));
        let at = if absolute {
            offset!(fs_root)
        } else {
            offset!(fs_pwd)
        };
        if fs == 0 {
            return KPath { mnt: 0, dentry: 0 };
        }
        return read_path(fs + at);
    }
    file_path(fd_file(dirfd as u64))
}

/// Kernel dev_t and inode number of a dentry's inode, plus its mode.
#[inline(always)]
pub fn dentry_ids(dentry: u64) -> (u32, u64, u32) {
    let inode = read_u64(dentry, offset!(dentry_inode));
    if inode == 0 {
        return (0, 0, 0);
    }
    let sb = read_u64(inode, offset!(inode_sb));
    (
        read_u32(sb, offset!(sb_dev)),
        read_u64(inode, offset!(inode_ino)),
        read_u16(inode, offset!(inode_mode)) as u32,
    )
}
