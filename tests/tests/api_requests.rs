//! The API's answers to good and bad requests, through a real client on the daemon's socket:
//! paging and streaming agree with the journal, every malformed request is INVALID_ARGUMENT
//! naming the field, and none of it disturbs the daemon. Health and reflection are served.
use std::time::Duration;

use fim_api::pb::{self, fim_client::FimClient};
use fim_tests::{
    api::{block_on, unix_channel, unix_client},
    engine::{Engine, Workspace},
};
use tokio_stream::StreamExt as _;
use tonic::{transport::Channel, Code};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse, ServerReflectionRequest,
};

async fn expect_invalid<T: std::fmt::Debug>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
    field: &str,
) {
    let status = call.await.expect_err(what);
    assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    assert!(
        status.message().contains(field),
        "{what}: the message should name {field}: {}",
        status.message()
    );
}

fn query(filter: pb::ChangeFilter) -> pb::QueryChangesRequest {
    pb::QueryChangesRequest {
        filter: Some(filter),
        ..Default::default()
    }
}

async fn bad_requests(client: &mut FimClient<Channel>) {
    let later = prost_types::Timestamp {
        seconds: 2_000_000_000,
        nanos: 0,
    };
    let earlier = prost_types::Timestamp {
        seconds: 1_000_000_000,
        nanos: 0,
    };
    let backwards = pb::ChangeFilter {
        since: Some(later),
        until: Some(earlier),
        ..Default::default()
    };
    expect_invalid(
        "since > until",
        client.query_changes(query(backwards.clone())),
        "filter.since",
    )
    .await;
    let glob = pb::ChangeFilter {
        path_glob: Some("/etc/[a".into()),
        ..Default::default()
    };
    expect_invalid(
        "an invalid glob",
        client.query_changes(query(glob)),
        "filter.path_glob",
    )
    .await;
    let unknown_type = pb::ChangeFilter {
        types: vec![99],
        ..Default::default()
    };
    expect_invalid(
        "type 99",
        client.query_changes(query(unknown_type.clone())),
        "filter.types[0]",
    )
    .await;
    let unknown_category = pb::ChangeFilter {
        categories: vec![1, 7],
        ..Default::default()
    };
    expect_invalid(
        "category 7",
        client.query_changes(query(unknown_category)),
        "filter.categories[1]",
    )
    .await;
    expect_invalid(
        "a page of a million",
        client.query_changes(pb::QueryChangesRequest {
            page_size: 1_000_000,
            ..Default::default()
        }),
        "page_size",
    )
    .await;
    expect_invalid(
        "a forged page token",
        client.query_changes(pb::QueryChangesRequest {
            page_token: "sequence-7".into(),
            ..Default::default()
        }),
        "page_token",
    )
    .await;
    expect_invalid(
        "a stream with a bad filter",
        client.watch_changes(pb::WatchChangesRequest {
            filter: Some(unknown_type),
            ..Default::default()
        }),
        "filter.types[0]",
    )
    .await;
    expect_invalid(
        "a summary by an unknown key",
        client.summary(pb::SummaryRequest {
            filter: Some(backwards),
            group_by: vec![1],
        }),
        "filter.since",
    )
    .await;
    expect_invalid(
        "a summary by key 42",
        client.summary(pb::SummaryRequest {
            filter: None,
            group_by: vec![42],
        }),
        "group_by[0]",
    )
    .await;
    expect_invalid(
        "an invalid escape",
        client.get_baseline_entry(pb::GetBaselineEntryRequest {
            path: "/etc/\\q".into(),
        }),
        "path",
    )
    .await;
    // A request far beyond any real one is refused before the daemon buffers it.
    let huge = client
        .upsert_entity(pb::UpsertEntityRequest {
            entity: Some(pb::Entity {
                name: "x".repeat(8 * 1024 * 1024),
                kind: pb::EntityKind::LinuxFile as i32,
                path: "/tmp/x".into(),
                ..Default::default()
            }),
        })
        .await
        .expect_err("an 8 MiB request");
    assert_eq!(huge.code(), tonic::Code::OutOfRange, "{huge:?}");
    assert!(
        huge.message().contains(&format!(
            "the limit is: {} bytes",
            fim_api::limits::MAX_REQUEST_BYTES
        )),
        "{huge:?}"
    );
    expect_invalid(
        "an upsert without an entity",
        client.upsert_entity(pb::UpsertEntityRequest { entity: None }),
        "entity",
    )
    .await;
    expect_invalid(
        "an entity of kind 99",
        client.upsert_entity(pb::UpsertEntityRequest {
            entity: Some(pb::Entity {
                name: "x".into(),
                kind: 99,
                path: "/tmp/x".into(),
                ..Default::default()
            }),
        }),
        "entity.kind",
    )
    .await;
}

