//! The storage contract, run against every backend (sqlite_tests.rs, postgres_tests.rs):
//! the same batches must give the same rows, heads, flags and counts on both.
use super::*;
use crate::chain::{Head, IncomingRecord};
use fim_engine::store::journal::chain_hash;

pub fn hello(computer_id: &str, head: Head) -> AgentHello {
    AgentHello {
        key: JournalKey {
            computer_id: computer_id.into(),
            journal_id: "j1".into(),
        },
        computer: format!("name-of-{computer_id}"),
        agent_version: "0.1.0".into(),
        platform: "linux".into(),
        strategy: "tracepoint".into(),
        head,
        entities: None,
    }
}

/// A chain of `count` records of `computer_id`, timed `time_ns` plus one second each.
pub fn chain_at(computer_id: &str, count: u64, time_ns: i64) -> Vec<IncomingRecord> {
    let mut prev = Head::GENESIS.hash;
    (1..=count)
        .map(|sequence| {
            let mut record = fim_model::samples::registry_record();
            record.sequence = sequence;
            record.computer_id = computer_id.into();
            record.computer = format!("name-of-{computer_id}");
            record.time_generated = fim_model::Timestamp::from_unix_nanos(
                time_ns + i64::try_from(sequence).unwrap() * 1_000_000_000,
            );
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

pub fn chain(computer_id: &str, count: u64) -> Vec<IncomingRecord> {
    // Timed within today (UTC): the tests pass small fake clocks to ingest, so only the
    // partitions made at open (today, tomorrow) exist for them, and an hour ago is yesterday
    // for the first hour of every day. Record 3 is at 07:00:00, so its JSON holds a '7' for
    // the edit test to change.
    chain_at(
        computer_id,
        count,
        fim_kql::schema::day_start(fim_model::Timestamp::now()) + 7 * 3_600_000_000_000
            - 3_000_000_000,
    )
}

/// A replay stores nothing twice, the head follows, and a rolled-back head is flagged.
pub fn replays_are_stored_once_and_a_rollback_is_flagged(store: &dyn CollectorStore) {
    let records = chain("host-1", 5);
    store.hello(&hello("host-1", Head::GENESIS), 1).unwrap();
    let key = hello("host-1", Head::GENESIS).key;
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
    let machines = store.machines().unwrap();
    assert_eq!(machines.len(), 1);
    assert_eq!(machines[0].records, 5);
    assert_eq!(machines[0].computer, "name-of-host-1");
    assert_eq!(machines[0].acknowledged.hash.to_vec(), records[4].hash);
    assert_eq!(machines[0].flag_reason, None);
    let rolled = store
        .hello(
            &hello(
                "host-1",
                Head {
                    sequence: 2,
                    hash: [0; 32],
                },
            ),
            4,
        )
        .unwrap();
    assert!(rolled
        .flag_reason
        .unwrap()
        .starts_with("the journal was rolled back: the workspace acknowledged record 5"));
}

/// An edited record is refused with its reason and the journal flagged; the records before
/// it are kept.
pub fn an_edited_record_is_refused_and_flags_the_journal(store: &dyn CollectorStore) {
    let mut records = chain("host-e", 4);
    records[2].record_json = records[2]
        .record_json
        .iter()
        .map(|b| if *b == b'7' { b'8' } else { *b })
        .collect();
    store.hello(&hello("host-e", Head::GENESIS), 1).unwrap();
    let key = hello("host-e", Head::GENESIS).key;
    let ingested = store.ingest(&key, &records, 10, 2).unwrap();
    assert_eq!(ingested.acknowledged.sequence, 2);
    assert_eq!(ingested.checked.refused[0].sequence, 3);
    let machine = &store.machines().unwrap()[0];
    assert_eq!(machine.records, 2);
    assert!(
        machine
            .flag_reason
            .as_deref()
            .unwrap()
            .starts_with("record 3 does not match its hash"),
        "{machine:?}"
    );
}

/// Retention drops what is older than the cutoff, counts included, and keeps the rest and
/// the head.
pub fn retention_expires_old_records_and_their_counts(store: &dyn CollectorStore) -> String {
    let now = fim_model::Timestamp::now().unix_nanos();
    const DAY: i64 = 86_400_000_000_000;
    for (id, at) in [("old", now - 20 * DAY), ("new", now - 3_600_000_000_000)] {
        store.hello(&hello(id, Head::GENESIS), now).unwrap();
        let key = hello(id, Head::GENESIS).key;
        store.ingest(&key, &chain_at(id, 4, at), 10, now).unwrap();
    }
    let what = store.expire_before(now - 10 * DAY).unwrap();
    let machines = store.machines().unwrap();
    let by_id = |id: &str| machines.iter().find(|m| m.key.computer_id == id).unwrap();
    assert_eq!(by_id("old").records, 0, "{what}");
    assert_eq!(
        by_id("old").acknowledged.sequence,
        4,
        "the head stays: nothing is resent"
    );
    assert_eq!(by_id("new").records, 4, "{what}");
    what
}

/// Journal cap per computer id.
pub fn one_computer_may_open_a_bounded_number_of_journals(store: &dyn CollectorStore) {
    let journal = |id: usize| {
        let mut hello = hello("host-c", Head::GENESIS);
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
    other.key.computer_id = "host-d".into();
    store.hello(&other, 3).unwrap();
}

/// Two collectors (two stores on one database) handed the same journal at once, each
/// sending every batch: every record is stored once and the head is the chain's.
pub fn two_stores_racing_on_one_journal_store_each_record_once(
    first: &dyn CollectorStore,
    second: &dyn CollectorStore,
) {
    let records = chain("host-r", 400);
    first.hello(&hello("host-r", Head::GENESIS), 1).unwrap();
    second.hello(&hello("host-r", Head::GENESIS), 1).unwrap();
    let key = hello("host-r", Head::GENESIS).key;
    std::thread::scope(|scope| {
        for store in [first, second] {
            let (records, key) = (&records, &key);
            scope.spawn(move || {
                for batch in records.chunks(25) {
                    let ingested = store.ingest(key, batch, 25, 2).unwrap();
                    // The other store may have stored a batch first: a replay, never a flag.
                    let checked = &ingested.checked;
                    assert!(checked.flag.is_none(), "{ingested:?}");
                    assert!(checked.refused.iter().all(|r| r.duplicate), "{ingested:?}");
                }
            });
        }
    });
    let machine = first.machines().unwrap().remove(0);
    assert_eq!((machine.records, machine.acknowledged.sequence), (400, 400));
    assert_eq!(machine.acknowledged.hash.to_vec(), records[399].hash);
    assert_eq!(machine.flag_reason, None);
}

/// A gap the agent's hard cap made is recorded, moves the head past it, and the records
/// after it chain on; a gap claiming a head the workspace never acknowledged is refused.
pub fn a_pruned_gap_is_recorded_and_the_chain_continues_after_it(store: &dyn CollectorStore) {
    let records = chain("host-g", 10);
    store.hello(&hello("host-g", Head::GENESIS), 1).unwrap();
    let key = hello("host-g", Head::GENESIS).key;
    store.ingest(&key, &records[..3], 10, 2).unwrap();
    let hash_of = |sequence: usize| {
        fim_engine::state::Digest::try_from(records[sequence - 1].hash.as_slice()).unwrap()
    };
    let claims_more = PrunedGap {
        after: 5,
        through: 7,
        through_hash: hash_of(7),
    };
    let refused = store.record_gap(&key, &claims_more, 3).unwrap();
    assert_eq!(refused.acknowledged.sequence, 3);
    assert_eq!(
        refused.refused.as_deref(),
        Some(
            "the agent says records after 5 were pruned, but the workspace holds this journal \
             only through record 3"
        )
    );
    let gap = PrunedGap {
        after: 3,
        through: 7,
        through_hash: hash_of(7),
    };
    let recorded = store.record_gap(&key, &gap, 4).unwrap();
    assert_eq!(
        (recorded.acknowledged.sequence, recorded.refused),
        (7, None)
    );
    // Sent again (a lost Ack): nothing more.
    let again = store.record_gap(&key, &gap, 5).unwrap();
    assert_eq!((again.acknowledged.sequence, again.refused), (7, None));
    let ingested = store.ingest(&key, &records[7..], 10, 6).unwrap();
    assert_eq!(ingested.acknowledged.sequence, 10);
    assert!(ingested.checked.refused.is_empty(), "{ingested:?}");
    let machine = store.machines().unwrap().remove(0);
    assert_eq!(
        (machine.records, machine.pruned_unreceived, machine.gaps),
        (6, 4, 1)
    );
    assert_eq!(machine.flag_reason, None, "a gap is not tampering");
}

/// Enrollment: a token's uses are counted and spent once each, even by two stores racing
/// for the last one; re-enrolling supersedes; an owner's revocation bars the machine until
/// readmitted.
pub fn enrollment_spends_each_use_once_and_revocation_bars_the_machine(
    first: &dyn CollectorStore,
    second: &dyn CollectorStore,
) {
    use crate::{
        ca::IssuedCertificate,
        enrollment::{EnrollingMachine, EnrollmentToken},
    };
    let now = 1_000;
    let (_, hash) = crate::enrollment::new_secret().unwrap();
    let token = EnrollmentToken {
        name: "fleet".into(),
        max_uses: 3,
        uses_left: 3,
        created_ns: now,
        expires_ns: now + 1_000_000,
        revoked_ns: None,
    };
    first.add_enrollment_token(&token, &hash).unwrap();
    assert!(matches!(
        first.add_enrollment_token(&token, &hash),
        Err(CollectorError::TokenExists(_))
    ));
    let counter = std::sync::atomic::AtomicU32::new(0);
    let issue = || {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(IssuedCertificate {
            pem: String::new(),
            fingerprint: format!("fp-{n}"),
            serial: format!("{n:02x}"),
            not_after_ns: now + 500,
        })
    };
    let machine = |id: &str| EnrollingMachine {
        computer_id: id.into(),
        computer: format!("host-{id}"),
    };
    let issued = first
        .enroll(&hash, &machine("m1"), now, &issue)
        .unwrap()
        .unwrap();
    assert_eq!(issued.computer_id, "m1");
    assert_eq!(issued.token_name, "fleet");
    // Two stores race for the remaining two uses with four machines: exactly two win.
    let outcomes: Vec<bool> = std::thread::scope(|scope| {
        let racers: Vec<_> = ["m2", "m3", "m4", "m5"]
            .into_iter()
            .enumerate()
            .map(|(index, id)| {
                let store = if index % 2 == 0 { first } else { second };
                let (hash, issue, machine) = (&hash, &issue, machine(id));
                scope.spawn(move || store.enroll(hash, &machine, now, issue).unwrap().is_ok())
            })
            .collect();
        racers
            .into_iter()
            .map(|racer| racer.join().unwrap())
            .collect()
    });
    assert_eq!(
        outcomes.iter().filter(|won| **won).count(),
        2,
        "{outcomes:?}"
    );
    assert_eq!(first.enrollment_tokens().unwrap()[0].uses_left, 0);
    let refusal = second
        .enroll(&hash, &machine("m6"), now, &issue)
        .unwrap()
        .unwrap_err();
    assert!(refusal.contains("all of its 3 enrollments"), "{refusal}");

    // m1 enrolls again with a new token: its first certificate is superseded.
    let (_, again) = crate::enrollment::new_secret().unwrap();
    let renewal = EnrollmentToken {
        name: "renewal".into(),
        ..token.clone()
    };
    first.add_enrollment_token(&renewal, &again).unwrap();
    let newer = first
        .enroll(&again, &machine("m1"), now + 1, &issue)
        .unwrap()
        .unwrap();
    let old = second
        .agent_certificate(&issued.fingerprint)
        .unwrap()
        .unwrap();
    assert!(old.refusal(now + 2).unwrap().contains("superseded"));
    assert_eq!(
        second
            .agent_certificate(&newer.fingerprint)
            .unwrap()
            .unwrap()
            .refusal(now + 2),
        None
    );
    assert!(second
        .agent_certificate(&newer.fingerprint)
        .unwrap()
        .unwrap()
        .refusal(now + 500)
        .unwrap()
        .contains("expired"));

    // Revoked by an owner: refused, barred from enrolling, then readmitted.
    assert_eq!(first.revoke_machine("m1", now + 3).unwrap(), 1);
    let revoked = second
        .agent_certificate(&newer.fingerprint)
        .unwrap()
        .unwrap();
    assert!(revoked
        .refusal(now + 4)
        .unwrap()
        .contains("revoked by an owner"));
    let barred = first
        .enroll(&again, &machine("m1"), now + 5, &issue)
        .unwrap()
        .unwrap_err();
    assert!(barred.contains("was revoked by an owner"), "{barred}");
    assert_eq!(second.readmit_machine("m1").unwrap(), 1);
    first
        .enroll(&again, &machine("m1"), now + 6, &issue)
        .unwrap()
        .expect("readmitted machines enroll");
    let still = second
        .agent_certificate(&newer.fingerprint)
        .unwrap()
        .unwrap();
    assert!(
        still.refusal(now + 7).is_some(),
        "readmission revives no certificate"
    );

    // A revoked token enrolls no one; an unknown one is named as such.
    assert!(first.revoke_enrollment_token("renewal", now + 8).unwrap());
    assert!(!first.revoke_enrollment_token("renewal", now + 8).unwrap());
    let refusal = first
        .enroll(&again, &machine("m7"), now + 9, &issue)
        .unwrap()
        .unwrap_err();
    assert!(refusal.contains("was revoked"), "{refusal}");
    let (_, unknown) = crate::enrollment::new_secret().unwrap();
    assert_eq!(
        first
            .enroll(&unknown, &machine("m7"), now, &issue)
            .unwrap()
            .unwrap_err(),
        "unknown enrollment token"
    );
    let all = first.agent_certificates().unwrap();
    assert_eq!(all.len(), 5, "every certificate stays on record: {all:?}");
}

/// Drift: a computer's report replaces its previous one whole; reports read back exactly.
pub fn entity_reports_replace_the_computers_previous_ones(store: &dyn CollectorStore) {
    let report = |entity: &str, byte: u8| EntityReport {
        entity: entity.into(),
        objects: u64::from(byte),
        digest: [byte; 32],
        reported_ns: 7,
    };
    store
        .report_entities("a", &[report("etc", 1), report("cron", 2)])
        .unwrap();
    store.report_entities("b", &[report("etc", 3)]).unwrap();
    store.report_entities("a", &[report("etc", 4)]).unwrap();
    assert_eq!(
        store.entity_reports().unwrap(),
        vec![
            ("a".to_string(), report("etc", 4)),
            ("b".to_string(), report("etc", 3)),
        ]
    );
}
