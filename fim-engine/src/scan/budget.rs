//! Keeping scans polite: a read budget shared by all workers, and the idle IO class
//! ([`crate::platform::set_idle_io_priority`]).
//!
//! Why: a daily rehash of /usr reads gigabytes; on a busy server it must not steal the disk
//! from the workload. The token bucket caps the average read rate across every worker (one
//! budget, not one per thread, so adding workers does not raise the rate), and the idle IO
//! class lets the block layer serve everyone else first. Neither applies to the daemon's
//! single-path [`super::observe`] calls unless it passes a budget: those must be prompt.
use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// A token bucket in bytes. Readers take what they read *after* reading it and sleep off any
/// debt, so a reader never waits before its first read and the long-run rate is exact.
#[derive(Debug)]
pub struct ByteBudget {
    bytes_per_second: f64,
    /// Largest burst: a tenth of a second's worth (at least 64 KiB), so the rate is smooth.
    capacity: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl ByteBudget {
    /// A budget of `bytes_per_second` (at least 1).
    pub fn new(bytes_per_second: u64) -> Self {
        let rate = bytes_per_second.max(1) as f64;
        let capacity = (rate / 10.0).max(64.0 * 1024.0);
        ByteBudget {
            bytes_per_second: rate,
            capacity,
            state: Mutex::new(Bucket {
                tokens: capacity,
                refilled: Instant::now(),
            }),
        }
    }

    /// Accounts for `bytes` just read; sleeps while the bucket is in debt.
    pub fn consume(&self, bytes: u64) {
        let wait = {
            // A panic elsewhere while holding the lock leaves the counters valid: keep going.
            let mut bucket = self
                .state
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            let now = Instant::now();
            let earned = now.duration_since(bucket.refilled).as_secs_f64() * self.bytes_per_second;
            bucket.tokens = (bucket.tokens + earned).min(self.capacity) - bytes as f64;
            bucket.refilled = now;
            if bucket.tokens < 0.0 {
                Duration::from_secs_f64(-bucket.tokens / self.bytes_per_second)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_caps_the_rate() {
        // 10 MiB/s with a 1 MiB burst: the first MiB is free, the next four cost 0.1 s each.
        let budget = ByteBudget::new(10 << 20);
        let started = Instant::now();
        for _ in 0..5 {
            budget.consume(1 << 20);
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(390), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }
}
