//! What counts as a change of a file, and the file columns of its record.
//!
//! The record itself, its column groups and the actor are the platform-neutral model
//! ([`fim_model`], re-exported here so the engine's users keep one import path); this module
//! holds what only the file observer knows: which [`FileState`] differences are changes, and
//! how a state becomes the record's file columns.
mod monitor;

use std::path::Path;

pub use fim_model::{
    actor::{UnixUser, UserIdentity, WindowsUser},
    change::{hex, CHANGE_TIME},
    Actor, ChangeCategory, ChangeRecord, ConfigChangeType, Contributor, Detection, FileColumns,
    RegistryColumns, ServiceColumns, Timestamp, MAX_CONTRIBUTORS,
};
pub use monitor::{monitor_record, MonitorColumns, MonitorEvent};

use crate::{
    path_text::display_path,
    state::{FileState, FileType},
    users,
};

/// What a record says changed between two states of one path: [`fields_changed`], or, when
/// that is empty and a non-directory's ctime moved, [`CHANGE_TIME`] alone. Empty: no record.
///
/// ctime cannot be set from user space, so a file written and put back (content, size and
/// mtime restored within the coalescing window, or `mv f f.tmp; mv f.tmp f`) differs in ctime
/// only, and that must still be seen. This holds for scans too, not only real time: a scan
/// that finds it is the case where the real-time path was blinded (lost events, an operation
/// the strategy does not hook such as `chattr`, the daemon stopped), and a record must not
/// depend on whether an event was seen. The cost is that tools which reset times after reading
/// (`tar --atime-preserve=replace`) are reported; they did write the file's metadata.
/// Directories are excluded: their ctime moves with every entry added or removed, and those
/// entries have records of their own.
pub fn verdict_fields(before: &FileState, after: &FileState) -> Vec<&'static str> {
    let fields = fields_changed(before, after);
    let directory =
        before.file_type == FileType::Directory || after.file_type == FileType::Directory;
    if fields.is_empty() && !directory && before.ctime_ns != after.ctime_ns {
        return vec![CHANGE_TIME];
    }
    fields
}

/// Compares two states of one path and names what differs, in Azure's field names.
/// Empty when nothing a user cares about changed (ctime alone is not among these fields: see
/// [`verdict_fields`] for when it makes a record anyway).
pub fn fields_changed(before: &FileState, after: &FileState) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let mut differs = |changed: bool, name: &'static str| {
        if changed {
            fields.push(name);
        }
    };
    // A directory's size, mtime and link count change whenever an entry is added or removed,
    // and those entries get records of their own: repeating them on the directory is noise.
    let directory =
        before.file_type == FileType::Directory && after.file_type == FileType::Directory;
    differs(before.file_type != after.file_type, "FileType");
    differs(!directory && before.size != after.size, "Size");
    differs(
        !directory && before.mtime_ns != after.mtime_ns,
        "DateModified",
    );
    let (old, new) = (Security::of(before), Security::of(after));
    differs(old.owner != new.owner, "Owner");
    differs(old.group != new.group, "Group");
    differs(before.mode != after.mode, "Mode");
    differs(old.acl != new.acl, "Acls");
    differs(before.attributes != after.attributes, "Attributes");
    differs(before.capability != after.capability, "Capabilities");
    differs(before.selinux != after.selinux, "SelinuxContext");
    differs(
        before.symlink_target != after.symlink_target,
        "SymlinkTarget",
    );
    differs(!directory && before.nlink != after.nlink, "Links");
    differs(before.ino != after.ino, "Inode");
    // An unreadable file has no hash; going from readable to unreadable is not a content
    // change, and the error field says why.
    let both_hashed = before.hash.is_some() && after.hash.is_some();
    differs(
        both_hashed && before.hash != after.hash,
        "FileContentChecksum",
    );
    differs(before.error != after.error, "Error");
    fields
}

/// Who owns a file and who may do what with it, as records compare and show them. A Windows
/// observer keeps the whole security descriptor as SDDL in [`FileState::acl`] (its uid and
/// gid are 0): owner, group and DACL are that text's parts. Elsewhere they are the uid, the
/// gid and the POSIX ACL text.
#[derive(Debug, PartialEq, Eq)]
enum Principal {
    Id(u32),
    Sid(String),
}

