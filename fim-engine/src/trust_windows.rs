//! [`crate::trust`] on Windows: refuses until the owner and DACL checks exist (the Windows
//! issue), naming what could not be checked.
use std::{fs::Metadata, path::Path};

use crate::{path_text::display_path, platform::NotOnThisPlatform, trust::Untrusted};

fn refuse(what: &str, path: &Path) -> Untrusted {
    Untrusted::NotOnThisPlatform {
        what: what.to_string(),
        path: display_path(path),
        source: NotOnThisPlatform("checking a file's owner and DACL"),
    }
}

pub(crate) fn check_file(what: &str, path: &Path, _metadata: &Metadata) -> Result<(), Untrusted> {
    Err(refuse(what, path))
}

pub(crate) fn check_dir(what: &str, path: &Path) -> Result<(), Untrusted> {
    Err(refuse(what, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_refuses_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let error = crate::trust::check_dir("state directory", dir.path()).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "cannot check who may change the state directory {}: checking a file's owner \
                 and DACL is not available on this platform",
                display_path(dir.path())
            )
        );
        let file = dir.path().join("policy.toml");
        std::fs::write(&file, "").unwrap();
        let metadata = std::fs::metadata(&file).unwrap();
        assert!(matches!(
            crate::trust::check_file("policy", &file, &metadata),
            Err(Untrusted::NotOnThisPlatform { .. })
        ));
    }
}
