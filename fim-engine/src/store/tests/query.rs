//! Journal queries, summaries, paging, meta values and scan history.
use super::{append_all, record, temp_store};
use crate::{
    change::{ChangeCategory, ChangeRecord, ConfigChangeType, Timestamp},
    store::{ChangeFilter, GroupKey, ScanRun, Store, SummaryRow},
};

const SECOND: i64 = 1_000_000_000;

/// Eight records: (path, category, computer, entity, time in seconds).
fn sample(store: &Store) -> Vec<ChangeRecord> {
    let rows = [
        ("/etc/passwd", ChangeCategory::Modified, "host-a", "etc", 10),
        ("/etc/shadow", ChangeCategory::Modified, "host-a", "etc", 20),
        ("/etc/new.conf", ChangeCategory::Added, "host-b", "etc", 30),
        ("/usr/bin/ls", ChangeCategory::Modified, "host-a", "bin", 40),
        ("/usr/bin/evil", ChangeCategory::Added, "host-b", "bin", 50),
        (
            "/etc/old.conf",
            ChangeCategory::Removed,
            "host-a",
            "etc",
            60,
        ),
        (
            "/usr/bin/cat",
            ChangeCategory::Modified,
            "host-b",
            "bin",
            70,
        ),
        (
            "/etc/cron.d/job",
            ChangeCategory::Added,
            "host-a",
            "cron",
            80,
        ),
    ];
    let mut records: Vec<ChangeRecord> = rows
        .iter()
        .map(|(path, category, computer, entity, seconds)| {
            let mut change = record(path, *category, seconds * SECOND);
            change.computer = computer.to_string();
            change.computer_id = format!("id-{computer}");
            change.entity = entity.to_string();
            change
        })
        .collect();
    // Two batches, so sequences span commits.
    let (first, second) = records.split_at_mut(3);
    append_all(store, first);
    append_all(store, second);
    records
}

fn sequences(records: &[ChangeRecord]) -> Vec<u64> {
    records.iter().map(|record| record.sequence).collect()
}

fn glob(pattern: &str) -> Option<crate::store::SubjectGlob> {
    Some(crate::store::SubjectGlob::new(pattern).unwrap())
}

