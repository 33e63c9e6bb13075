//! [`crate::trust`] on Windows: the owner and DACL of the object and of every directory above
//! it, read as SDDL and judged by [`crate::sddl::check_trusted`]. The object and the directory
//! holding it may be changed by nobody but SYSTEM, Administrators, TrustedInstaller and the
//! service's own account; directories further up may let others create entries (as `C:\`
//! does), not delete, rename or re-permission them.
use std::{
    fs::Metadata,
    path::{Path, PathBuf},
};

use crate::{
    path_text::display_path,
    sddl::{self, Strictness},
    security_windows::{create_dir_with, own_sid, path_sddl},
    trust::Untrusted,
};

fn refused(what: &str, path: &Path, why: impl std::fmt::Display) -> Untrusted {
    Untrusted::Refused(format!("refusing the {what} {}: {why}", display_path(path)))
}

/// The path made absolute with links resolved (a junction up the path must not hide where
/// the object really is), for walking up.
fn resolved(what: &str, path: &Path) -> Result<PathBuf, Untrusted> {
    std::fs::canonicalize(path).map_err(|error| refused(what, path, error))
}

/// Checks `shown` (resolved) and every directory above it; the first `strict_levels` of them
/// (the object, and for a file its directory) strictly.
fn walk(what: &str, shown: &Path, strict_levels: usize) -> Result<(), Untrusted> {
    let self_sid = own_sid().map_err(|error| {
        refused(
            what,
            shown,
            format!("cannot read the service's account: {error}"),
        )
    })?;
    let path = resolved(what, shown)?;
    for (level, object) in path.ancestors().enumerate() {
        let strictness = if level < strict_levels {
            Strictness::Object
        } else {
            Strictness::Ancestor
        };
        let text = path_sddl(object).map_err(|error| {
            let object = display_path(object);
            refused(
                what,
                shown,
                format!("cannot read the owner and DACL of {object}: {error}"),
            )
        })?;
        sddl::check_trusted(&text, &self_sid, strictness).map_err(|why| match level {
            0 => refused(what, shown, why),
            _ => refused(
                what,
                shown,
                format!("{} above it: {why}", display_path(object)),
            ),
        })?;
    }
    Ok(())
}

pub(crate) fn check_file(what: &str, path: &Path, _metadata: &Metadata) -> Result<(), Untrusted> {
    // The file and the directory holding it are strict.
    walk(what, path, 2)
}

pub(crate) fn check_dir(what: &str, path: &Path) -> Result<(), Untrusted> {
    walk(what, path, 1)
}

/// Creates `path` (and missing parents) for fimsvc's own use: the last directory gets a
/// protected DACL for SYSTEM, Administrators and the service's account alone. An existing
/// directory is left as it is, for the trust check to judge.
pub(crate) fn create_dir(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)?;
    }
    create_dir_with(path, &sddl::private_dir_sddl(&own_sid()?))
}

#[cfg(test)]
#[path = "trust_windows_tests.rs"]
pub(crate) mod tests;
