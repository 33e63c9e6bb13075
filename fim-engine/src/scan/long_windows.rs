//! Long paths on Windows: std already turns a path longer than MAX_PATH into its `\\?\` form,
//! so a path is its own syscall spelling.
use std::{
    fs::{self, Metadata},
    io,
    path::Path,
};

/// A path as the file APIs take it (see the module doc).
pub(crate) struct SysPath<'a>(&'a Path);

impl<'a> SysPath<'a> {
    pub(crate) fn new(path: &'a Path) -> io::Result<SysPath<'a>> {
        Ok(SysPath(path))
    }

    pub(crate) fn get(&self) -> &Path {
        self.0
    }
}

/// The object at `path` itself, not what a link points to.
pub fn symlink_metadata(path: &Path) -> io::Result<Metadata> {
    fs::symlink_metadata(path)
}
