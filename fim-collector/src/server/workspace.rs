//! fim.collector.v1 Workspace: queries and machine status for holders of an API token.
//!
//! Every call is checked in this order, each failure with one clear status: on a plaintext
//! collector the connection must come from loopback (a token must not cross a network in
//! clear; over TLS any address may call), it must carry `authorization: Bearer <token>`, the token must be
//! known, unrevoked and unexpired, and its role must allow the call. Queries are compiled
//! by fim-kql (read-only by construction, row-capped, time-limited; counts over a time range
//! answered from the hourly table) and run on the blocking pool, at most
//! [`QueryLimits::concurrent`] at once: a reader cannot tie up every database connection.
use std::{sync::Arc, time::Duration};

use fim_api::collector_pb::{
    workspace_server::Workspace, EntityDigest, Machine as MachinePb, MachinesRequest,
    MachinesResponse, QueryColumn, QueryRequest, QueryResponse, QueryRow,
};
use fim_kql::{Catalog, Options, Rollup, Value};
use fim_model::Timestamp;
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};

use crate::{
    auth::{self, ApiToken, Role},
    store::{CollectorStore, Machine},
};

/// What one query may cost.
#[derive(Clone, Debug)]
pub struct QueryLimits {
    /// The most rows a query returns (a request may ask for fewer).
    pub row_cap: u32,
    /// How long the database may run one query.
    pub timeout: Duration,
    /// Queries run at once; more wait for a slot.
    pub concurrent: usize,
    /// The most bytes of cells one result holds (then it is cut and marked capped).
    pub max_bytes: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            row_cap: 10_000,
            timeout: Duration::from_secs(30),
            concurrent: 4,
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

pub struct WorkspaceService {
    store: Arc<dyn CollectorStore>,
    limits: QueryLimits,
    slots: Arc<Semaphore>,
    /// Calls from other hosts are answered (the collector speaks TLS).
    remote: bool,
}

impl WorkspaceService {
    /// `remote`: answer other hosts too; only on a TLS collector.
    pub fn new(store: Arc<dyn CollectorStore>, limits: QueryLimits, remote: bool) -> Self {
        WorkspaceService {
            slots: Arc::new(Semaphore::new(limits.concurrent.max(1))),
            store,
            limits,
            remote,
        }
    }

    /// The caller's token, once every check passed.
    async fn authorize<T>(&self, request: &Request<T>, needed: Role) -> Result<ApiToken, Status> {
        match request.remote_addr() {
            _ if self.remote => {}
            Some(peer) if peer.ip().is_loopback() => {}
            peer => {
                tracing::warn!(?peer, "workspace call refused: not from loopback");
                return Err(Status::permission_denied(
                    "this collector runs without TLS (--insecure-plaintext): the workspace \
                     API answers only on loopback",
                ));
            }
        }
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| {
                Status::unauthenticated(
                    "an API token is required (authorization: Bearer <token>; an owner makes \
                     one with `fim-collector token create`)",
                )
            })?;
        let secret = auth::bearer(header).ok_or_else(|| {
            Status::unauthenticated("the authorization header does not hold a workspace token")
        })?;
        let hash = auth::secret_hash(secret);
        let store = Arc::clone(&self.store);
        let found = blocking(move || store.token(&hash)).await?;
        let Some(token) = found else {
            tracing::warn!("workspace call refused: an unknown API token");
            return Err(Status::unauthenticated("unknown API token"));
        };
        if let Some(reason) = token.refusal(Timestamp::now().unix_nanos()) {
            tracing::warn!("workspace call refused: {reason}");
            return Err(Status::unauthenticated(reason));
        }
        if token.role < needed {
            return Err(Status::permission_denied(format!(
                "the API token {:?} is a {}; this needs an {needed}",
                token.name, token.role
            )));
        }
        Ok(token)
    }
}

/// Runs a store call on the blocking pool; its errors become `unavailable` (the database)
/// or `invalid_argument` (the query's own failure).
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, crate::CollectorError> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(crate::CollectorError::Query(error))) => Err(Status::invalid_argument(format!(
            "the query failed: {error}"
        ))),
        Ok(Err(error)) => {
            // The detail (the database's address, its error) stays in the collector's log.
            tracing::error!("{error}");
            Err(Status::unavailable(
                "the workspace database is unavailable (the collector's log says why)",
            ))
        }
        Err(error) => Err(Status::internal(format!("the store task failed: {error}"))),
    }
}

