use super::*;
use crate::chain::{Head, IncomingRecord};
use fim_engine::store::journal::chain_hash;

fn hello(head: Head) -> AgentHello {
    AgentHello {
        key: JournalKey {
            computer_id: "host-1".into(),
            journal_id: "j1".into(),
        },
        computer: "host".into(),
        agent_version: "0.1.0".into(),
        platform: "linux".into(),
        strategy: "tracepoint".into(),
        head,
    }
}

fn chain(count: u64) -> Vec<IncomingRecord> {
    let mut prev = Head::GENESIS.hash;
    (1..=count)
        .map(|sequence| {
            let mut record = fim_model::samples::registry_record();
            record.sequence = sequence;
            record.computer_id = "host-1".into();
            let json = serde_json::to_vec(&record).unwrap();
            let hash = chain_hash(&prev, &json);
            let incoming = IncomingRecord {
                sequence,
                record_json: json,
                prev_hash: prev.to_vec(),
                hash: hash.to_vec(),
            };
            prev = hash;
            incoming
        })
        .collect()
}

#[test]
fn a_replayed_batch_is_stored_once_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let records = chain(5);
    {
        let store = SqliteStore::open(&state, false).unwrap();
        store.hello(&hello(Head::GENESIS), 1).unwrap();
        let key = hello(Head::GENESIS).key;
        let first = store.ingest(&key, &records[..3], 10, 2).unwrap();
        assert_eq!(
            (first.checked.accepted.len(), first.acknowledged.sequence),
            (3, 3)
        );
        let again = store.ingest(&key, &records, 10, 3).unwrap();
        assert_eq!(
            (again.checked.duplicates, again.checked.accepted.len()),
            (3, 2)
        );
        assert_eq!(again.acknowledged.sequence, 5);
    }
    let store = SqliteStore::open(&state, false).unwrap();
    let machines = store.machines().unwrap();
    assert_eq!(machines.len(), 1);
    assert_eq!(machines[0].records, 5);
    assert_eq!(machines[0].acknowledged.hash.to_vec(), records[4].hash);
    assert_eq!(machines[0].flag_reason, None);
    let rolled = store
        .hello(
            &hello(Head {
                sequence: 2,
                hash: [0; 32],
            }),
            4,
        )
        .unwrap();
    assert!(rolled
        .flag_reason
        .unwrap()
        .starts_with("the journal was rolled back: the workspace acknowledged record 5"));
}

#[test]
fn a_missing_database_in_a_used_directory_and_a_foreign_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("other"), b"x").unwrap();
    let missing = SqliteStore::open(dir.path(), false).err().unwrap();
    assert!(
        matches!(missing, CollectorError::Missing { .. }),
        "{missing}"
    );
    std::fs::write(
        dir.path().join(DATABASE_FILE),
        b"not a database at all, just text",
    )
    .unwrap();
    let corrupt = SqliteStore::open(dir.path(), true).err().unwrap();
    assert!(
        matches!(corrupt, CollectorError::Unusable { .. }),
        "{corrupt}"
    );
    std::fs::remove_file(dir.path().join(DATABASE_FILE)).unwrap();
    assert!(SqliteStore::open(dir.path(), true).is_ok());
}

#[test]
fn one_computer_may_open_a_bounded_number_of_journals() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state"), false).unwrap();
    let journal = |id: usize| {
        let mut hello = hello(Head::GENESIS);
        hello.key.journal_id = format!("j{id}");
        hello
    };
    for id in 0..MAX_JOURNALS_PER_COMPUTER {
        store.hello(&journal(id), 1).unwrap();
    }
    let refused = store.hello(&journal(MAX_JOURNALS_PER_COMPUTER), 2);
    assert!(
        matches!(
            refused,
            Err(CollectorError::TooManyJournals { max: 16, .. })
        ),
        "{refused:?}"
    );
    // A journal it already opened comes back; another computer is not affected.
    store.hello(&journal(0), 3).unwrap();
    let mut other = journal(MAX_JOURNALS_PER_COMPUTER);
    other.key.computer_id = "host-2".into();
    store.hello(&other, 3).unwrap();
}
