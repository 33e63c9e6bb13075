//! Security descriptors as SDDL text: split into owner, group and DACL, and read for "who
//! besides the administrators may change this?".
//!
//! Windows hands us descriptors as SDDL (`ConvertSecurityDescriptorToStringSecurityDescriptorW`),
//! which is also what records show and baselines keep. Reading that text here, rather than
//! walking binary ACLs through Win32 calls, keeps the decisions (which SIDs are trusted, which
//! rights are dangerous, how inheritance applies) platform-neutral and unit-tested on every
//! host; the Windows code only fetches the text.
//!
//! The trust rule mirrors the Unix one ([`crate::trust`]): an object is trusted when its owner
//! is a trusted principal and no allow ACE that applies to the object gives anyone else a
//! right that changes it (write, append, extended attributes, delete, change the DACL or
//! owner, generic write or all). A directory further up the path may let others create
//! entries (as `C:\` lets Authenticated Users create folders, the `/tmp` of Windows), but not
//! delete or rename them or change the directory's DACL. A NULL DACL grants everything.

/// Rights on files and directories (winnt.h).
const FILE_WRITE_DATA: u32 = 0x2; // FILE_ADD_FILE on a directory
const FILE_APPEND_DATA: u32 = 0x4; // FILE_ADD_SUBDIRECTORY on a directory
const FILE_WRITE_EA: u32 = 0x10;
const FILE_DELETE_CHILD: u32 = 0x40;
const DELETE: u32 = 0x1_0000;
const WRITE_DAC: u32 = 0x4_0000;
const WRITE_OWNER: u32 = 0x8_0000;
const MAXIMUM_ALLOWED: u32 = 0x0200_0000;
const GENERIC_ALL: u32 = 0x1000_0000;
const GENERIC_WRITE: u32 = 0x4000_0000;

/// Rights that let a principal change an object it is granted on, or the entries in it.
const CHANGES_OBJECT: u32 = FILE_WRITE_DATA
    | FILE_APPEND_DATA
    | FILE_WRITE_EA
    | FILE_DELETE_CHILD
    | DELETE
    | WRITE_DAC
    | WRITE_OWNER
    | MAXIMUM_ALLOWED
    | GENERIC_ALL
    | GENERIC_WRITE;
/// The same, less creating entries: what an ancestor directory may grant to anyone.
const CHANGES_ANCESTOR: u32 = CHANGES_OBJECT & !(FILE_WRITE_DATA | FILE_APPEND_DATA);

/// Principals trusted like root: LocalSystem, the Administrators group, TrustedInstaller.
const TRUSTED: &[&str] = &[
    "SY",
    "S-1-5-18",
    "BA",
    "S-1-5-32-544",
    "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464",
];
/// OWNER RIGHTS and CREATOR OWNER stand for the owner, who must be trusted already.
const OWNER_ALIASES: &[&str] = &["OW", "S-1-3-4", "CO", "S-1-3-0"];

/// The parts of an SDDL string. Absent parts are `None`; a DACL part keeps its flags and ACEs
/// as written (`D:P(A;OICI;FA;;;SY)`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SddlParts<'a> {
    pub owner: Option<&'a str>,
    pub group: Option<&'a str>,
    pub dacl: Option<&'a str>,
    pub sacl: Option<&'a str>,
}

/// Splits `O:..G:..D:..S:..` into its parts; `None` when the text is not SDDL (a Linux ACL
/// in text form, say), so callers can tell the two apart by content.
pub fn split(sddl: &str) -> Option<SddlParts<'_>> {
    let mut parts = SddlParts::default();
    let bytes = sddl.as_bytes();
    let mut at = 0;
    // Each part begins with a letter and ':' outside parentheses.
    let mut depth = 0usize;
    let mut starts = Vec::new();
    while at < bytes.len() {
        match bytes[at] {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b'O' | b'G' | b'D' | b'S'
                if depth == 0 && bytes.get(at + 1) == Some(&b':') && boundary(bytes, at) =>
            {
                starts.push(at);
            }
            _ => {}
        }
        at += 1;
    }
    if starts.first() != Some(&0) {
        return None;
    }
    for (index, &start) in starts.iter().enumerate() {
        let end = starts.get(index + 1).copied().unwrap_or(sddl.len());
        let value = &sddl[start + 2..end];
        let slot = match bytes[start] {
            b'O' => &mut parts.owner,
            b'G' => &mut parts.group,
            b'D' => &mut parts.dacl,
            _ => &mut parts.sacl,
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(value);
    }
    Some(parts)
}

