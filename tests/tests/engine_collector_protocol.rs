//! fim.collector.v1 spoken directly to a real `fim-collector` (run with
//! `--insecure-plaintext`, so the protocol is seen bare; engine_collector_enrollment covers
//! TLS and certificates): oversized Hellos, too many
//! journals, malformed and oversized batches, records that do not chain, replays, the
//! admission limit, the connection limits. Each refusal names its reason, and good records
//! sent afterwards on the same journal are still accepted.
use std::{
    io::Write as _,
    net::TcpStream,
    time::{Duration, Instant},
};

use fim_api::collector_pb::{
    agent_message, collector_client::CollectorClient, collector_message, Ack, AgentMessage, Batch,
    CollectorMessage, Hello, JournalRecord,
};
use fim_tests::{
    collector::{
        admits_a_connection, collector_rows, free_address, hex, machines, Collector, Row,
        HTTP2_PREFACE,
    },
    read_until_closed,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{transport::Channel, Streaming};

const COMPUTER_ID: &str = "test-agent-0001";
const GENESIS: [u8; 32] = [0; 32];

fn chain_hash(prev: &[u8], json: &[u8]) -> Vec<u8> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(prev);
    hasher.update(json);
    hasher.finalize().as_bytes().to_vec()
}

/// A hash-chained journal of `count` real change records, as an agent journals them.
fn journal(count: u64) -> Vec<JournalRecord> {
    let mut prev = GENESIS.to_vec();
    (1..=count)
        .map(|sequence| {
            let mut record = fim_model::samples::registry_record();
            record.sequence = sequence;
            record.computer_id = COMPUTER_ID.to_string();
            let record_json = serde_json::to_vec(&record).unwrap();
            let hash = chain_hash(&prev, &record_json);
            let row = JournalRecord {
                sequence,
                record_json,
                prev_hash: prev.clone(),
                hash: hash.clone(),
            };
            prev = hash;
            row
        })
        .collect()
}

struct Stream {
    requests: mpsc::Sender<AgentMessage>,
    replies: Streaming<CollectorMessage>,
    next_batch: u64,
}

impl Stream {
    async fn open(
        address: &str,
        journal_id: &str,
        head: &JournalRecord,
    ) -> (Stream, collector_message::Kind) {
        let channel = Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let (requests, outgoing) = mpsc::channel(4);
        let hello = Hello {
            computer_id: COMPUTER_ID.into(),
            computer: "test-agent".into(),
            journal_id: journal_id.into(),
            head_sequence: head.sequence,
            head_hash: head.hash.clone(),
            agent_version: "test".into(),
            platform: "test".into(),
            strategy: "replay".into(),
            ..Hello::default()
        };
        requests
            .send(AgentMessage {
                kind: Some(agent_message::Kind::Hello(hello)),
            })
            .await
            .unwrap();
        let mut replies = CollectorClient::new(channel)
            .report(ReceiverStream::new(outgoing))
            .await
            .unwrap()
            .into_inner();
        let first = replies.message().await.unwrap().unwrap().kind.unwrap();
        (
            Stream {
                requests,
                replies,
                next_batch: 1,
            },
            first,
        )
    }

    async fn send(&mut self, records: Vec<JournalRecord>) -> Result<Ack, tonic::Status> {
        let batch_id = self.next_batch;
        self.next_batch += 1;
        let batch = Batch { batch_id, records };
        self.requests
            .send(AgentMessage {
                kind: Some(agent_message::Kind::Batch(batch)),
            })
            .await
            .map_err(|_| tonic::Status::cancelled("closed"))?;
        match self.replies.message().await?.and_then(|reply| reply.kind) {
            Some(collector_message::Kind::Ack(ack)) => {
                assert_eq!(ack.batch_id, batch_id);
                Ok(ack)
            }
            other => panic!("expected an Ack, got {other:?}"),
        }
    }
}

fn reasons(ack: &Ack) -> Vec<(u64, String, bool)> {
    ack.refused
        .iter()
        .map(|refusal| (refusal.sequence, refusal.reason.clone(), refusal.duplicate))
        .collect()
}

