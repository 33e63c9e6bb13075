//! Every map the programs share, named after the constants in `fim_common::maps`.
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use fim_common::{
    event::EventBuf,
    maps::{DEFAULT_RING_BYTES, MAX_INODES, MAX_PREFIXES, MAX_ROOT_IDS},
    roots::{InodeEntry, InodeKey, PrefixEntry, WriterState, PREFIX_PATH_BYTES},
};

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

#[map]
pub static INODES: HashMap<InodeKey, InodeEntry> = HashMap::with_max_entries(MAX_INODES, 0);

#[map]
pub static PREFIXES: LpmTrie<[u8; 4 + PREFIX_PATH_BYTES], PrefixEntry> =
    LpmTrie::with_max_entries(MAX_PREFIXES, 0);

/// Keyed by `struct file *`. LRU so that an entry whose last release was never seen (the
/// tracepoint strategy has no hook on the final fput) cannot fill the map for good; 131072
/// leaves room for a process holding 100,000 writable descriptors.
#[map]
pub static FILE_WRITERS: LruHashMap<u64, WriterState> = LruHashMap::with_max_entries(131072, 0);

/// tgid -> 1 while the process (or a parent it forked from) may hold tracked writers.
#[map]
pub static WRITER_COUNTS: LruHashMap<u32, u32> = LruHashMap::with_max_entries(16384, 0);

/// tgid -> 1 while the process may hold shared writable mappings of tracked files.
#[map]
pub static MAPPERS: LruHashMap<u32, u32> = LruHashMap::with_max_entries(16384, 0);

#[map]
pub static OPEN_STASH: LruHashMap<u64, u32> = LruHashMap::with_max_entries(16384, 0);

#[map]
pub static PENDING_RESULTS: LruHashMap<u64, u8> = LruHashMap::with_max_entries(16384, 0);

#[map]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_ROOT_IDS, 0);

#[map]
pub static SCRATCH: PerCpuArray<EventBuf> = PerCpuArray::with_max_entries(1, 0);

/// Key buffer for prefix-trie lookups (too large for the 512-byte BPF stack together with
/// everything else).
#[map]
pub static PREFIX_SCRATCH: PerCpuArray<aya_ebpf::maps::lpm_trie::Key<[u8; 4 + PREFIX_PATH_BYTES]>> =
    PerCpuArray::with_max_entries(1, 0);

/// State of the d_parent walk (see `walk.rs` for why it is not on the stack).
#[map]
pub static WALK_SCRATCH: PerCpuArray<crate::walk::WalkState> = PerCpuArray::with_max_entries(1, 0);

/// State of the path-string scan (see `probes/names.rs`).
#[map]
pub static SCAN_SCRATCH: PerCpuArray<crate::probes::Scan> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU time of the last consumer wakeup (see `emit::wakeup_flag`).
#[map]
pub static LAST_WAKEUP: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Data offset handed to and back from the executable walk (see `emit::send_change`).
#[map]
pub static EXE_WALK: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Open files (`struct file *`) an io_uring write completion found outside every root, with
/// the roots generation they were judged in: their next writes cost one lookup instead of a
/// walk. Removed whenever a file is opened for writing (a freed pointer reused by a new file
/// must not stay "outside"), and stale once the generation moves.
#[map]
pub static OUTSIDE_ROOTS: LruHashMap<u64, u32> = LruHashMap::with_max_entries(16384, 0);

/// Bumped by user space when the roots change and by the programs at every rename or link
/// they report (a file may have moved into a root while open).
#[map]
pub static ROOTS_GENERATION: Array<u32> = Array::with_max_entries(1, 0);
