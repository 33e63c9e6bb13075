//! [`crate::users`] on Windows: there are no uids or gids to name (owners are SIDs, which the
//! Windows file observer will read with the DACL), so nothing is found.

pub(crate) fn lookup_user(_uid: u32) -> Option<String> {
    None
}

pub(crate) fn lookup_group(_gid: u32) -> Option<String> {
    None
}
