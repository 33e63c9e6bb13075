//! `fim --workspace URL`: the fleet's changes from a workspace collector instead of this
//! machine's journal: `changes` and `summary` (the same filters, turned into KQL), `query`
//! (any KQL), and `machines`.
//!
//! The token comes from `FIM_WORKSPACE_TOKEN` or `--token-file`, never from the command
//! line (other users see it in the process list). The connection is TLS checked against the
//! workspace CA (`--workspace-ca`, the collector's tls/ca.pem) for the name every collector
//! carries; without a CA it is plain HTTP/2, which only a collector run with
//! `--insecure-plaintext` speaks, and that one answers loopback callers only.
use std::{path::Path, process::ExitCode};

use anyhow::{bail, Context as _};
use fim_api::collector_pb::{
    workspace_client::WorkspaceClient, MachinesRequest, QueryRequest, QueryResponse,
};
use fim_kql::{quote, OutputColumn, Rows, Type, Value};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{interceptor::InterceptedService, Interceptor},
    transport::{Certificate, Channel, ClientTlsConfig},
};

use crate::{
    changes::{ChangesArgs, FilterArgs, SummaryArgs},
    output::Format,
};

/// Adds the token to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub type Client = WorkspaceClient<InterceptedService<Channel, Bearer>>;

