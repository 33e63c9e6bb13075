//! The Windows named pipe's name and security descriptor, as plain text on every platform so
//! the rules are unit-tested everywhere; `pipe_windows.rs` creates the pipe from them and
//! `client_windows.rs` opens it.
//!
//! The DACL is the first gate (the roles in [`crate::auth`] the second): only SYSTEM,
//! BUILTIN\Administrators, the owner group and the reader group may open the pipe at all, and
//! only SYSTEM and Administrators may create instances of it. GENERIC_WRITE on a pipe includes
//! FILE_CREATE_PIPE_INSTANCE (it is FILE_APPEND_DATA), and a group member holding it could
//! create its own instance and answer, or identify, the next client (an administrator's
//! `fim`) itself. So the groups get [`CLIENT_ACCESS`], read and write data without that bit,
//! and the client asks for exactly that much.

/// Where fimsvc serves the API unless told otherwise, and where `fim` looks for it.
pub const DEFAULT_PIPE: &str = r"\\.\pipe\fim";

/// FILE_GENERIC_READ (0x120089: read data, attributes, extended attributes, READ_CONTROL,
/// SYNCHRONIZE) with FILE_WRITE_DATA (0x2), and without FILE_CREATE_PIPE_INSTANCE (0x4).
pub const CLIENT_ACCESS: u32 = 0x0012_008B;

/// The SIDs of SYSTEM and BUILTIN\Administrators, always owners.
pub const SYSTEM_SID: &str = "S-1-5-18";
pub const ADMINISTRATORS_SID: &str = "S-1-5-32-544";

/// A pipe name as the Win32 API wants it: `fim` becomes `\\.\pipe\fim`; a name that already
/// starts with `\\` is kept.
pub fn pipe_path(name: &str) -> String {
    if name.starts_with(r"\\") {
        name.to_string()
    } else {
        format!(r"\\.\pipe\{name}")
    }
}

/// Why a SID cannot go into the descriptor.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a SID string (S-1-...)")]
pub struct NotASid(pub String);

/// Checks a SID string before it is pasted into SDDL: `S-1-` and dash-separated numbers, so
/// nothing from the configuration can add an ACE of its own.
fn checked_sid(sid: &str) -> Result<&str, NotASid> {
    let numbers = sid
        .strip_prefix("S-1-")
        .ok_or_else(|| NotASid(sid.to_string()))?;
    let valid = !numbers.is_empty()
        && numbers
            .split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit()));
    if valid {
        Ok(sid)
    } else {
        Err(NotASid(sid.to_string()))
    }
}

/// The pipe's security descriptor in SDDL: protected (nothing inherited), full read and write
/// for SYSTEM and Administrators, [`CLIENT_ACCESS`] for the owner and the reader group when
/// they exist, nobody else (no ACE, no access; not Everyone, not anonymous, not network).
pub fn pipe_sddl(owner_group: Option<&str>, reader_group: Option<&str>) -> Result<String, NotASid> {
    let mut sddl = String::from("D:P(A;;GRGW;;;SY)(A;;GRGW;;;BA)");
    let mut granted: Vec<&str> = vec![SYSTEM_SID, ADMINISTRATORS_SID];
    for group in [owner_group, reader_group].into_iter().flatten() {
        let sid = checked_sid(group)?;
        if granted.contains(&sid) {
            continue;
        }
        granted.push(sid);
        sddl.push_str(&format!("(A;;0x{CLIENT_ACCESS:x};;;{sid})"));
    }
    Ok(sddl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_pipe_paths() {
        assert_eq!(pipe_path("fim"), r"\\.\pipe\fim");
        assert_eq!(pipe_path(r"\\.\pipe\fim-test"), r"\\.\pipe\fim-test");
        assert_eq!(pipe_path(DEFAULT_PIPE), DEFAULT_PIPE);
    }

    #[test]
    fn the_descriptor_grants_exactly_the_configured_groups() {
        assert_eq!(
            pipe_sddl(None, None).unwrap(),
            "D:P(A;;GRGW;;;SY)(A;;GRGW;;;BA)"
        );
        assert_eq!(
            pipe_sddl(Some("S-1-5-21-1-2-3-1010"), Some("S-1-5-21-1-2-3-1011")).unwrap(),
            "D:P(A;;GRGW;;;SY)(A;;GRGW;;;BA)(A;;0x12008b;;;S-1-5-21-1-2-3-1010)\
             (A;;0x12008b;;;S-1-5-21-1-2-3-1011)"
        );
        // A reader group that is the owner group, or Administrators, adds nothing.
        assert_eq!(
            pipe_sddl(Some("S-1-5-32-545"), Some("S-1-5-32-545")).unwrap(),
            "D:P(A;;GRGW;;;SY)(A;;GRGW;;;BA)(A;;0x12008b;;;S-1-5-32-545)"
        );
        assert_eq!(
            pipe_sddl(Some(ADMINISTRATORS_SID), None).unwrap(),
            "D:P(A;;GRGW;;;SY)(A;;GRGW;;;BA)"
        );
    }

    #[test]
    fn client_access_cannot_create_pipe_instances() {
        const FILE_CREATE_PIPE_INSTANCE: u32 = 0x4;
        const FILE_WRITE_DATA: u32 = 0x2;
        const FILE_READ_DATA: u32 = 0x1;
        assert_eq!(CLIENT_ACCESS & FILE_CREATE_PIPE_INSTANCE, 0);
        assert_ne!(CLIENT_ACCESS & FILE_WRITE_DATA, 0);
        assert_ne!(CLIENT_ACCESS & FILE_READ_DATA, 0);
    }

    #[test]
    fn only_sid_strings_reach_the_descriptor() {
        for bad in [
            "fim",
            "S-1-",
            "S-1-5-)(A;;GA;;;WD",
            "S-1-5--1",
            "BA",
            "WD",
            "S-1-5-21-1-2-3-1001;",
        ] {
            assert_eq!(
                pipe_sddl(Some(bad), None),
                Err(NotASid(bad.to_string())),
                "{bad}"
            );
            assert!(pipe_sddl(None, Some(bad)).is_err(), "{bad}");
        }
    }
}
