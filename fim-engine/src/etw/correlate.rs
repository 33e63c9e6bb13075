//! Correlating ETW events with the changes fimsvc detected: by object and time.
//!
//! The notification sources say *what* changed (a key, a value, a file) shortly after it did;
//! ETW says *who* did something to which object, and when. [`WhoData`] keeps, bounded, what
//! the events named (key objects to key paths, file objects to file paths, pids to images)
//! and the recent modifying operations with their process, image and user taken when the
//! event arrived (so a pid reused later cannot be blamed). A detected change asks for the
//! latest operation on the same object within a window before it.
//!
//! Choices where the providers leave gaps:
//! - A key opened before the session started has no CreateKey/OpenKey event, so its key
//!   object has no name. Its SetValueKey/DeleteValueKey events are still kept, matched by the
//!   value name and by the event's KeyName (often the path relative to the open handle) being
//!   a suffix of the changed key's path; such an attribution is marked `exact: false`.
//! - `HKEY_CURRENT_USER\X` is the kernel's `\REGISTRY\USER\<SID>\X`: it matches an event whose
//!   user SID is that SID.
//! - File paths arrive as `\Device\HarddiskVolumeN\...`; the device-to-drive map
//!   (QueryDosDevice on Windows) turns them into `C:\...`.
use std::collections::{HashMap, VecDeque};

use fim_model::Timestamp;

use super::{
    fields::FieldError,
    file::FileAction,
    process::ProcessOp,
    registry::{user_key_path, RegistryAction},
    Decoded, EtwEvent,
};

/// How many key and file objects, processes and recent operations are kept (each about a
/// hundred bytes: a few MB in all at worst, whatever the event rate).
pub const MAX_OBJECTS: usize = 65_536;
pub const MAX_PROCESSES: usize = 32_768;
pub const MAX_RECENT: usize = 16_384;

/// Who made an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribution {
    pub pid: u32,
    pub tid: u32,
    /// The image as the kernel named it when the event arrived, if its start was seen.
    pub image: Option<String>,
    pub parent: Option<u32>,
    pub sid: Option<String>,
    pub time: Timestamp,
    /// `SetValueKey`, `Write`, ...
    pub operation: &'static str,
    /// False when the object was matched by name alone (see the module).
    pub exact: bool,
}

#[derive(Clone, Debug)]
enum Target {
    /// A key path as records spell it (upper-cased for comparison), with a value name.
    Key {
        path: String,
        value: Option<String>,
    },
    /// A key whose object was never named: the event's KeyName and value name.
    UnnamedKey {
        key_name: String,
        value: Option<String>,
    },
    File {
        path: String,
    },
}

#[derive(Clone, Debug)]
struct ProcessInfo {
    image: String,
    parent: u32,
}

/// A map that forgets its oldest entries beyond a bound.
#[derive(Debug)]
struct Bounded<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    limit: usize,
}

impl<K: std::hash::Hash + Eq + Clone, V> Bounded<K, V> {
    fn new(limit: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
            limit,
        }
    }

    fn insert(&mut self, key: K, value: V) {
        if self.map.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
            while self.order.len() > self.limit {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key)
    }
}

/// What the ETW events said, for attributing changes.
#[derive(Debug)]
pub struct WhoData {
    keys: Bounded<u64, String>,
    files: Bounded<u64, String>,
    processes: Bounded<u32, ProcessInfo>,
    recent: VecDeque<(Target, Attribution)>,
    /// `\Device\HarddiskVolume3` to `C:`, upper-cased keys.
    devices: Vec<(String, String)>,
    /// Events that could not be decoded (counted, never fatal).
    pub undecodable: u64,
}

fn upper(text: &str) -> String {
    text.to_uppercase()
}

impl WhoData {
    pub fn new(devices: &[(&str, &str)]) -> Self {
        WhoData {
            keys: Bounded::new(MAX_OBJECTS),
            files: Bounded::new(MAX_OBJECTS),
            processes: Bounded::new(MAX_PROCESSES),
            recent: VecDeque::new(),
            devices: devices
                .iter()
                .map(|(device, drive)| (upper(device), drive.to_string()))
                .collect(),
            undecodable: 0,
        }
    }

    /// A kernel file path with its device replaced by its drive letter.
    pub fn dos_path(&self, kernel: &str) -> String {
        let upper_path = upper(kernel);
        for (device, drive) in &self.devices {
            if upper_path.starts_with(device.as_str()) && kernel[device.len()..].starts_with('\\') {
                return format!("{drive}{}", &kernel[device.len()..]);
            }
        }
        kernel.to_string()
    }

    /// Takes in one event.
    pub fn observe(&mut self, event: &EtwEvent) {
        match super::decode(event) {
            Ok(Some(decoded)) => self.apply(event, decoded),
            Ok(None) => {}
            Err(FieldError { .. }) => self.undecodable += 1,
        }
    }

    fn attribution(
        &self,
        event: &EtwEvent,
        tid: u32,
        operation: &'static str,
        exact: bool,
    ) -> Attribution {
        let process = self.processes.get(&event.pid);
        Attribution {
            pid: event.pid,
            tid,
            image: process.map(|process| process.image.clone()),
            parent: process.map(|process| process.parent),
            sid: event.sid.clone(),
            time: event.time(),
            operation,
            exact,
        }
    }

    fn remember(&mut self, target: Target, attribution: Attribution) {
        self.recent.push_back((target, attribution));
        while self.recent.len() > MAX_RECENT {
            self.recent.pop_front();
        }
    }

