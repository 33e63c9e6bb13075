//! From a dentry to "which monitored root is this under, and by which names".
//!
//! The walk follows `d_parent`, and at the top of each mount crosses to the mount point, so a
//! file is recognised by its inode's ancestors whichever path, bind mount, chroot or mount
//! namespace the writer used. The names it passes are appended to the record (leaf first) so
//! user space can rebuild the full path from the root's known path.
use fim_common::{
    event::{path_flag, EventBuf, DATA_SIZE, MAX_NAME, MAX_WALK_DEPTH},
    roots::{InodeKey, INODE_ANCESTOR, INODE_ROOT},
};

use aya_ebpf::helpers::generated::bpf_probe_read_kernel_str;

use crate::{
    kernel::{dentry_ids, offset, read_u64, KPath},
    maps::INODES,
};

/// What the walk found.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Nothing monitored: no root above, and the start is not an ancestor of one.
    Nothing,
    /// Under a monitored root (`id` is the root id).
    Root(u32),
    /// The start directory itself is an ancestor of roots (`id` is the ancestor id): the
    /// path string decides, through the prefix trie.
    BaseAncestor(u32),
    /// The depth limit was hit first: the event must be sent and resolved in user space.
    Truncated,
}

/// Walks up from `start`, recording names into `buf.data` from `*off` and the outcome into
/// `buf.header.paths[slot]`. With `to_top`, keeps going past ancestors to the namespace top
/// (for strings that user space must normalise).
#[inline(always)]
pub fn walk(buf: &mut EventBuf, slot: usize, start: KPath, off: &mut usize, to_top: bool) -> Found {
    let mut dentry = start.dentry;
    let mut mnt = start.mnt;
    let begin = *off;
    let mut depth: u8 = 0;
    let mut found = Found::Truncated;
    let mut anchor = InodeKey::default();
    let mut flags = path_flag::PRESENT;
    // A few more iterations than names: crossing a mount costs one without a name.
    for _ in 0..(MAX_WALK_DEPTH + 4) {
        if dentry == 0 {
            found = Found::Nothing;
            break;
        }
        let (dev, ino, _) = dentry_ids(dentry);
        let key = InodeKey { dev, _pad: 0, ino };
        anchor = key;
        if let Some(entry) = unsafe { INODES.get(&key) } {
            if entry.kind == INODE_ROOT && (entry.max_depth == u8::MAX || depth <= entry.max_depth) {
                found = Found::Root(entry.id);
                break;
            }
            if entry.kind == INODE_ANCESTOR {
                if depth == 0 {
                    found = Found::BaseAncestor(entry.id);
                    break;
                }
                if !to_top {
                    // Above an ancestor there are only ancestors: nothing monitored. The
                    // names so far still make a full path from this anchor.
                    found = Found::Nothing;
                    break;
                }
            }
        }
        let parent = read_u64(dentry, offset!(dentry_parent));
        let mnt_root = if mnt == 0 { 0 } else { read_u64(mnt, offset!(vfsmount_root)) };
        if dentry == mnt_root || parent == dentry || parent == 0 {
            if mnt == 0 {
                flags |= path_flag::REACHED_TOP;
                found = Found::Nothing;
                break;
            }
            let mount = mnt - offset!(mount_mnt);
            let parent_mount = read_u64(mount, offset!(mount_parent));
            if parent_mount == mount || parent_mount == 0 {
                flags |= path_flag::REACHED_TOP;
                found = Found::Nothing;
                break;
            }
            dentry = read_u64(mount, offset!(mount_mountpoint));
            mnt = parent_mount + offset!(mount_mnt);
            continue;
        }
        if depth as usize >= MAX_WALK_DEPTH || *off > DATA_SIZE - MAX_NAME {
            break;
        }
        let name = read_u64(dentry, offset!(dentry_name_ptr));
        let dst = unsafe { buf.data.as_mut_ptr().add(*off & (DATA_SIZE - 1)) };
        let n = unsafe { bpf_probe_read_kernel_str(dst.cast(), MAX_NAME as u32, name as *const _) };
        if n <= 0 {
            break;
        }
        *off += (n as usize) & (MAX_NAME - 1 + MAX_NAME);
        depth += 1;
        dentry = parent;
    }
    let desc = &mut buf.header.paths[slot & 1];
    if found == Found::Truncated {
        flags |= path_flag::WALK_TRUNCATED;
        desc.top_dev = anchor.dev;
        desc.top_ino = anchor.ino;
    } else if flags & path_flag::REACHED_TOP == 0 {
        desc.anchor_dev = anchor.dev;
        desc.anchor_ino = anchor.ino;
    }
    if let Found::Root(id) = found {
        desc.root_id = id;
    }
    desc.flags |= flags;
    desc.depth = depth;
    desc.names_off = begin as u16;
    desc.names_len = (*off - begin) as u16;
    found
}
