//! What record a verdict makes: the change-time rule and the contributors list.
use std::path::PathBuf;

use fim_model::Timestamp;

use super::{make_record, Hint, Verdict};
use crate::{
    change::{Actor, ChangeCategory, Contributor, Detection, CHANGE_TIME},
    identity::Computer,
    state::{FileState, FileType},
};

fn computer() -> Computer {
    Computer {
        name: "host".into(),
        id: "id".into(),
    }
}

fn state(file_type: FileType, ctime_ns: i64) -> FileState {
    FileState {
        size: 3,
        mode: 0o644,
        mtime_ns: 1_000_000_000,
        ctime_ns,
        ino: 7,
        dev: 1,
        nlink: 1,
        hash: file_type.is_regular().then_some([1; 32]),
        ..FileState::empty(file_type)
    }
}

fn actor(pid: u32, name: &str) -> Actor {
    Actor {
        process_id: pid,
        thread_id: pid,
        process_name: name.into(),
        executable: None,
        parent_process_id: 1,
        user: crate::change::UserIdentity::Unix(crate::change::UnixUser {
            user_id: 0,
            user_name: "root".into(),
            group_id: 0,
            login_user_id: None,
            cgroup_id: 1,
            cgroup: None,
        }),
    }
}

fn contributor(pid: u32, name: &str, operations: &[&str]) -> Contributor {
    Contributor {
        actor: actor(pid, name),
        operations: operations.iter().map(|op| op.to_string()).collect(),
    }
}

/// The hint one writer leaves: `cat saved > f; touch -r saved f` done by one process.
fn one_writer() -> Hint {
    Hint {
        operations: vec!["write-closed".into(), "setattr".into()],
        actor: Some(actor(40, "restore")),
        contributors: vec![contributor(40, "restore", &["write-closed", "setattr"])],
        ..Hint::default()
    }
}

fn verdict(before: FileState, after: FileState, hint: Hint) -> Verdict {
    Verdict {
        path: PathBuf::from("/etc/passwd"),
        entity: "etc".into(),
        before: Some(before),
        after: Some(after),
        hint,
        own_event: true,
    }
}

#[test]
fn a_file_written_and_put_back_in_real_time_is_a_change_time_record() {
    let verdict = verdict(
        state(FileType::Regular, 1_000_000_000),
        state(FileType::Regular, 2_000_000_000),
        one_writer(),
    );
    let record = make_record(&computer(), &verdict, Detection::Realtime).expect("a record");
    assert_eq!(record.change_category, ChangeCategory::Modified);
    assert_eq!(record.fields_changed, vec![CHANGE_TIME.to_string()]);
    assert_eq!(record.operations, vec!["write-closed", "setattr"]);
    assert_eq!(record.actor, Some(actor(40, "restore")));
    // One process: it is the Actor, and the record keeps its old shape.
    assert!(record.contributors.is_empty());
    let file = record.file.expect("file columns");
    assert_eq!(
        file.change_time.map(Timestamp::to_rfc3339).as_deref(),
        Some("1970-01-01T00:00:02Z")
    );
    assert_eq!(
        file.previous_change_time
            .map(Timestamp::to_rfc3339)
            .as_deref(),
        Some("1970-01-01T00:00:01Z")
    );
}

#[test]
fn a_scan_records_a_change_time_difference_too_without_an_actor() {
    let verdict = verdict(
        state(FileType::Regular, 1),
        state(FileType::Regular, 2),
        Hint::default(),
    );
    let record = make_record(&computer(), &verdict, Detection::Scan).expect("a record");
    assert_eq!(record.fields_changed, vec![CHANGE_TIME.to_string()]);
    assert_eq!(record.actor, None);
    assert!(record.operations.is_empty());
}

#[test]
fn a_directory_change_time_or_an_unchanged_file_makes_no_record() {
    let directory = verdict(
        state(FileType::Directory, 1),
        state(FileType::Directory, 2),
        one_writer(),
    );
    assert_eq!(
        make_record(&computer(), &directory, Detection::Realtime),
        None
    );
    let unchanged = verdict(
        state(FileType::Regular, 1),
        state(FileType::Regular, 1),
        one_writer(),
    );
    assert_eq!(
        make_record(&computer(), &unchanged, Detection::Realtime),
        None
    );
}

#[test]
fn several_processes_are_all_named_in_real_time_records() {
    let hint = Hint {
        operations: vec!["write-closed".into(), "setattr".into()],
        actor: Some(actor(51, "touch")),
        contributors: vec![
            contributor(50, "bash", &["write-closed"]),
            contributor(51, "touch", &["setattr"]),
        ],
        contributors_omitted: 2,
        ..Hint::default()
    };
    let mut after = state(FileType::Regular, 2);
    after.size = 4;
    after.hash = Some([2; 32]);
    let verdict = verdict(state(FileType::Regular, 1), after, hint);
    let record = make_record(&computer(), &verdict, Detection::Realtime).expect("a record");
    assert_eq!(record.fields_changed, vec!["Size", "FileContentChecksum"]);
    assert_eq!(record.actor, Some(actor(51, "touch")));
    assert_eq!(
        record.contributors,
        vec![
            contributor(50, "bash", &["write-closed"]),
            contributor(51, "touch", &["setattr"]),
        ]
    );
    assert_eq!(record.contributors_omitted, 2);
    // A rescan knows no processes: none are named, as no Actor is.
    let rescan = make_record(&computer(), &verdict, Detection::GapRescan).expect("a record");
    assert!(rescan.contributors.is_empty());
    assert_eq!(rescan.contributors_omitted, 0);
}