#[test]
fn bad_requests_are_invalid_arguments_and_harmless() {
    let workspace = Workspace::new("api-bad-requests");
    let engine = Engine::start(&workspace);
    block_on(async {
        let mut client = unix_client(&workspace.socket).await;
        bad_requests(&mut client).await;
        let status = client
            .get_status(pb::GetStatusRequest {})
            .await
            .expect("the daemon still answers")
            .into_inner();
        assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(status.strategy, fim_tests::strategy());
        assert!(!status.computer.is_empty());
        assert!(status.started.is_some());
        let missing = client
            .get_baseline_entry(pb::GetBaselineEntryRequest {
                path: workspace.tree.join("absent").display().to_string(),
            })
            .await
            .expect_err("not in the baseline");
        assert_eq!(missing.code(), Code::NotFound);
    });
    engine.stop();
}

#[test]
fn health_and_reflection_are_served() {
    let workspace = Workspace::new("api-health");
    let engine = Engine::start(&workspace);
    block_on(async {
        let channel = unix_channel(&workspace.socket).await.expect("connect");
        let health = HealthClient::new(channel.clone())
            .check(HealthCheckRequest {
                service: "fim.v1.Fim".into(),
            })
            .await
            .expect("health check")
            .into_inner();
        assert_eq!(health.status, ServingStatus::Serving as i32);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut responses = ServerReflectionClient::new(channel)
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("reflection")
            .into_inner();
        let response = responses
            .next()
            .await
            .expect("one response")
            .expect("a response, not an error");
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection answer: {response:?}");
        };
        let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"fim.v1.Fim"), "{names:?}");
    });
    engine.stop();
}

#[test]
fn queries_and_streams_agree_with_the_journal() {
    let workspace = Workspace::new("api-journal");
    let engine = Engine::start(&workspace);
    for name in ["a", "b", "c"] {
        std::fs::write(workspace.tree.join(name), name).expect("write");
    }
    let records = engine.settle(3);
    let journaled: Vec<u64> = records
        .iter()
        .filter_map(|record| record["Sequence"].as_u64())
        .collect();
    assert!(journaled.len() >= 3, "{records:?}");
    block_on(async {
        let mut client = unix_client(&workspace.socket).await;
        // Pages of one, chained by tokens, give every record once, in order.
        let mut paged = Vec::new();
        let mut token = String::new();
        loop {
            let page = client
                .query_changes(pb::QueryChangesRequest {
                    filter: None,
                    page_size: 1,
                    page_token: token.clone(),
                })
                .await
                .expect("query")
                .into_inner();
            paged.extend(page.records.iter().map(|record| record.sequence));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        assert_eq!(paged, journaled);
        // A stream from the middle: the rest of the journal, then a live record.
        let from = journaled[0];
        let mut stream = client
            .watch_changes(pb::WatchChangesRequest {
                from_sequence: from,
                filter: None,
                live_only: false,
            })
            .await
            .expect("watch")
            .into_inner();
        let mut streamed = Vec::new();
        while streamed.len() < journaled.len() - 1 {
            let item = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("a record in time")
                .expect("stream open")
                .expect("no error");
            if let Some(pb::watch_changes_response::Item::Record(record)) = item.item {
                let json: serde_json::Value =
                    serde_json::from_str(&record.journal_json).expect("journal_json");
                assert_eq!(json["Sequence"].as_u64(), Some(record.sequence));
                streamed.push(record.sequence);
            }
        }
        assert_eq!(streamed, journaled[1..]);
        std::fs::write(workspace.tree.join("d"), "d").expect("write");
        let live = loop {
            let item = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("a live record in time")
                .expect("stream open")
                .expect("no error");
            if let Some(pb::watch_changes_response::Item::Record(record)) = item.item {
                break record;
            }
        };
        assert_eq!(live.sequence, journaled[journaled.len() - 1] + 1);
        let file = live.file.expect("file columns");
        assert!(file.file_system_path.ends_with("/d"), "{file:?}");
        assert!(live.actor.is_some(), "a real-time change names its actor");
        // The baseline entry of the new file.
        let entry = client
            .get_baseline_entry(pb::GetBaselineEntryRequest {
                path: file.file_system_path.clone(),
            })
            .await
            .expect("baseline entry")
            .into_inner();
        let state = entry.state.expect("state");
        assert_eq!(state.size, 1);
        assert_eq!(
            state.checksum.as_deref(),
            Some(blake3::hash(b"d").to_hex().as_str())
        );
        let verify = client
            .verify_journal(pb::VerifyJournalRequest { expect: None })
            .await
            .expect("verify")
            .into_inner();
        assert!(verify.intact, "{verify:?}");
        assert_eq!(verify.head_sequence, live.sequence);
    });
    engine.stop();
}
