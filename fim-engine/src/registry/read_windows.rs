//! [`KeyReader`] for the real registry (Win32, windows-sys): a key's values, its direct
//! subkeys, its last-write time and its security descriptor as SDDL.
//!
//! Names keep the spelling the registry returned and are decoded from UTF-16 lossily: the
//! registry stores counted UTF-16 that need not be valid (an unpaired surrogate is legal), and
//! such a name must still show up rather than fail the read. Value data stays raw bytes; what
//! they become in a record (and how much of a huge value is kept) is decided later.
//!
//! The registry changes while it is read: the counts and maximum lengths that
//! `RegQueryInfoKeyW` returns are a hint, so a value that grew in between (`ERROR_MORE_DATA`)
//! is read again with the new sizes, a bounded number of times.
use std::ptr::{null, null_mut};

use fim_model::{columns::text_from_utf16, object::hive_of};
use windows_sys::Win32::{
    Foundation::{
        ERROR_ACCESS_DENIED, ERROR_FILE_NOT_FOUND, ERROR_INSUFFICIENT_BUFFER,
        ERROR_INVALID_PARAMETER, ERROR_MORE_DATA, ERROR_NO_MORE_ITEMS, ERROR_SUCCESS, FILETIME,
    },
    Security::{DACL_SECURITY_INFORMATION, GROUP_SECURITY_INFORMATION, OWNER_SECURITY_INFORMATION},
    System::{
        Diagnostics::Debug::{
            FormatMessageW, FORMAT_MESSAGE_FROM_SYSTEM, FORMAT_MESSAGE_IGNORE_INSERTS,
        },
        Registry::{
            RegCloseKey, RegEnumKeyExW, RegEnumValueW, RegGetKeySecurity, RegOpenKeyExW,
            RegQueryInfoKeyW, HKEY, HKEY_CLASSES_ROOT, HKEY_CURRENT_CONFIG, HKEY_CURRENT_USER,
            HKEY_LOCAL_MACHINE, HKEY_PERFORMANCE_DATA, HKEY_USERS, KEY_READ, KEY_WOW64_32KEY,
            KEY_WOW64_64KEY,
        },
    },
};

use super::{KeyReader, KeySnapshot, RegistryError, RegistryValue, RegistryView};

/// The real registry.
#[derive(Clone, Copy, Debug, Default)]
pub struct WindowsRegistry;

impl KeyReader for WindowsRegistry {
    fn read_key(
        &self,
        key: &str,
        view: RegistryView,
        read_values: bool,
    ) -> Result<Option<KeySnapshot>, RegistryError> {
        let Some(handle) = open_key(key, view, KEY_READ)? else {
            return Ok(None);
        };
        let info = query_info(&handle, key)?;
        let mut snapshot = KeySnapshot {
            last_write: info.last_write,
            ..KeySnapshot::default()
        };
        for name in subkey_names(&handle, key, &info)? {
            snapshot.insert_subkey(&name);
        }
        if read_values {
            for value in values(&handle, key, info.max_value_name, info.max_value_data)? {
                snapshot.insert_value(value);
            }
        }
        snapshot.sddl = sddl(&handle, key, info.security_len);
        Ok(Some(snapshot))
    }
}

/// An open key, closed when dropped (on every path, errors included).
pub(crate) struct Key(HKEY);

impl Key {
    pub(crate) fn raw(&self) -> HKEY {
        self.0
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        // SAFETY: the handle came from RegOpenKeyExW, is owned by this guard alone and is
        // closed exactly once, here.
        let status = unsafe { RegCloseKey(self.0) };
        if status != ERROR_SUCCESS {
            tracing::debug!(status, "RegCloseKey failed");
        }
    }
}

/// `key` as the predefined hive handle and the path below it ("" for the hive itself);
/// either hive spelling (`HKLM` or `HKEY_LOCAL_MACHINE`) is accepted.
fn split_hive(key: &str) -> Result<(HKEY, &str), RegistryError> {
    let no_hive = || RegistryError::NoHive {
        key: key.to_string(),
    };
    let hive = match hive_of(key).ok_or_else(no_hive)? {
        "HKEY_LOCAL_MACHINE" => HKEY_LOCAL_MACHINE,
        "HKEY_CURRENT_USER" => HKEY_CURRENT_USER,
        "HKEY_USERS" => HKEY_USERS,
        "HKEY_CLASSES_ROOT" => HKEY_CLASSES_ROOT,
        "HKEY_CURRENT_CONFIG" => HKEY_CURRENT_CONFIG,
        "HKEY_PERFORMANCE_DATA" => HKEY_PERFORMANCE_DATA,
        _ => return Err(no_hive()),
    };
    let rest = key.split_once('\\').map_or("", |(_, rest)| rest);
    Ok((hive, rest.trim_matches('\\')))
}

/// `text` NUL-terminated for Win32.
pub(crate) fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(std::iter::once(0)).collect()
}

