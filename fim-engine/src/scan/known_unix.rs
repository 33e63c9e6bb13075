//! [`super::KnownMap`] keys on Unix: a path's bytes are the path.
use std::{ffi::OsStr, os::unix::ffi::OsStrExt, path::Path};

/// The key for a path as the store keeps it (its raw bytes).
pub(super) fn key_of_stored(bytes: &[u8]) -> Box<[u8]> {
    bytes.into()
}

pub(super) fn path_of_key(key: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(key))
}
