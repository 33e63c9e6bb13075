//! Entity management through the policy file, the same way `fim entities` does it.
//!
//! The daemon follows its policy file (within about two seconds), so the API edits that file
//! rather than the running policy: one source of truth, comments kept, every edit validated
//! before it is written and replaced atomically. Edits are serialised by a lock so two
//! concurrent calls cannot both read the old file and lose one of the changes. All of it is
//! blocking file IO: callers run it in `spawn_blocking`.
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use fim_engine::policy::{Entity, EntityPatch, PolicyDocument, PolicyError};
use tonic::Status;

#[derive(Clone)]
pub struct Entities {
    path: PathBuf,
    edits: Arc<Mutex<()>>,
}

impl Entities {
    pub fn new(path: &Path) -> Self {
        Entities {
            path: path.to_path_buf(),
            edits: Arc::new(Mutex::new(())),
        }
    }

    /// The policy as it stands (the built-in defaults while the file does not exist).
    fn document(&self) -> Result<PolicyDocument, Status> {
        PolicyDocument::load_or_default(&self.path).map_err(|error| {
            Status::failed_precondition(format!("the daemon's policy cannot be read: {error}"))
        })
    }

    pub fn list(&self) -> Result<Vec<Entity>, Status> {
        let parsed = self.document()?.parsed().map_err(|error| {
            Status::failed_precondition(format!("the daemon's policy is invalid: {error}"))
        })?;
        Ok(parsed.policy.entities)
    }

    pub fn names(&self) -> Result<Vec<String>, Status> {
        Ok(self.list()?.into_iter().map(|entity| entity.name).collect())
    }

    /// Adds the entity, or replaces the one with its name. Returns true when it was new.
    pub fn upsert(&self, entity: Entity) -> Result<bool, Status> {
        self.edit(|document| {
            let name = entity.name.clone();
            match document.add(entity.clone()) {
                Ok(()) => Ok(true),
                Err(PolicyError::DuplicateName(_)) => {
                    let patch = EntityPatch {
                        name: None,
                        kind: Some(entity.kind),
                        path: Some(entity.path),
                        recursive: Some(entity.recursive),
                        enabled: Some(entity.enabled),
                        ignore: Some(entity.ignore),
                    };
                    document.edit(&name, patch).map(|()| false)
                }
                Err(error) => Err(error),
            }
        })
    }

    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), Status> {
        self.edit(|document| document.set_enabled(name, enabled))
    }

    pub fn delete(&self, name: &str) -> Result<(), Status> {
        self.edit(|document| document.remove(name))
    }

    /// Loads, applies `change`, validates and saves, under the edit lock.
    fn edit<T>(
        &self,
        change: impl FnOnce(&mut PolicyDocument) -> Result<T, PolicyError>,
    ) -> Result<T, Status> {
        let _guard = self
            .edits
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut document = self.document()?;
        let value = change(&mut document).map_err(edit_status)?;
        let saved = document.save().map_err(edit_status)?;
        for warning in saved.warnings {
            tracing::warn!("policy: {warning}");
        }
        Ok(value)
    }
}

/// What an edit's failure means to the client.
fn edit_status(error: PolicyError) -> Status {
    match error {
        // The diagnostics say FILE:LINE:COLUMN: what is wrong, one per line.
        PolicyError::Invalid(_) => Status::invalid_argument(error.to_string()),
        PolicyError::NotFound(_) => Status::not_found(error.to_string()),
        PolicyError::DuplicateName(_) => Status::already_exists(error.to_string()),
        // Fixing these needs root on the host, not a different request.
        PolicyError::NotRegular { .. } | PolicyError::Untrusted(_) => {
            Status::failed_precondition(error.to_string())
        }
        PolicyError::Read { .. } | PolicyError::Write { .. } => Status::internal(error.to_string()),
    }
}
