//! Reconciling the service entities: list the machine's services once, give each the entity
//! that covers it, compare with the baseline and journal Added, Removed and Modified records,
//! in one transaction with the new baseline.
//!
//! Listing every service is one call to the service control manager (a few hundred entries),
//! so every event (a registry notification under `...\Services`, a status-change notification
//! or the poll) sweeps all service entities rather than guessing which service it was about.
//! An entity's first sweep is a silent baseline. A service whose baseline belongs to an entity
//! outside this sweep (`only`) is left alone.
use std::collections::{BTreeMap, HashSet};

use fim_model::{ChangeRecord, Detection};

use super::{keys::KeyCause, lock, sweep::SweepOutcome, ReconcileError, Reconciler};
use crate::{
    registry::diff::RecordContext,
    service::{diff::service_record, fold, ServiceReader},
};

impl Reconciler {
    /// Gives the reconciler the platform's service control manager.
    pub fn set_service_reader(&mut self, reader: std::sync::Arc<dyn ServiceReader>) {
        self.service_reader = Some(reader);
    }

    /// Sweeps the service entities (those `only` names, or all) against the services the
    /// reader lists. Returns the records; on error nothing was written.
    pub fn reconcile_services(
        &mut self,
        reader: &dyn ServiceReader,
        only: Option<&[String]>,
        detection: Detection,
        cause: KeyCause,
    ) -> Result<Vec<ChangeRecord>, ReconcileError> {
        let services = reader.list().map_err(ReconcileError::Services)?;
        let swept: HashSet<String> = service_entities(self, only).into_iter().collect();
        let mut reported = HashSet::new();
        for entity in &swept {
            if self.is_baselined(entity)? {
                reported.insert(entity.clone());
            }
        }
        let mut baselines: BTreeMap<String, _> = self
            .store
            .service_baselines()?
            .into_iter()
            .map(|baseline| (fold(&baseline.snapshot.name), baseline))
            .collect();
        let computer = self.computer.clone();
        let mut records = Vec::new();
        let mut batch = self.store.batch()?;
        let mut by_name: Vec<_> = services.iter().collect();
        by_name.sort_by_key(|service| fold(&service.name));
        for service in by_name {
            // Taken out for every service that exists, so that what is left over is gone.
            let before = baselines.remove(&fold(&service.name));
            let Some(root) = self.policy.service_root_for(&service.name) else {
                continue;
            };
            if !swept.contains(&root.entity) {
                continue;
            }
            let context = context(&computer, &root.entity, detection, &cause);
            if reported.contains(&root.entity) {
                let old = before.as_ref().map(|baseline| &baseline.snapshot);
                records.extend(service_record(old, Some(service), &context));
            }
            let same = before
                .as_ref()
                .is_some_and(|b| &b.snapshot == service && b.entity == root.entity);
            if !same {
                batch.put_service(&root.entity, service)?;
            }
        }
        // Baselines left over are services that are gone.
        for (_, gone) in baselines {
            if !swept.contains(&gone.entity) {
                continue;
            }
            if reported.contains(&gone.entity) {
                let context = context(&computer, &gone.entity, detection, &cause);
                records.extend(service_record(Some(&gone.snapshot), None, &context));
            }
            batch.delete_service(&gone.snapshot.name)?;
        }
        for record in &mut records {
            self.attribute(record);
            batch.append(record)?;
        }
        batch.commit()?;
        for entity in swept.difference(&reported) {
            self.mark_baselined(entity)?;
        }
        for record in &records {
            self.announce(record);
        }
        Ok(records)
    }
}

fn context<'a>(
    computer: &'a crate::identity::Computer,
    entity: &'a str,
    detection: Detection,
    cause: &KeyCause,
) -> RecordContext<'a> {
    RecordContext {
        computer,
        entity,
        detection,
        actor: cause.actor.clone(),
        operations: cause.operations.clone(),
    }
}

/// The service entities of the policy (those `only` names, or all).
fn service_entities(reconciler: &Reconciler, only: Option<&[String]>) -> Vec<String> {
    reconciler
        .policy
        .services
        .iter()
        .filter(|root| only.is_none_or(|names| names.contains(&root.entity)))
        .map(|root| root.entity.clone())
        .collect()
}

/// A scan's service part (after files and registry keys); nothing without a service reader or
/// service entities.
pub(super) fn sweep_services(
    reconciler: &std::sync::Mutex<Reconciler>,
    only: Option<&[String]>,
    detection: Detection,
    outcome: &mut SweepOutcome,
) -> Result<(), ReconcileError> {
    let mut reconciler = lock(reconciler);
    let Some(reader) = reconciler.service_reader.clone() else {
        return Ok(());
    };
    let entities = service_entities(&reconciler, only);
    if entities.is_empty() {
        return Ok(());
    }
    let mut first = Vec::new();
    for entity in &entities {
        if !reconciler.is_baselined(entity)? {
            first.push(entity.clone());
        }
    }
    match reconciler.reconcile_services(reader.as_ref(), only, detection, KeyCause::default()) {
        Ok(records) => {
            outcome.changes += records.len() as u64;
            outcome.baselined.extend(first);
            Ok(())
        }
        Err(error) if error.is_disk_full() => Err(error),
        Err(error) => {
            tracing::error!("service scan failed: {error}");
            outcome.errors += 1;
            outcome.failed.extend(entities);
            Ok(())
        }
    }
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod tests;