    fn apply(&mut self, event: &EtwEvent, decoded: Decoded) {
        match decoded {
            Decoded::Process(ProcessOp::Start {
                pid, parent, image, ..
            }) => {
                self.processes.insert(pid, ProcessInfo { image, parent });
            }
            // A stopped process keeps its entry until evicted: its last changes may be
            // correlated after it exited.
            Decoded::Process(ProcessOp::Stop { .. }) => {}
            Decoded::Registry(op) => {
                if !op.succeeded() {
                    return;
                }
                let key_path = self.keys.get(&op.key_object).cloned();
                let (operation, value) = match &op.action {
                    RegistryAction::Named {
                        base_object,
                        base_name,
                        relative_name,
                        ..
                    } => {
                        let base = if relative_name.starts_with('\\') {
                            String::new()
                        } else if *base_object != 0 {
                            self.keys.get(base_object).cloned().unwrap_or_default()
                        } else {
                            user_key_path(base_name)
                        };
                        let name = match (base.is_empty(), relative_name.is_empty()) {
                            (true, _) => user_key_path(relative_name),
                            (false, true) => base,
                            (false, false) => format!("{base}\\{relative_name}"),
                        };
                        self.keys.insert(op.key_object, name.clone());
                        if matches!(op.action, RegistryAction::Named { created: true, .. }) {
                            let attribution = self.attribution(event, event.tid, "CreateKey", true);
                            self.remember(
                                Target::Key {
                                    path: upper(&name),
                                    value: None,
                                },
                                attribution,
                            );
                        }
                        return;
                    }
                    RegistryAction::SetValue { value_name, .. } => {
                        ("SetValueKey", Some(value_name.clone()))
                    }
                    RegistryAction::DeleteValue { value_name } => {
                        ("DeleteValueKey", Some(value_name.clone()))
                    }
                    RegistryAction::DeleteKey => ("DeleteKey", None),
                    RegistryAction::SetSecurity => ("SetSecurityKey", None),
                };
                let value = value.map(|value| upper(&value));
                let (target, exact) = match key_path {
                    Some(path) => (
                        Target::Key {
                            path: upper(&path),
                            value,
                        },
                        true,
                    ),
                    None => (
                        Target::UnnamedKey {
                            key_name: upper(&user_key_path(&op.key_name)),
                            value,
                        },
                        false,
                    ),
                };
                let attribution = self.attribution(event, event.tid, operation, exact);
                self.remember(target, attribution);
            }
            Decoded::File(op) => {
                let (operation, path) = match op.action {
                    FileAction::Opened { name, created } => {
                        let path = self.dos_path(&name);
                        self.files.insert(op.file_object, path.clone());
                        if !created {
                            return;
                        }
                        ("CreateNewFile", path)
                    }
                    FileAction::Write { .. } => match self.files.get(&op.file_object) {
                        Some(path) => ("Write", path.clone()),
                        None => return,
                    },
                    FileAction::Delete { path } => ("DeletePath", self.dos_path(&path)),
                    FileAction::Rename { new_path } => {
                        if let Some(old) = self.files.get(&op.file_object).cloned() {
                            let attribution =
                                self.attribution(event, op.issuing_thread, "RenamePath", true);
                            self.remember(Target::File { path: upper(&old) }, attribution);
                        }
                        ("RenamePath", self.dos_path(&new_path))
                    }
                };
                let attribution = self.attribution(event, op.issuing_thread, operation, true);
                self.remember(Target::File { path: upper(&path) }, attribution);
            }
        }
    }

    /// How many recent operations are kept (bounded by [`MAX_RECENT`]).
    pub fn recent_len(&self) -> usize {
        self.recent.len()
    }

    /// Who last changed `key` (a record's RegistryKey, `HKEY_LOCAL_MACHINE\...`) or its value
    /// `value`, at most `window` before `detected` (and not after it).
    pub fn who_changed_key(
        &self,
        key: &str,
        value: Option<&str>,
        detected: Timestamp,
        window: std::time::Duration,
    ) -> Option<&Attribution> {
        let wanted_key = upper(key);
        let wanted_value = value.map(upper);
        let current_user = wanted_key.strip_prefix("HKEY_CURRENT_USER");
        self.latest(detected, window, |target, attribution| match target {
            Target::Key { path, value } => {
                let same_key = *path == wanted_key
                    || current_user.is_some_and(|rest| {
                        attribution
                            .sid
                            .as_ref()
                            .is_some_and(|sid| *path == format!("HKEY_USERS\\{}{rest}", upper(sid)))
                    });
                same_key && (wanted_value.is_none() || *value == wanted_value)
            }
            Target::UnnamedKey { key_name, value } => {
                wanted_value.is_some()
                    && *value == wanted_value
                    && (key_name.is_empty() || wanted_key.ends_with(key_name.as_str()))
            }
            Target::File { .. } => false,
        })
    }

    /// Who last changed the file at `path` (`C:\...`), at most `window` before `detected`.
    pub fn who_changed_file(
        &self,
        path: &str,
        detected: Timestamp,
        window: std::time::Duration,
    ) -> Option<&Attribution> {
        let wanted = upper(path);
        self.latest(
            detected,
            window,
            |target, _| matches!(target, Target::File { path } if *path == wanted),
        )
    }

    fn latest(
        &self,
        detected: Timestamp,
        window: std::time::Duration,
        matches: impl Fn(&Target, &Attribution) -> bool,
    ) -> Option<&Attribution> {
        let until = detected.unix_nanos();
        let from = until.saturating_sub(i64::try_from(window.as_nanos()).unwrap_or(i64::MAX));
        self.recent
            .iter()
            .rev()
            .filter(|(_, attribution)| {
                let at = attribution.time.unix_nanos();
                at >= from && at <= until
            })
            .find(|(target, attribution)| matches(target, attribution))
            .map(|(_, attribution)| attribution)
    }
}
