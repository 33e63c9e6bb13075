//! `fim` through a running daemon's API (the Unix socket, or fimsvc's named pipe): the daemon owns the database, so
//! when it runs, `fim` asks it instead of opening the file itself. Records travel with their
//! journaled JSON, so every output format prints exactly what the local path prints.
use std::{path::Path, process::ExitCode};

use anyhow::{bail, Context as _};
use fim_api::{
    convert,
    pb::{self, fim_client::FimClient},
};
use fim_engine::{change::ChangeRecord, store::SummaryRow};
use tonic::transport::Channel;

use crate::{
    changes::{group_keys, ChangesArgs, FilterArgs, SummaryArgs},
    output::{self, Format},
};

pub type Client = FimClient<Channel>;

/// A client when a daemon answers on the socket (or the pipe); None when there is none (use
/// the files).
pub async fn connect(socket: &Path) -> Option<Client> {
    #[cfg(unix)]
    let connecting = {
        if !socket.exists() {
            return None;
        }
        fim_api::client::connect_unix(socket)
    };
    // No existence check: opening `\\.\pipe\NAME` to look would take the waiting instance,
    // and a missing pipe fails the connection at once (ERROR_FILE_NOT_FOUND).
    #[cfg(windows)]
    let pipe = socket.to_string_lossy().into_owned();
    #[cfg(windows)]
    let connecting = fim_api::client::connect_pipe(&pipe);
    match tokio::time::timeout(std::time::Duration::from_secs(2), connecting).await {
        Ok(Ok(client)) => Some(client),
        Ok(Err(error)) => {
            tracing::debug!("no daemon on the socket: {error}");
            None
        }
        Err(_) => None,
    }
}

/// The engine record a daemon journaled (the API carries its exact JSON).
pub fn record_of(record: &pb::ChangeRecord) -> anyhow::Result<ChangeRecord> {
    serde_json::from_str(&record.journal_json)
        .with_context(|| format!("record {} from the daemon is not valid", record.sequence))
}

/// A gRPC status as a one-line error.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!(
        "the daemon refused: {} ({:?})",
        status.message(),
        status.code()
    )
}

