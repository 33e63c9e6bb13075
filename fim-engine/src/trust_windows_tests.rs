//! The Windows trust checks on real files and DACLs (run under Wine in `cargo xtask test`).
//!
//! Wine 8.0 keeps no security descriptors of files: it derives owner and DACL from the Unix
//! mode (SYSTEM and the user full, Everyone from the "other" bits) and maps a DACL that is set
//! back onto the mode, dropping ACEs for any other group. So under Wine "others may write" is
//! spelled with Everyone (`WD`), and the finer cases (Users, create-only ancestors) are the
//! unit tests of [`crate::sddl`].
use std::{
    path::{Path, PathBuf},
    ptr::null_mut,
};

use windows_sys::Win32::{
    Foundation::{LocalFree, ERROR_SUCCESS},
    Security::{
        Authorization::{
            ConvertStringSecurityDescriptorToSecurityDescriptorW, SetNamedSecurityInfoW,
            SDDL_REVISION_1, SE_FILE_OBJECT,
        },
        GetSecurityDescriptorDacl, ACL, DACL_SECURITY_INFORMATION,
        PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
    },
};

use super::*;
use crate::registry::read_windows::tests::under_wine;

/// A scratch directory of fimsvc's own making, removed afterwards.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let base = std::env::temp_dir().join(format!("fim-trust-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        create_dir(&base).expect("create the scratch directory");
        Scratch(base)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sets the protected DACL `sddl` (`D:...`) on `path`, as an administrator would.
pub(crate) fn set_dacl(path: &Path, sddl: &str) {
    use std::os::windows::ffi::OsStrExt;
    let text: Vec<u16> = sddl.encode_utf16().chain(Some(0)).collect();
    let name: Vec<u16> = path.as_os_str().encode_wide().chain(Some(0)).collect();
    // SAFETY: NUL-terminated inputs; the descriptor is freed after the DACL inside it is set.
    unsafe {
        let mut descriptor: PSECURITY_DESCRIPTOR = null_mut();
        let converted = ConvertStringSecurityDescriptorToSecurityDescriptorW(
            text.as_ptr(),
            SDDL_REVISION_1,
            &mut descriptor,
            null_mut(),
        );
        assert_ne!(converted, 0, "convert {sddl}");
        let (mut present, mut defaulted) = (0, 0);
        let mut dacl: *mut ACL = null_mut();
        GetSecurityDescriptorDacl(descriptor, &mut present, &mut dacl, &mut defaulted);
        let status = SetNamedSecurityInfoW(
            name.as_ptr(),
            SE_FILE_OBJECT,
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            null_mut(),
            null_mut(),
            dacl,
            null_mut(),
        );
        LocalFree(descriptor.cast());
        assert_eq!(status, ERROR_SUCCESS, "set {sddl} on {}", path.display());
    }
}

pub(crate) fn everyone_may_write() -> String {
    let me = own_sid().expect("the process's own SID");
    format!("D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;{me})(A;OICI;FA;;;WD)")
}

#[test]
fn a_directory_fimsvc_creates_and_a_policy_in_it_are_trusted() {
    let scratch = Scratch::new("own");
    let sddl = path_sddl(scratch.path()).expect("read the DACL back");
    if under_wine() {
        // Wine ignores the descriptor given to CreateDirectoryW (no descriptors are kept).
        eprintln!("Wine: the directory's DACL is derived from its mode: {sddl}");
    } else {
        let dacl = sddl::split(&sddl)
            .and_then(|parts| parts.dacl)
            .unwrap_or_default();
        assert!(
            dacl.starts_with('P'),
            "not protected from the parent: {sddl}"
        );
    }
    assert_eq!(check_dir("state directory", scratch.path()), Ok(()));
    let policy = scratch.path().join("policy.toml");
    std::fs::write(&policy, "").expect("write the policy");
    let metadata = std::fs::metadata(&policy).expect("metadata");
    assert_eq!(check_file("policy", &policy, &metadata), Ok(()));
}

#[test]
fn a_state_directory_everyone_may_change_is_refused_in_one_line() {
    let scratch = Scratch::new("open");
    let open = scratch.path().join("open");
    create_dir(&open).expect("create the directory");
    set_dacl(&open, &everyone_may_write());
    let error = check_dir("state directory", &open).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!(
            "refusing the state directory {}: its DACL lets WD change it",
            crate::path_text::display_path(&open)
        )),
        "{error}"
    );
    assert!(!error.contains('\n'), "{error}");
}

#[test]
fn a_policy_whose_file_or_directory_others_may_change_is_refused() {
    let scratch = Scratch::new("policy");
    // The file itself.
    let policy = scratch.path().join("policy.toml");
    std::fs::write(&policy, "").expect("write the policy");
    set_dacl(&policy, &everyone_may_write());
    let metadata = std::fs::metadata(&policy).expect("metadata");
    let error = check_file("policy", &policy, &metadata)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("refusing the policy") && error.contains("lets WD"),
        "{error}"
    );
    // A good file in a directory others may change: the directory is named.
    let open = scratch.path().join("open");
    create_dir(&open).expect("create the directory");
    let inside = open.join("policy.toml");
    std::fs::write(&inside, "").expect("write the policy");
    set_dacl(&open, &everyone_may_write());
    let metadata = std::fs::metadata(&inside).expect("metadata");
    let error = check_file("policy", &inside, &metadata)
        .unwrap_err()
        .to_string();
    assert!(error.contains("above it: its DACL lets WD"), "{error}");
}

#[test]
fn a_directory_further_up_that_others_may_change_is_refused() {
    let scratch = Scratch::new("ancestor");
    let loose = scratch.path().join("loose");
    create_dir(&loose).expect("create the directory");
    let state = loose.join("deeper").join("state");
    create_dir(&state).expect("create the state directory");
    assert_eq!(check_dir("state directory", &state), Ok(()));
    set_dacl(&loose, &everyone_may_write());
    let error = check_dir("state directory", &state)
        .unwrap_err()
        .to_string();
    assert!(error.contains("loose above it"), "{error}");
}

#[test]
fn a_missing_path_is_refused_not_trusted() {
    let scratch = Scratch::new("missing");
    let error = check_dir("state directory", &scratch.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("refusing the state directory"), "{error}");
}
