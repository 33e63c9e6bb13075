//! The NTFS change journal at fimsvc's start and stop ([`fim_engine::usn`]).
//!
//! At start, for each volume holding a file root, the journal is compared with the cursor
//! fimsvc stored when it last ran (`usn-cursors.json` in the state directory, which the trust
//! checks guard): if the journal was recreated, wrapped past the cursor or rolled back, what
//! happened while fimsvc was stopped cannot be known from it, and the roots on that volume get
//! a gap notice (counted in `fim status`, announced on the API, rescanned as a gap). Otherwise
//! the records since the cursor say how many files changed, logged beside the start-up scan
//! that finds and records the differences. The cursor is stored again once monitoring runs
//! and at a clean stop. A volume without a journal (FAT, journal off, Wine) is logged once:
//! the start-up scan's comparison with the baselines is then all there is.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Component, Path, PathBuf, Prefix},
};

use fim_engine::{
    daemon::WatchRoot,
    usn::{by_file, resume, Cursor, Resume},
    usn_windows::{ReadError, Volume},
};
use fim_model::{source::GapNotice, Timestamp};

/// The file the cursors are kept in, in the state directory.
pub const CURSORS_FILE: &str = "usn-cursors.json";

/// The drive letter a path is on (`C:\x`, `\\?\C:\x`); None for UNC paths, which have no
/// local journal.
fn drive_of(path: &Path) -> Option<char> {
    match path.components().next()? {
        Component::Prefix(prefix) => match prefix.kind() {
            Prefix::Disk(letter) | Prefix::VerbatimDisk(letter) => {
                Some(char::from(letter).to_ascii_uppercase())
            }
            _ => None,
        },
        _ => None,
    }
}

fn load(state_dir: &Path) -> BTreeMap<char, Cursor> {
    let path = state_dir.join(CURSORS_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => match serde_json::from_slice::<BTreeMap<char, Cursor>>(&bytes) {
            Ok(cursors) => cursors,
            Err(error) => {
                // Treated as no cursor: the journal's records since the last stop are then
                // not read, which the warning says; the start-up scan still compares.
                tracing::warn!(
                    "{} is unreadable ({error}); the change journals are read from now on",
                    path.display()
                );
                BTreeMap::new()
            }
        },
        Err(_) => BTreeMap::new(),
    }
}

/// What the journals said at start.
#[derive(Debug, Default)]
pub struct AtStart {
    /// Roots whose volume's journal cannot say what happened while fimsvc was stopped.
    pub gaps: Vec<GapNotice>,
    /// Files the journals say changed since the last stop, per volume.
    pub changed_files: BTreeMap<char, usize>,
    /// Volumes without a journal.
    pub without_journal: BTreeSet<char>,
}

/// Compares each volume's journal with its stored cursor (see the module).
pub fn at_start(state_dir: &Path, roots: &[WatchRoot]) -> AtStart {
    let cursors = load(state_dir);
    let mut outcome = AtStart::default();
    for (letter, on_volume) in roots_by_volume(roots) {
        let volume = match Volume::open(letter) {
            Ok(volume) => volume,
            Err(error) => {
                tracing::info!("cannot open volume {letter}: for its change journal ({error}); changes while stopped are found by the start-up scan alone");
                outcome.without_journal.insert(letter);
                continue;
            }
        };
        let now = match volume.query() {
            Ok(Some(now)) => now,
            Ok(None) => {
                tracing::info!("volume {letter}: has no change journal; changes while stopped are found by the start-up scan alone");
                outcome.without_journal.insert(letter);
                continue;
            }
            Err(error) => {
                tracing::warn!("cannot query the change journal of {letter}: ({error}); changes while stopped are found by the start-up scan alone");
                outcome.without_journal.insert(letter);
                continue;
            }
        };
        let gap = match resume(cursors.get(&letter).copied(), &now) {
            Resume::Fresh => None,
            Resume::Gap(gap) => Some(gap.to_string()),
            Resume::From(from) => match volume.read(now.journal_id, from, now.next_usn) {
                Ok(records) => {
                    let files = by_file(&records).len();
                    tracing::info!(
                        records = records.len(),
                        files,
                        "volume {letter}: the change journal has changes to {files} files since fimsvc last ran"
                    );
                    outcome.changed_files.insert(letter, files);
                    None
                }
                Err(ReadError::Gap(gap)) => Some(gap.to_string()),
                Err(error) => Some(error.to_string()),
            },
        };
        if let Some(why) = gap {
            tracing::warn!("volume {letter}: {why}; what changed while fimsvc was stopped cannot be known from it");
            outcome
                .gaps
                .push(GapNotice::for_files(on_volume, 0, Timestamp::now()));
        }
    }
    outcome
}

