//! Change notification for registry keys: [`KeyNotifier`] wraps `RegNotifyChangeKeyValue` on
//! one key with an auto-reset event.
//!
//! A notification only says "something changed" (a value or subkey name, a value's data, an
//! attribute or the security descriptor; with `subtree`, anywhere below too), never what: the
//! caller re-reads the key and compares it with the baseline. A notification is one-shot, so
//! the caller re-arms it with [`KeyNotifier::arm`] BEFORE re-reading the key: a change made
//! while the key is being read then fires the next notification instead of being lost.
//!
//! Three Windows rules the caller must know:
//! - the watch belongs to the thread that armed it: when that thread exits, the event is
//!   signalled and the watch ends, so arm from the thread that keeps waiting;
//! - deleting the watched key fires its notification; the handle then refers to a deleted key
//!   (arming it again fails with ERROR_KEY_DELETED, 1018), so the caller re-opens the notifier,
//!   and [`KeyNotifier::open`] returns `None` while the key is absent;
//! - closing the notifier (drop) signals nothing anyone waits on any more.
//!
//! Wine 8.0 (the test lane) differs in one way: a security descriptor change does not fire
//! (REG_NOTIFY_CHANGE_SECURITY is accepted but never signalled), so there a DACL change is
//! seen only by the next read of the key.
use std::{ptr::null, time::Duration};

use windows_sys::Win32::{
    Foundation::{
        CloseHandle, GetLastError, ERROR_INVALID_PARAMETER, ERROR_SUCCESS, HANDLE, WAIT_FAILED,
        WAIT_OBJECT_0, WAIT_TIMEOUT,
    },
    System::{
        Registry::{
            RegNotifyChangeKeyValue, KEY_NOTIFY, REG_NOTIFY_CHANGE_ATTRIBUTES,
            REG_NOTIFY_CHANGE_LAST_SET, REG_NOTIFY_CHANGE_NAME, REG_NOTIFY_CHANGE_SECURITY,
        },
        Threading::{CreateEventW, WaitForMultipleObjects, WaitForSingleObject, INFINITE},
    },
};

use super::{
    read_windows::{open_key, os_error, system_message, Key},
    RegistryError, RegistryView,
};

/// How many handles one WaitForMultipleObjects call takes (MAXIMUM_WAIT_OBJECTS).
pub const MAX_WAIT: usize = 64;

/// What [`KeyNotifier::wait`] saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notified {
    Changed,
    TimedOut,
}

/// An auto-reset event, closed when dropped.
struct Event(HANDLE);

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: the handle came from CreateEventW, is owned by this guard alone and is
        // closed exactly once, here.
        if unsafe { CloseHandle(self.0) } == 0 {
            tracing::debug!("CloseHandle on a registry notifier's event failed");
        }
    }
}

/// One key watched for changes; see the module documentation for the arm-then-read rule.
pub struct KeyNotifier {
    // Declared before the event: the key is closed first, while its event still exists.
    key: Key,
    event: Event,
    name: String,
    subtree: bool,
}

impl KeyNotifier {
    /// Opens `key` (long or short hive first) in `view` for watching, `subtree` to watch
    /// everything below it too. `Ok(None)` when the key does not exist. Not armed yet: call
    /// [`KeyNotifier::arm`] before reading the key for the first time.
    pub fn open(
        key: &str,
        view: RegistryView,
        subtree: bool,
    ) -> Result<Option<Self>, RegistryError> {
        let Some(handle) = open_key(key, view, KEY_NOTIFY)? else {
            return Ok(None);
        };
        // SAFETY: no security attributes, no name; auto-reset (FALSE), initially unsignalled.
        let event = unsafe { CreateEventW(null(), 0, 0, null()) };
        if event.is_null() {
            // SAFETY: reads the calling thread's last error, set by the failed call.
            return Err(os_error(key, unsafe { GetLastError() }));
        }
        Ok(Some(KeyNotifier {
            key: handle,
            event: Event(event),
            name: key.to_string(),
            subtree,
        }))
    }

    /// The key as it was given to [`KeyNotifier::open`].
    pub fn key(&self) -> &str {
        &self.name
    }

    /// Arms (or re-arms) the one-shot notification. Call it before re-reading the key, so a
    /// change made during the read fires the next wait.
    pub fn arm(&mut self) -> Result<(), RegistryError> {
        let filter = REG_NOTIFY_CHANGE_NAME
            | REG_NOTIFY_CHANGE_LAST_SET
            | REG_NOTIFY_CHANGE_ATTRIBUTES
            | REG_NOTIFY_CHANGE_SECURITY;
        // SAFETY: the key and the event are open handles owned by `self`, which outlives the
        // asynchronous registration (dropping it closes the key, which ends the watch).
        let status = unsafe {
            RegNotifyChangeKeyValue(
                self.key.raw(),
                i32::from(self.subtree),
                filter,
                self.event.0,
                1,
            )
        };
        if status != ERROR_SUCCESS {
            return Err(os_error(&self.name, status));
        }
        Ok(())
    }

    /// Waits up to `timeout` for the armed notification.
    pub fn wait(&self, timeout: Duration) -> Result<Notified, RegistryError> {
        // SAFETY: the event is an open handle owned by `self`.
        let status = unsafe { WaitForSingleObject(self.event.0, millis(timeout)) };
        match status {
            WAIT_OBJECT_0 => Ok(Notified::Changed),
            WAIT_TIMEOUT => Ok(Notified::TimedOut),
            _ => Err(wait_error(&self.name, status)),
        }
    }
}

/// Waits up to `timeout` for any of `notifiers` (at most [`MAX_WAIT`]): the index of one that
/// fired (the lowest when several did; the others stay signalled for the next call), or `None`
/// on timeout. With no notifiers it sleeps out the timeout, so a caller's loop does not spin.
pub fn wait_any(
    notifiers: &[&KeyNotifier],
    timeout: Duration,
) -> Result<Option<usize>, RegistryError> {
    if notifiers.len() > MAX_WAIT {
        return Err(RegistryError::Os {
            key: format!("{} keys", notifiers.len()),
            code: ERROR_INVALID_PARAMETER,
            message: format!("at most {MAX_WAIT} registry keys can be waited on at once"),
        });
    }
    if notifiers.is_empty() {
        std::thread::sleep(timeout);
        return Ok(None);
    }
    let events: Vec<HANDLE> = notifiers.iter().map(|notifier| notifier.event.0).collect();
    // SAFETY: `events` holds 1..=64 open event handles borrowed from live notifiers.
    let status =
        unsafe { WaitForMultipleObjects(events.len() as u32, events.as_ptr(), 0, millis(timeout)) };
    let fired = status.wrapping_sub(WAIT_OBJECT_0) as usize;
    if fired < events.len() {
        return Ok(Some(fired));
    }
    if status == WAIT_TIMEOUT {
        return Ok(None);
    }
    Err(wait_error(&format!("{} keys", notifiers.len()), status))
}

/// `timeout` in milliseconds for a wait, just short of INFINITE (which would never return).
fn millis(timeout: Duration) -> u32 {
    u32::try_from(timeout.as_millis()).map_or(INFINITE - 1, |ms| ms.min(INFINITE - 1))
}

fn wait_error(key: &str, status: u32) -> RegistryError {
    let code = if status == WAIT_FAILED {
        // SAFETY: reads the calling thread's last error, set by the failed wait.
        unsafe { GetLastError() }
    } else {
        status
    };
    RegistryError::Os {
        key: key.to_string(),
        code,
        message: system_message(code),
    }
}

#[cfg(test)]
#[path = "notify_windows_tests.rs"]
mod tests;