/// Outside parentheses a ':' follows only a part letter (SID strings and two-letter aliases
/// never contain one); a letter right after '-' would be inside a SID string.
fn boundary(bytes: &[u8], at: usize) -> bool {
    at == 0 || bytes[at - 1] != b'-'
}

/// One access control entry of a DACL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ace<'a> {
    /// `A` allow, `D` deny, `OA`/`OD` object ACEs, ...
    pub kind: &'a str,
    /// Inheritance flags as written (`OICIIO`, `ID`).
    pub flags: &'a str,
    pub rights: u32,
    /// A SID string or a two-letter alias.
    pub trustee: &'a str,
}

impl Ace<'_> {
    fn allows(&self) -> bool {
        matches!(self.kind, "A" | "OA")
    }

    /// Inherit-only ACEs are templates for children: they grant nothing on the object.
    fn applies_to_object(&self) -> bool {
        !flag_set(self.flags).any(|flag| flag == "IO")
    }
}

fn flag_set(flags: &str) -> impl Iterator<Item = &str> {
    (0..flags.len() / 2).filter_map(move |index| flags.get(index * 2..index * 2 + 2))
}

/// Why a DACL could not be read as one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SddlError {
    #[error("the ACE {0:?} is not of the form (type;flags;rights;object;inherited;trustee)")]
    Ace(String),
    #[error("unknown access right {0:?} in an ACE")]
    Right(String),
}

/// The DACL's flags (`P`, `AI`, `NO_ACCESS_CONTROL`) and ACEs.
pub fn aces(dacl: &str) -> Result<(&str, Vec<Ace<'_>>), SddlError> {
    let flags_end = dacl.find('(').unwrap_or(dacl.len());
    let flags = &dacl[..flags_end];
    let mut aces = Vec::new();
    let mut rest = &dacl[flags_end..];
    while let Some(open) = rest.find('(') {
        let close = rest[open..]
            .find(')')
            .map(|close| open + close)
            .ok_or_else(|| SddlError::Ace(rest.to_string()))?;
        let body = &rest[open + 1..close];
        let fields: Vec<&str> = body.split(';').collect();
        let [kind, ace_flags, rights, _object, _inherited, trustee, ..] = fields[..] else {
            return Err(SddlError::Ace(body.to_string()));
        };
        aces.push(Ace {
            kind,
            flags: ace_flags,
            rights: rights_mask(rights)?,
            trustee,
        });
        rest = &rest[close + 1..];
    }
    Ok((flags, aces))
}

/// An SDDL rights field: a number (`0x1301bf`) or two-letter codes (`FRFW`).
pub fn rights_mask(text: &str) -> Result<u32, SddlError> {
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return u32::from_str_radix(hex, 16).map_err(|_| SddlError::Right(text.to_string()));
    }
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        return text.parse().map_err(|_| SddlError::Right(text.to_string()));
    }
    if !text.len().is_multiple_of(2) {
        return Err(SddlError::Right(text.to_string()));
    }
    flag_set(text).try_fold(0u32, |mask, code| {
        let bits = match code {
            "GA" => GENERIC_ALL,
            "GR" => 0x8000_0000,
            "GW" => GENERIC_WRITE,
            "GX" => 0x2000_0000,
            "FA" => 0x1F_01FF,
            "FR" => 0x12_0089,
            "FW" => 0x12_0116,
            "FX" => 0x12_00A0,
            "KA" => 0xF_003F,
            "KR" | "KX" => 0x2_0019,
            "KW" => 0x2_0006,
            "RC" => 0x2_0000,
            "SD" => DELETE,
            "WD" => WRITE_DAC,
            "WO" => WRITE_OWNER,
            "CC" => 0x1,
            "DC" => 0x2,
            "LC" => 0x4,
            "SW" => 0x8,
            "RP" => 0x10,
            "WP" => 0x20,
            "DT" => 0x40,
            "LO" => 0x80,
            "CR" => 0x100,
            _ => return Err(SddlError::Right(text.to_string())),
        };
        Ok(mask | bits)
    })
}

