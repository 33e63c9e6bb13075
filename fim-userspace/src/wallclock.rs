//! Kernel timestamps (CLOCK_BOOTTIME) to wall-clock time.
use fim_engine::change::Timestamp;

pub struct WallClock {
    /// realtime - boottime, in ns, measured once at start.
    offset_ns: i128,
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut spec = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut spec) };
    spec.tv_sec as i128 * 1_000_000_000 + spec.tv_nsec as i128
}

impl WallClock {
    pub fn now() -> Self {
        Self {
            offset_ns: clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME),
        }
    }

    /// The wall-clock time of a kernel event stamped `boot_ns` (CLOCK_BOOTTIME).
    pub fn at(&self, boot_ns: u64) -> Timestamp {
        let unix_ns = self.offset_ns + i128::from(boot_ns);
        // Saturates: an event past 2262 is a clock gone wrong, not a time to format.
        Timestamp::from_unix_nanos(i64::try_from(unix_ns).unwrap_or(i64::MAX))
    }
}
