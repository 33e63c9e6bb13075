//! `cargo xtask bench workspace`: how fast a collector ingests agents streaming flat out,
//! beside the limit, and how fast the documented summary and a drill-down answer.
//!
//! For each backend (SQLite in a state directory, then PostgreSQL 15 in a throwaway
//! cluster) a release `fim-collector` is started and `--agents` replayed agents (hash-chained
//! journals of `--records` real change records each, spread over the last 13 days) stream to
//! it at once over fim.collector.v1, each batch waiting for its Ack as fimd does. The limit
//! in the same run: PostgreSQL's own COPY of the same rows into fim-kql's table (partitions
//! and hourly trigger included), and for SQLite one transaction of the same inserts. Then
//! the documented 14-day summary and a per-machine drill-down through the Workspace API,
//! as `fim --workspace` asks them (median of 5).
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Instant,
};

use anyhow::{bail, Context as _};
use fim_api::collector_pb::{
    agent_message, collector_client::CollectorClient, collector_message,
    workspace_client::WorkspaceClient, AgentMessage, Batch, Hello, JournalRecord, QueryRequest,
};
use fim_kql::pg_test::TestServer;
use std::io::BufRead as _;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const TARGET_RATIO_TO_COPY: f64 = 0.5;
const TARGET_SUMMARY_MS: f64 = 100.0;
const BATCH: usize = 500;
const DAY_NS: i64 = 86_400_000_000_000;
const SUMMARY: &str = "ConfigurationChange | where TimeGenerated > ago(14d) \
    | where ConfigChangeType in ('Registry', 'Files') \
    | summarize count() by Computer, ConfigChangeType";

struct Options {
    collector: PathBuf,
    agents: usize,
    records: u64,
}

fn options() -> anyhow::Result<Options> {
    let mut options = Options {
        collector: PathBuf::from("target/release/fim-collector"),
        agents: 50,
        records: 4_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--collector" => options.collector = PathBuf::from(value),
            "--agents" => options.agents = value.parse().context("--agents")?,
            "--records" => options.records = value.parse().context("--records")?,
            other => bail!("unknown option {other} (--collector, --agents, --records)"),
        }
    }
    Ok(options)
}

/// A file change as fimd journals it (a real-time write by a named process).
fn file_record(sequence: u64) -> fim_model::ChangeRecord {
    use fim_engine::{
        change::{file_columns, ChangeCategory, ConfigChangeType, Detection},
        state::{FileState, FileType},
    };
    let state = FileState {
        size: 4096,
        mode: 0o644,
        nlink: 1,
        hash: Some([7; 32]),
        mtime_ns: 1_700_000_000_000_000_000,
        ctime_ns: 1_700_000_000_000_000_000,
        ..FileState::empty(FileType::Regular)
    };
    let path = PathBuf::from(format!(
        "/etc/app/dir{}/file{sequence}.conf",
        sequence % 100
    ));
    let mut record = fim_model::samples::registry_record();
    record.config_change_type = ConfigChangeType::Files;
    record.change_category = ChangeCategory::Modified;
    record.detected_by = Detection::Realtime;
    record.entity = "etc".into();
    record.registry = None;
    record.file = Some(file_columns(&path, Some(&state), Some(&state)));
    record
}

/// One replayed agent: its id and its hash-chained journal.
struct Agent {
    computer_id: String,
    journal: Vec<JournalRecord>,
}

fn agents(options: &Options) -> Vec<Agent> {
    let now = fim_model::Timestamp::now().unix_nanos();
    let span = 13 * DAY_NS;
    (0..options.agents)
        .map(|index| {
            let computer_id = format!("bench-agent-{index:04}");
            let mut prev = [0u8; 32];
            let journal = (1..=options.records)
                .map(|sequence| {
                    let mut record = if sequence % 3 == 0 {
                        fim_model::samples::registry_record()
                    } else {
                        file_record(sequence)
                    };
                    record.sequence = sequence;
                    record.computer_id = computer_id.clone();
                    record.computer = format!("bench-host-{index:04}");
                    let offset = span / i64::try_from(options.records).unwrap_or(1)
                        * i64::try_from(sequence).unwrap_or(0);
                    record.time_generated =
                        fim_model::Timestamp::from_unix_nanos(now - span + offset);
                    let record_json = serde_json::to_vec(&record).unwrap_or_default();
                    let hash = fim_engine::store::journal::chain_hash(&prev, &record_json);
                    let row = JournalRecord {
                        sequence,
                        record_json,
                        prev_hash: prev.to_vec(),
                        hash: hash.to_vec(),
                    };
                    prev = hash;
                    row
                })
                .collect();
            Agent {
                computer_id,
                journal,
            }
        })
        .collect()
}

