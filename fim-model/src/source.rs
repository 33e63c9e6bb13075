//! What every event source produces: platform-independent file events and gap notices.
//!
//! The eBPF source fills these today; the Windows companion will fill the same types, so the
//! engine (reconcile, journal, gRPC) never sees where an event came from. A gap notice names
//! [`MonitoredObject`]s, so a registry notification overflow or a dropped ETW buffer asks for
//! a rescan of its keys and services as a kernel ring overflow asks for its directories.
use std::path::PathBuf;

use serde::Serialize;

use crate::{
    path_text::{serialize_opt_path, serialize_path},
    MonitoredObject, Timestamp,
};

/// The operation, as printed (`"write-closed"`, `"rename"`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    WriteClosed,
    WriteInProgress,
    Create,
    Rename,
    Unlink,
    Chmod,
    Chown,
    Truncate,
    Setattr,
    Xattr,
    Link,
    Symlink,
    Mkdir,
    Rmdir,
}

/// One change seen by a real-time source, with who made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileEvent {
    pub op: Operation,
    /// The affected path (serialised with non-UTF-8 bytes as `\xNN`, see [`crate::path_text`]).
    #[serde(serialize_with = "serialize_path")]
    pub path: PathBuf,
    /// For renames and links: the source path. For symlinks: the link's target text.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_opt_path"
    )]
    pub old_path: Option<PathBuf>,
    /// Process id (thread group id) as the host sees it.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub ppid: u32,
    pub comm: String,
    /// The executable (/proc/PID/exe when the event was read); None once the process is gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    pub uid: u32,
    pub gid: u32,
    /// None when the process has no login uid (daemons, early boot): not the same as root.
    pub loginuid: Option<u32>,
    pub cgroup: u64,
    /// The cgroup path (/proc/PID/cgroup) when the event was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup_path: Option<String>,
    /// st_dev as user space sees it (makedev(major, minor)); 0 when unknown.
    pub dev: u64,
    pub ino: u64,
    /// chmod: the new mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// chown: the new owner (u32::MAX = unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<(u32, u32)>,
    /// truncate: the new length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<u64>,
    /// Wall-clock time of the kernel event.
    pub time: Timestamp,
    /// The path was longer than the kernel walk could follow and was completed in user space
    /// (or could not be completed: then it starts with `…/`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// The syscall's result was lost (ring buffer overflow): the operation may have failed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub result_unknown: bool,
}

/// Events were lost: the named roots must be rescanned.
impl FileEvent {
    /// An event that names no process (a source without who-data, such as
    /// ReadDirectoryChangesW, or a test): pid 0, no identity, no inode; fill in what is known
    /// with struct update syntax.
    pub fn anonymous(op: Operation, path: PathBuf, time: Timestamp) -> Self {
        FileEvent {
            op,
            path,
            old_path: None,
            pid: 0,
            tid: 0,
            ppid: 0,
            comm: String::new(),
            exe: None,
            uid: 0,
            gid: 0,
            loginuid: None,
            cgroup: 0,
            cgroup_path: None,
            dev: 0,
            ino: 0,
            mode: None,
            owner: None,
            length: None,
            time,
            truncated: false,
            result_unknown: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GapNotice {
    /// Always "gap", so a JSON-lines reader can tell notices from events.
    pub op: &'static str,
    /// What must be rescanned: the roots (or keys, services) whose events were lost.
    /// Serialised as their display text (a file as its escaped path).
    pub roots: Vec<MonitoredObject>,
    pub dropped: u64,
    pub time: Timestamp,
}

impl GapNotice {
    /// Events for these file roots were lost.
    pub fn for_files(roots: Vec<PathBuf>, dropped: u64, time: Timestamp) -> Self {
        GapNotice {
            op: "gap",
            roots: roots.into_iter().map(MonitoredObject::File).collect(),
            dropped,
            time,
        }
    }

    /// The file roots among [`roots`](Self::roots).
    pub fn file_roots(&self) -> impl Iterator<Item = &std::path::Path> {
        self.roots.iter().filter_map(MonitoredObject::as_file)
    }
}

/// Something happened to an object that is not a file (a registry notification fired for a
/// key): the engine looks at the object again. Such sources rarely know more than that, so
/// there is no actor here; where one is known (ETW), it arrives with the event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObjectEvent {
    pub object: MonitoredObject,
    /// What the source saw, as a record's operation (`registry-notification`).
    pub operation: String,
    pub time: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum SourceItem {
    Change(FileEvent),
    Object(ObjectEvent),
    Gap(GapNotice),
}
