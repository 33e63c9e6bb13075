//! Kernel timestamps (CLOCK_BOOTTIME) to wall-clock RFC 3339.
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

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

    pub fn rfc3339(&self, boot_ns: u64) -> String {
        format_ns(self.offset_ns + boot_ns as i128)
    }

    pub fn now_rfc3339(&self) -> String {
        format_ns(clock_ns(libc::CLOCK_REALTIME))
    }
}

fn format_ns(unix_ns: i128) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(unix_ns)
        .ok()
        .and_then(|time| time.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix_ns.to_string())
}
