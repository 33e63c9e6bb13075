//! `api_call SOCKET COMMAND ARGS..`: one fim.v1 call over the daemon's Unix socket, for tests
//! that run it under another uid and groups (setpriv) so the daemon sees a real unprivileged
//! peer. Prints one line:
//! - `upsert NAME KIND PATH` (KIND: linux-file | file-content): `CODE MESSAGE`
//! - `enable NAME`: `CODE MESSAGE`
//! - `query`: `Ok RECORDS WITH_DIFF` (records, and how many carry a content diff)
//! - `watch`: the same, for the records WatchChanges replays from sequence 0
//! - `baseline PATH`: `Ok HAS_CONTENT` (does the baseline state carry content)
//! - `hold COUNT SECONDS`: opens COUNT WatchChanges streams from sequence 0 on one connection
//!   and never reads them; prints `Ok OPENED REFUSED_CODE` once they are open, then holds them
//!   for SECONDS
use fim_api::pb;
use fim_tests::api::{block_on, unix_client};
use tokio_stream::StreamExt as _;

fn status_line<T>(result: Result<T, tonic::Status>) -> String {
    match result {
        Ok(_) => "Ok".to_string(),
        Err(status) => format!("{:?} {}", status.code(), status.message()),
    }
}

fn diffs(records: &[pb::ChangeRecord]) -> usize {
    records
        .iter()
        .filter(|record| {
            // The record's JSON travels too (clients parse it, `fim` among them).
            record.journal_json.contains("\"ContentDiff\"")
                || record
                    .file
                    .as_ref()
                    .is_some_and(|file| file.content_diff.is_some())
        })
        .count()
}

async fn call(socket: std::path::PathBuf, args: Vec<String>) -> String {
    let mut fim = unix_client(&socket).await;
    let arg = |index: usize| args.get(index).cloned().unwrap_or_default();
    match arg(0).as_str() {
        "upsert" => {
            let kind = match arg(2).as_str() {
                "file-content" => pb::EntityKind::FileContent,
                _ => pb::EntityKind::LinuxFile,
            };
            let entity = pb::Entity {
                name: arg(1),
                kind: kind as i32,
                path: arg(3),
                enabled: true,
                ..Default::default()
            };
            status_line(
                fim.upsert_entity(pb::UpsertEntityRequest {
                    entity: Some(entity),
                })
                .await,
            )
        }
        "enable" => status_line(
            fim.set_entity_enabled(pb::SetEntityEnabledRequest {
                name: arg(1),
                enabled: true,
            })
            .await,
        ),
        "query" => match fim.query_changes(pb::QueryChangesRequest::default()).await {
            Ok(reply) => {
                let records = reply.into_inner().records;
                format!("Ok {} {}", records.len(), diffs(&records))
            }
            Err(status) => status_line::<()>(Err(status)),
        },
        "watch" => {
            let request = pb::WatchChangesRequest {
                from_sequence: 0,
                ..Default::default()
            };
            let mut stream = match fim.watch_changes(request).await {
                Ok(reply) => reply.into_inner(),
                Err(status) => return status_line::<()>(Err(status)),
            };
            let mut records = Vec::new();
            // The replay comes at once; a quiet half second means it is over.
            while let Ok(Some(Ok(item))) =
                tokio::time::timeout(std::time::Duration::from_millis(500), stream.next()).await
            {
                if let Some(pb::watch_changes_response::Item::Record(record)) = item.item {
                    records.push(record);
                }
            }
            format!("Ok {} {}", records.len(), diffs(&records))
        }
        "baseline" => match fim
            .get_baseline_entry(pb::GetBaselineEntryRequest { path: arg(1) })
            .await
        {
            Ok(reply) => format!(
                "Ok {}",
                reply
                    .into_inner()
                    .state
                    .is_some_and(|state| state.content.is_some())
            ),
            Err(status) => status_line::<()>(Err(status)),
        },
        "hold" => hold(fim, &arg(1), &arg(2)).await,
        other => format!("usage: unknown command {other:?}"),
    }
}

/// Streams nobody reads: opened, announced on stdout, then left alone.
async fn hold(
    mut fim: pb::fim_client::FimClient<tonic::transport::Channel>,
    count: &str,
    seconds: &str,
) -> String {
    let count: usize = count.parse().unwrap_or(0);
    let seconds: u64 = seconds.parse().unwrap_or(0);
    let mut held = Vec::new();
    let mut refused = String::from("-");
    for _ in 0..count {
        let request = pb::WatchChangesRequest {
            from_sequence: 0,
            ..Default::default()
        };
        match fim.watch_changes(request).await {
            Ok(reply) => held.push(reply.into_inner()),
            Err(status) => refused = format!("{:?}", status.code()),
        }
    }
    println!("Ok {} {refused}", held.len());
    tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
    drop(held);
    "done".to_string()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(socket) = args.next() else {
        eprintln!("usage: api_call SOCKET COMMAND ARGS..");
        std::process::exit(2);
    };
    println!("{}", block_on(call(socket.into(), args.collect())));
}
