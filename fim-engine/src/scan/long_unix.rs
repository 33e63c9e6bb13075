//! Paths longer than PATH_MAX (4096 bytes, the NUL included).
//!
//! The kernel refuses such a path in any path-taking syscall (ENAMETOOLONG), but nothing stops
//! anyone from making a directory chain that deep (`mkdirat` relative to the last one, or `mv`
//! of a deep tree), and a file hidden at the bottom must still be baselined and watched. So a
//! long path is reached relative to directory descriptors: the deepest ancestor whose path is
//! short enough is opened by path, and every component below it with `openat(O_PATH |
//! O_DIRECTORY | O_NOFOLLOW)`, so no symlink planted in the chain is followed. The caller then
//! works on `/proc/self/fd/N/NAME`, N being the parent's descriptor: a short path the kernel
//! resolves by jumping to that very directory, with NAME (the last component) looked up as in
//! any other path, which lets every `l*` call, `O_NOFOLLOW` open, `readlink` and `opendir` the
//! scanner already makes work unchanged, with the same never-follow rules. The cost is
//! one `openat` per component beyond the short prefix, paid only by long paths; it needs
//! procfs, which every Linux system the daemon runs on has.
use std::{
    borrow::Cow,
    ffi::{CString, OsStr},
    fs::{self, Metadata},
    io,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Component, Path, PathBuf},
};

/// The longest path a syscall takes (PATH_MAX counts the terminating NUL).
const PATH_LIMIT: usize = libc::PATH_MAX as usize - 1;

/// A path as syscalls can take it: the path itself when short enough, else a
/// `/proc/self/fd/N/NAME` alias that holds the parent directory open.
pub(crate) struct SysPath<'a> {
    path: Cow<'a, Path>,
    /// The parent directory the alias goes through; closed with it.
    _parent: Option<OwnedFd>,
}

impl<'a> SysPath<'a> {
    /// Errors are those of opening the chain (ENOENT, ENOTDIR: an ancestor is gone or is not
    /// a directory; ELOOP: an ancestor is a symlink now).
    pub(crate) fn new(path: &'a Path) -> io::Result<SysPath<'a>> {
        if path.as_os_str().len() <= PATH_LIMIT {
            return Ok(SysPath {
                path: Cow::Borrowed(path),
                _parent: None,
            });
        }
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        };
        let parent = open_directory_chain(parent)?;
        let alias = PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd())).join(name);
        Ok(SysPath {
            path: Cow::Owned(alias),
            _parent: Some(parent),
        })
    }

    pub(crate) fn get(&self) -> &Path {
        &self.path
    }
}

/// `lstat` that also reaches paths longer than PATH_MAX.
pub fn symlink_metadata(path: &Path) -> io::Result<Metadata> {
    fs::symlink_metadata(SysPath::new(path)?.get())
}

/// Opens `directory` (any length) as an `O_PATH` descriptor: its deepest short ancestor by
/// path, the rest one component at a time without following symlinks.
fn open_directory_chain(directory: &Path) -> io::Result<OwnedFd> {
    let mut prefix = PathBuf::new();
    let mut rest: Vec<&OsStr> = Vec::new();
    for component in directory.components() {
        let part = component.as_os_str();
        // +1 for the separator; leave room for it below the limit.
        let fits = prefix.as_os_str().len() + part.len() < PATH_LIMIT;
        match component {
            Component::Normal(_) | Component::ParentDir | Component::CurDir
                if !rest.is_empty() || !fits =>
            {
                rest.push(part)
            }
            _ => prefix.push(part),
        }
    }
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    let mut fd = open_at(None, prefix.as_os_str(), flags)?;
    for part in rest {
        fd = open_at(Some(&fd), part, flags | libc::O_NOFOLLOW)?;
    }
    Ok(fd)
}

fn open_at(directory: Option<&OwnedFd>, name: &OsStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let name =
        CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let base = directory.map_or(libc::AT_FDCWD, AsRawFd::as_raw_fd);
    // SAFETY: a NUL-terminated name and a descriptor we own (or AT_FDCWD).
    let fd = unsafe { libc::openat(base, name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of `levels` directories named `name` below `base`, made with mkdirat so its
    /// length is not limited; returns the deepest directory's path.
    fn deep_chain(base: &Path, name: &str, levels: usize) -> PathBuf {
        let mut fd = open_at(None, base.as_os_str(), libc::O_PATH | libc::O_DIRECTORY).unwrap();
        let cname = CString::new(name).unwrap();
        let mut path = base.to_path_buf();
        for _ in 0..levels {
            // SAFETY: our descriptor and a NUL-terminated name.
            let made = unsafe { libc::mkdirat(fd.as_raw_fd(), cname.as_ptr(), 0o755) };
            assert_eq!(made, 0, "{}", io::Error::last_os_error());
            fd = open_at(
                Some(&fd),
                OsStr::new(name),
                libc::O_PATH | libc::O_DIRECTORY,
            )
            .unwrap();
            path.push(name);
        }
        path
    }

    #[test]
    fn reaches_below_path_max() {
        let temp = tempfile::tempdir().unwrap();
        let deep = deep_chain(temp.path(), &"d".repeat(200), 25);
        assert!(deep.as_os_str().len() > 5000);
        assert!(fs::symlink_metadata(&deep).is_err());
        let meta = symlink_metadata(&deep).unwrap();
        assert!(meta.is_dir());
        let file = deep.join("file");
        fs::write(SysPath::new(&file).unwrap().get(), b"x").unwrap();
        assert_eq!(symlink_metadata(&file).unwrap().len(), 1);
        let gone = deep.join("nothing");
        let error = symlink_metadata(&gone).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ENOENT));
    }
}
