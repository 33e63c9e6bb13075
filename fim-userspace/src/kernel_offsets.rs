//! Kernel struct offsets from the running kernel's BTF.
//!
//! Rust BPF programs get no CO-RE relocations, so the programs read kernel structs at offsets
//! handed to them as a global. They are looked up here, by member path, in
//! /sys/kernel/btf/vmlinux (or any BTF file, for tests against recorded kernels).
use std::path::Path;

use btfparse::{Offset, Readable, TypeInformation, TypeVariant};
use fim_common::offsets::KernelOffsets;

#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    #[error("cannot read kernel BTF at {path}: {source} (the kernel needs CONFIG_DEBUG_INFO_BTF)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot parse kernel BTF at {path}: {message}")]
    Parse { path: String, message: String },
    #[error("kernel BTF has no type `{0}`")]
    MissingType(String),
    #[error("kernel BTF has no member `{ty}.{member}`")]
    MissingMember { ty: String, member: String },
    #[error("`{ty}.{member}` is a bitfield; a byte offset is needed")]
    Bitfield { ty: String, member: String },
}

struct Bytes<'a>(&'a [u8]);

impl Readable for Bytes<'_> {
    fn read(&self, offset: u64, buffer: &mut [u8]) -> btfparse::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        match start
            .checked_add(buffer.len())
            .and_then(|end| self.0.get(start..end))
        {
            Some(source) => {
                buffer.copy_from_slice(source);
                Ok(())
            }
            None => Err(btfparse::Error::new(
                btfparse::ErrorKind::EOF,
                "read past the end of BTF",
            )),
        }
    }
}

/// Reads every offset the programs need from the BTF file at `path`.
pub fn read_kernel_offsets(path: &Path) -> Result<KernelOffsets, OffsetsError> {
    let display = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| OffsetsError::Read {
        path: display.clone(),
        source,
    })?;
    let types = TypeInformation::new(&Bytes(&bytes)).map_err(|error| OffsetsError::Parse {
        path: display,
        message: format!("{error:?}"),
    })?;
    let at = |ty: &str, member: &str| offset_of(&types, ty, member);
    Ok(KernelOffsets {
        task_real_parent: at("task_struct", "real_parent")?,
        task_tgid: at("task_struct", "tgid")?,
        task_fs: at("task_struct", "fs")?,
        task_files: at("task_struct", "files")?,
        // Kernels without CONFIG_AUDIT have no login uid: 0 tells the programs "unset".
        task_loginuid: at("task_struct", "loginuid").unwrap_or(0),
        fs_root: at("fs_struct", "root")?,
        fs_pwd: at("fs_struct", "pwd")?,
        files_fdt: at("files_struct", "fdt")?,
        fdtable_max_fds: at("fdtable", "max_fds")?,
        fdtable_fd: at("fdtable", "fd")?,
        file_path: at("file", "f_path")?,
        file_mode: at("file", "f_mode")?,
        path_mnt: at("path", "mnt")?,
        path_dentry: at("path", "dentry")?,
        dentry_parent: at("dentry", "d_parent")?,
        dentry_name_ptr: at("dentry", "d_name.name")?,
        dentry_inode: at("dentry", "d_inode")?,
        inode_ino: at("inode", "i_ino")?,
        inode_sb: at("inode", "i_sb")?,
        inode_mode: at("inode", "i_mode")?,
        sb_dev: at("super_block", "s_dev")?,
        vfsmount_root: at("vfsmount", "mnt_root")?,
        mount_mnt: at("mount", "mnt")?,
        mount_parent: at("mount", "mnt_parent")?,
        mount_mountpoint: at("mount", "mnt_mountpoint")?,
        iattr_valid: at("iattr", "ia_valid")?,
        iattr_mode: at("iattr", "ia_mode")?,
        iattr_uid: at("iattr", "ia_uid").or_else(|_| at("iattr", "ia_vfsuid"))?,
        iattr_gid: at("iattr", "ia_gid").or_else(|_| at("iattr", "ia_vfsgid"))?,
        iattr_size: at("iattr", "ia_size")?,
        renamedata_old_dentry: at("renamedata", "old_dentry")?,
        renamedata_new_dentry: at("renamedata", "new_dentry")?,
        // bpf_lsm_inode_setattr(dentry, attr) before 6.3; (idmap, dentry, attr) after.
        setattr_dentry_arg: match function_signature(&types, "bpf_lsm_inode_setattr") {
            Some((params, _)) => {
                params.iter().position(|name| name == "dentry").unwrap_or(0) as u32
            }
            None => 0,
        },
        mkdir_returns_ptr: function_signature(&types, "vfs_mkdir")
            .is_some_and(|(_, returns_ptr)| returns_ptr) as u32,
        task_mm: at("task_struct", "mm")?,
        mm_exe_file: at("mm_struct", "exe_file")?,
        // 6.13 replaced the atomic_long_t f_count (1 = one reference) by file_ref_t f_ref
        // (0 = one reference).
        file_count: at("file", "f_count").or_else(|_| at("file", "f_ref"))?,
        file_ref_one: at("file", "f_count").map_or(0, |_| 1),
        // Kernels without io_uring have no io_kiocb; the programs are then not attached.
        io_req_opcode: at("io_kiocb", "opcode").unwrap_or(64),
        _pad: 0,
    })
}

/// Parameter names of a kernel function, and whether it returns a pointer.
fn function_signature(types: &TypeInformation, name: &str) -> Option<(Vec<String>, bool)> {
    let id = types.id_of(name)?;
    let TypeVariant::Func(func) = types.from_id(id)? else {
        return None;
    };
    let TypeVariant::FuncProto(proto) = types.from_id(*func.prototype_tid())? else {
        return None;
    };
    let params = proto
        .parameter_list()
        .iter()
        .map(|param| param.name().unwrap_or_default())
        .collect();
    let returns_ptr = matches!(
        types.from_id(*proto.return_tid()),
        Some(TypeVariant::Ptr(_))
    );
    Some((params, returns_ptr))
}

fn offset_of(types: &TypeInformation, ty: &str, member: &str) -> Result<u32, OffsetsError> {
    let id = types
        .id_of(ty)
        .ok_or_else(|| OffsetsError::MissingType(ty.to_string()))?;
    let missing = || OffsetsError::MissingMember {
        ty: ty.to_string(),
        member: member.to_string(),
    };
    match types.offset_of(id, member).map_err(|_| missing())? {
        (_, Offset::ByteOffset(bytes)) => Ok(bytes),
        _ => Err(OffsetsError::Bitfield {
            ty: ty.to_string(),
            member: member.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel's BTF must yield every offset, and ones that cannot be zero are not.
    #[test]
    fn reads_offsets_from_running_kernel() {
        let offsets = read_kernel_offsets(Path::new("/sys/kernel/btf/vmlinux"))
            .expect("this machine's kernel has BTF (see ARCHITECTURE.md)");
        assert_ne!(offsets.task_fs, 0);
        assert_ne!(offsets.dentry_parent, 0);
        assert_ne!(offsets.file_path, 0);
        assert_eq!(offsets.path_mnt, 0, "struct path starts with mnt");
        assert_eq!(offsets.path_dentry, 8);
        // 6.18: inode_setattr takes an idmap first, and vfs_mkdir returns a dentry.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        if release.starts_with("6.18") {
            assert_eq!(offsets.setattr_dentry_arg, 1);
            assert_eq!(offsets.mkdir_returns_ptr, 1);
        }
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let error = read_kernel_offsets(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/vmlinux"),
            "{error}"
        );
    }
}
