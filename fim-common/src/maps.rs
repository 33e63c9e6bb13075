//! Names of maps and globals, shared so the loader and the programs cannot drift apart.

/// Ring buffer carrying [`crate::event::EventHeader`] records to user space.
pub const EVENTS: &str = "EVENTS";
/// (dev, ino) of monitored roots and of their ancestors: [`crate::roots::InodeEntry`].
pub const INODES: &str = "INODES";
/// Path-string prefixes of roots below each ancestor: [`crate::roots::PrefixKey`].
pub const PREFIXES: &str = "PREFIXES";
/// Files open for writing under a root, keyed by `struct file *` (the open file, not the fd:
/// dup, fork and descriptor passing share it): [`crate::roots::WriterState`].
pub const FILE_WRITERS: &str = "FILE_WRITERS";
/// Bumped when the roots change (a 1-entry array of u32).
pub const ROOTS_GENERATION: &str = "ROOTS_GENERATION";
/// Processes that hold shared writable mappings of tracked files (tgid -> 1).
pub const MAPPERS: &str = "MAPPERS";
/// Number of tracked writer fds per tgid, so process exit only scans fds when it must.
pub const WRITER_COUNTS: &str = "WRITER_COUNTS";
/// Open flags stashed between sys_enter and sys_exit, keyed by pid_tgid.
pub const OPEN_STASH: &str = "OPEN_STASH";
/// Name-based operations waiting for their syscall's return value, keyed by pid_tgid.
pub const PENDING_RESULTS: &str = "PENDING_RESULTS";
/// Per-CPU drop counters, indexed by root id (slot 0: root unknown).
pub const DROPS: &str = "DROPS";
/// Per-CPU scratch space where an event is assembled before it is copied to the ring.
pub const SCRATCH: &str = "SCRATCH";

/// Global: the kernel offsets ([`crate::offsets::KernelOffsets`]).
pub const GLOBAL_OFFSETS: &str = "OFFSETS";
/// Global: the daemon's own tgid, excluded in the kernel.
pub const GLOBAL_DAEMON_TGID: &str = "DAEMON_TGID";

/// Number of drop counter slots (root ids are below this). A policy of 20,000 entities has
/// 20,000 roots; each slot costs 8 bytes per CPU.
pub const MAX_ROOT_IDS: u32 = 65536;
/// Entries in the inode map: roots, their ancestors and hard links.
pub const MAX_INODES: u32 = 131072;
/// Entries in the path-prefix trie: about 16 per root four levels deep (each spelling from
/// each ancestor, relative and absolute, and the directories in between); 20,000 roots need
/// 321,206. An LPM trie is never preallocated, so this is a cap: each entry in use costs
/// about 300 bytes of kernel memory.
pub const MAX_PREFIXES: u32 = 1 << 20;
/// Default ring-buffer size in bytes (must be a power of two multiple of the page size).
pub const DEFAULT_RING_BYTES: u32 = 8 << 20;