fn roots_by_volume(roots: &[WatchRoot]) -> BTreeMap<char, Vec<PathBuf>> {
    let mut volumes: BTreeMap<char, Vec<PathBuf>> = BTreeMap::new();
    for root in roots {
        if let Some(letter) = drive_of(&root.path) {
            volumes.entry(letter).or_default().push(root.path.clone());
        }
    }
    volumes
}

/// Stores where each volume's journal stands now, for the next start.
pub fn save(state_dir: &Path, roots: &[WatchRoot]) {
    let mut cursors = load(state_dir);
    for letter in roots_by_volume(roots).into_keys() {
        let Ok(volume) = Volume::open(letter) else {
            continue;
        };
        if let Ok(Some(now)) = volume.query() {
            cursors.insert(
                letter,
                Cursor {
                    journal_id: now.journal_id,
                    next_usn: now.next_usn,
                },
            );
        }
    }
    if cursors.is_empty() {
        return;
    }
    let path = state_dir.join(CURSORS_FILE);
    let written = serde_json::to_vec(&cursors)
        .map_err(std::io::Error::other)
        .and_then(|bytes| {
            let partial = state_dir.join(format!("{CURSORS_FILE}.partial"));
            std::fs::write(&partial, bytes)?;
            std::fs::rename(&partial, &path)
        });
    if let Err(error) = written {
        tracing::warn!(
            "cannot store the change journal cursors in {}: {error}",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_are_grouped_by_drive_letter() {
        let roots = [
            WatchRoot::recursive(r"c:\Windows\System32\drivers\etc"),
            WatchRoot::recursive(r"\\?\C:\ProgramData\x"),
            WatchRoot::recursive(r"D:\data"),
            WatchRoot::recursive(r"\\server\share\x"),
        ];
        let volumes = roots_by_volume(&roots);
        assert_eq!(volumes.keys().copied().collect::<Vec<_>>(), vec!['C', 'D']);
        assert_eq!(volumes[&'C'].len(), 2);
    }

    /// Under Wine the volume has no journal: said once, no gap, no cursor file.
    #[test]
    fn a_volume_without_a_journal_gives_no_gap_and_stores_nothing() {
        let state = tempfile::tempdir().unwrap();
        let roots = [WatchRoot::recursive(std::env::temp_dir())];
        let outcome = at_start(state.path(), &roots);
        assert!(outcome.gaps.is_empty(), "{outcome:?}");
        let letter = drive_of(&std::env::temp_dir()).unwrap();
        assert!(outcome.without_journal.contains(&letter), "{outcome:?}");
        save(state.path(), &roots);
        assert!(!state.path().join(CURSORS_FILE).exists());
    }

    #[test]
    fn an_unreadable_cursor_file_is_no_cursor() {
        let state = tempfile::tempdir().unwrap();
        std::fs::write(state.path().join(CURSORS_FILE), b"{not json").unwrap();
        assert!(load(state.path()).is_empty());
        std::fs::write(
            state.path().join(CURSORS_FILE),
            br#"{"C":{"journal_id":7,"next_usn":4096}}"#,
        )
        .unwrap();
        assert_eq!(
            load(state.path()).get(&'C'),
            Some(&Cursor {
                journal_id: 7,
                next_usn: 4096
            })
        );
    }
}
