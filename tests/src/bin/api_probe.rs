//! `api_probe SOCKET TREE`: calls every fim.v1 method (and the health check) once over the
//! daemon's Unix socket and prints `METHOD CODE` per line, or `connect ERROR` when the socket
//! cannot be reached. The role tests run it under other uids and groups (setpriv), so the
//! peer credentials the daemon sees are a real unprivileged process's.
use fim_api::pb;
use fim_tests::api::{block_on, code, unix_channel};
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(socket), Some(tree)) = (args.next(), args.next()) else {
        eprintln!("usage: api_probe SOCKET TREE");
        std::process::exit(2);
    };
    block_on(probe(socket.into(), tree));
}

async fn probe(socket: std::path::PathBuf, tree: String) {
    let channel = match unix_channel(&socket).await {
        Ok(channel) => channel,
        Err(error) => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            println!("connect {text}");
            return;
        }
    };
    let mut fim = pb::fim_client::FimClient::new(channel.clone());
    let mut lines = Vec::new();
    let mut line = |name: &str, outcome: String| lines.push(format!("{name} {outcome}"));
    line(
        "GetStatus",
        code(&fim.get_status(pb::GetStatusRequest {}).await),
    );
    line(
        "QueryChanges",
        code(&fim.query_changes(pb::QueryChangesRequest::default()).await),
    );
    line(
        "Summary",
        code(&fim.summary(pb::SummaryRequest::default()).await),
    );
    line(
        "ListEntities",
        code(&fim.list_entities(pb::ListEntitiesRequest {}).await),
    );
    line(
        "WatchChanges",
        code(&fim.watch_changes(pb::WatchChangesRequest::default()).await),
    );
    line(
        "VerifyJournal",
        code(
            &fim.verify_journal(pb::VerifyJournalRequest { expect: None })
                .await,
        ),
    );
    line(
        "TriggerScan",
        code(&fim.trigger_scan(pb::TriggerScanRequest::default()).await),
    );
    let entity = pb::Entity {
        name: "probe".into(),
        kind: pb::EntityKind::LinuxFile as i32,
        path: format!("{tree}/probe"),
        recursive: true,
        enabled: true,
        ignore: Vec::new(),
    };
    line(
        "UpsertEntity",
        code(
            &fim.upsert_entity(pb::UpsertEntityRequest {
                entity: Some(entity),
            })
            .await,
        ),
    );
    line(
        "SetEntityEnabled",
        code(
            &fim.set_entity_enabled(pb::SetEntityEnabledRequest {
                name: "tree".into(),
                enabled: true,
            })
            .await,
        ),
    );
    line(
        "DeleteEntity",
        code(
            &fim.delete_entity(pb::DeleteEntityRequest {
                name: "probe".into(),
            })
            .await,
        ),
    );
    let mut health = HealthClient::new(channel);
    line(
        "Health",
        code(
            &health
                .check(HealthCheckRequest {
                    service: "fim.v1.Fim".into(),
                })
                .await,
        ),
    );
    for line in lines {
        println!("{line}");
    }
}