#[test]
fn query_returns_whole_records_in_order() {
    let (_dir, _path, store) = temp_store();
    let written = sample(&store);
    let all = store.query(&ChangeFilter::default(), 100).unwrap();
    assert_eq!(all, written);
    assert_eq!(sequences(&all), [1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(store.query(&ChangeFilter::default(), 0).unwrap().is_empty());
}

#[test]
fn query_filters() {
    let (_dir, _path, store) = temp_store();
    sample(&store);
    let run = |filter: ChangeFilter| sequences(&store.query(&filter, 100).unwrap());
    // Time range: since inclusive, until exclusive.
    assert_eq!(
        run(ChangeFilter {
            since: Some(Timestamp::from_unix_nanos(20 * SECOND)),
            until: Some(Timestamp::from_unix_nanos(50 * SECOND)),
            ..ChangeFilter::default()
        }),
        [2, 3, 4]
    );
    assert_eq!(
        run(ChangeFilter {
            categories: vec![ChangeCategory::Added, ChangeCategory::Removed],
            ..ChangeFilter::default()
        }),
        [3, 5, 6, 8]
    );
    assert_eq!(
        run(ChangeFilter {
            types: vec![ConfigChangeType::Files],
            ..ChangeFilter::default()
        })
        .len(),
        8
    );
    assert!(run(ChangeFilter {
        types: vec![
            ConfigChangeType::Registry,
            ConfigChangeType::WindowsServices
        ],
        ..ChangeFilter::default()
    })
    .is_empty());
    assert_eq!(
        run(ChangeFilter {
            path_glob: glob("/etc/*.conf"),
            ..ChangeFilter::default()
        }),
        [3, 6]
    );
    assert_eq!(
        run(ChangeFilter {
            path_glob: glob("/usr/bin/*"),
            categories: vec![ChangeCategory::Modified],
            ..ChangeFilter::default()
        }),
        [4, 7]
    );
    // The computer by name or by id.
    assert_eq!(
        run(ChangeFilter {
            computer: Some("host-b".into()),
            ..ChangeFilter::default()
        }),
        [3, 5, 7]
    );
    assert_eq!(
        run(ChangeFilter {
            computer: Some("id-host-b".into()),
            ..ChangeFilter::default()
        }),
        [3, 5, 7]
    );
    assert_eq!(
        run(ChangeFilter {
            entity: Some("cron".into()),
            ..ChangeFilter::default()
        }),
        [8]
    );
}

#[test]
fn paging_by_after_sequence() {
    let (_dir, _path, store) = temp_store();
    sample(&store);
    let mut filter = ChangeFilter {
        path_glob: glob("/etc/**"),
        ..ChangeFilter::default()
    };
    let mut pages = Vec::new();
    loop {
        let page = store.query(&filter, 2).unwrap();
        let Some(last) = page.last() else { break };
        filter.after_sequence = Some(last.sequence);
        pages.push(sequences(&page));
    }
    assert_eq!(pages, [vec![1, 2], vec![3, 6], vec![8]]);
    assert_eq!(sequences(&store.records_after(5, 2).unwrap()), [6, 7]);
    assert_eq!(
        sequences(&store.records_after(8, 10).unwrap()),
        Vec::<u64>::new()
    );
    assert_eq!(store.last_sequence().unwrap(), 8);
}

#[test]
fn glob_filtering_reads_past_one_chunk() {
    let (_dir, _path, store) = temp_store();
    // 1500 records, only every 500th under /watched: the glob must scan several SQL chunks.
    let mut records: Vec<ChangeRecord> = (0..1500)
        .map(|n| {
            let path = if n % 500 == 499 {
                format!("/watched/{n}")
            } else {
                format!("/other/{n}")
            };
            record(&path, ChangeCategory::Modified, n * SECOND)
        })
        .collect();
    append_all(&store, &mut records);
    let filter = ChangeFilter {
        path_glob: glob("/watched/*"),
        ..ChangeFilter::default()
    };
    assert_eq!(
        sequences(&store.query(&filter, 10).unwrap()),
        [500, 1000, 1500]
    );
    assert_eq!(sequences(&store.query(&filter, 2).unwrap()), [500, 1000]);
}

#[test]
fn summary_groups_and_counts() {
    let (_dir, _path, store) = temp_store();
    sample(&store);
    let row = |keys: &[&str], count| SummaryRow {
        keys: keys.iter().map(|key| key.to_string()).collect(),
        count,
    };
    let all = ChangeFilter::default();
    assert_eq!(store.summary(&all, &[]).unwrap(), [row(&[], 8)]);
    assert_eq!(
        store
            .summary(&all, &[GroupKey::Computer, GroupKey::Type])
            .unwrap(),
        [row(&["host-a", "Files"], 5), row(&["host-b", "Files"], 3)]
    );
    assert_eq!(
        store.summary(&all, &[GroupKey::Category]).unwrap(),
        [
            row(&["Added"], 3),
            row(&["Modified"], 4),
            row(&["Removed"], 1)
        ]
    );
    assert_eq!(
        store
            .summary(
                &ChangeFilter {
                    since: Some(Timestamp::from_unix_nanos(40 * SECOND)),
                    ..ChangeFilter::default()
                },
                &[GroupKey::Entity, GroupKey::Category]
            )
            .unwrap(),
        [
            row(&["bin", "Added"], 1),
            row(&["bin", "Modified"], 2),
            row(&["cron", "Added"], 1),
            row(&["etc", "Removed"], 1),
        ]
    );
    // With a glob (grouped in Rust), the same shape.
    let etc = ChangeFilter {
        path_glob: glob("/etc/**"),
        ..ChangeFilter::default()
    };
    assert_eq!(
        store.summary(&etc, &[GroupKey::Entity]).unwrap(),
        [row(&["cron"], 1), row(&["etc"], 4)]
    );
    assert_eq!(store.summary(&etc, &[]).unwrap(), [row(&[], 5)]);
    let none = ChangeFilter {
        entity: Some("nobody".into()),
        ..ChangeFilter::default()
    };
    assert_eq!(store.summary(&none, &[]).unwrap(), [row(&[], 0)]);
    assert!(store.summary(&none, &[GroupKey::Type]).unwrap().is_empty());
}

#[test]
fn meta_and_scan_history() {
    let (_dir, path, store) = temp_store();
    assert_eq!(store.get_meta("policy-hash").unwrap(), None);
    store.set_meta("policy-hash", "abc").unwrap();
    store.set_meta("policy-hash", "def").unwrap();
    assert_eq!(
        store.get_meta("policy-hash").unwrap().as_deref(),
        Some("def")
    );
    assert!(store.last_scans(5).unwrap().is_empty());
    let run = |n: u64| ScanRun {
        kind: if n == 0 { "startup" } else { "scheduled" }.into(),
        started: Timestamp::from_unix_nanos(n as i64 * 100),
        finished: Timestamp::from_unix_nanos(n as i64 * 100 + 50),
        files: 1000 + n,
        changes: n,
        errors: n % 2,
    };
    for n in 0..3 {
        store.record_scan(&run(n)).unwrap();
    }
    assert_eq!(store.last_scans(2).unwrap(), [run(2), run(1)]);
    assert_eq!(store.last_scans(10).unwrap(), [run(2), run(1), run(0)]);
    // Reopened read-only, as `fim status` does.
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(
        reader.get_meta("policy-hash").unwrap().as_deref(),
        Some("def")
    );
    assert_eq!(reader.last_scans(1).unwrap(), [run(2)]);
}

#[test]
fn scan_history_is_bounded() {
    let (_dir, path, store) = temp_store();
    for n in 0..(crate::store::meta::SCAN_HISTORY + 5) {
        store
            .record_scan(&ScanRun {
                kind: "scheduled".into(),
                started: Timestamp::from_unix_nanos(n as i64),
                finished: Timestamp::from_unix_nanos(n as i64),
                files: n,
                changes: 0,
                errors: 0,
            })
            .unwrap();
    }
    let kept: i64 = super::raw(&path)
        .query_row("SELECT count(*) FROM scan_run", [], |row| row.get(0))
        .unwrap();
    assert_eq!(kept as u64, crate::store::meta::SCAN_HISTORY);
    assert_eq!(
        store.last_scans(1).unwrap()[0].files,
        crate::store::meta::SCAN_HISTORY + 4
    );
}

/// Registry and service records go through the store like file records: journaled and
/// verified, read back whole, found by type and by a key or service-name glob.
#[test]
fn registry_and_service_records_round_trip_through_the_store_and_its_filter() {
    let (_dir, _path, store) = temp_store();
    let mut records = vec![
        fim_model::samples::registry_record(),
        fim_model::samples::service_record(),
        record("/etc/passwd", ChangeCategory::Modified, 1_000_000_000),
    ];
    append_all(&store, &mut records);
    assert!(store.verify().unwrap().is_ok());
    let all = store.query(&ChangeFilter::default(), 10).unwrap();
    assert_eq!(all, records);
    let by = |filter: ChangeFilter| -> Vec<ConfigChangeType> {
        store
            .query(&filter, 10)
            .unwrap()
            .iter()
            .map(|record| record.config_change_type)
            .collect()
    };
    assert_eq!(
        by(ChangeFilter {
            types: vec![ConfigChangeType::Registry],
            ..ChangeFilter::default()
        }),
        [ConfigChangeType::Registry]
    );
    assert_eq!(
        by(ChangeFilter {
            path_glob: glob(r"hkey_local_machine\SOFTWARE\Microsoft\Windows\CurrentVersion\*"),
            ..ChangeFilter::default()
        }),
        [ConfigChangeType::Registry]
    );
    assert_eq!(
        by(ChangeFilter {
            path_glob: glob("spool*"),
            ..ChangeFilter::default()
        }),
        [ConfigChangeType::WindowsServices]
    );
    assert_eq!(
        by(ChangeFilter {
            path_glob: glob("/etc/*"),
            ..ChangeFilter::default()
        }),
        [ConfigChangeType::Files]
    );
    // The summary takes the same glob path as the query.
    let rows = store
        .summary(
            &ChangeFilter {
                path_glob: glob("HKEY_LOCAL_MACHINE\\**"),
                ..ChangeFilter::default()
            },
            &[GroupKey::Type],
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].keys[0].as_str(), rows[0].count), ("Registry", 1));
}
