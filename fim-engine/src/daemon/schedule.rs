//! When the periodic scans run: a metadata sweep every `sweep_interval_secs` (15 minutes by
//! default) and a full rehash every `rehash_interval_secs` (daily). Sweeps count from the
//! daemon's start, which itself begins with a sweep; the rehash counts from the last one the
//! store recorded, so restarts do not postpone it forever. A rehash that falls due takes
//! precedence and also resets the sweep clock, as it checks everything a sweep would.
use std::time::{Duration, Instant, SystemTime};

use crate::{policy::Settings, reconcile::sweep::SweepKind};

pub(super) struct Schedule {
    sweep_every: Duration,
    rehash_every: Duration,
    last_sweep: Instant,
    last_rehash: Instant,
}

impl Schedule {
    pub(super) fn new(settings: &Settings, last_rehash: Option<SystemTime>) -> Self {
        let now = Instant::now();
        // Never rehashed: the first one is a full interval away (start-up made the baseline).
        let since_rehash = last_rehash
            .and_then(|at| SystemTime::now().duration_since(at).ok())
            .unwrap_or_default();
        let mut schedule = Schedule {
            sweep_every: Duration::ZERO,
            rehash_every: Duration::ZERO,
            last_sweep: now,
            last_rehash: now.checked_sub(since_rehash).unwrap_or(now),
        };
        schedule.update(settings);
        schedule
    }

    /// New intervals from a reloaded policy; the clocks keep running.
    pub(super) fn update(&mut self, settings: &Settings) {
        self.sweep_every = Duration::from_secs(settings.sweep_interval_secs.max(1));
        self.rehash_every = Duration::from_secs(settings.rehash_interval_secs.max(1));
    }

    pub(super) fn due(&self, now: Instant) -> Option<SweepKind> {
        if now.duration_since(self.last_rehash) >= self.rehash_every {
            Some(SweepKind::Full)
        } else if now.duration_since(self.last_sweep) >= self.sweep_every {
            Some(SweepKind::Metadata)
        } else {
            None
        }
    }

    pub(super) fn started(&mut self, kind: SweepKind, now: Instant) {
        self.last_sweep = now;
        if kind == SweepKind::Full {
            self.last_rehash = now;
        }
    }
}