/// The token: `FIM_WORKSPACE_TOKEN`, else the first line of `token_file`.
fn token(token_file: Option<&Path>) -> anyhow::Result<String> {
    if let Ok(token) = std::env::var("FIM_WORKSPACE_TOKEN") {
        return Ok(token.trim().to_string());
    }
    let Some(path) = token_file else {
        bail!(
            "--workspace needs an API token: set FIM_WORKSPACE_TOKEN or pass --token-file \
             (an owner makes one with `fim-collector token create --name NAME`)"
        );
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

pub async fn connect(
    url: &str,
    token_file: Option<&Path>,
    ca: Option<&Path>,
) -> anyhow::Result<Client> {
    let secret = token(token_file)?;
    let header: MetadataValue<Ascii> = format!("Bearer {secret}")
        .parse()
        .context("the API token holds characters a header cannot carry")?;
    let address = url.split_once("://").map_or(url, |(_, rest)| rest);
    let url = match (ca, url.split_once("://").map(|(scheme, _)| scheme)) {
        (Some(_), Some("http")) => bail!(
            "--workspace {url:?} is plain http, but --workspace-ca asks for TLS: use https://"
        ),
        (Some(_), _) => format!("https://{address}"),
        (None, Some("https")) => bail!(
            "--workspace {url:?} is https: pass the workspace CA with --workspace-ca \
             (the collector's tls/ca.pem)"
        ),
        (None, _) => format!("http://{address}"),
    };
    let mut endpoint = Channel::from_shared(url.clone())
        .with_context(|| format!("--workspace {url:?} is not a URL"))?
        .connect_timeout(std::time::Duration::from_secs(10));
    if let Some(ca) = ca {
        let pem = std::fs::read_to_string(ca)
            .with_context(|| format!("reading the workspace CA {}", ca.display()))?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(pem))
            .domain_name(fim_api::push::COLLECTOR_SERVER_NAME);
        endpoint = endpoint.tls_config(tls).context("setting up TLS")?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("cannot connect to the workspace at {url}"))?;
    // A result may hold up to the collector's 32 MiB of cells, more once encoded as JSON.
    Ok(WorkspaceClient::with_interceptor(channel, Bearer(header))
        .max_decoding_message_size(128 * 1024 * 1024))
}

/// The filters as KQL `where` clauses (every value quoted).
fn where_clauses(filter: &FilterArgs) -> anyhow::Result<String> {
    let mut kql = String::new();
    let local = filter.build()?;
    if filter.path.is_some() {
        bail!(
            "--path globs are not available with --workspace; use `fim query` with \
             `where FileSystemPath startswith '...'` or `contains`"
        );
    }
    let at = |ns: i64| fim_model::Timestamp::from_unix_nanos(ns).to_rfc3339();
    if let Some(since) = local.since {
        kql.push_str(&format!(
            "\n| where TimeGenerated >= datetime({})",
            at(since.unix_nanos())
        ));
    }
    if let Some(until) = local.until {
        kql.push_str(&format!(
            "\n| where TimeGenerated < datetime({})",
            at(until.unix_nanos())
        ));
    }
    let list = |names: Vec<String>| names.iter().map(|n| quote::string(n)).collect::<Vec<_>>();
    if !local.types.is_empty() {
        let names = local.types.iter().map(|t| t.as_str().to_string()).collect();
        kql.push_str(&format!(
            "\n| where ConfigChangeType in ({})",
            list(names).join(", ")
        ));
    }
    if !local.categories.is_empty() {
        let names = local
            .categories
            .iter()
            .map(|c| c.as_str().to_string())
            .collect();
        kql.push_str(&format!(
            "\n| where ChangeCategory in ({})",
            list(names).join(", ")
        ));
    }
    if let Some(computer) = &local.computer {
        kql.push_str(&format!(
            "\n| where Computer == {}",
            quote::string(computer)
        ));
    }
    if let Some(entity) = &local.entity {
        kql.push_str(&format!("\n| where Entity == {}", quote::string(entity)));
    }
    Ok(kql)
}

/// What `fim --workspace changes` shows of each change.
const CHANGE_COLUMNS: &str = "TimeGenerated, Computer, ConfigChangeType, ChangeCategory, \
    Entity, FileSystemPath, RegistryKey, SvcName, FieldsChanged, DetectedBy, ProcessName, \
    ProcessId, UserName, Sequence";

/// The KQL `fim --workspace changes` runs.
pub fn changes_query(args: &ChangesArgs) -> anyhow::Result<String> {
    if args.after.is_some() {
        bail!("--after is a sequence of one machine's journal; with --workspace use --since");
    }
    Ok(format!(
        "ConfigurationChange{}\n| order by TimeGenerated asc, Computer asc, Sequence asc\
         \n| take {}\n| project {CHANGE_COLUMNS}",
        where_clauses(&args.filter)?,
        args.limit
    ))
}

/// The KQL `fim --workspace summary` runs.
pub fn summary_query(args: &SummaryArgs) -> anyhow::Result<String> {
    let mut keys = Vec::new();
    for key in &args.by {
        keys.push(match key.trim().to_ascii_lowercase().as_str() {
            "computer" => "Computer",
            "type" | "configchangetype" => "ConfigChangeType",
            "category" | "changecategory" => "ChangeCategory",
            "entity" => "Entity",
            other => bail!("--by {other:?}: expected computer, type, category or entity"),
        });
    }
    let by = if keys.is_empty() {
        String::new()
    } else {
        format!(" by {}", keys.join(", "))
    };
    let order = if keys.is_empty() {
        String::new()
    } else {
        format!(
            "\n| order by {}",
            keys.iter()
                .map(|k| format!("{k} asc"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Ok(format!(
        "ConfigurationChange{}\n| summarize count(){by}{order}",
        where_clauses(&args.filter)?
    ))
}

/// Runs `kql` and prints the result.
pub async fn query(
    client: &mut Client,
    kql: &str,
    max_rows: u32,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let response = client
        .query(QueryRequest {
            kql: kql.to_string(),
            max_rows,
        })
        .await
        .map_err(|status| anyhow::anyhow!("{}", status.message()))?
        .into_inner();
    let rows = rows(&response)?;
    print(&rows, format)?;
    if rows.capped {
        eprintln!(
            "fim: the result was cut at {} rows (the row cap); narrow the query or raise --max-rows",
            rows.rows.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn column_type(name: &str) -> Type {
    match name {
        "long" => Type::Long,
        "real" => Type::Real,
        "bool" => Type::Bool,
        "datetime" => Type::DateTime,
        "dynamic" => Type::Dynamic,
        _ => Type::String,
    }
}

/// The response as fim-kql rows, so CSV goes through the same neutralising writer as the
/// collector's own export.
fn rows(response: &QueryResponse) -> anyhow::Result<Rows> {
    let columns: Vec<OutputColumn> = response
        .columns
        .iter()
        .map(|column| OutputColumn {
            name: column.name.clone(),
            ty: column_type(&column.r#type),
        })
        .collect();
    let mut rows = Vec::with_capacity(response.rows.len());
    for row in &response.rows {
        let mut cells = Vec::with_capacity(row.cells.len());
        for (text, column) in row.cells.iter().zip(&columns) {
            let json: serde_json::Value =
                serde_json::from_str(text).context("the workspace sent a cell that is not JSON")?;
            cells.push(match (json, column.ty) {
                (serde_json::Value::Null, _) => Value::Null,
                (serde_json::Value::String(text), _) => Value::Text(text),
                (serde_json::Value::Bool(b), _) => Value::Bool(b),
                (serde_json::Value::Number(n), Type::Long) if n.is_i64() => {
                    Value::Int(n.as_i64().unwrap_or_default())
                }
                (serde_json::Value::Number(n), Type::Real | Type::Long) => {
                    Value::Real(n.as_f64().unwrap_or_default())
                }
                (other, _) => Value::Json(other),
            });
        }
        rows.push(cells);
    }
    Ok(Rows {
        columns,
        rows,
        capped: response.capped,
    })
}

fn print(rows: &Rows, format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Csv => {
            fim_kql::csv::write_rows(&mut out, rows)?;
        }
        Format::Json | Format::Jsonl => {
            let objects = rows.rows.iter().map(|row| {
                let object: serde_json::Map<String, serde_json::Value> = rows
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(column, value)| (column.name.clone(), json(value)))
                    .collect();
                serde_json::Value::Object(object)
            });
            if matches!(format, Format::Json) {
                let all: Vec<_> = objects.collect();
                serde_json::to_writer_pretty(&mut out, &all)?;
                use std::io::Write as _;
                writeln!(out)?;
            } else {
                use std::io::Write as _;
                for object in objects {
                    writeln!(out, "{object}")?;
                }
            }
        }
        Format::Table => {
            let mut table = comfy_table::Table::new();
            table.load_preset(comfy_table::presets::NOTHING);
            table.set_header(rows.columns.iter().map(|c| c.name.clone()));
            for row in &rows.rows {
                table.add_row(row.iter().map(Value::display));
            }
            use std::io::Write as _;
            writeln!(out, "{table}")?;
        }
    }
    Ok(())
}

fn json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Text(text) => text.clone().into(),
        Value::Int(n) => (*n).into(),
        Value::Real(x) => (*x).into(),
        Value::Bool(b) => (*b).into(),
        Value::Time(at) => at.to_rfc3339().into(),
        Value::Json(json) => json.clone(),
    }
}

/// `fim --workspace machines`.
pub async fn machines(client: &mut Client, as_json: bool) -> anyhow::Result<ExitCode> {
    let response = client
        .machines(MachinesRequest {})
        .await
        .map_err(|status| anyhow::anyhow!("{}", status.message()))?
        .into_inner();
    let at = |ns: i64| fim_model::Timestamp::from_unix_nanos(ns).to_rfc3339();
    for machine in response.machines {
        let status = if machine.flag_reason.is_empty() {
            "intact".to_string()
        } else {
            format!("FLAGGED: {}", machine.flag_reason)
        };
        if as_json {
            let hash: String = machine
                .acknowledged_hash
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            println!(
                "{}",
                serde_json::json!({
                    "computer": machine.computer,
                    "computer_id": machine.computer_id,
                    "journal_id": machine.journal_id,
                    "acknowledged_sequence": machine.acknowledged_sequence,
                    "acknowledged_hash": hash,
                    "records": machine.records,
                    "first_seen": at(machine.first_seen_ns),
                    "last_seen": at(machine.last_seen_ns),
                    "agent_version": machine.agent_version,
                    "platform": machine.platform,
                    "strategy": machine.strategy,
                    "chain_status": if machine.flag_reason.is_empty() { "intact" } else { "flagged" },
                    "flag_reason": (!machine.flag_reason.is_empty()).then_some(machine.flag_reason),
                })
            );
        } else {
            println!(
                "{} ({}) {} {}: {} records, acknowledged through {}, last seen {}, {status}",
                machine.computer,
                machine.computer_id,
                machine.platform,
                machine.strategy,
                machine.records,
                machine.acknowledged_sequence,
                at(machine.last_seen_ns)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
