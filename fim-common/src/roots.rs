//! How monitored roots are represented in the kernel.
//!
//! No path strings are compared for operations the kernel resolved to a dentry (open, write,
//! close, fd-based attribute changes): the program walks `d_parent` from the dentry and looks
//! every (dev, ino) up in the inode map, stopping at the first monitored root.
//!
//! Operations that name a path the kernel has not resolved yet (unlink, rename, chmod by path…)
//! are seen at syscall entry in the tracepoint strategy. Their base directory (cwd, dirfd or
//! root) is walked the same way. If the base is itself an *ancestor* of a root, the remaining
//! path string is matched against the prefix trie, keyed by that ancestor's id, so
//! `rm etc/passwd` from `/` and `rm /etc/passwd` from anywhere both match without a path walk.

/// Kernel `dev_t` (major << 20 | minor) and inode number.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub dev: u32,
    pub _pad: u32,
    pub ino: u64,
}

/// The inode is a monitored root (directory or file).
pub const INODE_ROOT: u8 = 1;
/// The inode is a directory above one or more roots and not itself under any root.
pub const INODE_ANCESTOR: u8 = 2;

/// Value of the inode map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InodeEntry {
    /// [`INODE_ROOT`] or [`INODE_ANCESTOR`].
    pub kind: u8,
    /// For roots: how many levels below the root still count (255: unlimited).
    pub max_depth: u8,
    pub _pad: u16,
    /// Root id for roots (drop accounting, path rebuild); ancestor id for ancestors.
    pub id: u32,
}

/// Bytes of path string (after the 4-byte ancestor id) the prefix trie can hold.
pub const PREFIX_PATH_BYTES: usize = 252;

/// The prefix trie's key data (behind aya's `Key { prefix_len, data }`): the ancestor id,
/// big-endian so prefixes compare byte-wise, then the path string and its NUL.
pub type PrefixData = [u8; 4 + PREFIX_PATH_BYTES];

/// Value of the prefix trie: the root the prefix leads into.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixEntry {
    pub root_id: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterState {
    /// Boot-time ns of the open.
    pub opened_ns: u64,
    pub root_id: u32,
    pub _pad: u32,
}
