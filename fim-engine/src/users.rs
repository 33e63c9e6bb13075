//! uid/gid to names, as records show them (Azure's Owner and Group are names).
use std::{
    collections::HashMap,
    ffi::CStr,
    sync::{Mutex, OnceLock},
};

fn cache() -> &'static Mutex<HashMap<(bool, u32), String>> {
    static CACHE: OnceLock<Mutex<HashMap<(bool, u32), String>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The user's name, or the number as text when there is no such user.
pub fn user_name(uid: u32) -> String {
    cached(false, uid, || lookup_user(uid))
}

/// The group's name, or the number as text.
pub fn group_name(gid: u32) -> String {
    cached(true, gid, || lookup_group(gid))
}

fn cached(group: bool, id: u32, lookup: impl FnOnce() -> Option<String>) -> String {
    if let Ok(cache) = cache().lock() {
        if let Some(name) = cache.get(&(group, id)) {
            return name.clone();
        }
    }
    let name = lookup().unwrap_or_else(|| id.to_string());
    if let Ok(mut cache) = cache().lock() {
        cache.insert((group, id), name.clone());
    }
    name
}

fn lookup_user(uid: u32) -> Option<String> {
    let mut buffer = vec![0u8; 4096];
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result = std::ptr::null_mut();
    // SAFETY: buffer and entry outlive the call; result points into them or is null.
    let status = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            &mut result,
        )
    };
    if status != 0 || result.is_null() || entry.pw_name.is_null() {
        return None;
    }
    // SAFETY: pw_name is a NUL-terminated string inside buffer.
    Some(
        unsafe { CStr::from_ptr(entry.pw_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

fn lookup_group(gid: u32) -> Option<String> {
    let mut buffer = vec![0u8; 4096];
    let mut entry: libc::group = unsafe { std::mem::zeroed() };
    let mut result = std::ptr::null_mut();
    // SAFETY: as in lookup_user.
    let status = unsafe {
        libc::getgrgid_r(
            gid,
            &mut entry,
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            &mut result,
        )
    };
    if status != 0 || result.is_null() || entry.gr_name.is_null() {
        return None;
    }
    // SAFETY: gr_name is a NUL-terminated string inside buffer.
    Some(
        unsafe { CStr::from_ptr(entry.gr_name) }
            .to_string_lossy()
            .into_owned(),
    )
}
