//! Security descriptors on Windows, fetched as SDDL text: of a file by handle (what the
//! observer records), of a path (what the trust checks read), of a registry key's raw
//! descriptor; the service's own account SID; account names of SIDs; and directories created
//! with a DACL of our choosing. What the text means is decided in [`crate::sddl`].
use std::{
    io,
    os::windows::{ffi::OsStrExt, io::AsRawHandle},
    path::Path,
    ptr::{null, null_mut},
};

use fim_model::columns::text_from_utf16;
use windows_sys::Win32::{
    Foundation::{CloseHandle, LocalFree, ERROR_SUCCESS, HANDLE},
    Security::{
        Authorization::{
            ConvertSecurityDescriptorToStringSecurityDescriptorW, ConvertSidToStringSidW,
            ConvertStringSecurityDescriptorToSecurityDescriptorW, ConvertStringSidToSidW,
            GetNamedSecurityInfoW, GetSecurityInfo, SDDL_REVISION_1, SE_FILE_OBJECT,
        },
        GetTokenInformation, LookupAccountSidW, TokenUser, DACL_SECURITY_INFORMATION,
        GROUP_SECURITY_INFORMATION, OWNER_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID,
        SECURITY_ATTRIBUTES, SID_NAME_USE, TOKEN_QUERY, TOKEN_USER,
    },
    Storage::FileSystem::CreateDirectoryW,
    System::Threading::{GetCurrentProcess, OpenProcessToken},
};

/// Owner, group and DACL: what records show and trust checks read (the SACL needs a
/// privilege and is about auditing, not access).
const WANTED: u32 =
    OWNER_SECURITY_INFORMATION | GROUP_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION;

fn wide_path(path: &Path) -> Vec<u16> {
    path.as_os_str().encode_wide().chain(Some(0)).collect()
}

fn wide_text(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(Some(0)).collect()
}

/// Frees a LocalAlloc'd pointer the system handed us when dropped.
struct Local(*mut core::ffi::c_void);

impl Drop for Local {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the pointer came from a system call that allocates with LocalAlloc,
            // and is freed once, here.
            unsafe { LocalFree(self.0) };
        }
    }
}

/// The SDDL text of the self-relative or absolute descriptor at `descriptor`.
///
/// # Safety
/// `descriptor` must point at a valid security descriptor that outlives the call.
pub(crate) unsafe fn descriptor_sddl(descriptor: PSECURITY_DESCRIPTOR) -> io::Result<String> {
    let mut text: *mut u16 = null_mut();
    let mut len = 0u32;
    // SAFETY: the caller vouches for `descriptor`; on success `text` is a LocalAlloc'd string
    // of `len` units, freed by the guard.
    let converted = unsafe {
        ConvertSecurityDescriptorToStringSecurityDescriptorW(
            descriptor,
            SDDL_REVISION_1,
            WANTED,
            &mut text,
            &mut len,
        )
    };
    if converted == 0 || text.is_null() {
        return Err(io::Error::last_os_error());
    }
    let guard = Local(text.cast());
    // SAFETY: `text` holds `len` units written by the call above (the text stops at a NUL).
    let (sddl, _) = text_from_utf16(unsafe { std::slice::from_raw_parts(text, len as usize) });
    drop(guard);
    Ok(sddl)
}

/// Runs `fetch` (a GetSecurityInfo-style call filling a LocalAlloc'd descriptor) and returns
/// the descriptor's SDDL, freeing it.
fn fetched_sddl(fetch: impl FnOnce(*mut PSECURITY_DESCRIPTOR) -> u32) -> io::Result<String> {
    let mut descriptor: PSECURITY_DESCRIPTOR = null_mut();
    let status = fetch(&mut descriptor);
    if status != ERROR_SUCCESS {
        return Err(io::Error::from_raw_os_error(status as i32));
    }
    let guard = Local(descriptor);
    // SAFETY: the call succeeded, so `descriptor` is a valid descriptor, alive until the guard
    // drops after this line.
    let sddl = unsafe { descriptor_sddl(descriptor) };
    drop(guard);
    sddl
}

/// The owner, group and DACL of the open object `file` (opened with READ_CONTROL).
pub(crate) fn handle_sddl(file: &impl AsRawHandle) -> io::Result<String> {
    fetched_sddl(|descriptor| {
        // SAFETY: the handle is open for the duration of the call; `descriptor` is written on
        // success only.
        unsafe {
            GetSecurityInfo(
                file.as_raw_handle() as HANDLE,
                SE_FILE_OBJECT,
                WANTED,
                null_mut(),
                null_mut(),
                null_mut(),
                null_mut(),
                descriptor,
            )
        }
    })
}