/// A cell as JSON text: times as RFC 3339 strings.
fn cell(value: &Value) -> String {
    let json = match value {
        Value::Null => serde_json::Value::Null,
        Value::Text(text) => serde_json::Value::from(text.as_str()),
        Value::Int(n) => serde_json::Value::from(*n),
        Value::Real(x) => serde_json::Value::from(*x),
        Value::Bool(b) => serde_json::Value::from(*b),
        Value::Time(at) => serde_json::Value::from(at.to_rfc3339()),
        Value::Json(json) => json.clone(),
    };
    json.to_string()
}

fn machine_pb(machine: Machine, entities: Vec<EntityDigest>) -> MachinePb {
    MachinePb {
        entities,
        computer_id: machine.key.computer_id,
        computer: machine.computer,
        journal_id: machine.key.journal_id,
        acknowledged_sequence: machine.acknowledged.sequence,
        acknowledged_hash: machine.acknowledged.hash.to_vec(),
        first_seen_ns: machine.first_seen_ns,
        last_seen_ns: machine.last_seen_ns,
        agent_version: machine.agent_version,
        platform: machine.platform,
        strategy: machine.strategy,
        flag_reason: machine.flag_reason.unwrap_or_default(),
        records: machine.records,
        pruned_unreceived: machine.pruned_unreceived,
        gaps: u32::try_from(machine.gaps).unwrap_or(u32::MAX),
    }
}

#[tonic::async_trait]
impl Workspace for WorkspaceService {
    async fn query(
        &self,
        request: Request<QueryRequest>,
    ) -> Result<Response<QueryResponse>, Status> {
        let token = self.authorize(&request, Role::Reader).await?;
        let request = request.into_inner();
        let row_cap = match request.max_rows {
            0 => self.limits.row_cap,
            asked => asked.min(self.limits.row_cap),
        };
        let options = Options {
            now: Timestamp::now(),
            row_cap: i64::from(row_cap),
            timeout: self.limits.timeout,
            max_bytes: self.limits.max_bytes,
        };
        let compiled = fim_kql::compile_with_rollup(
            &request.kql,
            &Catalog::configuration_change(),
            &Rollup::configuration_change_hourly(),
            self.store.dialect(),
            &options,
        )
        .map_err(|error| Status::invalid_argument(error.to_string()))?;
        let _slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| Status::unavailable("the collector is stopping"))?;
        tracing::info!(token = %token.name, kql = %request.kql, "query");
        let store = Arc::clone(&self.store);
        let used_rollup = compiled.used_rollup;
        let rows = blocking(move || store.query(&compiled)).await?;
        Ok(Response::new(QueryResponse {
            columns: rows
                .columns
                .iter()
                .map(|column| QueryColumn {
                    name: column.name.clone(),
                    r#type: column.ty.name().to_string(),
                })
                .collect(),
            rows: rows
                .rows
                .iter()
                .map(|row| QueryRow {
                    cells: row.iter().map(cell).collect(),
                })
                .collect(),
            capped: rows.capped,
            used_rollup,
        }))
    }

    async fn machines(
        &self,
        request: Request<MachinesRequest>,
    ) -> Result<Response<MachinesResponse>, Status> {
        self.authorize(&request, Role::Reader).await?;
        let store = Arc::clone(&self.store);
        let (machines, reports) =
            blocking(move || Ok((store.machines()?, store.entity_reports()?))).await?;
        let mut by_computer: std::collections::HashMap<String, Vec<EntityDigest>> =
            std::collections::HashMap::new();
        for (computer_id, report) in reports {
            by_computer
                .entry(computer_id)
                .or_default()
                .push(EntityDigest {
                    entity: report.entity,
                    objects: report.objects,
                    digest: report.digest.to_vec(),
                    reported_ns: report.reported_ns,
                });
        }
        Ok(Response::new(MachinesResponse {
            machines: machines
                .into_iter()
                .map(|machine| {
                    let entities = by_computer
                        .get(&machine.key.computer_id)
                        .cloned()
                        .unwrap_or_default();
                    machine_pb(machine, entities)
                })
                .collect(),
        }))
    }
}
