//! uid/gid to names, as records show them (Azure's Owner and Group are names).
//!
//! Windows has no uids: its owners are SIDs, read with the DACL as SDDL; [`sid_name`] names
//! them (`BUILTIN\Administrators`), and elsewhere a SID stays a SID.
use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
};

#[cfg(unix)]
use crate::users_unix::{lookup_group, lookup_user};
#[cfg(windows)]
use crate::users_windows::{lookup_group, lookup_user};

fn cache() -> &'static Mutex<HashMap<(bool, u32), String>> {
    static CACHE: OnceLock<Mutex<HashMap<(bool, u32), String>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The account a SID (or SDDL alias such as `BA`) names, or the SID itself where the system
/// does not know it (always, off Windows).
pub fn sid_name(sid: &str) -> String {
    static CACHE: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(name) = cache.lock().ok().and_then(|cache| cache.get(sid).cloned()) {
        return name;
    }
    #[cfg(windows)]
    let name = crate::security_windows::account_name(sid).unwrap_or_else(|| sid.to_string());
    #[cfg(not(windows))]
    let name = sid.to_string();
    if let Ok(mut cache) = cache.lock() {
        cache.insert(sid.to_string(), name.clone());
    }
    name
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
