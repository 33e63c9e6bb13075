//! What a scan reports as it goes, for whoever shows it. The engine draws nothing itself: the
//! terminal line belongs to the CLI (`fim scan`), and the daemon reports no per-path progress.
//! Workers call it from many threads, so an implementation should only bump atomics.

/// Told about every path a scan reports.
pub trait ScanProgress: Send + Sync + std::fmt::Debug {
    /// One path reported, after reading `bytes` of it.
    fn path_done(&self, bytes: u64);
    /// The walk is over.
    fn finish(&self);
}
