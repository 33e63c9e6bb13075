//! [`crate::trust`] on Unix: owners and mode bits.
use std::{
    fs::Metadata,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
};

use crate::{path_text::display_path, trust::Untrusted};

const GROUP_OR_OTHER_WRITE: u32 = 0o022;
const STICKY: u32 = 0o1000;

pub(crate) fn check_file(what: &str, path: &Path, metadata: &Metadata) -> Result<(), Untrusted> {
    check_strict(what, path, metadata)?;
    let canonical = std::fs::canonicalize(path).map_err(|error| {
        Untrusted::Refused(format!(
            "cannot resolve {what} {}: {error}",
            display_path(path)
        ))
    })?;
    match canonical.parent() {
        Some(parent) => check_dir(&format!("{what} directory"), parent),
        None => Ok(()),
    }
}

pub(crate) fn create_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)
}

pub(crate) fn check_dir(what: &str, path: &Path) -> Result<(), Untrusted> {
    let canonical = std::fs::canonicalize(path).map_err(|error| {
        Untrusted::Refused(format!(
            "cannot resolve {what} {}: {error}",
            display_path(path)
        ))
    })?;
    check_strict(what, &canonical, &stat(what, &canonical)?)?;
    for ancestor in canonical.ancestors().skip(1) {
        let metadata = stat(what, ancestor)?;
        check_owner(&format!("{what} ancestor"), ancestor, &metadata)?;
        let mode = metadata.permissions().mode();
        if mode & GROUP_OR_OTHER_WRITE != 0 && mode & STICKY == 0 {
            return Err(Untrusted::Refused(format!(
                "{what} ancestor {} is writable by group or others without the sticky bit \
                 (mode {:04o}); only root may be able to change it",
                display_path(ancestor),
                mode & 0o7777
            )));
        }
    }
    Ok(())
}

fn stat(what: &str, path: &Path) -> Result<Metadata, Untrusted> {
    std::fs::metadata(path).map_err(|error| {
        Untrusted::Refused(format!(
            "cannot check {what} {}: {error}",
            display_path(path)
        ))
    })
}

fn check_owner(what: &str, path: &Path, metadata: &Metadata) -> Result<(), Untrusted> {
    if metadata.uid() != 0 {
        return Err(Untrusted::Refused(format!(
            "{what} {} is owned by uid {}, not root; only root may be able to change it",
            display_path(path),
            metadata.uid()
        )));
    }
    Ok(())
}

fn check_strict(what: &str, path: &Path, metadata: &Metadata) -> Result<(), Untrusted> {
    check_owner(what, path, metadata)?;
    let mode = metadata.permissions().mode();
    if mode & GROUP_OR_OTHER_WRITE != 0 {
        return Err(Untrusted::Refused(format!(
            "{what} {} is writable by group or others (mode {:04o}); only root may be able to \
             change it",
            display_path(path),
            mode & 0o7777
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn group_writable_file_and_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        if std::fs::metadata(dir.path()).unwrap().uid() != 0 {
            return; // not root: a root-owned file cannot be arranged
        }
        chmod(dir.path(), 0o755);
        let file = dir.path().join("policy.toml");
        std::fs::write(&file, "").unwrap();
        chmod(&file, 0o644);
        let check = || check_file("policy", &file, &std::fs::metadata(&file).unwrap());
        assert_eq!(check(), Ok(()));
        chmod(&file, 0o666);
        let shown = display_path(&file);
        assert_eq!(
            check().unwrap_err().to_string(),
            format!(
                "policy {shown} is writable by group or others (mode 0666); only root may be \
                 able to change it"
            )
        );
        chmod(&file, 0o644);
        chmod(dir.path(), 0o1777);
        let canonical = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            check().unwrap_err().to_string(),
            format!(
                "policy directory {} is writable by group or others (mode 1777); only root may \
                 be able to change it",
                display_path(&canonical)
            )
        );
        chmod(dir.path(), 0o755);
    }
}
