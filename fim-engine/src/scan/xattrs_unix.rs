//! The security-relevant extended attributes of a path: POSIX ACLs, SELinux label, capabilities.
//!
//! Why these three: an attacker who cannot change a file's mode can still grant themselves
//! access with an ACL entry, relabel it, or give a binary `cap_setuid` without setting the
//! setuid bit, and none of that shows in `ls -l`. The kernel keeps them in xattrs.
//!
//! One `listxattr` tells which of them exist (usually none, so a file costs one syscall), and
//! only those are read. ACLs are decoded from the kernel's binary `posix_acl_xattr` format to
//! the short text `getfacl -c` prints (numeric ids: names can change, ids are what the kernel
//! checks). SELinux labels and capabilities are kept raw. Reading attributes never follows a
//! symlink: an open file uses the fd, a path uses the `l*` calls.
use std::{ffi::OsStr, fs::File, io, path::Path};

use tracing::debug;

use crate::path_text::display_path;

const ACL_ACCESS: &str = "system.posix_acl_access";
const ACL_DEFAULT: &str = "system.posix_acl_default";
const SELINUX: &str = "security.selinux";
const CAPABILITY: &str = "security.capability";

/// The attributes that end up in a `FileState`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct SecurityAttrs {
    pub acl: Option<String>,
    pub selinux: Option<Vec<u8>>,
    pub capability: Option<Vec<u8>>,
}

/// Where the attributes are read from.
pub(super) enum Source<'a> {
    /// An open file (fgetxattr): no path lookup, no race with a rename.
    File(&'a File),
    /// A path (lgetxattr): symlinks, directories, special files, unreadable files.
    Path(&'a Path),
}

impl Source<'_> {
    fn list(&self) -> io::Result<Vec<std::ffi::OsString>> {
        match self {
            Source::File(file) => xattr::FileExt::list_xattr(*file).map(Iterator::collect),
            Source::Path(path) => xattr::list(path).map(Iterator::collect),
        }
    }

    fn get(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match self {
            Source::File(file) => xattr::FileExt::get_xattr(*file, name),
            Source::Path(path) => xattr::get(path, name),
        }
    }
}

/// Reads the attributes; failures (no xattr support, a race) leave them `None`, logged at debug.
pub(super) fn read(source: Source<'_>, path: &Path) -> SecurityAttrs {
    let names = match source.list() {
        Ok(names) => names,
        Err(error) => {
            if !is_unsupported(&error) {
                debug!(path = %display_path(path), %error, "cannot list extended attributes");
            }
            return SecurityAttrs::default();
        }
    };
    let mut attrs = SecurityAttrs::default();
    if names.is_empty() {
        return attrs;
    }
    let has = |wanted: &str| {
        names
            .iter()
            .any(|name| name.as_os_str() == OsStr::new(wanted))
    };
    let get = |name: &str| -> Option<Vec<u8>> {
        if !has(name) {
            return None;
        }
        match source.get(name) {
            Ok(value) => value,
            Err(error) => {
                debug!(path = %display_path(path), %error, name, "cannot read extended attribute");
                None
            }
        }
    };
    let access = get(ACL_ACCESS);
    let default = get(ACL_DEFAULT);
    attrs.acl = acl_text(access.as_deref(), default.as_deref());
    attrs.selinux = get(SELINUX);
    attrs.capability = get(CAPABILITY);
    attrs
}

fn is_unsupported(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOTSUP) | Some(libc::ENODATA)
    )
}

/// Access and default ACLs as one text: `user::rw-,...,default:user::rwx,...`.
fn acl_text(access: Option<&[u8]>, default: Option<&[u8]>) -> Option<String> {
    let parts: Vec<String> = [(access, ""), (default, "default:")]
        .into_iter()
        .filter_map(|(value, prefix)| value.map(|value| decode_posix_acl(value, prefix)))
        .filter(|text| !text.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

const ACL_HEADER_VERSION: u32 = 2;
const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_GROUP: u16 = 0x08;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;

/// Decodes a `system.posix_acl_*` value (`struct posix_acl_xattr_header` then 8-byte
/// `posix_acl_xattr_entry`s, little-endian) to `getfacl`'s short text, each entry prefixed with
/// `prefix` (`""` or `"default:"`). A value that does not parse is kept visible as
/// `unparsed:<hex>` rather than dropped, so a change to it is still reported.
pub fn decode_posix_acl(value: &[u8], prefix: &str) -> String {
    decode_entries(value, prefix).unwrap_or_else(|| {
        let hex: String = value.iter().map(|byte| format!("{byte:02x}")).collect();
        format!("{prefix}unparsed:{hex}")
    })
}

fn decode_entries(value: &[u8], prefix: &str) -> Option<String> {
    let (header, entries) = value.split_first_chunk::<4>()?;
    if u32::from_le_bytes(*header) != ACL_HEADER_VERSION || entries.len() % 8 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(entries.len() / 8);
    for entry in entries.chunks_exact(8) {
        let tag = u16::from_le_bytes([entry[0], entry[1]]);
        let perm = u16::from_le_bytes([entry[2], entry[3]]);
        let id = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
        let perms = format!(
            "{}{}{}",
            if perm & 4 != 0 { 'r' } else { '-' },
            if perm & 2 != 0 { 'w' } else { '-' },
            if perm & 1 != 0 { 'x' } else { '-' },
        );
        let qualifier = match tag {
            ACL_USER_OBJ => "user::".to_string(),
            ACL_USER => format!("user:{id}:"),
            ACL_GROUP_OBJ => "group::".to_string(),
            ACL_GROUP => format!("group:{id}:"),
            ACL_MASK => "mask::".to_string(),
            ACL_OTHER => "other::".to_string(),
            _ => return None,
        };
        out.push(format!("{prefix}{qualifier}{perms}"));
    }
    Some(out.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: u16, perm: u16, id: u32) -> Vec<u8> {
        let mut out = tag.to_le_bytes().to_vec();
        out.extend(perm.to_le_bytes());
        out.extend(id.to_le_bytes());
        out
    }

    #[test]
    fn decodes_access_and_default_acls() {
        let mut value = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (ACL_USER_OBJ, 6, u32::MAX),
            (ACL_USER, 4, 1000),
            (ACL_GROUP_OBJ, 4, u32::MAX),
            (ACL_GROUP, 5, 27),
            (ACL_MASK, 5, u32::MAX),
            (ACL_OTHER, 0, u32::MAX),
        ] {
            value.extend(entry(tag, perm, id));
        }
        assert_eq!(
            decode_posix_acl(&value, ""),
            "user::rw-,user:1000:r--,group::r--,group:27:r-x,mask::r-x,other::---"
        );
        assert_eq!(
            acl_text(Some(&value[..12]), Some(&value[..12])),
            Some("user::rw-,default:user::rw-".to_string())
        );
        assert_eq!(acl_text(None, None), None);
        assert_eq!(decode_posix_acl(&[1, 0, 0, 0], ""), "unparsed:01000000");
        assert_eq!(
            decode_posix_acl(&value[..7], "default:"),
            "default:unparsed:02000000010006"
        );
    }
}