/// How strictly an object on a trusted path is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strictness {
    /// The object itself and the directory holding it: nobody else may change anything.
    Object,
    /// A directory further up: others may create entries, not remove or rename them.
    Ancestor,
}

/// Who, besides the trusted principals and `self_sid` (the account the service runs as), may
/// change the object `sddl` describes. `Ok(())` when nobody may; else one line saying who may
/// do what.
pub fn check_trusted(sddl: &str, self_sid: &str, strictness: Strictness) -> Result<(), String> {
    let parts =
        split(sddl).ok_or_else(|| format!("its security descriptor {sddl:?} is not SDDL"))?;
    let trusted = |sid: &str| TRUSTED.contains(&sid) || sid == self_sid;
    match parts.owner {
        Some(owner) if trusted(owner) => {}
        Some(owner) => {
            return Err(format!(
                "it is owned by {owner}, not by SYSTEM, Administrators or the service's account"
            ))
        }
        None => return Err("its security descriptor names no owner".to_string()),
    }
    let dacl = parts
        .dacl
        .ok_or_else(|| "it has no DACL, which lets everyone change it".to_string())?;
    let (flags, entries) = aces(dacl).map_err(|error| error.to_string())?;
    if flags.contains("NO_ACCESS_CONTROL") {
        return Err("it has a NULL DACL, which lets everyone change it".to_string());
    }
    let dangerous = match strictness {
        Strictness::Object => CHANGES_OBJECT,
        Strictness::Ancestor => CHANGES_ANCESTOR,
    };
    for ace in entries {
        if !ace.allows() || !ace.applies_to_object() {
            continue;
        }
        if trusted(ace.trustee) || OWNER_ALIASES.contains(&ace.trustee) {
            continue;
        }
        let granted = ace.rights & dangerous;
        if granted != 0 {
            return Err(format!(
                "its DACL lets {} change it (rights {:#x})",
                ace.trustee, granted
            ));
        }
    }
    Ok(())
}

