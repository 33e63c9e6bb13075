//! [`super::KnownMap`] keys on Windows: a path's bytes are std's encoding of its UTF-16 name
//! (WTF-8), which only std may turn back into a path. So every key is made by std in this
//! process: a path's own `as_encoded_bytes`, or, for bytes read from the store, those of the
//! path they decode to.
use std::{ffi::OsStr, path::Path};

use crate::path_text::{path_bytes, path_from_bytes};

pub(super) fn key_of_stored(bytes: &[u8]) -> Box<[u8]> {
    path_bytes(&path_from_bytes(bytes)).into()
}

pub(super) fn path_of_key(key: &[u8]) -> &Path {
    // SAFETY: every key is `as_encoded_bytes()` of an OsStr made by this very program
    // (`KnownMap::insert` keys by `path_bytes`, `key_of_stored` re-encodes), which is what
    // `from_encoded_bytes_unchecked` requires.
    Path::new(unsafe { OsStr::from_encoded_bytes_unchecked(key) })
}
