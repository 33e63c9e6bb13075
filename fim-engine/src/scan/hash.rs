//! Hashing a regular file's content: the read buffer, the sink every byte goes through
//! (BLAKE3, the kept content, progress, cancellation) and the plain read loop. How a file is
//! opened safely and which of its ranges are read are the platform's (`hash_unix.rs`: no
//! following, no blocking, no atime, sparse files read around their holes; on Windows the
//! observer's own handle, `observe_windows.rs`).
//!
//! Content is read with positioned reads into a reused 1 MiB buffer, never mmapped: a file
//! truncated by someone else while it is mapped raises SIGBUS in the reader, and Rust has no
//! safe way to recover from that, so one hostile (or merely busy) monitored file could kill the
//! daemon. Monitored files are rewritten and truncated all the time, so mmap is never "safe"
//! here. The cost is one copy from the page cache, small next to hashing; a whole tree is hashed
//! in parallel across files anyway, and a large file inside the scan pool is still spread over
//! all workers with `update_rayon`. Small files (the common case) take a single read of
//! size + 1 bytes: a short read at the expected size is end-of-file, so no second read.
//!
//! `cancel` is checked between 1 MiB chunks and `progress` counts the bytes hashed for
//! `fim status`.
use std::{
    cell::Cell,
    fs::File,
    io,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use super::observe::ObserveOptions;
use crate::state::Digest;

/// Reads of a changing file before it is reported unstable (after the first read).
pub(super) const MAX_RETRIES: u32 = 3;
/// The per-worker read buffer.
pub(super) const BUFFER_SIZE: usize = 1 << 20;
/// Reads at least this long are hashed with `update_rayon` inside the scan pool.
const PARALLEL_MIN: usize = 256 * 1024;
thread_local! {
    /// Set on the scan pool's threads: only there may hashing use rayon (elsewhere it would
    /// start rayon's global pool inside the daemon) and keep a 1 MiB buffer per thread.
    static IN_SCAN_POOL: Cell<bool> = const { Cell::new(false) };
    static BUFFER: Cell<Option<Box<[u8]>>> = const { Cell::new(None) };
}

/// Called by each scan pool thread as it starts.
pub(super) fn mark_scan_worker() {
    IN_SCAN_POOL.set(true);
}

/// Runs `f` with a read buffer sized for `expected` bytes (8 KiB to 1 MiB): the pool thread's
/// reusable one, grown when a larger file needs it, or (outside the pool) a fresh one, so a
/// daemon thread keeps no megabyte around. Pool buffers start small: a rescan of 100,000 small
/// files on 16 workers would otherwise keep 16 MiB of zeroed, resident buffers for nothing.
pub(super) fn with_buffer<R>(expected: u64, f: impl FnOnce(&mut [u8]) -> R) -> R {
    let len = usize::try_from(expected.saturating_add(1))
        .unwrap_or(BUFFER_SIZE)
        .clamp(8192, BUFFER_SIZE);
    if IN_SCAN_POOL.get() {
        // Taken, not borrowed: a job run by this thread while `update_rayon` waits for its
        // other half finds no buffer and makes its own, instead of aliasing this one.
        let mut buffer = match BUFFER.take() {
            Some(buffer) if buffer.len() >= len => buffer,
            _ => vec![0; len].into_boxed_slice(),
        };
        let result = f(&mut buffer);
        BUFFER.set(Some(buffer));
        result
    } else {
        f(&mut vec![0; len])
    }
}

pub(super) struct ReadResult {
    pub hash: Digest,
    pub content: Option<Vec<u8>>,
    pub content_truncated: bool,
    pub bytes: u64,
}

/// Where read (and hole) bytes go: the hasher, the kept content, the progress counter.
pub(super) struct Sink<'a> {
    hasher: blake3::Hasher,
    parallel: bool,
    limit: Option<usize>,
    content: Option<Vec<u8>>,
    content_truncated: bool,
    /// Bytes fed so far (holes included).
    pub bytes: u64,
    progress: Option<&'a AtomicU64>,
    cancel: Option<&'a AtomicBool>,
}

impl<'a> Sink<'a> {
    pub(super) fn new(expected: u64, options: &ObserveOptions<'a>) -> Self {
        let limit = options
            .keep_content
            .map(|limit| usize::try_from(limit).unwrap_or(usize::MAX));
        let content = limit.map(|limit| {
            Vec::with_capacity(limit.min(usize::try_from(expected).unwrap_or(usize::MAX)))
        });
        if let Some(progress) = options.progress {
            progress.store(0, Ordering::Relaxed);
        }
        Sink {
            hasher: blake3::Hasher::new(),
            parallel: IN_SCAN_POOL.get(),
            limit,
            content,
            content_truncated: false,
            bytes: 0,
            progress: options.progress,
            cancel: options.cancel,
        }
    }

    pub(super) fn cancelled(&self) -> bool {
        self.cancel
            .is_some_and(|cancel| cancel.load(Ordering::Relaxed))
    }

    pub(super) fn feed(&mut self, chunk: &[u8]) {
        if self.parallel && chunk.len() >= PARALLEL_MIN {
            self.hasher.update_rayon(chunk);
        } else {
            self.hasher.update(chunk);
        }
        if let (Some(content), Some(limit)) = (self.content.as_mut(), self.limit) {
            let room = limit.saturating_sub(content.len());
            content.extend_from_slice(&chunk[..room.min(chunk.len())]);
            self.content_truncated |= chunk.len() > room;
        }
        self.bytes += chunk.len() as u64;
        if let Some(progress) = self.progress {
            progress.store(self.bytes, Ordering::Relaxed);
        }
    }

    pub(super) fn finish(self) -> ReadResult {
        ReadResult {
            hash: *self.hasher.finalize().as_bytes(),
            content: self.content,
            content_truncated: self.content_truncated,
            bytes: self.bytes,
        }
    }
}

/// Hashes a file of `expected` bytes from offset 0 with positioned reads (`read_at`: no seek
/// between attempts). None: cancelled.
pub(super) fn read_dense(
    file: &File,
    expected: u64,
    options: &ObserveOptions<'_>,
    buffer: &mut [u8],
    read_at: impl Fn(&File, &mut [u8], u64) -> io::Result<usize>,
) -> io::Result<Option<ReadResult>> {
    let mut sink = Sink::new(expected, options);
    let mut offset: u64 = 0;
    loop {
        if sink.cancelled() {
            return Ok(None);
        }
        // First read: size + 1 bytes, so a small file is read (and found complete) in one call.
        let want = if offset == 0 {
            usize::try_from(expected.saturating_add(1))
                .unwrap_or(buffer.len())
                .min(buffer.len())
        } else {
            buffer.len()
        };
        let read = match read_at(file, &mut buffer[..want], offset) {
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if read == 0 {
            break;
        }
        sink.feed(&buffer[..read]);
        offset += read as u64;
        if let Some(budget) = options.budget {
            budget.consume(read as u64);
        }
        if read < want && offset == expected {
            break;
        }
    }
    Ok(Some(sink.finish()))
}
