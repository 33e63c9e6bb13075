//! Journal retention: old records go, and the chain still verifies from where they went.
//!
//! A journal that grows forever fills the disk, and a full disk stops recording. Pruning
//! deletes the oldest records up to a sequence and keeps that record's hash as the chain's
//! base (meta [`PRUNED_THROUGH`]), in the same transaction as a `JournalPruned` record that
//! says so in the chain itself; `verify` then checks everything after the base. An attacker
//! who deletes old records by hand and forges the base still has to explain the missing
//! `JournalPruned` record, and any chain head kept elsewhere.
use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc,
};

use rusqlite::params;

use super::{Result, Store};
use crate::{change::ChangeRecord, state::Digest};

/// "SEQ:HASH" of the last record pruned: the chain continues from its hash.
pub const PRUNED_THROUGH: &str = "journal/pruned-through";

/// How much of the journal to keep; None for each: keep everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Records older than this many nanoseconds before `now_ns` go.
    pub max_age_ns: Option<i64>,
    /// At most this many records stay.
    pub max_records: Option<u64>,
    /// The last sequence a workspace acknowledged, when the journal is reported to one:
    /// `max_age_ns` and `max_records` prune no further than it.
    pub acknowledged: Option<u64>,
    /// At most this many records stay even when the workspace has not acknowledged them.
    pub hard_cap_records: Option<u64>,
}

/// How far the workspace has acknowledged this journal: set by the push task from each
/// Welcome and Ack, read by retention. Kept in memory only: after a restart it is 0 until a
/// collector answers, so a restart can make retention wait, never prune early.
#[derive(Clone, Debug, Default)]
pub struct Acknowledged(Arc<(AtomicU64, AtomicBool)>);

impl Acknowledged {
    /// What a collector said it holds (a Welcome: may be lower than before, when the
    /// workspace lost records, which are then kept for it).
    pub fn set(&self, sequence: u64) {
        self.0 .0.store(sequence, Ordering::Release);
        self.0 .1.store(true, Ordering::Release);
    }

    /// An Ack: never lowers what a Welcome set.
    pub fn raise(&self, sequence: u64) {
        self.0 .0.fetch_max(sequence, Ordering::AcqRel);
    }

    /// The acknowledged sequence (0 until a collector answered).
    pub fn get(&self) -> u64 {
        self.0 .0.load(Ordering::Acquire)
    }

    /// Whether a collector has answered since the start (before, [`Self::get`] is 0
    /// because nothing is known, not because the workspace holds nothing).
    pub fn known(&self) -> bool {
        self.0 .1.load(Ordering::Acquire)
    }
}

impl Store {
    /// The chain's base after pruning: (sequence, hash) of the last pruned record, or
    /// (0, genesis) when nothing was ever pruned.
    pub fn chain_base(&self) -> Result<(u64, Digest)> {
        let Some(text) = self.get_meta(PRUNED_THROUGH)? else {
            return Ok((0, super::journal::GENESIS_HASH));
        };
        let anchor: super::Anchor = text
            .parse()
            .map_err(|reason: String| self.corrupt("pruning marker", &reason))?;
        Ok((anchor.sequence, anchor.hash))
    }

    /// The last sequence `retention` lets go of at `now_ns`, if any beyond what is pruned.
    pub fn prunable_through(&self, retention: Retention, now_ns: i64) -> Result<Option<u64>> {
        let fail = self.fail("finding records to prune");
        let (base, _) = self.chain_base()?;
        let (head, _) = self.head()?;
        let by_count = retention
            .max_records
            .map(|keep| head.saturating_sub(keep))
            .unwrap_or(0);
        let by_age = match retention.max_age_ns {
            Some(age) => {
                let cutoff = now_ns.saturating_sub(age);
                let found: Option<i64> = self
                    .conn
                    .query_row(
                        "SELECT MAX(sequence) FROM journal WHERE time_ns < ?1",
                        [cutoff],
                        |row| row.get(0),
                    )
                    .map_err(&fail)?;
                found
                    .and_then(|sequence| u64::try_from(sequence).ok())
                    .unwrap_or(0)
            }
            None => 0,
        };
        let by_cap = retention
            .hard_cap_records
            .map(|keep| head.saturating_sub(keep))
            .unwrap_or(0);
        let wanted = by_count.max(by_age);
        let through = match retention.acknowledged {
            Some(acknowledged) => wanted.min(acknowledged).max(by_cap),
            None => wanted.max(by_cap),
        };
        Ok((through > base).then_some(through))
    }

    /// Deletes records up to `through`, moves the chain's base there and appends `marker`
    /// (its JournalPruned record), all in one transaction.
    pub fn prune_through(&self, through: u64, marker: &mut ChangeRecord) -> Result<()> {
        let fail = self.fail("pruning the journal");
        let hash: Vec<u8> = self
            .conn
            .query_row(
                "SELECT hash FROM journal WHERE sequence = ?1",
                [through as i64],
                |row| row.get(0),
            )
            .map_err(&fail)?;
        let mut batch = self.batch()?;
        batch.delete_journal_through(through)?;
        batch.set_meta(
            PRUNED_THROUGH,
            &format!("{through}:{}", crate::change::hex(&hash)),
        )?;
        batch.append(marker)?;
        batch.commit()
    }
}

impl super::Batch<'_> {
    fn delete_journal_through(&mut self, through: u64) -> Result<()> {
        self.tx
            .execute(
                "DELETE FROM journal WHERE sequence <= ?1",
                params![through as i64],
            )
            .map_err(self.store.fail("pruning the journal"))?;
        Ok(())
    }
}
