//! What the monitor knows about one path at one moment: the baseline's unit.
//!
//! The scanner produces a [`FileState`] per path, the store keeps the last one as the baseline,
//! and reconcile compares two of them field by field ([`crate::change::fields_changed`]).
//! Windows files will fill the same struct (mode/uid/gid stay 0, `attributes` and `acl` carry
//! the Windows values), so everything downstream stays platform-independent.
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Unknown,
}

impl FileType {
    pub fn as_str(self) -> &'static str {
        match self {
            FileType::Regular => "regular",
            FileType::Directory => "directory",
            FileType::Symlink => "symlink",
            FileType::Fifo => "fifo",
            FileType::Socket => "socket",
            FileType::CharDevice => "char-device",
            FileType::BlockDevice => "block-device",
            FileType::Unknown => "unknown",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "regular" => FileType::Regular,
            "directory" => FileType::Directory,
            "symlink" => FileType::Symlink,
            "fifo" => FileType::Fifo,
            "socket" => FileType::Socket,
            "char-device" => FileType::CharDevice,
            "block-device" => FileType::BlockDevice,
            "unknown" => FileType::Unknown,
            _ => return None,
        })
    }
}

/// A BLAKE3 digest.
pub type Digest = [u8; 32];

/// One path's observed state. Paths are kept by the caller (store key, scan item).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    pub file_type: FileType,
    pub size: u64,
    /// Permission bits only (`st_mode & 0o7777`); the type is in `file_type`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub dev: u64,
    pub nlink: u64,
    /// The link's own target text (symlinks are never followed).
    pub symlink_target: Option<Vec<u8>>,
    /// BLAKE3 of the content (regular files that could be read).
    pub hash: Option<Digest>,
    /// POSIX ACLs in their short text form (`user::rw-,user:1000:r--,...`); None without ACLs.
    pub acl: Option<String>,
    /// security.selinux, raw.
    pub selinux: Option<Vec<u8>>,
    /// security.capability, raw (the vfs_cap_data bytes, as setcap writes them).
    pub capability: Option<Vec<u8>>,
    /// Windows file attributes; 0 on Linux.
    pub attributes: u32,
    /// The content itself, for file-content entities (up to the configured limit).
    pub content: Option<Vec<u8>>,
    /// The content was longer than the limit; `content` holds the first part.
    pub content_truncated: bool,
    /// Why the content could not be read (the metadata fields are still valid).
    pub error: Option<String>,
    /// The file kept changing while it was being hashed; `hash` is from the last attempt.
    pub unstable: bool,
}

impl FileState {
    /// A state of this type with every other field zero or empty: the base that observations
    /// and fixtures fill in.
    pub fn empty(file_type: FileType) -> Self {
        FileState {
            file_type,
            size: 0,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            ino: 0,
            dev: 0,
            nlink: 0,
            symlink_target: None,
            hash: None,
            acl: None,
            selinux: None,
            capability: None,
            attributes: 0,
            content: None,
            content_truncated: false,
            error: None,
            unstable: false,
        }
    }

    /// Metadata that, when unchanged, lets a rescan skip rehashing (the sweep's shortcut).
    /// ctime is included so that a content change with a restored mtime (`touch -d`) is still
    /// rehashed: setting mtime updates ctime, and ctime cannot be set from user space.
    pub fn same_quick_metadata(&self, other: &FileState) -> bool {
        self.file_type == other.file_type
            && self.size == other.size
            && self.mtime_ns == other.mtime_ns
            && self.ctime_ns == other.ctime_ns
            && self.ino == other.ino
            && self.dev == other.dev
    }
}

/// The metadata the sweep compares with the baseline to decide whether to rehash.
///
/// ctime is included so a content change with a restored mtime is still seen (see
/// [`FileState::same_quick_metadata`]); mode, owner, xattr and link-count changes all update
/// ctime too, so an equal `QuickMeta` means the whole [`FileState`] is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuickMeta {
    pub file_type: FileType,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub ino: u64,
    pub dev: u64,
}

impl From<&FileState> for QuickMeta {
    fn from(state: &FileState) -> Self {
        QuickMeta {
            file_type: state.file_type,
            size: state.size,
            mtime_ns: state.mtime_ns,
            ctime_ns: state.ctime_ns,
            ino: state.ino,
            dev: state.dev,
        }
    }
}
