//! The change journal's device I/O on Windows: `FSCTL_QUERY_USN_JOURNAL` for where the
//! journal stands, `FSCTL_READ_USN_JOURNAL` for the records since a cursor. What they mean is
//! [`crate::usn`]'s. Opening a volume needs administrator rights, as fimsvc has.
use std::{fs::File, io, os::windows::fs::OpenOptionsExt, os::windows::io::AsRawHandle};

use windows_sys::Win32::{
    Foundation::{
        ERROR_INVALID_FUNCTION, ERROR_JOURNAL_DELETE_IN_PROGRESS, ERROR_JOURNAL_ENTRY_DELETED,
        ERROR_JOURNAL_NOT_ACTIVE, ERROR_NOT_SUPPORTED, HANDLE,
    },
    Storage::FileSystem::{FILE_SHARE_READ, FILE_SHARE_WRITE},
    System::{
        Ioctl::{
            FSCTL_QUERY_USN_JOURNAL, FSCTL_READ_USN_JOURNAL, READ_USN_JOURNAL_DATA_V0,
            USN_JOURNAL_DATA_V0,
        },
        IO::DeviceIoControl,
    },
};

use crate::usn::{parse_records, JournalGap, JournalState, UsnRecord};

/// How many bytes one read asks for (the journal returns whole records up to this).
const READ_BYTES: usize = 64 * 1024;
/// The most records read at one start: beyond it the rest is a gap, not unbounded memory.
pub const MAX_RECORDS: usize = 1_000_000;

/// An open volume, `\\.\C:` for `C`.
pub struct Volume(File);

impl Volume {
    pub fn open(letter: char) -> io::Result<Self> {
        std::fs::OpenOptions::new()
            .read(true)
            .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
            .open(format!(r"\\.\{letter}:"))
            .map(Volume)
    }

    fn control<T>(&self, code: u32, input: Option<&T>, output: &mut [u8]) -> io::Result<usize> {
        let mut returned = 0u32;
        let (input, input_len) = match input {
            Some(input) => (
                input as *const T as *const _,
                std::mem::size_of::<T>() as u32,
            ),
            None => (std::ptr::null(), 0),
        };
        // SAFETY: the handle is open; the input and output pointers and lengths describe live
        // buffers for the duration of this synchronous call.
        let ok = unsafe {
            DeviceIoControl(
                self.0.as_raw_handle() as HANDLE,
                code,
                input,
                input_len,
                output.as_mut_ptr().cast(),
                output.len() as u32,
                &mut returned,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(returned as usize)
    }

    /// Where the journal stands; `Ok(None)` when the volume has none (not NTFS, journal off,
    /// or, under Wine, not implemented).
    pub fn query(&self) -> io::Result<Option<JournalState>> {
        let mut out = [0u8; std::mem::size_of::<USN_JOURNAL_DATA_V0>()];
        match self.control::<()>(FSCTL_QUERY_USN_JOURNAL, None, &mut out) {
            Ok(_) => {}
            Err(error) if no_journal(&error) => return Ok(None),
            Err(error) => return Err(error),
        }
        // SAFETY: the call filled a USN_JOURNAL_DATA_V0 (plain integers) into `out`.
        let data: USN_JOURNAL_DATA_V0 = unsafe { std::ptr::read_unaligned(out.as_ptr().cast()) };
        Ok(Some(JournalState {
            journal_id: data.UsnJournalID,
            first_usn: data.FirstUsn,
            next_usn: data.NextUsn,
            lowest_valid_usn: data.LowestValidUsn,
        }))
    }

    /// The records of journal `journal_id` from `from` to `until` (the journal's end when the
    /// read began), at most [`MAX_RECORDS`]; a journal that changed under the read, or more
    /// records than that, is a gap.
    pub fn read(
        &self,
        journal_id: u64,
        from: i64,
        until: i64,
    ) -> Result<Vec<UsnRecord>, ReadError> {
        let mut records = Vec::new();
        let mut next = from;
        let mut buffer = vec![0u8; READ_BYTES];
        while next < until {
            let input = READ_USN_JOURNAL_DATA_V0 {
                StartUsn: next,
                ReasonMask: u32::MAX,
                ReturnOnlyOnClose: 0,
                Timeout: 0,
                BytesToWaitFor: 0,
                UsnJournalID: journal_id,
            };
            let length = match self.control(FSCTL_READ_USN_JOURNAL, Some(&input), &mut buffer) {
                Ok(length) => length,
                Err(error) if journal_gone(&error) => {
                    return Err(ReadError::Gap(JournalGap::Wrapped {
                        wanted: next,
                        lowest: until,
                    }))
                }
                Err(error) => return Err(ReadError::Io(error)),
            };
            let (after, mut batch) = parse_records(&buffer[..length])
                .map_err(|error| ReadError::Gap(JournalGap::Corrupt(error)))?;
            if batch.is_empty() || after <= next {
                break;
            }
            records.append(&mut batch);
            if records.len() > MAX_RECORDS {
                return Err(ReadError::TooMany(records.len()));
            }
            next = after;
        }
        Ok(records)
    }
}

/// Why the records could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Gap(JournalGap),
    #[error("more than {max} change journal records since the last stop ({0} read)", max = MAX_RECORDS)]
    TooMany(usize),
    #[error("reading the change journal failed: {0}")]
    Io(io::Error),
}

fn code_of(error: &io::Error) -> Option<u32> {
    error
        .raw_os_error()
        .and_then(|code| u32::try_from(code).ok())
}

fn no_journal(error: &io::Error) -> bool {
    code_of(error).is_some_and(|code| {
        matches!(
            code,
            ERROR_JOURNAL_NOT_ACTIVE | ERROR_NOT_SUPPORTED | ERROR_INVALID_FUNCTION
        )
    })
}

fn journal_gone(error: &io::Error) -> bool {
    code_of(error).is_some_and(|code| {
        matches!(
            code,
            ERROR_JOURNAL_ENTRY_DELETED
                | ERROR_JOURNAL_DELETE_IN_PROGRESS
                | ERROR_JOURNAL_NOT_ACTIVE
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under Wine the volume opens but has no journal: fimsvc must take that as "no journal"
    /// (the start-up scan alone), not as an error.
    #[test]
    fn a_volume_without_a_journal_is_none_not_an_error() {
        let volume = Volume::open('C').expect("open the C: volume");
        match volume.query() {
            Ok(None) => {}
            Ok(Some(state)) => {
                // A real NTFS volume: the journal's end is past its start.
                assert!(state.next_usn >= state.first_usn, "{state:?}");
                let records = volume
                    .read(state.journal_id, state.next_usn, state.next_usn)
                    .expect("an empty read");
                assert!(records.is_empty());
            }
            Err(error) => panic!("query failed: {error}"),
        }
    }

    #[test]
    fn the_journal_errors_are_classified() {
        let error = |code: u32| io::Error::from_raw_os_error(code as i32);
        assert!(no_journal(&error(ERROR_JOURNAL_NOT_ACTIVE)));
        assert!(no_journal(&error(ERROR_NOT_SUPPORTED)));
        assert!(!no_journal(&error(5)));
        assert!(journal_gone(&error(ERROR_JOURNAL_ENTRY_DELETED)));
        assert!(!journal_gone(&error(ERROR_NOT_SUPPORTED)));
    }
}
