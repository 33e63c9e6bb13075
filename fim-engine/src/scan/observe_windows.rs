//! [`FileObserver`] on Windows, minimal but real: one handle, opened without following a
//! symlink or junction (`FILE_FLAG_OPEN_REPARSE_POINT`) and sharing read, write and delete so
//! the monitored file is never locked against its owners, describes the object
//! (`GetFileInformationByHandle`: volume serial and file index as dev/ino, link count,
//! attributes; `FileBasicInfo`: last write and change time) and, for a regular file, is the
//! one its content is hashed from, so a swap of the path in between cannot mix two files.
//!
//! Owner, group and DACL are read from the same handle as SDDL into `acl` (`uid`, `gid` and
//! `mode` stay 0; [`crate::change`] compares and shows the SDDL's parts). Not yet: alternate
//! data streams, and sparse-aware reads (holes are read as zeros, which hashes the same).
use std::{
    fs::{self, File, Metadata},
    io,
    os::windows::fs::FileExt,
    path::Path,
};

use windows_sys::Win32::{
    Foundation::{ERROR_DIRECTORY, ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND},
    Storage::FileSystem::{FILE_GENERIC_READ, FILE_READ_ATTRIBUTES, READ_CONTROL},
};

use super::{
    hash::{read_dense, with_buffer, MAX_RETRIES},
    observe::{absent_or, reusable, reuse, FileObserver, Observation, ObserveOptions, Observer},
    QuickMeta, ScanError,
};
use crate::{
    path_text::path_bytes,
    platform_windows::{filetime_to_unix_ns, open_no_follow, FileInfo},
    security_windows,
    state::{FileState, FileType},
};

impl Observer for FileObserver {
    type Name = Path;
    type Glance = Metadata;

    fn glance(&self, path: &Path) -> io::Result<Metadata> {
        fs::symlink_metadata(path)
    }

    /// std's metadata has no file identity on Windows, so the quick metadata comes from a
    /// handle of the path's own (one open per path a sweep looks at).
    fn quick(&self, path: &Path, _meta: &Metadata) -> io::Result<QuickMeta> {
        let file = open_no_follow(path, FILE_READ_ATTRIBUTES)?;
        Ok(QuickMeta::from(&describe(&file)?))
    }

    fn observe(
        &self,
        path: &Path,
        _glance: Option<Metadata>,
        options: &ObserveOptions<'_>,
    ) -> Result<Option<Observation>, ScanError> {
        observe_path(path, options)
    }
}

impl FileObserver {
    /// The volume the object is on (its serial number), for "do not cross mounts".
    pub(super) fn device(&self, path: &Path, _meta: &Metadata) -> io::Result<u64> {
        let file = open_no_follow(path, FILE_READ_ATTRIBUTES)?;
        Ok(FileInfo::of(&file)?.volume_serial)
    }
}

/// "Does not exist": the file or a directory on its path is missing, or a parent is a file.
pub(crate) fn is_absent(error: &io::Error) -> bool {
    error
        .raw_os_error()
        .and_then(|code| u32::try_from(code).ok())
        .is_some_and(|code| {
            matches!(
                code,
                ERROR_FILE_NOT_FOUND | ERROR_PATH_NOT_FOUND | ERROR_DIRECTORY
            )
        })
}

