//! One directory's `ReadDirectoryChangesW`, overlapped, waited for with a timeout from the
//! thread that owns it (so a stop flag is seen within the timeout), and the decoding of the
//! `FILE_NOTIFY_INFORMATION` records it returns.
//!
//! Overlapped rather than blocking: a blocking call can only be ended from another thread by
//! `CancelSynchronousIo`, while an overlapped one is waited for on its event with a timeout
//! and cancelled by the owner itself (`CancelIoEx`) before its buffer is freed.
use std::{
    ffi::OsString,
    fs::{File, OpenOptions},
    io,
    os::windows::{
        ffi::OsStringExt,
        fs::OpenOptionsExt,
        io::{AsRawHandle, FromRawHandle, OwnedHandle},
    },
    path::{Path, PathBuf},
    time::Duration,
};

use windows_sys::Win32::{
    Foundation::{ERROR_NOTIFY_ENUM_DIR, WAIT_OBJECT_0, WAIT_TIMEOUT},
    Storage::FileSystem::{
        ReadDirectoryChangesW, FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OVERLAPPED,
        FILE_LIST_DIRECTORY, FILE_NOTIFY_CHANGE_ATTRIBUTES, FILE_NOTIFY_CHANGE_CREATION,
        FILE_NOTIFY_CHANGE_DIR_NAME, FILE_NOTIFY_CHANGE_FILE_NAME, FILE_NOTIFY_CHANGE_LAST_WRITE,
        FILE_NOTIFY_CHANGE_SECURITY, FILE_NOTIFY_CHANGE_SIZE, FILE_SHARE_DELETE, FILE_SHARE_READ,
        FILE_SHARE_WRITE,
    },
    System::{
        Threading::{CreateEventW, WaitForSingleObject},
        IO::{CancelIoEx, GetOverlappedResult, OVERLAPPED},
    },
};

/// Everything a monitored file can change: names, attributes, size, content, ACLs, creation.
const FILTER: u32 = FILE_NOTIFY_CHANGE_FILE_NAME
    | FILE_NOTIFY_CHANGE_DIR_NAME
    | FILE_NOTIFY_CHANGE_ATTRIBUTES
    | FILE_NOTIFY_CHANGE_SIZE
    | FILE_NOTIFY_CHANGE_LAST_WRITE
    | FILE_NOTIFY_CHANGE_SECURITY
    | FILE_NOTIFY_CHANGE_CREATION;

/// What a wait ended with.
#[derive(Debug)]
pub enum Completion {
    /// The notification records, as bytes.
    Records(Vec<u8>),
    /// More changed than the buffer holds (a zero-byte completion or ERROR_NOTIFY_ENUM_DIR):
    /// the directory must be read again.
    Overflow,
}

/// A directory handle with one overlapped read in flight at a time.
pub struct DirWatch {
    // Declared before `directory` so that Drop cancels before the handle closes (Drop runs
    // first anyway; the order keeps the handle alive for it).
    overlapped: Box<OVERLAPPED>,
    /// DWORD-aligned, as ReadDirectoryChangesW requires; boxed so its address is stable.
    buffer: Box<[u32]>,
    event: OwnedHandle,
    directory: File,
    subtree: bool,
    pending: bool,
}

impl DirWatch {
    /// Opens `dir` for change notifications (at any depth with `subtree`) and arms the first
    /// read; `buffer_bytes` is rounded up to whole DWORDs.
    pub fn open(dir: &Path, subtree: bool, buffer_bytes: usize) -> io::Result<DirWatch> {
        let directory = OpenOptions::new()
            .access_mode(FILE_LIST_DIRECTORY)
            // Never lock the monitored directory against its owners.
            .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
            // Backup semantics: a directory opens at all; overlapped: the read can be waited
            // for with a timeout.
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OVERLAPPED)
            .open(dir)?;
        // SAFETY: no security attributes or name (null pointers are allowed); a manual-reset
        // event, unsignalled, which ReadDirectoryChangesW resets when a read starts.
        let event = unsafe { CreateEventW(std::ptr::null(), 1, 0, std::ptr::null()) };
        if event.is_null() {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `event` is a new, valid handle that nothing else owns.
        let event = unsafe { OwnedHandle::from_raw_handle(event) };
        let mut watch = DirWatch {
            overlapped: Box::default(),
            buffer: vec![0u32; buffer_bytes.div_ceil(4).max(1)].into_boxed_slice(),
            event,
            directory,
            subtree,
            pending: false,
        };
        watch.arm()?;
        Ok(watch)
    }

    /// Starts the next read. Changes made between two reads are kept by the system for the
    /// handle (since the first read), so re-arming right after a completion loses nothing.
    pub fn arm(&mut self) -> io::Result<()> {
        if self.pending {
            return Ok(());
        }
        *self.overlapped = OVERLAPPED::default();
        self.overlapped.hEvent = self.event.as_raw_handle();
        // Never more than the buffer holds (it is far below 4 GiB anyway).
        let length = u32::try_from(self.buffer.len() * 4).unwrap_or(u32::MAX - 3);
        // SAFETY: the handle is a directory opened for FILE_LIST_DIRECTORY with
        // FILE_FLAG_OVERLAPPED; the buffer (`length` bytes, DWORD-aligned) and the OVERLAPPED
        // are heap allocations owned by `self` that stay put and alive until the read
        // completes or is cancelled and waited for (Drop); no completion routine.
        let started = unsafe {
            ReadDirectoryChangesW(
                self.directory.as_raw_handle(),
                self.buffer.as_mut_ptr().cast(),
                length,
                i32::from(self.subtree),
                FILTER,
                std::ptr::null_mut(),
                &mut *self.overlapped,
                None,
            )
        };
        if started == 0 {
            return Err(io::Error::last_os_error());
        }
        self.pending = true;
        Ok(())
    }