/// The DACL that a directory fimsvc creates for itself gets: full control for SYSTEM,
/// Administrators and the service's own account, inherited by everything in it, and
/// protected from the parent's (so `C:\ProgramData`'s "Users may create files" does not
/// flow in).
pub fn private_dir_sddl(self_sid: &str) -> String {
    format!("D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;{self_sid})")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "S-1-5-21-1-2-3-1000";

    #[test]
    fn splits_owner_group_and_dacl() {
        let parts = split("O:BAG:SYD:P(A;OICI;FA;;;SY)(A;;FR;;;BU)").unwrap();
        assert_eq!(parts.owner, Some("BA"));
        assert_eq!(parts.group, Some("SY"));
        assert_eq!(parts.dacl, Some("P(A;OICI;FA;;;SY)(A;;FR;;;BU)"));
        assert_eq!(parts.sacl, None);
        let sids = split("O:S-1-5-21-1-2-3-1000G:S-1-5-21-1-2-3-513D:(A;;FA;;;S-1-5-18)").unwrap();
        assert_eq!(sids.owner, Some("S-1-5-21-1-2-3-1000"));
        assert_eq!(sids.group, Some("S-1-5-21-1-2-3-513"));
        assert_eq!(sids.dacl, Some("(A;;FA;;;S-1-5-18)"));
        // Linux ACL text is not SDDL.
        assert_eq!(split("user::rw-,group::r--,other::r--"), None);
        assert_eq!(split(""), None);
    }

    #[test]
    fn reads_rights_as_codes_and_numbers() {
        assert_eq!(rights_mask("FA").unwrap(), 0x1F01FF);
        assert_eq!(rights_mask("FRFW").unwrap(), 0x12_0089 | 0x12_0116);
        assert_eq!(rights_mask("0x1301bf").unwrap(), 0x1301bf);
        assert_eq!(rights_mask("1179817").unwrap(), 1179817);
        assert!(rights_mask("ZZ").is_err());
        assert!(rights_mask("F").is_err());
    }

    #[test]
    fn administrators_only_is_trusted_everywhere() {
        let sddl = "O:BAG:SYD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)";
        assert_eq!(check_trusted(sddl, ME, Strictness::Object), Ok(()));
        // Readers may read.
        let readers = "O:SYG:SYD:P(A;;FA;;;SY)(A;;FR;;;BU)(A;;0x1200a9;;;AU)";
        assert_eq!(check_trusted(readers, ME, Strictness::Object), Ok(()));
        // The service's own account counts as trusted (it is root here).
        let own = format!("O:{ME}G:{ME}D:(A;;FA;;;{ME})");
        assert_eq!(check_trusted(&own, ME, Strictness::Object), Ok(()));
    }

    #[test]
    fn write_for_users_is_refused_naming_who() {
        let sddl = "O:BAG:SYD:(A;;FA;;;SY)(A;;FRFW;;;BU)";
        let error = check_trusted(sddl, ME, Strictness::Object).unwrap_err();
        assert!(error.contains("lets BU change it"), "{error}");
        // Changing the DACL alone is as bad as writing.
        let wd = "O:BAD:(A;;FA;;;BA)(A;;WD;;;S-1-5-21-9-9-9-1001)";
        let error = check_trusted(wd, ME, Strictness::Object).unwrap_err();
        assert!(error.contains("S-1-5-21-9-9-9-1001"), "{error}");
        // So is a generic grant.
        assert!(check_trusted("O:BAD:(A;;GA;;;WD)", ME, Strictness::Object).is_err());
    }

    #[test]
    fn an_untrusted_owner_or_a_null_dacl_is_refused() {
        let error = check_trusted(
            "O:S-1-5-21-9-9-9-1001D:(A;;FA;;;BA)",
            ME,
            Strictness::Object,
        )
        .unwrap_err();
        assert!(error.contains("owned by S-1-5-21-9-9-9-1001"), "{error}");
        assert!(
            check_trusted("O:BAD:NO_ACCESS_CONTROL", ME, Strictness::Object)
                .unwrap_err()
                .contains("NULL DACL")
        );
        assert!(check_trusted("O:BAG:SY", ME, Strictness::Object)
            .unwrap_err()
            .contains("no DACL"));
    }

    #[test]
    fn ancestors_may_let_others_create_but_not_delete() {
        // C:\ on a fresh Windows: Authenticated Users may create folders and files.
        let root = "O:S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464G:S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464D:PAI(A;OICI;FA;;;BA)(A;OICI;FA;;;SY)(A;OICI;0x1200a9;;;BU)(A;OICIIO;SDGXGWGR;;;AU)(A;;LC;;;AU)";
        assert_eq!(check_trusted(root, ME, Strictness::Ancestor), Ok(()));
        // The same as the state directory itself is refused: others may add entries.
        assert!(check_trusted(root, ME, Strictness::Object).is_err());
        // Deleting entries is refused even up the path.
        let deletes = "O:BAD:(A;;FA;;;BA)(A;;DT;;;BU)";
        assert!(check_trusted(deletes, ME, Strictness::Ancestor).is_err());
    }

    #[test]
    fn inherit_only_and_deny_entries_grant_nothing_on_the_object() {
        let sddl = "O:BAD:(A;;FA;;;BA)(A;OICIIO;FA;;;BU)(D;;FA;;;WD)";
        assert_eq!(check_trusted(sddl, ME, Strictness::Object), Ok(()));
        // CREATOR OWNER templates and OWNER RIGHTS stand for the (trusted) owner.
        let owner = "O:BAD:(A;OICIIO;FA;;;CO)(A;;FA;;;OW)(A;;FA;;;BA)";
        assert_eq!(check_trusted(owner, ME, Strictness::Object), Ok(()));
    }

    #[test]
    fn the_private_directory_dacl_is_trusted() {
        let sddl = format!("O:BA{}", private_dir_sddl(ME));
        assert_eq!(check_trusted(&sddl, ME, Strictness::Object), Ok(()));
        let parts = split(&sddl).unwrap();
        assert!(parts.dacl.unwrap().starts_with("P("));
    }

    #[test]
    fn a_malformed_ace_is_an_error_not_a_pass() {
        assert!(check_trusted("O:BAD:(A;;FA)", ME, Strictness::Object).is_err());
        assert!(check_trusted("O:BAD:(A;;FA;;;BU", ME, Strictness::Object).is_err());
    }
}