pub async fn changes(client: &mut Client, args: ChangesArgs) -> anyhow::Result<ExitCode> {
    let filter = args.filter.to_proto()?;
    let mut records = Vec::new();
    let mut token = args
        .after
        .map(|after| after.to_string())
        .unwrap_or_default();
    while records.len() < args.limit {
        let page_size = (args.limit - records.len()).min(10_000) as u32;
        let response = client
            .query_changes(pb::QueryChangesRequest {
                filter: Some(filter.clone()),
                page_size,
                page_token: token.clone(),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        for record in &response.records {
            records.push(record_of(record)?);
        }
        if response.next_page_token.is_empty() {
            break;
        }
        token = response.next_page_token;
    }
    output::records(&records, args.format, &mut std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

pub async fn summary(client: &mut Client, args: SummaryArgs) -> anyhow::Result<ExitCode> {
    let keys = group_keys(&args.by)?;
    let response = client
        .summary(pb::SummaryRequest {
            filter: Some(args.filter.to_proto()?),
            group_by: keys
                .iter()
                .map(|key| convert::group_key(*key) as i32)
                .collect(),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let rows: Vec<SummaryRow> = response
        .rows
        .into_iter()
        .map(|row| SummaryRow {
            keys: row.keys,
            count: row.count,
        })
        .collect();
    output::summary(&args.by, &rows, args.format, &mut std::io::stdout().lock())?;
    Ok(ExitCode::SUCCESS)
}

pub async fn verify(
    client: &mut Client,
    args: &crate::status::VerifyArgs,
) -> anyhow::Result<ExitCode> {
    let expect = args.expect.map(|anchor| {
        format!(
            "{}:{}",
            anchor.sequence,
            fim_engine::change::hex(&anchor.hash)
        )
    });
    let report = client
        .verify_journal(pb::VerifyJournalRequest { expect })
        .await
        .map_err(status_error)?
        .into_inner();
    if report.intact {
        println!(
            "journal intact: {} records checked, chain head at {}:{}",
            report.checked, report.head_sequence, report.head_hash
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{}", report.problem);
        Ok(ExitCode::from(2))
    }
}

pub async fn status(client: &mut Client, json: bool) -> anyhow::Result<ExitCode> {
    let status = client
        .get_status(pb::GetStatusRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    let value = serde_json::json!({
        "daemon": {"running": true, "strategy": status.strategy, "version": status.version},
        "computer": status.computer,
        "roots": status.roots,
        "baseline_entries": status.baseline_entries,
        "journal_last_sequence": status.journal_last_sequence,
        "dropped_events": status.dropped_events,
        "gap_notices": status.gap_notices,
        "coalescing_paths": status.coalescing_paths,
        "held_paths": status.held_paths,
        "degraded": (!status.degraded.is_empty()).then_some(&status.degraded),
        "queued_events": status.queued_events,
        "scan_running": status.scan_running,
        "scans_queued": status.scans_queued,
        "hashing": status.hashing.iter().map(|file| serde_json::json!({
            "path": file.path, "size": file.size, "done": file.done,
        })).collect::<Vec<_>>(),
        "hashes_queued": status.hashes_queued,
        "who_data": (!status.who_data.is_empty()).then_some(&status.who_data),
        "who_data_events_lost": status.who_data_events_lost,
        "last_scans": status.last_scans.iter().map(|scan| serde_json::json!({
            "kind": scan.kind, "files": scan.files, "changes": scan.changes, "errors": scan.errors,
        })).collect::<Vec<_>>(),
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    if status.degraded.is_empty() {
        println!(
            "daemon:     running (strategy {}, version {})",
            status.strategy, status.version
        );
    } else {
        println!(
            "daemon:     DEGRADED (strategy {}, version {}): {}",
            status.strategy, status.version, status.degraded
        );
    }
    println!("computer:   {} ({})", status.computer, status.computer_id);
    println!("roots:      {}", status.roots.join(" "));
    println!("baseline:   {} entries", status.baseline_entries);
    println!("journal:    last sequence {}", status.journal_last_sequence);
    println!(
        "events:     {} lost in {} gap(s), {} coalescing, {} queued, {} held (journal not writable)",
        status.dropped_events,
        status.gap_notices,
        status.coalescing_paths,
        status.queued_events,
        status.held_paths
    );
    println!(
        "scans:      {}, {} queued",
        if status.scan_running {
            "one running"
        } else {
            "none running"
        },
        status.scans_queued
    );
    if !status.who_data.is_empty() {
        println!(
            "who-data:   {} ({} events lost)",
            status.who_data, status.who_data_events_lost
        );
    }
    let hashing: Vec<(String, u64, u64)> = status
        .hashing
        .iter()
        .map(|file| (file.path.clone(), file.done, file.size))
        .collect();
    crate::status::print_hashing(&hashing, status.hashes_queued);
    for scan in &status.last_scans {
        println!(
            "  {}: {} files, {} changes, {} errors",
            scan.kind, scan.files, scan.changes, scan.errors
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn trigger_scan(
    client: &mut Client,
    entities: Vec<String>,
    full: bool,
) -> anyhow::Result<ExitCode> {
    client
        .trigger_scan(pb::TriggerScanRequest { entities, full })
        .await
        .map_err(status_error)?;
    println!("scan requested from the running daemon; `fim status` shows when it ran, `fim changes` what it found");
    Ok(ExitCode::SUCCESS)
}

/// `fim watch`: the live stream, resumed after `from` (records only; gap notices to stderr).
pub async fn watch(
    client: &mut Client,
    from: u64,
    filter: &FilterArgs,
    format: Format,
) -> anyhow::Result<ExitCode> {
    if format == Format::Json || format == Format::Csv {
        bail!("fim watch prints table or jsonl lines");
    }
    let mut stream = client
        .watch_changes(pb::WatchChangesRequest {
            from_sequence: from,
            filter: Some(filter.to_proto()?),
            live_only: false,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    use std::io::Write as _;
    while let Some(item) = stream.message().await.map_err(status_error)? {
        match item.item {
            Some(pb::watch_changes_response::Item::Record(record)) => {
                let record = record_of(&record)?;
                let mut stdout = std::io::stdout().lock();
                output::records_line(&record, format, &mut stdout)?;
                stdout.flush()?;
            }
            Some(pb::watch_changes_response::Item::Gap(gap)) => eprintln!(
                "fim: {} kernel events were lost under {}; the daemon is rescanning them",
                gap.dropped,
                gap.roots.join(", ")
            ),
            None => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}
