use super::*;

fn record(sequence: u64, computer_id: &str) -> Vec<u8> {
    let mut record = fim_model::samples::registry_record();
    record.sequence = sequence;
    record.computer_id = computer_id.to_string();
    serde_json::to_vec(&record).unwrap()
}

/// `count` records chained from genesis, as an agent journals them.
fn chain(count: u64) -> Vec<IncomingRecord> {
    let mut prev = Head::GENESIS.hash;
    (1..=count)
        .map(|sequence| {
            let json = record(sequence, "host-1");
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

fn no_store(_: u64) -> Result<Option<Digest>, ()> {
    Ok(None)
}

#[test]
fn a_sound_chain_is_accepted_and_moves_the_head() {
    let records = chain(3);
    let (checked, head) = check_batch(Head::GENESIS, "host-1", &records, 10, no_store).unwrap();
    assert_eq!(checked.accepted.len(), 3);
    assert!(checked.refused.is_empty() && checked.flag.is_none());
    assert_eq!(head.sequence, 3);
    assert_eq!(head.hash.to_vec(), records[2].hash);
    assert_eq!(checked.accepted[0].config_change_type, "Registry");
}

#[test]
fn an_edited_record_is_refused_and_flags_with_both_hashes() {
    let mut records = chain(3);
    records[1].record_json = record(2, "host-1")
        .into_iter()
        .map(|byte| if byte == b'R' { b'Q' } else { byte })
        .collect();
    let computed = chain_hash(
        &Digest::try_from(records[1].prev_hash.as_slice()).unwrap(),
        &records[1].record_json,
    );
    let (checked, head) = check_batch(Head::GENESIS, "host-1", &records, 10, no_store).unwrap();
    assert_eq!(checked.accepted.len(), 1);
    assert_eq!(head.sequence, 1);
    let expected = format!(
        "record 2 does not match its hash: BLAKE3(prev_hash || record) is {}, the agent sent {} \
         (the record was edited after it was journaled)",
        hex(&computed),
        hex(&records[1].hash)
    );
    assert_eq!(checked.flag.as_deref(), Some(expected.as_str()));
    assert_eq!(
        checked.refused,
        vec![refusal(
            2,
            format!("{expected} (1 records after it in the batch were not examined)")
        )]
    );
}

#[test]
fn a_replay_is_a_duplicate_and_a_changed_replay_flags() {
    let records = chain(2);
    let head = Head {
        sequence: 2,
        hash: Digest::try_from(records[1].hash.as_slice()).unwrap(),
    };
    let stored = |sequence: u64| -> Result<Option<Digest>, ()> {
        Ok(Some(
            Digest::try_from(records[sequence as usize - 1].hash.as_slice()).unwrap(),
        ))
    };
    let (checked, after) = check_batch(head, "host-1", &records, 10, stored).unwrap();
    assert_eq!(
        (checked.duplicates, checked.accepted.len(), after),
        (2, 0, head)
    );
    assert!(checked.flag.is_none());
    let mut other = records.clone();
    other[0].hash = vec![7; 32];
    let (checked, _) = check_batch(head, "host-1", &other[..1], 10, stored).unwrap();
    assert_eq!(
        checked.flag.as_deref(),
        Some(
            format!(
                "record 1 was rewritten: the workspace holds it with hash {}, the agent now sends hash {}",
                hex(&records[0].hash),
                hex(&[7; 32])
            )
            .as_str()
        )
    );
}

#[test]
fn gaps_oversized_batches_and_foreign_computers_are_refused() {
    let records = chain(3);
    let (checked, _) = check_batch(Head::GENESIS, "host-1", &records[1..], 10, no_store).unwrap();
    assert_eq!(checked.refused[0].sequence, 2);
    assert!(checked.refused[0]
        .reason
        .starts_with("record 2 leaves a gap"));
    assert!(checked.flag.is_none());
    let (checked, _) = check_batch(Head::GENESIS, "host-1", &records, 2, no_store).unwrap();
    assert_eq!(
        checked.refused,
        vec![refusal(
            0,
            "the batch is malformed: it holds 3 records, more than the limit of 2".into()
        )]
    );
    let (checked, _) = check_batch(Head::GENESIS, "host-2", &records[..1], 10, no_store).unwrap();
    assert_eq!(
        checked.flag.as_deref(),
        Some("record 1 names computer id \"host-1\", but the agent said it is \"host-2\"")
    );
}

#[test]
fn hello_flags_rollback_and_rewrite() {
    let acknowledged = Head {
        sequence: 10,
        hash: [1; 32],
    };
    assert!(check_hello(
        acknowledged,
        Head {
            sequence: 12,
            hash: [2; 32]
        }
    )
    .is_none());
    assert!(check_hello(acknowledged, acknowledged).is_none());
    let rolled = check_hello(
        acknowledged,
        Head {
            sequence: 7,
            hash: [2; 32],
        },
    )
    .unwrap();
    assert!(rolled.starts_with("the journal was rolled back: the workspace acknowledged record 10"));
    let rewritten = check_hello(
        acknowledged,
        Head {
            sequence: 10,
            hash: [2; 32],
        },
    )
    .unwrap();
    assert!(rewritten.starts_with("the journal was rewritten"));
}