/// The owner, group and DACL of the object at `path`.
pub(crate) fn path_sddl(path: &Path) -> io::Result<String> {
    let wide = wide_path(path);
    fetched_sddl(|descriptor| {
        // SAFETY: `wide` is NUL-terminated and outlives the call.
        unsafe {
            GetNamedSecurityInfoW(
                wide.as_ptr(),
                SE_FILE_OBJECT,
                WANTED,
                null_mut(),
                null_mut(),
                null_mut(),
                null_mut(),
                descriptor,
            )
        }
    })
}

/// The SID string of `sid`.
///
/// # Safety
/// `sid` must point at a valid SID.
pub(crate) unsafe fn sid_string(sid: PSID) -> io::Result<String> {
    let mut text: *mut u16 = null_mut();
    // SAFETY: the caller vouches for `sid`; `text` is LocalAlloc'd on success.
    if unsafe { ConvertSidToStringSidW(sid, &mut text) } == 0 || text.is_null() {
        return Err(io::Error::last_os_error());
    }
    let guard = Local(text.cast());
    // SAFETY: a NUL-terminated string the call allocated.
    let len = (0..)
        .take_while(|&at| unsafe { *text.add(at) } != 0)
        .count();
    // SAFETY: `len` units before the NUL.
    let (sid, _) = text_from_utf16(unsafe { std::slice::from_raw_parts(text, len) });
    drop(guard);
    Ok(sid)
}

/// The SID string of the account this process runs as (LocalSystem for the service).
pub(crate) fn own_sid() -> io::Result<String> {
    let mut token: HANDLE = null_mut();
    // SAFETY: the pseudo handle of this process; `token` is closed below.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // u64 cells: TOKEN_USER holds a pointer.
    let mut buffer = vec![0u64; 64];
    let mut len = 0u32;
    // SAFETY: the buffer's size in bytes is passed; the token is open.
    let ok = unsafe {
        GetTokenInformation(
            token,
            TokenUser,
            buffer.as_mut_ptr().cast(),
            (buffer.len() * 8) as u32,
            &mut len,
        )
    };
    let error = io::Error::last_os_error();
    // SAFETY: opened above, closed once.
    unsafe { CloseHandle(token) };
    if ok == 0 {
        return Err(error);
    }
    // SAFETY: on success the buffer starts with a TOKEN_USER whose SID points into it.
    unsafe {
        let user = &*(buffer.as_ptr() as *const TOKEN_USER);
        sid_string(user.User.Sid)
    }
}

/// `DOMAIN\name` (or a well-known name) of the SID string `sid`; None when the system does
/// not know it, and the SID is shown instead.
pub(crate) fn account_name(sid: &str) -> Option<String> {
    let wide = wide_text(sid);
    let mut binary: PSID = null_mut();
    // SAFETY: `wide` is NUL-terminated; `binary` is LocalAlloc'd on success.
    if unsafe { ConvertStringSidToSidW(wide.as_ptr(), &mut binary) } == 0 {
        return None;
    }
    let guard = Local(binary);
    let mut name = vec![0u16; 256];
    let mut domain = vec![0u16; 256];
    let (mut name_len, mut domain_len) = (name.len() as u32, domain.len() as u32);
    let mut kind: SID_NAME_USE = 0;
    // SAFETY: the buffers' lengths in units are passed; the SID is alive (guard).
    let found = unsafe {
        LookupAccountSidW(
            null(),
            binary,
            name.as_mut_ptr(),
            &mut name_len,
            domain.as_mut_ptr(),
            &mut domain_len,
            &mut kind,
        )
    };
    drop(guard);
    if found == 0 {
        return None;
    }
    let (name, _) = text_from_utf16(&name[..name_len as usize]);
    let (domain, _) = text_from_utf16(&domain[..domain_len as usize]);
    Some(if domain.is_empty() {
        name
    } else {
        format!("{domain}\\{name}")
    })
}

/// Creates the directory `path` (its parent must exist) with the security descriptor `sddl`;
/// an existing directory is left as it is (the trust check judges it).
pub(crate) fn create_dir_with(path: &Path, sddl: &str) -> io::Result<()> {
    let text = wide_text(sddl);
    let mut descriptor: PSECURITY_DESCRIPTOR = null_mut();
    // SAFETY: `text` is NUL-terminated; the descriptor is LocalAlloc'd on success.
    let ok = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            text.as_ptr(),
            SDDL_REVISION_1,
            &mut descriptor,
            null_mut(),
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    let guard = Local(descriptor);
    let attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: descriptor,
        bInheritHandle: 0,
    };
    let wide = wide_path(path);
    // SAFETY: both pointers are alive for the call.
    let created = unsafe { CreateDirectoryW(wide.as_ptr(), &attributes) };
    let error = io::Error::last_os_error();
    drop(guard);
    if created == 0 && error.kind() != io::ErrorKind::AlreadyExists {
        return Err(error);
    }
    Ok(())
}