fn row(record: &JournalRecord) -> Row {
    Row {
        sequence: record.sequence,
        record: String::from_utf8(record.record_json.clone()).unwrap(),
        prev_hash: hex(&record.prev_hash),
        hash: hex(&record.hash),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_are_refused_with_reasons_and_later_good_records_are_accepted() {
    let base = std::env::temp_dir().join(format!("fim-collector-proto-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let address = free_address();
    let collector = Collector::start(
        &base,
        &address,
        &[
            "--insecure-plaintext",
            "--max-batch-records",
            "5",
            "--max-message-bytes",
            "65536",
        ],
    );
    let records = journal(6);
    let (mut stream, first) = Stream::open(&address, "journal-a", &records[5]).await;
    let collector_message::Kind::Welcome(welcome) = first else {
        panic!("{first:?}")
    };
    assert_eq!(
        (welcome.resume_after_sequence, welcome.resume_hash.clone()),
        (0, GENESIS.to_vec())
    );
    assert_eq!(welcome.max_batch_records, 5);

    let ack = stream.send(records[..3].to_vec()).await.unwrap();
    assert_eq!(
        (ack.accepted, ack.duplicates, ack.acknowledged_sequence),
        (3, 0, 3)
    );
    assert_eq!(ack.acknowledged_hash, records[2].hash);
    assert!(ack.refused.is_empty());

    // A replayed old batch: nothing stored twice, each record named.
    let ack = stream.send(records[..3].to_vec()).await.unwrap();
    assert_eq!(
        (ack.accepted, ack.duplicates, ack.acknowledged_sequence),
        (0, 3, 3)
    );
    assert_eq!(
        reasons(&ack),
        (1..=3)
            .map(|s| (
                s,
                format!("record {s} was already acknowledged (a replay): not stored again"),
                true
            ))
            .collect::<Vec<_>>()
    );

    // A malformed batch: more records than the limit.
    let mut six = records.clone();
    six.extend(journal(1));
    let ack = stream.send(six[..6].to_vec()).await.unwrap();
    assert_eq!((ack.accepted, ack.acknowledged_sequence), (0, 3));
    assert_eq!(
        reasons(&ack),
        vec![(
            0,
            "the batch is malformed: it holds 6 records, more than the limit of 5".to_string(),
            false
        )]
    );

    // A record whose hash does not match its content.
    let mut forged = records[3].clone();
    forged.hash = vec![0xab; 32];
    let computed = hex(&chain_hash(&forged.prev_hash, &forged.record_json));
    let hash_reason = format!(
        "record 4 does not match its hash: BLAKE3(prev_hash || record) is {computed}, the agent \
         sent {} (the record was edited after it was journaled)",
        hex(&forged.hash)
    );
    let ack = stream.send(vec![forged]).await.unwrap();
    assert_eq!((ack.accepted, ack.acknowledged_sequence), (0, 3));
    assert_eq!(reasons(&ack), vec![(4, hash_reason.clone(), false)]);
    assert_eq!(ack.flag_reason, hash_reason);

    // A record that does not chain to the last acknowledged one.
    let mut unchained = records[3].clone();
    unchained.prev_hash = vec![0x11; 32];
    unchained.hash = chain_hash(&unchained.prev_hash, &unchained.record_json);
    let ack = stream
        .send(vec![unchained, records[4].clone()])
        .await
        .unwrap();
    assert_eq!(
        reasons(&ack),
        vec![(
            4,
            format!(
                "record 4 does not chain: its prev_hash is {}, but record 3 at the workspace has \
                 hash {} (1 records after it in the batch were not examined)",
                hex(&[0x11; 32]),
                hex(&records[2].hash)
            ),
            false
        )]
    );

    // A malformed record: a hash of the wrong length.
    let mut short = records[3].clone();
    short.hash = vec![1; 5];
    let ack = stream.send(vec![short]).await.unwrap();
    assert_eq!(
        reasons(&ack),
        vec![(
            4,
            "record 4 is malformed: its hash is 5 bytes, not 32".to_string(),
            false
        )]
    );

    // The good records after all that: accepted, on the same stream.
    let ack = stream.send(records[3..].to_vec()).await.unwrap();
    assert_eq!(
        (ack.accepted, ack.duplicates, ack.acknowledged_sequence),
        (3, 0, 6)
    );
    assert_eq!(ack.acknowledged_hash, records[5].hash);
    assert!(ack.refused.is_empty());

    // An oversized message ends that stream with RESOURCE_EXHAUSTED...
    let mut huge = journal(7)[6].clone();
    huge.record_json = vec![b' '; 70_000];
    let status = stream.send(vec![huge]).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    // ...and the journal goes on from where it was on a new one.
    let (_stream, first) = Stream::open(&address, "journal-a", &records[5]).await;
    let collector_message::Kind::Welcome(welcome) = first else {
        panic!("{first:?}")
    };
    assert_eq!(
        (welcome.resume_after_sequence, welcome.resume_hash),
        (6, records[5].hash.clone())
    );
    assert_eq!(
        (welcome.flagged, welcome.flag_reason.as_str()),
        (true, hash_reason.as_str())
    );

    assert_eq!(
        collector_rows(&base),
        records.iter().map(row).collect::<Vec<_>>()
    );
    let listed = machines(&base);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["flag_reason"], hash_reason.as_str());
    assert_eq!(listed[0]["records"], 6);
    drop(collector);
    let _ = std::fs::remove_dir_all(&base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_admission_limit_are_told_when_to_retry() {
    let base = std::env::temp_dir().join(format!("fim-collector-busy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let address = free_address();
    let _collector = Collector::start(
        &base,
        &address,
        &[
            "--insecure-plaintext",
            "--max-streams",
            "1",
            "--retry-after-ms",
            "1500",
        ],
    );
    let records = journal(1);
    let (first, welcome) = Stream::open(&address, "journal-1", &records[0]).await;
    assert!(
        matches!(welcome, collector_message::Kind::Welcome(_)),
        "{welcome:?}"
    );
    let (_, busy) = Stream::open(&address, "journal-2", &records[0]).await;
    let collector_message::Kind::Busy(busy) = busy else {
        panic!("{busy:?}")
    };
    assert_eq!(busy.retry_after_ms, 1500);
    assert_eq!(
        busy.reason,
        "1 agents are reporting, the most this collector serves at once"
    );
    drop(first);
    let mut admitted = None;
    for _ in 0..40 {
        let (stream, reply) = Stream::open(&address, "journal-2", &records[0]).await;
        if let collector_message::Kind::Welcome(welcome) = reply {
            admitted = Some((stream, welcome));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut stream, welcome) = admitted.expect("admitted once the first stream ended");
    assert_eq!(welcome.resume_after_sequence, 0);
    let ack = stream.send(records.clone()).await.unwrap();
    assert_eq!((ack.accepted, ack.acknowledged_sequence), (1, 1));
    let _ = std::fs::remove_dir_all(&base);
}

/// Sends only a Hello; the collector's first answer or the status it ended the stream with.
async fn hello_answer(
    address: &str,
    hello: Hello,
) -> Result<collector_message::Kind, tonic::Status> {
    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (requests, outgoing) = mpsc::channel(1);
    requests
        .send(AgentMessage {
            kind: Some(agent_message::Kind::Hello(hello)),
        })
        .await
        .unwrap();
    let mut replies = CollectorClient::new(channel)
        .report(ReceiverStream::new(outgoing))
        .await?
        .into_inner();
    Ok(replies.message().await?.unwrap().kind.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_hellos_and_too_many_journals_are_refused_with_reasons() {
    let base = std::env::temp_dir().join(format!("fim-collector-hello-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let address = free_address();
    let _collector = Collector::start(&base, &address, &["--insecure-plaintext"]);
    let hello = |journal: usize| Hello {
        computer_id: COMPUTER_ID.into(),
        computer: "test-agent".into(),
        journal_id: format!("journal-{journal}"),
        head_sequence: 0,
        head_hash: GENESIS.to_vec(),
        agent_version: "test".into(),
        platform: "test".into(),
        strategy: "replay".into(),
        ..Hello::default()
    };
    let mut oversized = hello(0);
    oversized.computer = "x".repeat(257);
    let status = hello_answer(&address, oversized).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("computer name"), "{status:?}");

    for journal in 0..16 {
        let answer = hello_answer(&address, hello(journal)).await.unwrap();
        assert!(
            matches!(answer, collector_message::Kind::Welcome(_)),
            "{answer:?}"
        );
    }
    let status = hello_answer(&address, hello(16)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("16 journals"), "{status:?}");
    // A journal already open is still let back in.
    let answer = hello_answer(&address, hello(3)).await.unwrap();
    assert!(
        matches!(answer, collector_message::Kind::Welcome(_)),
        "{answer:?}"
    );
    let _ = std::fs::remove_dir_all(&base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_is_closed_at_the_first_byte_limit() {
    const LIMIT: Duration = Duration::from_millis(1000);
    let base = std::env::temp_dir().join(format!("fim-collector-silent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let address = free_address();
    let collector = Collector::start(
        &base,
        &address,
        &["--insecure-plaintext", "--first-byte-timeout-ms", "1000"],
    );
    // An agent that has spoken stays connected past the limit, quiet as it may be.
    let records = journal(1);
    let (mut agent, welcome) = Stream::open(&address, "journal-quiet", &records[0]).await;
    assert!(
        matches!(welcome, collector_message::Kind::Welcome(_)),
        "{welcome:?}"
    );

    let mut silent = TcpStream::connect(&address).unwrap();
    silent
        .set_read_timeout(Some(LIMIT + Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    // Blocking, on the test's own thread: the agent's connection is driven by the workers.
    let closed = read_until_closed(&mut silent);
    let waited = started.elapsed();
    let Some(how) = closed else {
        panic!("still open after {waited:?}");
    };
    // The timer starts at accept, after connect returned here: never before the limit.
    assert!(
        waited >= LIMIT - Duration::from_millis(100),
        "closed too early ({how}): {waited:?}"
    );
    assert!(
        waited < LIMIT + Duration::from_secs(5),
        "closed long after the limit ({how}): {waited:?}"
    );

    let ack = agent.send(records.clone()).await.unwrap();
    assert_eq!((ack.accepted, ack.acknowledged_sequence), (1, 1));
    drop(collector);
    let _ = std::fs::remove_dir_all(&base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_per_address_cap_are_closed_at_once_and_an_agent_keeps_reporting() {
    const CAP: usize = 4;
    let base = std::env::temp_dir().join(format!("fim-collector-cap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let address = free_address();
    let collector = Collector::start(
        &base,
        &address,
        &[
            "--insecure-plaintext",
            "--max-connections-per-address",
            &CAP.to_string(),
        ],
    );
    let records = journal(2);
    let (mut agent, welcome) = Stream::open(&address, "journal-capped", &records[1]).await;
    assert!(
        matches!(welcome, collector_message::Kind::Welcome(_)),
        "{welcome:?}"
    );
    // The agent holds one of the address's connections; these speak and hold the rest.
    let holders: Vec<TcpStream> = (1..CAP)
        .map(|_| {
            let mut holder = TcpStream::connect(&address).unwrap();
            holder.write_all(HTTP2_PREFACE).unwrap();
            holder
        })
        .collect();
    // Accepted in order: once one past the cap is refused, every holder was admitted.
    for extra in 0..8 {
        let mut refused = TcpStream::connect(&address).unwrap();
        refused
            .set_read_timeout(Some(Duration::from_secs(8)))
            .unwrap();
        let started = Instant::now();
        let closed = read_until_closed(&mut refused);
        let waited = started.elapsed();
        let Some(how) = closed else {
            panic!("connection {extra} past the cap still open after {waited:?}");
        };
        // At once, not at the first-byte limit (10 s by default).
        assert!(
            waited < Duration::from_secs(3),
            "connection {extra} past the cap closed after {waited:?} ({how})"
        );
    }
    for holder in &holders {
        holder.set_nonblocking(true).unwrap();
        let mut peek = [0u8; 1];
        let still_open = match holder.peek(&mut peek) {
            Ok(read) => read > 0,
            Err(error) => error.kind() == std::io::ErrorKind::WouldBlock,
        };
        assert!(still_open, "an admitted connection was closed");
    }
    assert!(
        collector.log().contains("collector connection refused"),
        "{}",
        collector.log()
    );

    // The agent already connected reports on, on its own connection.
    let ack = agent.send(records.clone()).await.unwrap();
    assert_eq!((ack.accepted, ack.acknowledged_sequence), (2, 2));
    // Slots come back when connections close.
    drop(holders);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !admits_a_connection(&address) {
        assert!(Instant::now() < deadline, "no slot came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(collector);
    let _ = std::fs::remove_dir_all(&base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_group_machines_whose_monitored_trees_differ() {
    let base = std::env::temp_dir().join(format!("fim-collector-drift-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let address = free_address();
    let _collector = Collector::start(&base, &address, &["--insecure-plaintext"]);
    let digest = |entity: &str, byte: u8| fim_api::collector_pb::EntityDigest {
        entity: entity.into(),
        objects: 12,
        digest: vec![byte; 32],
        reported_ns: 0,
    };
    let hello = |computer: &str, entities| Hello {
        computer_id: computer.into(),
        computer: format!("host-{computer}"),
        journal_id: "journal-1".into(),
        head_sequence: 0,
        head_hash: GENESIS.to_vec(),
        entities,
        entities_reported: true,
        ..Hello::default()
    };
    for (computer, etc) in [("web-1", 1), ("web-2", 1), ("web-3", 9)] {
        let entities = vec![digest("etc", etc), digest("cron", 4)];
        let answer = hello_answer(&address, hello(computer, entities))
            .await
            .unwrap();
        assert!(
            matches!(answer, collector_message::Kind::Welcome(_)),
            "{answer:?}"
        );
    }
    // web-2 stops monitoring cron: its next heartbeat replaces what it reported.
    let answer = hello_answer(&address, hello("web-2", vec![digest("etc", 1)]))
        .await
        .unwrap();
    assert!(matches!(answer, collector_message::Kind::Welcome(_)));
    // A heartbeat without entities_reported leaves them alone.
    let mut silent = hello("web-1", Vec::new());
    silent.entities_reported = false;
    hello_answer(&address, silent).await.unwrap();

    let output = fim_tests::collector::run_collector(&["drift", "--json"], &base);
    assert!(output.status.success(), "{output:?}");
    let drift: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(drift.len(), 2, "{drift:?}");
    assert_eq!(drift[0]["entity"], "cron");
    assert_eq!(drift[0]["drifted"], true);
    assert_eq!(
        drift[0]["variants"][0]["computers"],
        serde_json::json!(["web-1", "web-3"])
    );
    assert_eq!(drift[0]["missing"], serde_json::json!(["web-2"]));
    assert_eq!(drift[1]["entity"], "etc");
    assert_eq!(
        drift[1]["variants"][0]["computers"],
        serde_json::json!(["web-1", "web-2"])
    );
    assert_eq!(drift[1]["variants"][0]["digest"], hex(&[1; 32]));
    assert_eq!(
        drift[1]["variants"][1]["computers"],
        serde_json::json!(["web-3"])
    );
    assert_eq!(drift[1]["variants"][1]["objects"], 12);

    // Too many entities, or a digest of the wrong size: refused with the reason.
    let flood = (0..1025)
        .map(|index| digest(&format!("e{index}"), 1))
        .collect();
    let status = hello_answer(&address, hello("web-4", flood))
        .await
        .unwrap_err();
    assert!(
        status.message().contains("more than the 1024 allowed"),
        "{status:?}"
    );
    let mut short = digest("etc", 1);
    short.digest.truncate(8);
    let status = hello_answer(&address, hello("web-4", vec![short]))
        .await
        .unwrap_err();
    assert!(status.message().contains("is not 32 bytes"), "{status:?}");
    let _ = std::fs::remove_dir_all(&base);
}
