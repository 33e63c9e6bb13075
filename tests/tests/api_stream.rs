//! API, streaming: a client that disconnects and reconnects during a burst of 10,000 changes,
//! resuming from the last sequence it saw, ends up with exactly the journal: every record once,
//! in order.
use std::time::{Duration, Instant};

use fim_api::pb;
use fim_tests::engine::{Engine, Workspace};

const FILES: usize = 10_000;

/// Whether `record` says one of the writer's files (`f<index>`) was added.
fn is_file_added(record: &pb::ChangeRecord) -> bool {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&record.journal_json) else {
        return false;
    };
    json["ChangeCategory"] == "Added"
        && json["File"]["FileSystemPath"]
            .as_str()
            .and_then(|path| path.rsplit('/').next())
            .is_some_and(|name| name.starts_with('f'))
}

#[test]
fn reconnecting_watchers_get_the_journal_exactly_once() {
    let workspace = Workspace::new("stream");
    let socket = workspace.socket.clone();
    let engine = Engine::start(&workspace);
    let tree = workspace.tree.clone();
    let writer = std::thread::spawn(move || {
        for index in 0..FILES {
            let dir = tree.join(format!("d{}", index % 50));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("f{index}")), index.to_string()).unwrap();
        }
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (received, reconnects) = runtime.block_on(async {
        let mut received: Vec<pb::ChangeRecord> = Vec::new();
        let mut files_added = 0;
        let mut reconnects = 0;
        let mut quiet_since = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            assert!(Instant::now() < deadline, "the stream never caught up");
            let last = received.last().map_or(0, |record| record.sequence);
            let mut client = fim_api::client::connect_unix(&socket)
                .await
                .expect("connect");
            let mut stream = client
                .watch_changes(pb::WatchChangesRequest {
                    from_sequence: last,
                    filter: None,
                    live_only: false,
                })
                .await
                .expect("watch")
                .into_inner();
            // Take a varying number of records, then hang up mid-stream.
            let take = 700 + (reconnects * 611) % 1900;
            let mut taken = 0;
            loop {
                match tokio::time::timeout(Duration::from_millis(1500), stream.message()).await {
                    Ok(Ok(Some(item))) => {
                        if let Some(pb::watch_changes_response::Item::Record(record)) = item.item {
                            if is_file_added(&record) {
                                files_added += 1;
                            }
                            received.push(record);
                            taken += 1;
                            quiet_since = Instant::now();
                            if taken >= take {
                                break;
                            }
                        }
                    }
                    Ok(Ok(None)) => panic!("the daemon ended the stream"),
                    Ok(Err(status)) => panic!("stream error: {status}"),
                    Err(_) => break,
                }
            }
            drop(stream);
            drop(client);
            reconnects += 1;
            // Done once every file's Added record came (a loaded daemon can fall quiet for
            // seconds while it rescans after a ring overflow, so quiet alone is not the end),
            // or after a long silence, which the assertions below then explain.
            let writing = !writer.is_finished();
            let all_added = files_added >= FILES;
            if !writing && (all_added || quiet_since.elapsed() > Duration::from_secs(30)) {
                break;
            }
        }
        (received, reconnects)
    });
    writer.join().unwrap();
    engine.stop();
    assert!(reconnects >= 5, "only {reconnects} reconnects");
    let sequences: Vec<u64> = received.iter().map(|record| record.sequence).collect();
    let expected: Vec<u64> = (1..=sequences.len() as u64).collect();
    assert_eq!(sequences, expected, "every sequence once, in order");
    // Exactly the journal (read directly from the database now that the daemon is gone).
    let journal = workspace.journal();
    assert_eq!(received.len(), journal.len());
    for (record, journaled) in received.iter().zip(&journal) {
        let streamed: serde_json::Value = serde_json::from_str(&record.journal_json).unwrap();
        assert_eq!(&streamed, journaled);
    }
    let added = journal
        .iter()
        .filter(|record| record["ChangeCategory"] == "Added")
        .count();
    assert!(added >= FILES, "{added} Added records for {FILES} files");
}

#[test]
fn fim_watch_prints_the_journal_then_live_records() {
    use std::io::{BufRead, BufReader};

    let workspace = Workspace::new("watch");
    let engine = Engine::start(&workspace);
    std::fs::write(workspace.tree.join("before"), "1").unwrap();
    engine.settle(1);
    let mut watch = std::process::Command::new(fim_tests::engine::fim_bin())
        .arg("--state-dir")
        .arg(&workspace.state)
        .arg("--policy")
        .arg(&workspace.policy)
        .arg("--socket")
        .arg(&workspace.socket)
        .args(["watch", "--from-seq", "0", "--format", "jsonl"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("fim watch");
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["Sequence"], 1);
    assert_eq!(
        first["File"]["FileSystemPath"],
        workspace.tree.join("before").to_string_lossy().as_ref()
    );
    // Live: a change made after the watch began arrives next.
    std::fs::write(workspace.tree.join("after"), "2").unwrap();
    let second: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(second["Sequence"], 2);
    assert_eq!(second["ChangeCategory"], "Added");
    assert_eq!(
        second["File"]["FileSystemPath"],
        workspace.tree.join("after").to_string_lossy().as_ref()
    );
    let _ = watch.kill();
    let _ = watch.wait();
    engine.stop();
}
