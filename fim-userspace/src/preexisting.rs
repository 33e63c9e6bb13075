//! Writers that were open before fimd started: found in /proc at start-up.
//!
//! The kernel programs learn of a writer at its open; a descriptor opened, or a file mapped
//! shared, before the programs were attached is invisible to them. At start-up every
//! process's writable descriptors (`/proc/PID/fdinfo` flags) and shared mappings
//! (`/proc/PID/maps`, `s` in the permissions) are read, and those on monitored files are
//! tracked by user space like new ones: polled for changes, and given a last look when their
//! holder is gone. Their ids are small integers, which no kernel `struct file *` can be.
use std::{
    fs,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::{Path, PathBuf},
};

use fim_engine::change::Timestamp;

use crate::{
    record::{FileEvent, Operation},
    roots::RootPlan,
};

/// One writer found in /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preexisting {
    pub pid: u32,
    pub path: PathBuf,
    /// Through a shared mapping (else a writable descriptor).
    pub mapped: bool,
}

const O_ACCMODE: u32 = 0o3;

/// Every writable descriptor and shared mapping, in every process but `skip`, on a path
/// `plan` monitors. A process that vanishes while being read is skipped.
pub fn find(plan: &RootPlan, skip: u32) -> Vec<Preexisting> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == skip {
            continue;
        }
        let base = entry.path();
        for path in writable_fds(&base) {
            if plan.root_of(&path).is_some() {
                found.push(Preexisting {
                    pid,
                    path,
                    mapped: false,
                });
            }
        }
        for path in shared_mappings(&base) {
            if plan.root_of(&path).is_some() {
                found.push(Preexisting {
                    pid,
                    path,
                    mapped: true,
                });
            }
        }
    }
    found.sort_by(|a, b| (a.pid, &a.path, a.mapped).cmp(&(b.pid, &b.path, b.mapped)));
    found.dedup();
    found
}

fn writable_fds(process: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let Ok(fds) = fs::read_dir(process.join("fdinfo")) else {
        return paths;
    };
    for fd in fds.filter_map(Result::ok) {
        let Ok(info) = fs::read_to_string(fd.path()) else {
            continue;
        };
        let flags = info
            .lines()
            .find_map(|line| line.strip_prefix("flags:"))
            .and_then(|value| u32::from_str_radix(value.trim(), 8).ok());
        if flags.is_none_or(|flags| flags & O_ACCMODE == 0) {
            continue;
        }
        if let Ok(target) = fs::read_link(process.join("fd").join(fd.file_name())) {
            if target.is_absolute() && is_regular(&target) {
                paths.push(target);
            }
        }
    }
    paths
}

fn shared_mappings(process: &Path) -> Vec<PathBuf> {
    let Ok(maps) = fs::read(process.join("maps")) else {
        return Vec::new();
    };
    maps.split(|byte| *byte == b'\n')
        .filter_map(|line| {
            // address perms offset dev inode path; the path may contain spaces.
            let mut fields = line.splitn(6, |byte| *byte == b' ');
            let perms = fields.nth(1)?;
            if perms.get(3) != Some(&b's') {
                return None;
            }
            let path = fields.nth(3)?.trim_ascii_start();
            (path.first() == Some(&b'/')).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(path)))
        })
        .filter(|path| is_regular(path))
        .collect()
}

fn is_regular(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_file())
}

/// The event a pre-existing writer is tracked with: its process as /proc describes it now.
pub fn template(found: &Preexisting, time: Timestamp) -> FileEvent {
    let base = PathBuf::from(format!("/proc/{}", found.pid));
    let status = fs::read_to_string(base.join("status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let loginuid = fs::read_to_string(base.join("loginuid"))
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .filter(|uid| *uid != u32::MAX);
    let (dev, ino) = fs::metadata(&found.path)
        .map(|metadata| (metadata.dev(), metadata.ino()))
        .unwrap_or((0, 0));
    FileEvent {
        op: Operation::WriteInProgress,
        path: found.path.clone(),
        old_path: None,
        pid: found.pid,
        tid: found.pid,
        ppid: field("PPid:"),
        comm: fs::read_to_string(base.join("comm"))
            .map(|text| text.trim_end().to_string())
            .unwrap_or_default(),
        exe: fs::read_link(base.join("exe"))
            .ok()
            .map(|exe| fim_engine::path_text::display_path(&exe)),
        uid: field("Uid:"),
        gid: field("Gid:"),
        loginuid,
        cgroup: 0,
        cgroup_path: None,
        dev,
        ino,
        mode: None,
        owner: None,
        length: None,
        time,
        truncated: false,
        result_unknown: false,
    }
}
