//! Reading the policy file's bytes safely: a FIFO, device or socket at the policy path is
//! refused before anything blocks on it, and bytes that are not UTF-8 are reported with the
//! place where they start.
use std::{
    fs::{File, Metadata},
    io::Read,
    path::Path,
};

use super::{Diagnostic, Location, PolicyError, Severity};

/// What a non-regular file is, for the refusal message.
fn kind_of(metadata: &Metadata) -> Option<&'static str> {
    let kind = metadata.file_type();
    if kind.is_file() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else {
        Some(crate::platform::special_kind(&kind).unwrap_or("not a regular file"))
    }
}

fn refuse_irregular(path: &Path, metadata: &Metadata) -> Result<(), PolicyError> {
    match kind_of(metadata) {
        None => Ok(()),
        Some(kind) => Err(PolicyError::NotRegular {
            path: path.to_path_buf(),
            kind,
        }),
    }
}

/// Opens the policy (following symlinks) and returns it with its metadata, refusing anything
/// but a regular file.
pub(crate) fn open(path: &Path) -> Result<(File, Metadata), PolicyError> {
    let read_error = |source| PolicyError::Read {
        path: path.to_path_buf(),
        source,
    };
    // A socket cannot be opened at all (ENXIO), so refuse it by its stat with a clear message.
    refuse_irregular(path, &std::fs::metadata(path).map_err(read_error)?)?;
    // O_NONBLOCK: if the path was swapped for a FIFO after the stat, opening it still returns
    // at once, and the fstat below refuses it.
    let file = crate::platform::open_nonblocking(path).map_err(read_error)?;
    let metadata = file.metadata().map_err(read_error)?;
    refuse_irregular(path, &metadata)?;
    Ok((file, metadata))
}

/// The text of an opened policy; invalid UTF-8 is an error at its line and column.
pub(crate) fn text(path: &Path, mut file: File) -> Result<String, PolicyError> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    String::from_utf8(bytes).map_err(|error| {
        let offset = error.utf8_error().valid_up_to();
        let valid = String::from_utf8_lossy(&error.as_bytes()[..offset]).into_owned();
        PolicyError::Invalid(vec![Diagnostic {
            severity: Severity::Error,
            location: Some(Location::at(path.to_path_buf(), &valid, offset)),
            message: format!("the policy is not UTF-8 text (invalid byte at offset {offset})"),
        }])
    })
}
