//! The hash chain: sequence assignment, chaining, and `verify` against each kind of tampering.
use super::{append_all, journal_of, raw, record, temp_store};
use crate::{
    change::{ChangeCategory, ChangeRecord},
    store::{
        journal::{chain_hash, GENESIS_HASH},
        Anchor, EditDetail, VerifyProblem, VerifyReport,
    },
};

fn problem(report: VerifyReport) -> VerifyProblem {
    report.problem.expect("verify should find a problem")
}

#[test]
fn append_assigns_sequences_and_chains_hashes() {
    let (_dir, path, store) = temp_store();
    let mut records: Vec<ChangeRecord> = ["/etc/a", "/etc/b", "/etc/c"]
        .iter()
        .map(|path| record(path, ChangeCategory::Added, 5_000_000_000))
        .collect();
    assert_eq!(append_all(&store, &mut records), [1, 2, 3]);
    assert_eq!(
        records.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(store.last_sequence().unwrap(), 3);

    let conn = raw(&path);
    let mut statement = conn
        .prepare("SELECT sequence, record, prev_hash, hash, time_ns, path FROM journal ORDER BY sequence")
        .unwrap();
    type Row = (i64, String, Vec<u8>, Vec<u8>, i64, String);
    let rows: Vec<Row> = statement
        .query_map([], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut previous = GENESIS_HASH;
    for ((sequence, json, prev_hash, hash, time_ns, path), original) in rows.iter().zip(&records) {
        assert_eq!(*json, serde_json::to_string(original).unwrap());
        assert!(
            json.starts_with(&format!("{{\"Sequence\":{sequence},")),
            "{json}"
        );
        assert_eq!(prev_hash.as_slice(), previous);
        let expected = blake3::hash(&[previous.as_slice(), json.as_bytes()].concat());
        assert_eq!(hash.as_slice(), expected.as_bytes());
        assert_eq!(hash.as_slice(), chain_hash(&previous, json.as_bytes()));
        assert_eq!(*time_ns, 5_000_000_000);
        assert_eq!(*path, original.file.as_ref().unwrap().file_system_path);
        previous.copy_from_slice(hash);
    }
    let (head_sequence, head_hash): (i64, Vec<u8>) = conn
        .query_row("SELECT sequence, hash FROM chain_head", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .unwrap();
    assert_eq!(
        (head_sequence, head_hash.as_slice()),
        (3, previous.as_slice())
    );

    // The next batch continues the chain.
    let mut more = [record("/etc/d", ChangeCategory::Removed, 6_000_000_000)];
    assert_eq!(append_all(&store, &mut more), [4]);
    let report = store.verify().unwrap();
    let head_hex = crate::change::hex(&store.head().unwrap().1);
    assert_eq!(
        report,
        VerifyReport {
            checked: 4,
            head_sequence: 4,
            head_hash: head_hex.clone(),
            problem: None
        }
    );
    assert_eq!(
        report.to_string(),
        format!("journal intact: 4 records checked, chain head at 4:{head_hex}")
    );
}

#[test]
fn verify_passes_on_an_empty_journal() {
    let (_dir, _path, store) = temp_store();
    let report = store.verify().unwrap();
    assert_eq!(
        (report.checked, report.head_sequence, report.problem),
        (0, 0, None)
    );
}

#[test]
fn verify_finds_an_edited_record_text() {
    let (_dir, path, store) = temp_store();
    journal_of(&store, 10);
    let json: String = raw(&path)
        .query_row("SELECT record FROM journal WHERE sequence = 6", [], |row| {
            row.get(0)
        })
        .unwrap();
    let forged = json.replace("\"Size\":3", "\"Size\":4");
    assert_ne!(forged, json);
    raw(&path)
        .execute(
            "UPDATE journal SET record = ?1 WHERE sequence = 6",
            [&forged],
        )
        .unwrap();
    let report = store.verify().unwrap();
    assert_eq!(report.checked, 5);
    assert_eq!(
        report.problem,
        Some(VerifyProblem::Edited {
            sequence: 6,
            detail: EditDetail::HashMismatch
        })
    );
    assert_eq!(
        report.to_string(),
        "record 6 was edited: its hash does not match its content (5 records before it are intact)"
    );
}

#[test]
fn verify_finds_an_edited_indexed_column() {
    let (_dir, path, store) = temp_store();
    journal_of(&store, 10);
    raw(&path)
        .execute(
            "UPDATE journal SET path = '/etc/innocent' WHERE sequence = 4",
            [],
        )
        .unwrap();
    let found = problem(store.verify().unwrap());
    assert_eq!(
        found,
        VerifyProblem::Edited {
            sequence: 4,
            detail: EditDetail::Column("path")
        }
    );
    assert_eq!(
        found.to_string(),
        "record 4 was edited: its `path` column disagrees with the record text"
    );
    // Each query column is covered, time included (each edit earlier than the last).
    for (sql, column) in [
        (
            "UPDATE journal SET time_ns = time_ns + 1 WHERE sequence = 3",
            "time_ns",
        ),
        (
            "UPDATE journal SET category = 'Added' WHERE sequence = 2",
            "category",
        ),
        (
            "UPDATE journal SET computer = 'host-b' WHERE sequence = 1",
            "computer",
        ),
    ] {
        raw(&path).execute(sql, []).unwrap();
        let found = problem(store.verify().unwrap());
        let VerifyProblem::Edited {
            detail: EditDetail::Column(name),
            ..
        } = found
        else {
            panic!("{found:?}");
        };
        assert_eq!(name, column);
    }
}

#[test]
fn verify_finds_a_deleted_middle_record() {
    let (_dir, path, store) = temp_store();
    journal_of(&store, 10);
    raw(&path)
        .execute("DELETE FROM journal WHERE sequence = 5", [])
        .unwrap();
    let report = store.verify().unwrap();
    assert_eq!(report.checked, 4);
    assert_eq!(
        report.problem,
        Some(VerifyProblem::Missing {
            expected: 5,
            next_present: 6
        })
    );
    assert_eq!(
        report.problem.unwrap().to_string(),
        "record 5 is missing: the journal skips from 4 to 6"
    );
}

#[test]
fn verify_finds_swapped_records() {
    let (_dir, path, store) = temp_store();
    journal_of(&store, 10);
    raw(&path)
        .execute_batch(
            "CREATE TEMP TABLE saved AS SELECT sequence, record, prev_hash, hash FROM journal \
               WHERE sequence IN (7, 8);
             UPDATE journal SET
               record = (SELECT record FROM saved WHERE saved.sequence = 15 - journal.sequence),
               prev_hash = (SELECT prev_hash FROM saved WHERE saved.sequence = 15 - journal.sequence),
               hash = (SELECT hash FROM saved WHERE saved.sequence = 15 - journal.sequence)
             WHERE sequence IN (7, 8);",
        )
        .unwrap();
    let report = store.verify().unwrap();
    assert_eq!(report.checked, 6);
    assert_eq!(
        report.problem,
        Some(VerifyProblem::Reordered { sequence: 7 })
    );
    assert!(
        report.to_string().starts_with("record 7 is out of order"),
        "{report}"
    );
}

#[test]
fn verify_finds_a_truncated_tail() {
    let (_dir, path, store) = temp_store();
    journal_of(&store, 10);
    raw(&path)
        .execute("DELETE FROM journal WHERE sequence = 10", [])
        .unwrap();
    let report = store.verify().unwrap();
    assert_eq!(report.checked, 9);
    assert_eq!(
        report.problem,
        Some(VerifyProblem::TruncatedTail {
            head_sequence: 10,
            last_present: 9
        })
    );
    assert_eq!(
        report.problem.unwrap().to_string(),
        "the journal was truncated: record 10 is committed (the chain head is at 10) but gone"
    );
    // Everything gone.
    raw(&path).execute("DELETE FROM journal", []).unwrap();
    let found = problem(store.verify().unwrap());
    assert_eq!(
        found,
        VerifyProblem::TruncatedTail {
            head_sequence: 10,
            last_present: 0
        }
    );
    assert_eq!(
        found.to_string(),
        "the journal was truncated: records 1 to 10 are committed (the chain head is at 10) but \
         gone"
    );
}

#[test]
fn verify_finds_a_rechained_tail_and_rows_past_the_head() {
    let (_dir, path, store) = temp_store();
    journal_of(&store, 3);
    // Rewrite record 3 and recompute its hash, but not the chain head.
    let conn = raw(&path);
    let (json, prev): (String, Vec<u8>) = conn
        .query_row(
            "SELECT record, prev_hash FROM journal WHERE sequence = 3",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    let forged = json.replace("\"Size\":3", "\"Size\":9");
    let prev: [u8; 32] = prev.try_into().unwrap();
    let hash = chain_hash(&prev, forged.as_bytes());
    conn.execute(
        "UPDATE journal SET record = ?1, hash = ?2 WHERE sequence = 3",
        (&forged, hash.as_slice()),
    )
    .unwrap();
    assert_eq!(
        problem(store.verify().unwrap()),
        VerifyProblem::HeadMismatch { sequence: 3 }
    );
    // A row added behind fim's back, chained properly, past the head.
    let original = chain_hash(&prev, json.as_bytes());
    conn.execute(
        "UPDATE journal SET record = ?1, hash = ?2 WHERE sequence = 3",
        (&json, original.as_slice()),
    )
    .unwrap();
    assert!(store.verify().unwrap().is_ok());
    let mut extra = record("/etc/x", ChangeCategory::Added, 0);
    extra.sequence = 4;
    let extra_json = serde_json::to_string(&extra).unwrap();
    let head: Vec<u8> = conn
        .query_row("SELECT hash FROM journal WHERE sequence = 3", [], |row| {
            row.get(0)
        })
        .unwrap();
    let head: [u8; 32] = head.try_into().unwrap();
    conn.execute(
        "INSERT INTO journal SELECT 4, 0, 'host-a', 'id-a', 'Files', 'Added', 'etc', '/etc/x', \
         ?1, ?2, ?3",
        (
            &extra_json,
            head.as_slice(),
            chain_hash(&head, extra_json.as_bytes()).as_slice(),
        ),
    )
    .unwrap();
    let report = store.verify().unwrap();
    assert_eq!(report.checked, 3);
    assert_eq!(
        report.problem,
        Some(VerifyProblem::BeyondHead {
            head_sequence: 3,
            last_present: 4
        })
    );
    assert_eq!(
        report.problem.unwrap().to_string(),
        "record 4 is past the chain head (3): not written by fim"
    );
}

#[test]
fn verify_finds_a_wrong_sequence_field() {
    let (_dir, path, store) = temp_store();
    journal_of(&store, 2);
    // Record 2's row holds a properly chained text that claims to be record 9.
    let conn = raw(&path);
    let (json, prev): (String, Vec<u8>) = conn
        .query_row(
            "SELECT record, prev_hash FROM journal WHERE sequence = 2",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    let forged = json.replacen("\"Sequence\":2", "\"Sequence\":9", 1);
    let prev: [u8; 32] = prev.try_into().unwrap();
    conn.execute(
        "UPDATE journal SET record = ?1, hash = ?2 WHERE sequence = 2",
        (&forged, chain_hash(&prev, forged.as_bytes()).as_slice()),
    )
    .unwrap();
    assert_eq!(
        problem(store.verify().unwrap()),
        VerifyProblem::Edited {
            sequence: 2,
            detail: EditDetail::SequenceField { found: 9 }
        }
    );
}

#[test]
fn verify_checks_a_head_kept_elsewhere() {
    let (_dir, path, store) = temp_store();
    journal_of(&store, 5);
    let (_, head) = store.head().unwrap();
    let anchor = |text: String| text.parse::<Anchor>().unwrap();
    let kept = anchor(format!("5:{}", crate::change::hex(&head)));
    assert_eq!(store.verify_anchored(Some(kept)).unwrap().problem, None);
    // A wrong hash for a record that exists: rewritten.
    let wrong = anchor(format!("3:{}", crate::change::hex(&head)));
    assert_eq!(
        store.verify_anchored(Some(wrong)).unwrap().problem,
        Some(VerifyProblem::AnchorMismatch { sequence: 3 })
    );
    // The attacker rewrote the whole chain shorter, head included: only the anchor tells.
    raw(&path)
        .execute("DELETE FROM journal WHERE sequence > 3", [])
        .unwrap();
    let rows: (i64, Vec<u8>) = raw(&path)
        .query_row(
            "SELECT sequence, hash FROM journal WHERE sequence = 3",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    raw(&path)
        .execute(
            "UPDATE chain_head SET sequence = ?1, hash = ?2",
            rusqlite::params![rows.0, rows.1],
        )
        .unwrap();
    assert_eq!(
        store.verify().unwrap().problem,
        None,
        "consistent on its own"
    );
    let found = problem(store.verify_anchored(Some(kept)).unwrap());
    assert_eq!(
        found,
        VerifyProblem::AnchorMissing {
            sequence: 5,
            last_present: 3
        }
    );
    for bad in ["5", "x:00", "5:abc"] {
        assert!(bad.parse::<Anchor>().is_err(), "{bad}");
    }
}

#[test]
fn verify_reports_a_damaged_file() {
    let (_dir, path, store) = temp_store();
    journal_of(&store, 200);
    drop(store);
    // Overwrite a page in the middle of the file (not the header): SQLite's check sees it.
    let mut bytes = std::fs::read(&path).unwrap();
    let page = 4096;
    assert!(bytes.len() > 4 * page, "{} bytes", bytes.len());
    for byte in &mut bytes[2 * page..4 * page] {
        *byte = 0x5a;
    }
    std::fs::write(&path, &bytes).unwrap();
    let store = crate::store::Store::open_read_only(&path).unwrap();
    let report = store.verify().unwrap();
    assert!(
        matches!(report.problem, Some(VerifyProblem::Damaged { .. })),
        "{report}"
    );
    assert!(!report.is_ok());
}

#[test]
fn pruning_keeps_the_chain_verifiable_from_its_new_base() {
    let (_dir, path, store) = temp_store();
    journal_of(&store, 10);
    let keep = crate::store::Retention {
        max_age_ns: None,
        max_records: Some(4),
        ..Default::default()
    };
    assert_eq!(store.prunable_through(keep, 0).unwrap(), Some(6));
    let mut marker = record("/", ChangeCategory::Modified, 9_000_000_000);
    store.prune_through(6, &mut marker).unwrap();
    assert_eq!(marker.sequence, 11);
    let report = store.verify().unwrap();
    assert_eq!(report.problem, None, "{report}");
    assert_eq!(report.checked, 5, "records 7 to 11");
    assert_eq!(store.chain_base().unwrap().0, 6);
    // Nothing more to prune until the journal grows past the limit again.
    assert_eq!(store.prunable_through(keep, 0).unwrap(), Some(7));
    // A record after the base deleted by hand is still found.
    raw(&path)
        .execute("DELETE FROM journal WHERE sequence = 7", [])
        .unwrap();
    assert_eq!(
        problem(store.verify().unwrap()),
        VerifyProblem::Missing {
            expected: 7,
            next_present: 8
        }
    );
    // By age: records older than the cutoff go.
    let (_dir, _path, store) = temp_store();
    journal_of(&store, 3);
    let old = crate::store::Retention {
        max_age_ns: Some(1),
        max_records: None,
        ..Default::default()
    };
    assert_eq!(store.prunable_through(old, i64::MAX).unwrap(), Some(3));
    assert_eq!(store.prunable_through(old, 0).unwrap(), None);
}

#[test]
fn with_a_workspace_only_acknowledged_records_are_pruned_unless_the_hard_cap_forces_more() {
    let (_dir, _path, store) = temp_store();
    journal_of(&store, 100);
    let keep = |acknowledged, hard_cap_records| crate::store::Retention {
        max_records: Some(10),
        acknowledged,
        hard_cap_records,
        ..Default::default()
    };
    // No workspace: the usual retention.
    assert_eq!(
        store.prunable_through(keep(None, None), 0).unwrap(),
        Some(90)
    );
    // The workspace holds records 1 to 40: those go, no more.
    assert_eq!(
        store.prunable_through(keep(Some(40), None), 0).unwrap(),
        Some(40)
    );
    // It holds nothing (unreachable since the start): nothing goes...
    assert_eq!(
        store.prunable_through(keep(Some(0), None), 0).unwrap(),
        None
    );
    // ...until the hard cap: at most 60 records stay, acknowledged or not.
    assert_eq!(
        store.prunable_through(keep(Some(0), Some(60)), 0).unwrap(),
        Some(40)
    );
    assert_eq!(
        store.prunable_through(keep(Some(70), Some(60)), 0).unwrap(),
        Some(70)
    );
    // A hard cap alone also bounds a journal with no workspace.
    let cap_only = crate::store::Retention {
        hard_cap_records: Some(25),
        ..Default::default()
    };
    assert_eq!(store.prunable_through(cap_only, 0).unwrap(), Some(75));
}
