//! The change record: the product's stable output schema.
//!
//! Field names follow Azure's ConfigurationChange table (TimeGenerated, Computer,
//! ConfigChangeType, ChangeCategory, FieldsChanged, FileSystemPath, Previous*), so queries and
//! reports written for it carry over; who-data, renames and the journal sequence go beyond it.
//! The JSON form of a record is what the journal hashes, so fields are only ever added (with
//! `skip_serializing_if` defaults), never renamed or reordered.
mod monitor;

use std::path::Path;

pub use monitor::{MonitorColumns, MonitorEvent};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{
    path_text::display_path,
    state::{FileState, FileType},
    users,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConfigChangeType {
    Files,
    Registry,
    WindowsServices,
    Daemons,
    /// The monitor itself: its policy changed (see [`MonitorColumns`]).
    Monitor,
}

impl ConfigChangeType {
    pub const ALL: [ConfigChangeType; 5] = [
        ConfigChangeType::Files,
        ConfigChangeType::Registry,
        ConfigChangeType::WindowsServices,
        ConfigChangeType::Daemons,
        ConfigChangeType::Monitor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConfigChangeType::Files => "Files",
            ConfigChangeType::Registry => "Registry",
            ConfigChangeType::WindowsServices => "WindowsServices",
            ConfigChangeType::Daemons => "Daemons",
            ConfigChangeType::Monitor => "Monitor",
        }
    }

    /// Case-insensitive, as users type it on a command line.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(text))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeCategory {
    Added,
    Modified,
    Removed,
}

impl ChangeCategory {
    pub const ALL: [ChangeCategory; 3] = [
        ChangeCategory::Added,
        ChangeCategory::Modified,
        ChangeCategory::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChangeCategory::Added => "Added",
            ChangeCategory::Modified => "Modified",
            ChangeCategory::Removed => "Removed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(text))
    }
}

/// How the change was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Detection {
    /// A real-time event (eBPF, or Windows notifications) led to it.
    Realtime,
    /// A scheduled or start-up scan found it.
    Scan,
    /// The targeted rescan after lost events (a gap notice) found it.
    GapRescan,
    /// The monitor's own record (a policy change it applied).
    Monitor,
}

/// Who made the change, from the kernel event. Serialised as the string "unknown" when a scan
/// found the change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Actor {
    pub process_id: u32,
    pub thread_id: u32,
    pub process_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    pub parent_process_id: u32,
    pub user_id: u32,
    pub user_name: String,
    pub group_id: u32,
    /// None: the process has no login session (daemons); not the same as root.
    pub login_user_id: Option<u32>,
    pub cgroup_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
}

/// One process that contributed to a record coalesced from several: its identity (the fields of
/// [`Actor`], flattened) and what it did. A write by one process and a `touch -r` by another
/// within one window are one record; naming only the last would hide the writer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Contributor {
    #[serde(flatten)]
    pub actor: Actor,
    /// This process's operations, in order, without repeats.
    pub operations: Vec<String>,
}

fn serialize_actor<S: Serializer>(actor: &Option<Actor>, serializer: S) -> Result<S::Ok, S::Error> {
    match actor {
        Some(actor) => actor.serialize(serializer),
        None => serializer.serialize_str("unknown"),
    }
}

fn deserialize_actor<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Actor>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Known(Actor),
        Unknown(serde::de::IgnoredAny),
    }
    Ok(match Either::deserialize(deserializer)? {
        Either::Known(actor) => Some(actor),
        Either::Unknown(_) => None,
    })
}

/// The file-specific columns (Azure's names), current values and previous ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FileColumns {
    pub file_system_path: String,
    /// Set on the record at a rename's destination: where the file came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_from: Option<String>,
    /// Set on the record at a rename's source: where the file went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renamed_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_file_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_date_modified: Option<String>,
    /// ctime, RFC 3339: user space cannot set it, so it shows a write that put everything
    /// else back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_change_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_group: Option<String>,
    /// Octal permission bits, e.g. "0644".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acls: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_acls: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_attributes: Option<String>,
    /// security.capability as hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_capabilities: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux_context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_selinux_context: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_symlink_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_links: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inode: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_inode: Option<u64>,
    /// BLAKE3, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_content_checksum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_file_content_checksum: Option<String>,
    /// Unified diff, for file-content entities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_diff: Option<String>,
    /// The file changed while it was hashed, on every attempt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unstable: bool,
    /// Why the content could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One change, as journaled and streamed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChangeRecord {
    /// Strictly increasing; assigned when the journal accepts the record.
    pub sequence: u64,
    /// RFC 3339, UTC, nanoseconds.
    pub time_generated: String,
    pub computer: String,
    /// Stable host identity (/etc/machine-id), for a workspace where host names repeat.
    pub computer_id: String,
    pub config_change_type: ConfigChangeType,
    pub change_category: ChangeCategory,
    pub fields_changed: Vec<String>,
    /// The policy entity the path belongs to.
    pub entity: String,
    pub detected_by: Detection,
    /// The real-time operations coalesced into this record (`write-closed`, `rename`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<String>,
    #[serde(
        serialize_with = "serialize_actor",
        deserialize_with = "deserialize_actor"
    )]
    pub actor: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileColumns>,
    /// Every process behind a real-time record, in order, when more than one contributed
    /// (`Actor` is the last of them, `Operations` the union). At most
    /// [`MAX_CONTRIBUTORS`]; the events of further processes are counted in
    /// `ContributorsOmitted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contributors: Vec<Contributor>,
    /// Events from processes past the first [`MAX_CONTRIBUTORS`], not listed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub contributors_omitted: u64,
    /// Type `Monitor` only: what happened to the monitor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorColumns>,
}

/// How many processes one record names: a flood of processes touching one path within a
/// window must not grow the daemon's memory or the record without bound.
pub const MAX_CONTRIBUTORS: usize = 16;

fn is_zero(count: &u64) -> bool {
    *count == 0
}

/// The field a record names when the change time is all that differs.
pub const CHANGE_TIME: &str = "ChangeTime";

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
    differs(before.uid != after.uid, "Owner");
    differs(before.gid != after.gid, "Group");
    differs(before.mode != after.mode, "Mode");
    differs(before.acl != after.acl, "Acls");
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
        columns.date_modified = Some(rfc3339_ns(after.mtime_ns));
        columns.change_time = Some(rfc3339_ns(after.ctime_ns));
        columns.owner = Some(users::user_name(after.uid));
        columns.group = Some(users::group_name(after.gid));
        columns.mode = Some(format!("{:04o}", after.mode));
        columns.acls = after.acl.clone();
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
        columns.previous_date_modified = Some(rfc3339_ns(before.mtime_ns));
        columns.previous_change_time = Some(rfc3339_ns(before.ctime_ns));
        columns.previous_owner = Some(users::user_name(before.uid));
        columns.previous_group = Some(users::group_name(before.gid));
        columns.previous_mode = Some(format!("{:04o}", before.mode));
        columns.previous_acls = before.acl.clone();
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

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes.strip_suffix(b"\0").unwrap_or(bytes)).into_owned()
}

/// RFC 3339 in UTC with nanoseconds; the Unix epoch for out-of-range values.
pub fn rfc3339_ns(ns: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// Now, as a record's TimeGenerated.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    rfc3339_ns(now.unix_timestamp_nanos() as i64)
}

impl FileType {
    pub fn is_regular(self) -> bool {
        self == FileType::Regular
    }
}

#[cfg(test)]
mod tests;
