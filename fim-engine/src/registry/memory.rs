//! An in-memory registry implementing [`KeyReader`], for the platform-neutral tests of the
//! registry diff, baseline and reconciler (the real one is exercised under Wine).
//!
//! It keeps the rules of the real registry that the engine relies on: names compare without
//! case, a key's last-write time moves when one of its values or direct subkeys is set, added
//! or removed (not for changes deeper down), and deleting a key deletes its subtree.
use std::{collections::BTreeMap, sync::Mutex};

use super::{fold, KeyReader, KeySnapshot, RegistryError, RegistryValue, RegistryView};

#[derive(Default)]
struct Keys {
    /// By folded full key name: the key's own spelling and its snapshot (subkeys included).
    keys: BTreeMap<String, KeySnapshot>,
    clock: u64,
}

#[derive(Default)]
pub struct MemoryRegistry {
    state: Mutex<Keys>,
}

fn parent_and_name(key: &str) -> Option<(&str, &str)> {
    key.rsplit_once('\\')
}

impl Keys {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Creates `key` and its missing ancestors below the hive.
    fn create(&mut self, key: &str) {
        if self.keys.contains_key(&fold(key)) {
            return;
        }
        let now = self.tick();
        self.keys.insert(
            fold(key),
            KeySnapshot {
                last_write: now,
                ..KeySnapshot::default()
            },
        );
        if let Some((parent, name)) = parent_and_name(key) {
            self.create(parent);
            if let Some(snapshot) = self.keys.get_mut(&fold(parent)) {
                snapshot.insert_subkey(name);
                snapshot.last_write = now;
            }
        }
    }
}

impl MemoryRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, change: impl FnOnce(&mut Keys) -> T) -> T {
        let mut state = match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        change(&mut state)
    }

    pub fn create_key(&self, key: &str) {
        self.with(|state| state.create(key));
    }

    /// Sets a value, creating the key if needed.
    pub fn set_value(&self, key: &str, name: &str, kind: u32, data: &[u8]) {
        self.with(|state| {
            state.create(key);
            let now = state.tick();
            if let Some(snapshot) = state.keys.get_mut(&fold(key)) {
                snapshot.insert_value(RegistryValue {
                    name: name.to_string(),
                    kind,
                    data: data.to_vec(),
                });
                snapshot.last_write = now;
            }
        });
    }

    pub fn delete_value(&self, key: &str, name: &str) {
        self.with(|state| {
            let now = state.tick();
            if let Some(snapshot) = state.keys.get_mut(&fold(key)) {
                if snapshot.values.remove(&fold(name)).is_some() {
                    snapshot.last_write = now;
                }
            }
        });
    }

    /// Deletes a key and everything below it.
    pub fn delete_key(&self, key: &str) {
        self.with(|state| {
            let folded = fold(key);
            let below = format!("{folded}\\");
            state
                .keys
                .retain(|name, _| name != &folded && !name.starts_with(&below));
            let now = state.tick();
            if let Some((parent, name)) = parent_and_name(key) {
                if let Some(snapshot) = state.keys.get_mut(&fold(parent)) {
                    snapshot.subkeys.remove(&fold(name));
                    snapshot.last_write = now;
                }
            }
        });
    }

    /// Sets a key's security descriptor. Like the real registry, this does not move the key's
    /// last-write time, so a sweep must compare the descriptor of every key it visits.
    pub fn set_sddl(&self, key: &str, sddl: &str) {
        self.with(|state| {
            if let Some(snapshot) = state.keys.get_mut(&fold(key)) {
                snapshot.sddl = Some(sddl.to_string());
            }
        });
    }
}

impl KeyReader for MemoryRegistry {
    fn read_key(
        &self,
        key: &str,
        _view: RegistryView,
        read_values: bool,
    ) -> Result<Option<KeySnapshot>, RegistryError> {
        Ok(self.with(|state| {
            state.keys.get(&fold(key)).map(|snapshot| {
                let mut read = snapshot.clone();
                if !read_values {
                    read.values.clear();
                }
                read
            })
        }))
    }
}