/// The WOW64 flag that selects `view`: explicit both ways, so a 32-bit build of this code
/// still reads the native view when asked to.
pub(crate) fn view_flag(view: RegistryView) -> u32 {
    match view {
        RegistryView::Native => KEY_WOW64_64KEY,
        RegistryView::Wow32 => KEY_WOW64_32KEY,
    }
}

/// Opens `key` in `view` for `access`: `Ok(None)` when it does not exist.
pub(crate) fn open_key(
    key: &str,
    view: RegistryView,
    access: u32,
) -> Result<Option<Key>, RegistryError> {
    let (hive, path) = split_hive(key)?;
    if path.contains('\0') {
        // Win32 would read the name only up to the NUL, i.e. another key.
        return Err(os_error(key, ERROR_INVALID_PARAMETER));
    }
    let path = wide(path);
    let mut handle: HKEY = null_mut();
    // SAFETY: `path` is NUL-terminated and outlives the call; `handle` is written on success.
    let status = unsafe {
        RegOpenKeyExW(
            hive,
            path.as_ptr(),
            0,
            access | view_flag(view),
            &mut handle,
        )
    };
    match status {
        ERROR_SUCCESS => Ok(Some(Key(handle))),
        ERROR_FILE_NOT_FOUND => Ok(None),
        code => Err(os_error(key, code)),
    }
}

/// A failed call's status as the error for `key`, with the system's text for it.
pub(crate) fn os_error(key: &str, code: u32) -> RegistryError {
    if code == ERROR_ACCESS_DENIED {
        return RegistryError::AccessDenied {
            key: key.to_string(),
        };
    }
    RegistryError::Os {
        key: key.to_string(),
        code,
        message: system_message(code),
    }
}

/// The system's text for a Win32 error code, or a fixed text when it has none.
pub(crate) fn system_message(code: u32) -> String {
    let mut buffer = [0u16; 512];
    // SAFETY: the system writes at most `buffer.len()` units into our buffer; no inserts are
    // expanded, so no argument array is read.
    let written = unsafe {
        FormatMessageW(
            FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS,
            null(),
            code,
            0,
            buffer.as_mut_ptr(),
            buffer.len() as u32,
            null(),
        )
    };
    let written = (written as usize).min(buffer.len());
    let (text, _) = text_from_utf16(&buffer[..written]);
    let text = text.trim_end_matches(['\r', '\n', ' ', '.']);
    if text.is_empty() {
        "unknown error".to_string()
    } else {
        text.to_string()
    }
}

/// What RegQueryInfoKeyW says about a key. Lengths are in UTF-16 units without the NUL for
/// names, in bytes for data and the security descriptor.
pub(crate) struct KeyInfo {
    pub subkeys: u32,
    pub max_subkey_name: u32,
    pub values: u32,
    pub max_value_name: u32,
    pub max_value_data: u32,
    pub security_len: u32,
    pub last_write: u64,
}

pub(crate) fn query_info(handle: &Key, key: &str) -> Result<KeyInfo, RegistryError> {
    let mut info = KeyInfo {
        subkeys: 0,
        max_subkey_name: 0,
        values: 0,
        max_value_name: 0,
        max_value_data: 0,
        security_len: 0,
        last_write: 0,
    };
    let mut written = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    // SAFETY: every out pointer is a live local or field; the class is not asked for.
    let status = unsafe {
        RegQueryInfoKeyW(
            handle.raw(),
            null_mut(),
            null_mut(),
            null(),
            &mut info.subkeys,
            &mut info.max_subkey_name,
            null_mut(),
            &mut info.values,
            &mut info.max_value_name,
            &mut info.max_value_data,
            &mut info.security_len,
            &mut written,
        )
    };
    if status != ERROR_SUCCESS {
        return Err(os_error(key, status));
    }
    info.last_write = (u64::from(written.dwHighDateTime) << 32) | u64::from(written.dwLowDateTime);
    Ok(info)
}

/// The longest key name Windows allows, in UTF-16 units: a buffer one longer never overflows.
const MAX_KEY_NAME: usize = 255;
/// The longest value name Windows allows, in UTF-16 units.
const MAX_VALUE_NAME: usize = 16_383;
/// How many times one value is re-read after it outgrew the buffers sized for it.
const GROWTH_RETRIES: usize = 8;

fn subkey_names(handle: &Key, key: &str, info: &KeyInfo) -> Result<Vec<String>, RegistryError> {
    let capacity = (info.max_subkey_name as usize).max(MAX_KEY_NAME) + 1;
    let mut buffer = vec![0u16; capacity];
    let mut names = Vec::with_capacity(info.subkeys as usize);
    for index in 0u32.. {
        let mut len = buffer.len() as u32;
        // SAFETY: `len` is the buffer's size in units; the class and time are not asked for.
        let status = unsafe {
            RegEnumKeyExW(
                handle.raw(),
                index,
                buffer.as_mut_ptr(),
                &mut len,
                null(),
                null_mut(),
                null_mut(),
                null_mut(),
            )
        };
        match status {
            ERROR_SUCCESS => names.push(lossy(&buffer, len)),
            ERROR_NO_MORE_ITEMS => break,
            code => return Err(os_error(key, code)),
        }
    }
    Ok(names)
}