fn observe_path(
    path: &Path,
    options: &ObserveOptions<'_>,
) -> Result<Option<Observation>, ScanError> {
    // Read access where it is granted; else attributes alone, and the state says why not.
    let (file, unreadable) = match open_no_follow(path, FILE_GENERIC_READ) {
        Ok(file) => (file, None),
        Err(error) if is_absent(&error) => return Ok(None),
        Err(error) => match open_no_follow(path, FILE_READ_ATTRIBUTES) {
            Ok(file) => (file, Some(error)),
            Err(again) => return absent_or(again, path),
        },
    };
    let stat_error = |source| ScanError::Stat {
        path: path.to_path_buf(),
        source,
    };
    let mut state = describe(&file).map_err(stat_error)?;
    state.acl = security(&file, path);
    if let Some(previous) = options.previous {
        if reusable(previous, &state, options.keep_content) {
            reuse(&mut state, previous, options.keep_content);
            return Ok(Some(Observation::read(state, 0)));
        }
    }
    match state.file_type {
        FileType::Regular => {
            if let Some(error) = unreadable {
                state.error = Some(error.to_string());
            } else if options.hash_below.is_some_and(|limit| state.size >= limit) {
                return Ok(Some(Observation::large(state)));
            } else {
                return hash_file(&file, state, options).map(Some);
            }
        }
        FileType::Symlink => match fs::read_link(path) {
            Ok(target) => state.symlink_target = Some(path_bytes(&target).to_vec()),
            Err(error) => state.error = Some(error.to_string()),
        },
        _ => {}
    }
    Ok(Some(Observation::read(state, 0)))
}

/// Hashes the opened file; read again (up to [`MAX_RETRIES`] times) while its size or times
/// change under the read, then reported unstable.
fn hash_file(
    file: &File,
    mut state: FileState,
    options: &ObserveOptions<'_>,
) -> Result<Observation, ScanError> {
    let mut bytes_read = 0;
    let mut attempt = 0;
    loop {
        let expected = state.size;
        let read = with_buffer(expected, |buffer| {
            read_dense(file, expected, options, buffer, |file, buffer, offset| {
                file.seek_read(buffer, offset)
            })
        });
        let read = match read {
            Ok(Some(read)) => read,
            Ok(None) => return Err(ScanError::Cancelled),
            Err(error) => {
                state.error = Some(error.to_string());
                return Ok(Observation::read(state, bytes_read));
            }
        };
        bytes_read += read.bytes;
        let mut after = match describe(file) {
            Ok(after) => FileState {
                acl: state.acl.clone(),
                ..after
            },
            Err(error) => {
                state.error = Some(error.to_string());
                return Ok(Observation::read(state, bytes_read));
            }
        };
        let stable = after.size == state.size
            && after.mtime_ns == state.mtime_ns
            && after.ctime_ns == state.ctime_ns;
        if stable || attempt >= MAX_RETRIES {
            after.hash = Some(read.hash);
            after.content = read.content;
            after.content_truncated = read.content_truncated;
            after.unstable = !stable;
            return Ok(Observation::read(after, bytes_read));
        }
        state = after;
        attempt += 1;
    }
}

/// The object's owner, group and DACL as SDDL: from `file` when it was opened with read
/// access (which includes READ_CONTROL), else from a handle opened for READ_CONTROL alone.
/// None, logged, where even that is denied: the record then shows no ACL rather than failing.
fn security(file: &File, path: &Path) -> Option<String> {
    let read = security_windows::handle_sddl(file).or_else(|_| {
        open_no_follow(path, READ_CONTROL).and_then(|file| security_windows::handle_sddl(&file))
    });
    match read {
        Ok(sddl) => Some(sddl),
        Err(error) => {
            tracing::debug!(path = %path.display(), %error, "no security descriptor");
            None
        }
    }
}

/// The metadata part of a state, from the open handle; content fields empty.
fn describe(file: &File) -> io::Result<FileState> {
    let kind = file.metadata()?.file_type();
    let info = FileInfo::of(file)?;
    let file_type = if kind.is_symlink() {
        FileType::Symlink
    } else if kind.is_dir() {
        FileType::Directory
    } else if kind.is_file() {
        FileType::Regular
    } else {
        FileType::Unknown
    };
    Ok(FileState {
        size: info.size,
        mtime_ns: filetime_to_unix_ns(info.write_time),
        ctime_ns: filetime_to_unix_ns(info.change_time),
        ino: info.file_index,
        dev: info.volume_serial,
        nlink: info.links,
        attributes: info.attributes,
        ..FileState::empty(file_type)
    })
}