struct Security {
    owner: Principal,
    group: Principal,
    acl: Option<String>,
}

impl Security {
    fn of(state: &FileState) -> Self {
        match state.acl.as_deref().and_then(crate::sddl::split) {
            Some(parts) => {
                let sid = |part: Option<&str>| Principal::Sid(part.unwrap_or_default().to_string());
                Security {
                    owner: sid(parts.owner),
                    group: sid(parts.group),
                    acl: parts.dacl.map(|dacl| format!("D:{dacl}")),
                }
            }
            None => Security {
                owner: Principal::Id(state.uid),
                group: Principal::Id(state.gid),
                acl: state.acl.clone(),
            },
        }
    }

    fn owner_name(&self) -> String {
        match &self.owner {
            Principal::Id(uid) => users::user_name(*uid),
            Principal::Sid(sid) => users::sid_name(sid),
        }
    }

    fn group_name(&self) -> String {
        match &self.group {
            Principal::Id(gid) => users::group_name(*gid),
            Principal::Sid(sid) => users::sid_name(sid),
        }
    }
}

/// Builds the file columns of a record from the states before and after.
pub fn file_columns(
    path: &Path,
    before: Option<&FileState>,
    after: Option<&FileState>,
) -> FileColumns {
    let mut columns = FileColumns {
        file_system_path: display_path(path),
        ..FileColumns::default()
    };
    if let Some(after) = after {
        columns.file_type = Some(after.file_type.as_str().to_string());
        columns.size = Some(after.size);
        columns.date_modified = Some(Timestamp::from_unix_nanos(after.mtime_ns));
        columns.change_time = Some(Timestamp::from_unix_nanos(after.ctime_ns));
        let security = Security::of(after);
        columns.owner = Some(security.owner_name());
        columns.group = Some(security.group_name());
        columns.mode = Some(format!("{:04o}", after.mode));
        columns.acls = security.acl;
        columns.attributes = (after.attributes != 0).then(|| format!("{:#x}", after.attributes));
        columns.capabilities = after.capability.as_deref().map(hex);
        columns.selinux_context = after.selinux.as_deref().map(text_of);
        columns.symlink_target = after
            .symlink_target
            .as_deref()
            .map(crate::path_text::display_bytes);
        columns.links = Some(after.nlink);
        columns.inode = Some(after.ino);
        columns.file_content_checksum = after.hash.as_ref().map(|hash| hex(hash));
        columns.unstable = after.unstable;
        columns.error = after.error.clone();
    }
    if let Some(before) = before {
        columns.previous_file_type = Some(before.file_type.as_str().to_string());
        columns.previous_size = Some(before.size);
        columns.previous_date_modified = Some(Timestamp::from_unix_nanos(before.mtime_ns));
        columns.previous_change_time = Some(Timestamp::from_unix_nanos(before.ctime_ns));
        let security = Security::of(before);
        columns.previous_owner = Some(security.owner_name());
        columns.previous_group = Some(security.group_name());
        columns.previous_mode = Some(format!("{:04o}", before.mode));
        columns.previous_acls = security.acl;
        columns.previous_attributes =
            (before.attributes != 0).then(|| format!("{:#x}", before.attributes));
        columns.previous_capabilities = before.capability.as_deref().map(hex);
        columns.previous_selinux_context = before.selinux.as_deref().map(text_of);
        columns.previous_symlink_target = before
            .symlink_target
            .as_deref()
            .map(crate::path_text::display_bytes);
        columns.previous_links = Some(before.nlink);
        columns.previous_inode = Some(before.ino);
        columns.previous_file_content_checksum = before.hash.as_ref().map(|hash| hex(hash));
    }
    if let (Some(before), Some(after)) = (before, after) {
        if let (Some(old), Some(new)) = (&before.content, &after.content) {
            if old != new {
                columns.content_diff = Some(crate::diff::unified(path, old, new));
            }
        }
    }
    columns
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes.strip_suffix(b"\0").unwrap_or(bytes)).into_owned()
}

impl FileType {
    pub fn is_regular(self) -> bool {
        self == FileType::Regular
    }
}

#[cfg(test)]
mod tests;