/// The first `len` units of `buffer` as text, invalid UTF-16 replaced (never dropped).
fn lossy(buffer: &[u16], len: u32) -> String {
    let units = &buffer[..(len as usize).min(buffer.len())];
    let (text, invalid) = text_from_utf16(units);
    if invalid {
        tracing::debug!(name = %text, "a registry name is not valid UTF-16");
    }
    text
}

/// Every value of the key, read with buffers first sized `name_len` units and `data_len`
/// bytes (RegQueryInfoKeyW's maxima; grown when a value outgrew them).
pub(crate) fn values(
    handle: &Key,
    key: &str,
    name_len: u32,
    data_len: u32,
) -> Result<Vec<RegistryValue>, RegistryError> {
    let mut name = vec![0u16; name_len as usize + 1];
    // Never empty: with a NULL data pointer the call succeeds and only reports the size.
    let mut data = vec![0u8; (data_len as usize).max(1)];
    let mut values = Vec::new();
    let mut index = 0u32;
    let mut retries = 0;
    loop {
        let mut name_units = name.len() as u32;
        let mut data_bytes = data.len() as u32;
        let mut kind = 0u32;
        // SAFETY: the lengths are the buffers' sizes (units, bytes) and both buffers are live.
        let mut status = unsafe {
            RegEnumValueW(
                handle.raw(),
                index,
                name.as_mut_ptr(),
                &mut name_units,
                null(),
                &mut kind,
                data.as_mut_ptr(),
                &mut data_bytes,
            )
        };
        if status == ERROR_SUCCESS && data_bytes as usize > data.len() {
            // Not expected from a successful call, but never cut a value short silently.
            status = ERROR_MORE_DATA;
        }
        match status {
            ERROR_SUCCESS => {
                values.push(RegistryValue {
                    name: lossy(&name, name_units),
                    kind,
                    data: data[..data_bytes as usize].to_vec(),
                });
                index += 1;
                retries = 0;
            }
            ERROR_NO_MORE_ITEMS => return Ok(values),
            ERROR_MORE_DATA if retries < GROWTH_RETRIES => {
                retries += 1;
                grow(handle, key, &mut name, &mut data, data_bytes)?;
            }
            code => return Err(os_error(key, code)),
        }
    }
}

/// After ERROR_MORE_DATA: the buffers sized for the key's maxima as they are now, and at least
/// doubled when those did not grow (the call does not say which buffer was short).
fn grow(
    handle: &Key,
    key: &str,
    name: &mut Vec<u16>,
    data: &mut Vec<u8>,
    wanted_bytes: u32,
) -> Result<(), RegistryError> {
    let info = query_info(handle, key)?;
    let name_len = (info.max_value_name as usize + 1)
        .max(name.len() * 2)
        .min(MAX_VALUE_NAME + 1);
    let data_len = (info.max_value_data as usize)
        .max(wanted_bytes as usize)
        .max(data.len() * 2)
        .max(16);
    tracing::debug!(
        key,
        name_len,
        data_len,
        "a value outgrew its buffer; reading it again"
    );
    name.resize(name_len, 0);
    data.resize(data_len, 0);
    Ok(())
}

/// The key's owner, group and DACL as SDDL; `None` (logged) when the system cannot give them,
/// which does not fail the read.
fn sddl(handle: &Key, key: &str, hint: u32) -> Option<String> {
    let wanted =
        OWNER_SECURITY_INFORMATION | GROUP_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION;
    // u64 cells: a self-relative descriptor wants pointer-ish alignment.
    let mut len = hint.max(64);
    let mut buffer: Vec<u64> = Vec::new();
    let mut status = ERROR_INSUFFICIENT_BUFFER;
    for _ in 0..GROWTH_RETRIES {
        buffer.resize((len as usize).div_ceil(8), 0);
        len = (buffer.len() * 8) as u32;
        // SAFETY: `len` is the buffer's size in bytes; on a short buffer the call only writes
        // the size it wants into `len`.
        status = unsafe {
            RegGetKeySecurity(handle.raw(), wanted, buffer.as_mut_ptr().cast(), &mut len)
        };
        if status != ERROR_INSUFFICIENT_BUFFER {
            break;
        }
    }
    if status != ERROR_SUCCESS {
        tracing::debug!(
            key,
            status,
            "RegGetKeySecurity failed; the key is read without SDDL"
        );
        return None;
    }
    // SAFETY: the buffer holds the descriptor the system just wrote, alive for the call.
    match unsafe { crate::security_windows::descriptor_sddl(buffer.as_mut_ptr().cast()) } {
        Ok(sddl) => Some(sddl),
        Err(error) => {
            tracing::debug!(key, %error, "the security descriptor has no SDDL; read without it");
            None
        }
    }
}

#[cfg(test)]
#[path = "read_windows_tests.rs"]
pub(crate) mod tests;