    /// Waits up to `timeout` for the read in flight; None when it has not completed. After a
    /// completion the next read must be armed with [`DirWatch::arm`].
    pub fn wait(&mut self, timeout: Duration) -> io::Result<Option<Completion>> {
        if !self.pending {
            return Ok(None);
        }
        let millis = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX - 1);
        // SAFETY: a valid event handle owned by `self`.
        let waited = unsafe { WaitForSingleObject(self.event.as_raw_handle(), millis) };
        if waited == WAIT_TIMEOUT {
            return Ok(None);
        }
        if waited != WAIT_OBJECT_0 {
            return Err(io::Error::last_os_error());
        }
        let mut bytes = 0u32;
        // SAFETY: the OVERLAPPED of the read in flight on this handle, which has completed
        // (its event is signalled), so this does not wait.
        let done = unsafe {
            GetOverlappedResult(
                self.directory.as_raw_handle(),
                &*self.overlapped,
                &mut bytes,
                0,
            )
        };
        self.pending = false;
        if done == 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == i32::try_from(ERROR_NOTIFY_ENUM_DIR).ok() {
                return Ok(Some(Completion::Overflow));
            }
            return Err(error);
        }
        if bytes == 0 {
            return Ok(Some(Completion::Overflow));
        }
        let used = usize::try_from(bytes).unwrap_or(usize::MAX);
        let records: Vec<u8> = self
            .buffer
            .iter()
            .flat_map(|word| word.to_le_bytes())
            .take(used)
            .collect();
        Ok(Some(Completion::Records(records)))
    }
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        if self.pending {
            let mut bytes = 0u32;
            // SAFETY: cancels this handle's read in flight, then waits until the system is
            // done with the buffer and OVERLAPPED, which are freed only after this returns.
            unsafe {
                CancelIoEx(self.directory.as_raw_handle(), &*self.overlapped);
                GetOverlappedResult(
                    self.directory.as_raw_handle(),
                    &*self.overlapped,
                    &mut bytes,
                    1,
                );
            }
        }
    }
}

/// One FILE_NOTIFY_INFORMATION record: the action and the name relative to the watched
/// directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub action: u32,
    pub name: PathBuf,
}

/// Decodes the records of one completion; a truncated or malformed tail is dropped (it cannot
/// come from the system, and the rest is still good).
pub fn decode(bytes: &[u8]) -> Vec<Notification> {
    let word = |at: usize| -> Option<u32> {
        let slice = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([slice[0], slice[1], slice[2], slice[3]]))
    };
    let mut records = Vec::new();
    let mut offset = 0usize;
    while let (Some(next), Some(action), Some(length)) =
        (word(offset), word(offset + 4), word(offset + 8))
    {
        let start = offset + 12;
        let Some(name) = usize::try_from(length)
            .ok()
            .and_then(|length| bytes.get(start..start.checked_add(length)?))
        else {
            break;
        };
        let wide: Vec<u16> = name
            .chunks_exact(2)
            .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
            .collect();
        records.push(Notification {
            action,
            // Names are UTF-16 and need not be valid: kept exactly.
            name: PathBuf::from(OsString::from_wide(&wide)),
        });
        if next == 0 {
            break;
        }
        offset = match usize::try_from(next)
            .ok()
            .and_then(|next| offset.checked_add(next))
        {
            Some(at) => at,
            None => break,
        };
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(next: u32, action: u32, name: &str) -> Vec<u8> {
        let wide: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let mut out = Vec::new();
        out.extend_from_slice(&next.to_le_bytes());
        out.extend_from_slice(&action.to_le_bytes());
        out.extend_from_slice(&u32::try_from(wide.len()).unwrap().to_le_bytes());
        out.extend_from_slice(&wide);
        while next != 0 && out.len() < next as usize {
            out.push(0);
        }
        out
    }

    #[test]
    fn records_decode_in_order_and_a_bad_tail_is_dropped() {
        let mut bytes = record(24, 4, "a.txt");
        bytes.extend(record(32, 5, r"dir\b.txt"));
        bytes.extend(record(0, 2, "c"));
        assert_eq!(
            decode(&bytes),
            vec![
                Notification {
                    action: 4,
                    name: "a.txt".into()
                },
                Notification {
                    action: 5,
                    name: r"dir\b.txt".into()
                },
                Notification {
                    action: 2,
                    name: "c".into()
                },
            ]
        );
        let mut broken = record(24, 1, "a.txt");
        broken.extend_from_slice(&[1, 0, 0]);
        assert_eq!(
            decode(&broken),
            vec![Notification {
                action: 1,
                name: "a.txt".into()
            }]
        );
        assert!(decode(&[]).is_empty());
    }
}
