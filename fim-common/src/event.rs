//! The record the kernel sends through the ring buffer.
//!
//! A record is an [`EventHeader`] followed by `data_len` bytes of packed path data. Paths are
//! not sent as strings: each [`PathDesc`] names an *anchor* (a root or an ancestor the kernel
//! found by walking `d_parent`), the dentry names collected on the way up (leaf first,
//! NUL-separated), and for operations seen before the kernel resolved them, the path string the
//! process passed. User space joins them onto the anchor's known path.

/// Operation codes. Stable: they appear in recorded fixtures and in the JSON output.
pub mod op {
    /// A file opened for writing was closed (or its process exited).
    pub const WRITE_CLOSED: u8 = 1;
    /// Reserved: the kernel no longer sends it (write(2) is not hooked). User space makes
    /// `write-in-progress` events itself, from the writers it tracks (`writers.rs`).
    pub const WRITE_IN_PROGRESS: u8 = 2;
    pub const CREATE: u8 = 3;
    pub const RENAME: u8 = 4;
    pub const UNLINK: u8 = 5;
    pub const CHMOD: u8 = 6;
    pub const CHOWN: u8 = 7;
    pub const TRUNCATE: u8 = 8;
    /// Timestamps set explicitly (utimensat and friends).
    pub const SETATTR: u8 = 9;
    pub const XATTR: u8 = 10;
    pub const LINK: u8 = 11;
    pub const SYMLINK: u8 = 12;
    pub const MKDIR: u8 = 13;
    pub const RMDIR: u8 = 14;
    /// Internal: the return value of a syscall whose event was sent at entry.
    pub const SYSCALL_RESULT: u8 = 100;
    /// Internal: a file under a root was opened for writing (lets user space close it if the
    /// process dies without close(2)).
    pub const WRITE_OPENED: u8 = 101;
    /// Internal: a tracked file was mapped shared and writable by this process (`arg`: the
    /// writer id). Writes through the mapping bypass write(2) and close(2).
    pub const WRITE_MAPPED: u8 = 102;
    /// Internal: a process holding shared writable mappings of tracked files called msync or
    /// munmap, or exited (`AT_EXIT`): user space looks at every file it mapped.
    pub const MAPPINGS_SYNCED: u8 = 103;
}

/// Header flags.
pub mod flag {
    /// The event was sent at syscall entry; a [`super::op::SYSCALL_RESULT`] with the same
    /// `pid` follows (a thread is in one syscall at a time), and the event stands only if
    /// that result is >= 0.
    pub const AWAITS_RESULT: u8 = 1 << 0;
    /// The file was opened with O_TRUNC.
    pub const OPEN_TRUNC: u8 = 1 << 1;
    /// Write-closed synthesised at process exit rather than at close(2), or at the release of
    /// the last reference (LSM/fentry): the record has no path, user space knows it by `arg`.
    pub const AT_EXIT: u8 = 1 << 2;
    /// Write-closed for one descriptor of a file that stays open elsewhere (a dup, a fork's
    /// copy, a descriptor passed over a socket, a mapping): keep tracking it.
    pub const STILL_OPEN: u8 = 1 << 3;
    /// Seen through io_uring (submission or completion), not a syscall: no result follows.
    pub const IO_URING: u8 = 1 << 4;
    /// The operation went through a fixed (registered) file or an io_uring opcode the kernel
    /// programs cannot follow: user space rescans what the process may have touched.
    pub const UNRESOLVED: u8 = 1 << 5;
    /// A symlink outside the roots whose target may lead into one (tracepoint strategy):
    /// user space checks, and registers the link as another spelling of those roots.
    pub const ALIAS: u8 = 1 << 6;
}

/// PathDesc flags.
pub mod path_flag {
    /// The d_parent walk hit its depth limit before finding an anchor: the names are the
    /// lowest part of the path, and `top_dev/top_ino` is the highest directory reached.
    pub const WALK_TRUNCATED: u8 = 1 << 0;
    /// The user-supplied string did not fit and was cut.
    pub const STRING_TRUNCATED: u8 = 1 << 1;
    /// The string has `.`/`..`/`//` components, so the kernel could not match it and sent
    /// the event for user space to normalise and filter.
    pub const UNNORMALISED: u8 = 1 << 2;
    /// The anchor is an ancestor matched through the prefix trie, not a root.
    pub const VIA_PREFIX: u8 = 1 << 3;
    /// The walk reached the top of the mount namespace without an anchor.
    pub const REACHED_TOP: u8 = 1 << 4;
    /// This path descriptor is in use.
    pub const PRESENT: u8 = 1 << 5;
}

/// Maximum d_parent levels walked (names kept) per path.
pub const MAX_WALK_DEPTH: usize = 24;
/// Longest path string read from user memory.
pub const MAX_USER_STRING: usize = 1024;
/// Each name read is capped at NAME_MAX + 1.
pub const MAX_NAME: usize = 256;
/// Size of the data area (a power of two so offsets can be masked for the verifier).
pub const DATA_SIZE: usize = 8192;
/// The scratch buffer has slack past `DATA_SIZE` so a masked offset plus one maximal read
/// always stays inside it.
pub const DATA_SLACK: usize = MAX_USER_STRING;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathDesc {
    pub anchor_dev: u32,
    pub flags: u8,
    /// Number of names collected by the walk.
    pub depth: u8,
    pub _pad: u16,
    pub anchor_ino: u64,
    /// Highest directory the walk reached when it found no anchor.
    pub top_dev: u32,
    /// Root id the event was attributed to (0 when unknown).
    pub root_id: u32,
    pub top_ino: u64,
    /// Offset and length (including NULs) of the names in the data area.
    pub names_off: u16,
    pub names_len: u16,
    /// Offset and length (without the NUL) of the user string in the data area.
    pub str_off: u16,
    pub str_len: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    pub op: u8,
    pub flags: u8,
    pub _pad: u16,
    /// Bytes of path data following the header.
    pub data_len: u32,
    /// CLOCK_BOOTTIME nanoseconds.
    pub time_ns: u64,
    /// Thread id and process id as the host sees them.
    pub pid: u32,
    pub tgid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// u32::MAX when unset (the kernel's AUDIT_UID_UNSET).
    pub loginuid: u32,
    pub cgroup_id: u64,
    pub comm: [u8; 16],
    /// Device and inode of the affected file when known (0 otherwise).
    pub dev: u32,
    /// chmod: the new mode. Others: the inode's mode when known.
    pub mode: u32,
    pub ino: u64,
    /// chown: uid (low 32 bits) and gid (high 32). truncate: the length. result: the return value.
    pub arg: u64,
    /// `paths[0]`: the file. `paths[1]`: rename/link destination, symlink target.
    /// `paths[EXE_SLOT]`: the executable of the process at the time of the event.
    pub paths: [PathDesc; 3],
}

/// Index of the executable's path in [`EventHeader::paths`].
pub const EXE_SLOT: usize = 2;

/// The scratch buffer events are assembled in.
#[repr(C)]
pub struct EventBuf {
    pub header: EventHeader,
    /// Twice the data area: `emit::send` bounds the record length with a power-of-two mask
    /// (`2 * DATA_SIZE - 1`), and 6.1's verifier, which cannot always see the tighter clamp
    /// before it, needs the masked length to stay inside the map value.
    pub data: [u8; 2 * DATA_SIZE + DATA_SLACK],
}

pub const HEADER_SIZE: usize = core::mem::size_of::<EventHeader>();

/// AUDIT_UID_UNSET.
pub const LOGINUID_UNSET: u32 = u32::MAX;