/// A running collector; killed on drop.
struct Collector {
    child: Child,
    address: String,
    _state: tempfile::TempDir,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_collector(options: &Options, database: Option<&str>) -> anyhow::Result<Collector> {
    let state = tempfile::tempdir()?;
    let mut command = Command::new(&options.collector);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state.path().join("collector"))
        .args(["--max-streams", &options.agents.max(64).to_string()])
        // Synthetic agents without certificates: the ingest path is measured bare (TLS
        // costs the handshake once per stream and symmetric crypto per byte).
        .arg("--insecure-plaintext")
        .env("FIM_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(url) = database {
        command.args(["--database", url]);
    }
    let mut child = command.spawn().context("starting fim-collector")?;
    let stdout = child.stdout.take().context("collector stdout")?;
    let mut line = String::new();
    std::io::BufReader::new(stdout).read_line(&mut line)?;
    let address = line
        .trim()
        .strip_prefix("fim-collector listening on ")
        .with_context(|| format!("the collector did not start: {line:?}"))?
        .to_string();
    Ok(Collector {
        child,
        address,
        _state: state,
    })
}

/// Streams one agent's journal, a batch per Ack.
async fn stream(address: String, agents: Arc<Vec<Agent>>, index: usize) -> anyhow::Result<()> {
    let agent = &agents[index];
    let channel = Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let (requests, outgoing) = mpsc::channel(2);
    let head = agent.journal.last().context("an empty journal")?;
    requests
        .send(AgentMessage {
            kind: Some(agent_message::Kind::Hello(Hello {
                computer_id: agent.computer_id.clone(),
                computer: agent.computer_id.replace("agent", "host"),
                journal_id: format!("{}-journal", agent.computer_id),
                head_sequence: head.sequence,
                head_hash: head.hash.clone(),
                agent_version: "bench".into(),
                platform: "linux".into(),
                strategy: "replay".into(),
                ..Hello::default()
            })),
        })
        .await?;
    let mut replies = CollectorClient::new(channel)
        .report(ReceiverStream::new(outgoing))
        .await?
        .into_inner();
    match replies.message().await?.and_then(|m| m.kind) {
        Some(collector_message::Kind::Welcome(welcome)) if welcome.resume_after_sequence == 0 => {}
        other => bail!(
            "{}: expected a fresh Welcome, got {other:?}",
            agent.computer_id
        ),
    }
    for (index, chunk) in agent.journal.chunks(BATCH).enumerate() {
        let batch_id = index as u64 + 1;
        requests
            .send(AgentMessage {
                kind: Some(agent_message::Kind::Batch(Batch {
                    batch_id,
                    records: chunk.to_vec(),
                })),
            })
            .await?;
        match replies.message().await?.and_then(|m| m.kind) {
            Some(collector_message::Kind::Ack(ack))
                if ack.batch_id == batch_id && ack.refused.is_empty() => {}
            other => bail!("{}: batch {batch_id}: {other:?}", agent.computer_id),
        }
    }
    Ok(())
}

/// All agents at once; records per second.
async fn ingest(address: &str, agents: &Arc<Vec<Agent>>) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..agents.len() {
        tasks.push(tokio::spawn(stream(
            address.to_string(),
            Arc::clone(agents),
            index,
        )));
    }
    for task in tasks {
        task.await??;
    }
    let total: usize = agents.iter().map(|a| a.journal.len()).sum();
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// The median time of a query through the Workspace API, and its row count.
async fn query_ms(address: &str, token: &str, kql: &str) -> anyhow::Result<(f64, usize)> {
    let channel = Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let header: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse()?;
    let mut client =
        WorkspaceClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", header.clone());
            Ok(request)
        });
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..5 {
        let started = Instant::now();
        let response = client
            .query(QueryRequest {
                kql: kql.to_string(),
                max_rows: 0,
            })
            .await?
            .into_inner();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        rows = response.rows.len();
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], rows))
}

