//! Who-data from a running ETW session, for the reconciler (see [`crate::attribution`]).
//!
//! The session's consumer thread hands every event to [`LiveWhoData::observe`]; the reconciler
//! asks [`LiveWhoData::actor_for`] for the actor of each real-time record before journaling it.
//! ETW delivers events in batches (the session's flush timer, a second), while a registry
//! notification can be read within milliseconds of the change: so a record waits until the
//! session has delivered events up to the record's own time, or [`CATCH_UP`] has passed,
//! before the latest operation on its object is looked up. Where the session is not running
//! (Wine, a failed start) nothing waits and records carry no actor: losing who-data never
//! delays or loses detection.
use std::{
    sync::{Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use fim_model::{
    actor::{Actor, UserIdentity, WindowsUser},
    change::ChangeRecord,
    Timestamp,
};

use super::{
    correlate::{Attribution, WhoData},
    EtwEvent,
};
use crate::attribution::Attributor;

/// The longest a record waits for the session to catch up with its time.
pub const CATCH_UP: Duration = Duration::from_secs(2);
/// How far before a record's time its object's operation may lie: a notification is read
/// within a second of the change, but a burst of changes can queue behind a slow key read.
pub const WINDOW: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct State {
    who: WhoData,
    /// The newest event time delivered so far.
    newest: Option<Timestamp>,
    /// Whether a session is delivering events (false: never wait).
    live: bool,
}

/// Who-data shared by the session's consumer thread and the reconciler.
#[derive(Debug)]
pub struct LiveWhoData {
    state: Mutex<State>,
    arrived: Condvar,
}

impl LiveWhoData {
    /// `devices`: the kernel device of each drive (`\Device\HarddiskVolume3`, `C:`).
    pub fn new(devices: &[(&str, &str)]) -> Self {
        LiveWhoData {
            state: Mutex::new(State {
                who: WhoData::new(devices),
                newest: None,
                live: false,
            }),
            arrived: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The session started (true) or ended (false); while not live, records do not wait.
    pub fn set_live(&self, live: bool) {
        self.lock().live = live;
        self.arrived.notify_all();
    }

    /// Takes in one event from the session.
    pub fn observe(&self, event: &EtwEvent) {
        let mut state = self.lock();
        state.who.observe(event);
        let time = event.time();
        if state.newest.is_none_or(|newest| time > newest) {
            state.newest = Some(time);
        }
        drop(state);
        self.arrived.notify_all();
    }

    /// Events that could not be decoded so far.
    pub fn undecodable(&self) -> u64 {
        self.lock().who.undecodable
    }

    /// `actor_for` with an explicit catch-up limit (tests use a short one): the latest
    /// operation on the record's object, waiting while the session has not yet delivered
    /// events up to the record's time (at most `limit`).
    pub fn actor_within(&self, record: &ChangeRecord, limit: Duration) -> Option<Actor> {
        let detected = record.time_generated;
        let deadline = Instant::now() + limit;
        let mut state = self.lock();
        loop {
            if let Some(attribution) = lookup(&state.who, record) {
                return Some(actor_of(attribution, &state.who));
            }
            let caught_up = state.newest.is_some_and(|newest| newest >= detected);
            let now = Instant::now();
            if !state.live || caught_up || now >= deadline {
                return None;
            }
            state = match self.arrived.wait_timeout(state, deadline - now) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// The latest operation on the record's object, up to [`WINDOW`] before the record.
fn lookup<'a>(who: &'a WhoData, record: &ChangeRecord) -> Option<&'a Attribution> {
    let detected = record.time_generated;
    if let Some(registry) = &record.registry {
        who.who_changed_key(
            &registry.registry_key,
            registry.value_name.as_deref(),
            detected,
            WINDOW,
        )
    } else if let Some(file) = &record.file {
        who.who_changed_file(&file.file_system_path, detected, WINDOW)
    } else {
        // Services: the service control manager (services.exe) writes their keys, so the
        // registry events would name it, not the caller. No who-data for them.
        None
    }
}

impl Attributor for LiveWhoData {
    fn actor_for(&self, record: &ChangeRecord) -> Option<Actor> {
        self.actor_within(record, CATCH_UP)
    }
}

/// An attribution as a record's actor: the image as a drive path, the SID with its account.
fn actor_of(attribution: &Attribution, who: &WhoData) -> Actor {
    let executable = attribution
        .image
        .as_deref()
        .map(|image| who.dos_path(image));
    let process_name = executable
        .as_deref()
        .and_then(|path| path.rsplit('\\').next())
        .map(str::to_string)
        // The process started before the session: ETW named no image for it.
        .unwrap_or_else(|| format!("pid {}", attribution.pid));
    let user_sid = attribution.sid.clone().unwrap_or_default();
    let account = crate::users::sid_name(&user_sid);
    Actor {
        process_id: attribution.pid,
        thread_id: attribution.tid,
        process_name,
        executable,
        parent_process_id: attribution.parent.unwrap_or(0),
        user: UserIdentity::Windows(WindowsUser {
            account_name: (!user_sid.is_empty() && account != user_sid).then_some(account),
            user_sid,
            logon_id: None,
        }),
    }
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
