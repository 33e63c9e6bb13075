//! When the periodic scans run: a metadata sweep every `sweep_interval_secs` (15 minutes by
//! default) and a full rehash every `rehash_interval_secs` (daily). Both count from the
//! daemon's start, which itself begins with a sweep; a rehash that falls due takes precedence
//! and also resets the sweep clock, as it checks everything a sweep would.
use std::time::{Duration, Instant};

use crate::{policy::Settings, reconcile::sweep::SweepKind};

pub(super) struct Schedule {
    sweep_every: Duration,
    rehash_every: Duration,
    last_sweep: Instant,
    last_rehash: Instant,
}

impl Schedule {
    pub(super) fn new(settings: &Settings) -> Self {
        let now = Instant::now();
        Schedule {
            sweep_every: Duration::from_secs(settings.sweep_interval_secs.max(1)),
            rehash_every: Duration::from_secs(settings.rehash_interval_secs.max(1)),
            last_sweep: now,
            last_rehash: now,
        }
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
