//! Windows security objects the pipe needs, owned and freed here: SIDs (from strings, from
//! account names, to strings and names) and the pipe's security descriptor from SDDL.
use std::{io, ptr};

use windows_sys::Win32::{
    Foundation::{LocalFree, ERROR_INSUFFICIENT_BUFFER, ERROR_NONE_MAPPED},
    Security::{
        Authorization::{
            ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
            ConvertStringSidToSidW, SDDL_REVISION_1,
        },
        GetLengthSid, LookupAccountNameW, LookupAccountSidW, SidTypeAlias, SidTypeGroup,
        SidTypeWellKnownGroup, PSECURITY_DESCRIPTOR, PSID, SID_NAME_USE,
    },
};

use crate::pipe_windows::PipeError;

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(Some(0)).collect()
}

/// A NUL-terminated UTF-16 string the system allocated, as text.
///
/// # Safety
/// `text` must be null or point at a NUL-terminated UTF-16 string.
unsafe fn from_wide(text: *const u16) -> String {
    if text.is_null() {
        return String::new();
    }
    let mut length = 0;
    // SAFETY: the caller promises a NUL-terminated string.
    while unsafe { *text.add(length) } != 0 {
        length += 1;
    }
    // SAFETY: `length` units were just read.
    String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, length) })
}

/// A SID in memory this process owns (in u32s: a SID's sub-authorities want their alignment).
#[derive(Clone, Debug)]
pub struct Sid(Vec<u32>);

impl Sid {
    pub(crate) fn as_psid(&self) -> PSID {
        self.0.as_ptr() as PSID
    }

    /// Copies a SID the system handed out.
    ///
    /// # Safety
    /// `sid` must point at a valid SID.
    pub(crate) unsafe fn copy_of(sid: PSID) -> Sid {
        // SAFETY: a valid SID is GetLengthSid bytes long.
        let length = unsafe { GetLengthSid(sid) } as usize;
        let mut copy = vec![0u32; length.div_ceil(4)];
        // SAFETY: `length` bytes are readable at `sid` and fit in `copy`.
        unsafe { ptr::copy_nonoverlapping(sid as *const u8, copy.as_mut_ptr().cast(), length) };
        Sid(copy)
    }

    /// From its string form (`S-1-5-32-544`).
    pub fn parse(text: &str) -> io::Result<Sid> {
        let text = wide(text);
        let mut sid: PSID = ptr::null_mut();
        // SAFETY: the string is NUL-terminated; on success `sid` is LocalAlloc'd, freed below.
        if unsafe { ConvertStringSidToSidW(text.as_ptr(), &mut sid) } == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the system just produced a valid SID.
        let copy = unsafe { Sid::copy_of(sid) };
        // SAFETY: allocated by ConvertStringSidToSidW with LocalAlloc.
        unsafe { LocalFree(sid as _) };
        Ok(copy)
    }

    /// The string form, for SDDL and logs.
    pub fn text(&self) -> io::Result<String> {
        let mut text: *mut u16 = ptr::null_mut();
        // SAFETY: the SID is valid (it came from the system); the string is LocalAlloc'd.
        if unsafe { ConvertSidToStringSidW(self.as_psid(), &mut text) } == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the system wrote a NUL-terminated string.
        let result = unsafe { from_wide(text) };
        // SAFETY: allocated by ConvertSidToStringSidW with LocalAlloc.
        unsafe { LocalFree(text as _) };
        Ok(result)
    }

    /// DOMAIN\name, when the system can say.
    pub(crate) fn account(&self) -> Option<String> {
        let mut name = vec![0u16; 256];
        let mut domain = vec![0u16; 256];
        let mut name_length = name.len() as u32;
        let mut domain_length = domain.len() as u32;
        let mut kind: SID_NAME_USE = 0;
        // SAFETY: both buffers are valid for the lengths given; the SID is valid.
        let found = unsafe {
            LookupAccountSidW(
                ptr::null(),
                self.as_psid(),
                name.as_mut_ptr(),
                &mut name_length,
                domain.as_mut_ptr(),
                &mut domain_length,
                &mut kind,
            )
        };
        if found == 0 {
            return None;
        }
        let name = String::from_utf16_lossy(&name[..name_length as usize]);
        let domain = String::from_utf16_lossy(&domain[..domain_length as usize]);
        Some(if domain.is_empty() {
            name
        } else {
            format!(r"{domain}\{name}")
        })
    }
}

/// A group by SID string or account name (LookupAccountNameW); None when no account has that
/// name. A name that resolves to a user is refused: a role group must be a group.
pub fn resolve_group(name: &str, what: &'static str) -> Result<Option<Sid>, PipeError> {
    let failed = |source| PipeError::Account {
        what,
        name: name.to_string(),
        source,
    };
    if name.len() > 4 && name[..4].eq_ignore_ascii_case("S-1-") {
        return Sid::parse(name).map(Some).map_err(failed);
    }
    let account = wide(name);
    // 68 bytes: the largest SID (15 sub-authorities).
    let mut sid = vec![0u32; 17];
    let mut domain = vec![0u16; 256];
    loop {
        let mut sid_length = (sid.len() * 4) as u32;
        let mut domain_length = domain.len() as u32;
        let mut kind: SID_NAME_USE = 0;
        // SAFETY: the name is NUL-terminated and both buffers are valid for their lengths.
        let found = unsafe {
            LookupAccountNameW(
                ptr::null(),
                account.as_ptr(),
                sid.as_mut_ptr() as PSID,
                &mut sid_length,
                domain.as_mut_ptr(),
                &mut domain_length,
                &mut kind,
            )
        };
        if found != 0 {
            if ![SidTypeGroup, SidTypeAlias, SidTypeWellKnownGroup].contains(&kind) {
                return Err(PipeError::NotAGroup {
                    what,
                    name: name.to_string(),
                });
            }
            return Ok(Some(Sid(sid)));
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error().map(|code| code as u32) {
            Some(ERROR_NONE_MAPPED) => return Ok(None),
            Some(ERROR_INSUFFICIENT_BUFFER)
                if sid_length as usize > sid.len() * 4 || domain_length as usize > domain.len() =>
            {
                sid.resize((sid_length as usize).div_ceil(4).max(sid.len()), 0);
                domain.resize((domain_length as usize).max(domain.len()), 0);
            }
            _ => return Err(failed(error)),
        }
    }
}

/// A security descriptor from SDDL, freed on drop.
pub(crate) struct Descriptor(pub(crate) PSECURITY_DESCRIPTOR);

// SAFETY: the descriptor is written once by the system and only read afterwards.
unsafe impl Send for Descriptor {}
// SAFETY: as above.
unsafe impl Sync for Descriptor {}

impl Descriptor {
    pub(crate) fn from_sddl(sddl: &str) -> io::Result<Descriptor> {
        let text = wide(sddl);
        let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: the string is NUL-terminated; the descriptor is LocalAlloc'd, freed on drop.
        let converted = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                text.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                ptr::null_mut(),
            )
        };
        if converted == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Descriptor(descriptor))
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
        unsafe { LocalFree(self.0 as _) };
    }
}

/// Checks a descriptor string the way the pipe will use it (for the Wine tests).
pub fn descriptor_accepted(sddl: &str) -> io::Result<()> {
    Descriptor::from_sddl(sddl).map(drop)
}