fn token(
    options: &Options,
    collector: &Collector,
    database: Option<&str>,
) -> anyhow::Result<String> {
    let mut command = Command::new(&options.collector);
    command
        .args(["token", "--state-dir"])
        .arg(collector._state.path().join("collector"));
    if let Some(url) = database {
        command.args(["--database", url]);
    }
    let output = command.args(["create", "--name", "bench"]).output()?;
    if !output.status.success() {
        bail!("token create: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The limit on PostgreSQL: COPY of the same rows into fim-kql's layout.
fn postgres_copy(server: &TestServer, agents: &[Agent]) -> anyhow::Result<f64> {
    use std::io::Write as _;
    let mut client = postgres::Client::connect(&server.connection_string(), postgres::NoTls)?;
    client.batch_execute("CREATE DATABASE copy_limit")?;
    let mut client = postgres::Client::connect(
        &server
            .connection_string()
            .replace("dbname=postgres", "dbname=copy_limit"),
        postgres::NoTls,
    )?;
    client.batch_execute(fim_kql::schema::POSTGRES_SCHEMA)?;
    let now = fim_model::Timestamp::now();
    fim_kql::schema::postgres_ensure_partitions(
        &mut client,
        fim_model::Timestamp::from_unix_nanos(now.unix_nanos() - 15 * DAY_NS),
        now,
    )?;
    let escape = |text: &str| {
        text.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
    };
    let bytea = |bytes: &[u8]| {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("\\\\x{hex}")
    };
    // The rows as COPY text, made before the clock starts: the limit is the server's.
    let mut text = String::new();
    for agent in agents {
        for row in &agent.journal {
            let record: fim_model::ChangeRecord = serde_json::from_slice(&row.record_json)?;
            let json = String::from_utf8_lossy(&row.record_json);
            text.push_str(&format!(
                "{}\t{}-journal\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                agent.computer_id,
                agent.computer_id,
                row.sequence,
                record.time_generated.to_rfc3339(),
                escape(&record.computer),
                record.config_change_type.as_str(),
                record.change_category.as_str(),
                escape(&record.entity),
                record.subject().map_or("\\N".to_string(), escape),
                escape(&json),
                bytea(&row.prev_hash),
                bytea(&row.hash),
            ));
        }
    }
    let started = Instant::now();
    let mut writer = client.copy_in(
        "COPY configuration_change (computer_id, journal_id, sequence, time_generated, computer, \
         change_type, category, entity, path, record, prev_hash, hash) FROM STDIN",
    )?;
    writer.write_all(text.as_bytes())?;
    writer.finish()?;
    let total: usize = agents.iter().map(|a| a.journal.len()).sum();
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// The limit on SQLite: the same inserts in one transaction, no network, no chain check.
fn sqlite_bulk(agents: &[Agent]) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let mut conn = rusqlite::Connection::open(dir.path().join("limit.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(fim_kql::schema::SQLITE_SCHEMA)?;
    // Parsed before the clock starts: the limit is SQLite's.
    let mut parsed = Vec::new();
    for agent in agents {
        for row in &agent.journal {
            let record: fim_model::ChangeRecord = serde_json::from_slice(&row.record_json)?;
            parsed.push((agent, row, record));
        }
    }
    let started = Instant::now();
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare(fim_kql::schema::SQLITE_INSERT)?;
        for (agent, row, record) in &parsed {
            insert.execute(rusqlite::params![
                agent.computer_id,
                format!("{}-journal", agent.computer_id),
                row.sequence as i64,
                record.time_generated.unix_nanos(),
                record.computer,
                record.config_change_type.as_str(),
                record.change_category.as_str(),
                record.entity,
                record.subject(),
                String::from_utf8_lossy(&row.record_json),
                row.prev_hash,
                row.hash
            ])?;
        }
    }
    tx.commit()?;
    let total: usize = agents.iter().map(|a| a.journal.len()).sum();
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let options = options()?;
    let agents = Arc::new(agents(&options));
    let total = options.agents as u64 * options.records;
    println!(
        "bench workspace: {} agents x {} records = {total} records, batches of {BATCH}",
        options.agents, options.records
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let server = TestServer::start()?;
    let backends: [(&str, Option<String>); 2] =
        [("sqlite", None), ("postgresql", Some(server.url()))];
    for (name, database) in backends {
        let collector = start_collector(&options, database.as_deref())?;
        let rate = runtime.block_on(ingest(&collector.address, &agents))?;
        let limit = match database {
            None => sqlite_bulk(&agents)?,
            Some(_) => postgres_copy(&server, &agents)?,
        };
        let limit_name = if database.is_none() {
            "one-transaction insert"
        } else {
            "COPY"
        };
        println!(
            "{name}: ingest {rate:.0} records/s with {} agents streaming; {limit_name} of the same rows {limit:.0} records/s; ratio {:.2} (target >= {TARGET_RATIO_TO_COPY} of COPY)",
            options.agents,
            rate / limit
        );
        let token = token(&options, &collector, database.as_deref())?;
        let (summary, rows) = runtime.block_on(query_ms(&collector.address, &token, SUMMARY))?;
        println!(
            "{name}: the 14-day summary at {total} records: {summary:.1} ms median ({rows} rows; target <= {TARGET_SUMMARY_MS} ms)"
        );
        let drill = "ConfigurationChange | where Computer == 'bench-host-0007' \
            | where TimeGenerated > ago(7d) | order by TimeGenerated desc | take 100";
        let (drill_ms, drill_rows) =
            runtime.block_on(query_ms(&collector.address, &token, drill))?;
        println!("{name}: a machine's last 100 changes of 7 days: {drill_ms:.1} ms median ({drill_rows} rows)");
        drop(collector);
    }
    Ok(())
}
