//! The fim.v1.Fim service over a running daemon's [`DaemonHandle`].
//!
//! Each call is a thin translation: validate the request ([`crate::convert`]), do the work
//! where the engine already does it (a fresh read-only store connection per call, the policy
//! file, the command channel), translate the answer. Store and file work is blocking, so it
//! runs in `spawn_blocking` and never stalls the runtime that also carries live streams. Roles
//! were checked before a request gets here ([`crate::auth`]).
use fim_engine::{
    daemon::{DaemonHandle, HandleError},
    policy::{Entity, EntityKind},
    store::StoreError,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::{
    access,
    auth::Caller,
    blocking::blocking,
    convert,
    entities::Entities,
    limits::{Limiter, PeerKey, Slot},
    pb,
    watch::{Watcher, WATCH_BUFFER},
};

/// Query pages: the default and the most a client may ask for.
const DEFAULT_PAGE: u32 = 1000;
const MAX_PAGE: u32 = 10_000;
/// Scan runs reported by GetStatus.
const STATUS_SCANS: usize = 10;

#[derive(Clone)]
pub struct FimService {
    handle: DaemonHandle,
    entities: Entities,
    stop: watch::Receiver<bool>,
    /// WatchChanges slots per peer and in total.
    streams: Limiter,
}

impl FimService {
    /// `stop` turns true when the server shuts down: live streams end then.
    pub fn new(handle: DaemonHandle, stop: watch::Receiver<bool>) -> Self {
        let entities = Entities::new(handle.policy_path());
        FimService {
            handle,
            entities,
            stop,
            streams: Limiter::streams(),
        }
    }

    async fn with_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(fim_engine::store::Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Status> {
        let handle = self.handle.clone();
        blocking(move || work(handle.open_store()?)).await
    }
}

impl FimService {
    /// A WatchChanges slot for the caller, or RESOURCE_EXHAUSTED.
    fn stream_slot<T>(&self, request: &Request<T>) -> Result<Slot, Status> {
        let caller = request.extensions().get::<Caller>();
        let peer = caller.map_or(PeerKey::Unknown, |caller| caller.peer.clone());
        self.streams.admit(peer).ok_or_else(|| {
            Status::resource_exhausted(format!(
                "{} has too many change streams open (at most {} per peer); close one first",
                caller.map_or("this caller", |caller| caller.identity.as_str()),
                self.streams.per_peer()
            ))
        })
    }
}

/// Who made a call, for the log line of a change.
fn caller<T>(request: &Request<T>) -> String {
    request.extensions().get::<Caller>().map_or_else(
        || "an unknown caller".to_string(),
        |caller| caller.identity.clone(),
    )
}

/// Content goes to root only ([`convert::Content`]).
fn content_for<T>(request: &Request<T>) -> convert::Content {
    match request.extensions().get::<Caller>() {
        Some(caller) if caller.is_root() => convert::Content::Shown,
        _ => convert::Content::Stripped,
    }
}

/// Refuses what a non-root caller must not monitor: content (file-content entities keep the
/// text of files, which only root may read through the daemon), and paths the caller could
/// not read itself ([`access`]). Runs on a blocking thread (it touches the filesystem).
fn check_upsert(entity: &Entity, caller: Option<&Caller>) -> Result<(), Status> {
    let (who, credentials) = match caller {
        Some(caller) if caller.is_root() => return Ok(()),
        Some(caller) => (
            caller.identity.clone(),
            caller
                .unix
                .as_ref()
                .map_or(access::NOBODY, access::Credentials::from),
        ),
        None => ("an unknown caller".to_string(), access::NOBODY),
    };
    if entity.kind == EntityKind::FileContent {
        return Err(Status::permission_denied(format!(
            "entity {:?}: only root may add or edit a file-content entity (it keeps file \
             content); {who} is not root",
            entity.name
        )));
    }
    access::check_entity(entity, &credentials, &who).map_err(|error| match error {
        access::AccessError::Denied { .. } => Status::permission_denied(format!(
            "entity {:?}: {error}, and fimd (root) must not read it on its behalf",
            entity.name
        )),
        access::AccessError::Unchecked { .. } => {
            Status::permission_denied(format!("entity {:?}: {error}", entity.name))
        }
        access::AccessError::Check { .. } => Status::internal(error.to_string()),
    })
}

/// A non-root caller may not edit an existing file-content entity either (turning it back on,
/// or replacing it under the same name).
fn check_content_entity(
    entities: &Entities,
    name: &str,
    caller: Option<&Caller>,
) -> Result<(), Status> {
    if caller.is_some_and(Caller::is_root) {
        return Ok(());
    }
    let existing = entities.list()?;
    if existing
        .iter()
        .any(|entity| entity.name == name && entity.kind == EntityKind::FileContent)
    {
        let who = caller.map_or("an unknown caller", |caller| caller.identity.as_str());
        return Err(Status::permission_denied(format!(
            "entity {name:?} is a file-content entity: only root may edit it; {who} is not root"
        )));
    }
    Ok(())
}

fn page_token(text: &str) -> Result<Option<u64>, Status> {
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<u64>() {
        Ok(sequence) if text.bytes().all(|byte| byte.is_ascii_digit()) => Ok(Some(sequence)),
        _ => Err(Status::invalid_argument(format!(
            "page_token: {text:?} is not one this server issued"
        ))),
    }
}

#[tonic::async_trait]
impl pb::fim_server::Fim for FimService {
    type WatchChangesStream = ReceiverStream<Result<pb::WatchChangesResponse, Status>>;

    async fn watch_changes(
        &self,
        request: Request<pb::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        let content = content_for(&request);
        let slot = self.stream_slot(&request)?;
        let request = request.into_inner();
        let filter = convert::filter_of(request.filter.as_ref(), "filter")?;
        // Subscribe before reading anything, so nothing committed from now on is missed.
        let live = self.handle.subscribe();
        let last = if request.live_only {
            self.with_store(|store| store.last_sequence()).await?
        } else {
            request.from_sequence
        };
        let (out, responses) = mpsc::channel(WATCH_BUFFER);
        let watcher = Watcher {
            handle: self.handle.clone(),
            filter,
            last,
            out,
            stop: self.stop.clone(),
            content,
            _slot: slot,
        };
        tokio::spawn(watcher.run(live));
        Ok(Response::new(ReceiverStream::new(responses)))
    }

    async fn query_changes(
        &self,
        request: Request<pb::QueryChangesRequest>,
    ) -> Result<Response<pb::QueryChangesResponse>, Status> {
        let content = content_for(&request);
        let request = request.into_inner();
        let mut filter = convert::filter_of(request.filter.as_ref(), "filter")?;
        let size = match request.page_size {
            0 => DEFAULT_PAGE,
            size if size > MAX_PAGE => {
                return Err(Status::invalid_argument(format!(
                    "page_size: {size} is more than {MAX_PAGE}"
                )))
            }
            size => size,
        } as usize;
        filter.after_sequence = page_token(&request.page_token)?;
        // One more than asked for tells whether another page follows.
        let mut records = self
            .with_store(move |store| store.query(&filter, size + 1))
            .await?;
        let more = records.len() > size;
        records.truncate(size);
        let next_page_token = match (more, records.last()) {
            (true, Some(last)) => last.sequence.to_string(),
            _ => String::new(),
        };
        Ok(Response::new(pb::QueryChangesResponse {
            records: records
                .iter()
                .map(|record| convert::record_for(record, content))
                .collect(),
            next_page_token,
        }))
    }

    async fn summary(
        &self,
        request: Request<pb::SummaryRequest>,
    ) -> Result<Response<pb::SummaryResponse>, Status> {
        let request = request.into_inner();
        let filter = convert::filter_of(request.filter.as_ref(), "filter")?;
        let keys = convert::group_keys(&request.group_by)?;
        let rows = self
            .with_store(move |store| store.summary(&filter, &keys))
            .await?;
        Ok(Response::new(pb::SummaryResponse {
            rows: rows
                .into_iter()
                .map(|row| pb::SummaryRow {
                    keys: row.keys,
                    count: row.count,
                })
                .collect(),
        }))
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::GetStatusResponse>, Status> {
        let live = self.handle.live_status();
        // A database that cannot be read is what status must report, not a reason to fail.
        let (entries, scans, last_sequence, who_data, unreadable) = match self
            .with_store(|store| {
                // Where who-data comes from and what it lost (fimsvc's ETW session).
                let who_data = (
                    store.get_meta("daemon/who-data")?.unwrap_or_default(),
                    store
                        .get_meta("daemon/etw-events-lost")?
                        .and_then(|lost| lost.parse().ok())
                        .unwrap_or(0),
                );
                Ok((
                    store.count()?,
                    store.last_scans(STATUS_SCANS)?,
                    store.last_sequence()?,
                    who_data,
                ))
            })
            .await
        {
            Ok((entries, scans, last, who_data)) => (entries, scans, last, who_data, None),
            Err(status) => {
                let reason = format!("the database cannot be read: {}", status.message());
                tracing::error!("{reason}");
                (0, Vec::new(), 0, (String::new(), 0), Some(reason))
            }
        };
        let degraded = [live.degraded.clone(), unreadable]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ");
        let computer = self.handle.computer();
        Ok(Response::new(pb::GetStatusResponse {
            strategy: live.strategy,
            roots: live
                .roots
                .iter()
                .map(|root| fim_engine::path_text::display_path(root))
                .collect(),
            baseline_entries: entries,
            last_scans: scans.iter().map(convert::scan_run).collect(),
            dropped_events: live.dropped_events,
            gap_notices: live.gap_notices,
            coalescing_paths: live.coalescing_paths,
            held_paths: live.held_paths,
            degraded,
            queued_events: live.queued_events,
            scan_running: live.scan_running,
            scans_queued: live.scans_queued,
            journal_last_sequence: last_sequence,
            computer: computer.name.clone(),
            computer_id: computer.id.clone(),
            started: Some(convert::timestamp(live.started.unix_nanos())),
            version: env!("CARGO_PKG_VERSION").to_string(),
            hashing: live.hashing.iter().map(convert::hash_progress).collect(),
            hashes_queued: live.hashes_queued,
            who_data: who_data.0,
            who_data_events_lost: who_data.1,
        }))
    }

    async fn trigger_scan(
        &self,
        request: Request<pb::TriggerScanRequest>,
    ) -> Result<Response<pb::TriggerScanResponse>, Status> {
        let who = caller(&request);
        let request = request.into_inner();
        let only = if request.entities.is_empty() {
            None
        } else {
            let entities = self.entities.clone();
            let known = blocking(move || entities.names()).await?;
            let unknown: Vec<&String> = request
                .entities
                .iter()
                .filter(|name| !known.contains(name))
                .collect();
            if !unknown.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "entities: no entity is named {}",
                    unknown
                        .iter()
                        .map(|name| format!("{name:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            Some(request.entities)
        };
        tracing::info!(by = %who, entities = ?only, full = request.full, "scan requested");
        self.handle
            .trigger_scan(only, request.full)
            .map_err(|error| match error {
                HandleError::Busy => Status::resource_exhausted(error.to_string()),
                HandleError::Stopped => Status::unavailable(error.to_string()),
            })?;
        Ok(Response::new(pb::TriggerScanResponse {}))
    }

    async fn list_entities(
        &self,
        _request: Request<pb::ListEntitiesRequest>,
    ) -> Result<Response<pb::ListEntitiesResponse>, Status> {
        let entities = self.entities.clone();
        let list = blocking(move || entities.list()).await?;
        Ok(Response::new(pb::ListEntitiesResponse {
            entities: list.iter().map(convert::entity).collect(),
        }))
    }

    async fn upsert_entity(
        &self,
        request: Request<pb::UpsertEntityRequest>,
    ) -> Result<Response<pb::UpsertEntityResponse>, Status> {
        let who = caller(&request);
        let calling = request.extensions().get::<Caller>().cloned();
        let Some(entity) = request.into_inner().entity else {
            return Err(Status::invalid_argument("entity: must be set"));
        };
        let entity = convert::entity_of(&entity, "entity")?;
        let name = entity.name.clone();
        let entities = self.entities.clone();
        let handle = self.handle.clone();
        let created = blocking(move || {
            check_upsert(&entity, calling.as_ref())?;
            check_content_entity(&entities, &entity.name, calling.as_ref())?;
            let created = entities.upsert(entity)?;
            handle.note_policy_edit(crate::author::policy_author(calling.as_ref()));
            Ok::<_, Status>(created)
        })
        .await?;
        let action = if created { "added" } else { "replaced" };
        tracing::info!(by = %who, entity = %name, "entity {action}");
        Ok(Response::new(pb::UpsertEntityResponse {}))
    }

    async fn set_entity_enabled(
        &self,
        request: Request<pb::SetEntityEnabledRequest>,
    ) -> Result<Response<pb::SetEntityEnabledResponse>, Status> {
        let who = caller(&request);
        let calling = request.extensions().get::<Caller>().cloned();
        let request = request.into_inner();
        let entities = self.entities.clone();
        let name = request.name.clone();
        let handle = self.handle.clone();
        blocking(move || {
            check_content_entity(&entities, &name, calling.as_ref())?;
            entities.set_enabled(&name, request.enabled)?;
            handle.note_policy_edit(crate::author::policy_author(calling.as_ref()));
            Ok::<_, Status>(())
        })
        .await?;
        tracing::info!(by = %who, entity = %request.name, enabled = request.enabled, "entity switched");
        Ok(Response::new(pb::SetEntityEnabledResponse {}))
    }

    async fn delete_entity(
        &self,
        request: Request<pb::DeleteEntityRequest>,
    ) -> Result<Response<pb::DeleteEntityResponse>, Status> {
        let who = caller(&request);
        let calling = request.extensions().get::<Caller>().cloned();
        let name = request.into_inner().name;
        let entities = self.entities.clone();
        let target = name.clone();
        let handle = self.handle.clone();
        blocking(move || {
            entities.delete(&target)?;
            handle.note_policy_edit(crate::author::policy_author(calling.as_ref()));
            Ok::<_, Status>(())
        })
        .await?;
        tracing::info!(by = %who, entity = %name, "entity deleted");
        Ok(Response::new(pb::DeleteEntityResponse {}))
    }

    async fn get_baseline_entry(
        &self,
        request: Request<pb::GetBaselineEntryRequest>,
    ) -> Result<Response<pb::GetBaselineEntryResponse>, Status> {
        let content = content_for(&request);
        let text = request.into_inner().path;
        let path = convert::path_of(&text, "path")?;
        let entry = self.with_store(move |store| store.get(&path)).await?;
        let Some(entry) = entry else {
            return Err(Status::not_found(format!(
                "path: {text:?} is not in the baseline"
            )));
        };
        Ok(Response::new(pb::GetBaselineEntryResponse {
            path: text,
            entity: entry.entity.clone(),
            state: Some(convert::baseline_state_for(&entry, content)),
        }))
    }

    async fn verify_journal(
        &self,
        request: Request<pb::VerifyJournalRequest>,
    ) -> Result<Response<pb::VerifyJournalResponse>, Status> {
        let anchor = match request.into_inner().expect {
            Some(text) => Some(
                text.parse::<fim_engine::store::Anchor>()
                    .map_err(|error| Status::invalid_argument(format!("expect: {error}")))?,
            ),
            None => None,
        };
        let report = self
            .with_store(move |store| store.verify_anchored(anchor))
            .await?;
        Ok(Response::new(convert::verify_report(&report)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_are_decimal_sequences() {
        assert_eq!(page_token("").unwrap(), None);
        assert_eq!(page_token("42").unwrap(), Some(42));
        for bad in ["+42", "x", "-1", "1e3", " 1"] {
            let status = page_token(bad).unwrap_err();
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().contains("is not one this server issued"));
        }
    }
}
