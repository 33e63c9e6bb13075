use super::*;
use crate::{Detection, FileColumns, RegistryColumns, ServiceColumns};

fn record(change_type: ConfigChangeType) -> ChangeRecord {
    ChangeRecord {
        sequence: 5,
        time_generated: "2026-12-03T10:00:00.5Z".parse().unwrap(),
        computer: "web1".into(),
        computer_id: "abc".into(),
        config_change_type: change_type,
        change_category: ChangeCategory::Modified,
        fields_changed: Vec::new(),
        entity: "e".into(),
        detected_by: Detection::Realtime,
        operations: Vec::new(),
        actor: None,
        file: None,
        registry: None,
        service: None,
        contributors: Vec::new(),
        contributors_omitted: 0,
        monitor: None,
    }
}

fn file(path: &str) -> ChangeRecord {
    ChangeRecord {
        file: Some(FileColumns {
            file_system_path: path.into(),
            ..FileColumns::default()
        }),
        ..record(ConfigChangeType::Files)
    }
}

fn key(key: &str) -> ChangeRecord {
    ChangeRecord {
        registry: Some(RegistryColumns {
            registry_key: key.into(),
            hive: "HKEY_LOCAL_MACHINE".into(),
            ..RegistryColumns::default()
        }),
        ..record(ConfigChangeType::Registry)
    }
}

fn glob(text: &str) -> ChangeFilter {
    ChangeFilter {
        path_glob: Some(SubjectGlob::new(text).unwrap()),
        ..ChangeFilter::default()
    }
}

#[test]
fn file_globs_keep_segments_and_match_raw_bytes() {
    assert!(glob("/etc/*.conf").matches(&file("/etc/a.conf")));
    assert!(!glob("/etc/*.conf").matches(&file("/etc/x/a.conf")));
    assert!(glob("/etc/**").matches(&file("/etc/x/a.conf")));
    // A non-UTF-8 name is matched by its bytes, not its escaped text. Only Unix names are
    // bytes: on Windows a path is UTF-16 and globset matches its lossy UTF-8, so the name
    // decodes to U+FFFD there and the assertion would test something else.
    #[cfg(unix)]
    assert!(glob("/tmp/n?").matches(&file("/tmp/n\\xe9")));
    // File paths are case-sensitive.
    assert!(!glob("/ETC/*").matches(&file("/etc/a")));
}

#[test]
fn key_globs_use_backslashes_as_separators_and_ignore_case() {
    let run = key(r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Run");
    assert!(glob(r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\*").matches(&run));
    assert!(glob(r"hkey_local_machine\software\**").matches(&run));
    assert!(!glob(r"HKEY_LOCAL_MACHINE\SOFTWARE\*").matches(&run));
    // Either spelling of the hive, in the glob or in the record, is the same key.
    assert!(glob(r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run").matches(&run));
    assert!(glob(r"hklm\software\**").matches(&run));
    let short = key(r"HKLM\SOFTWARE\Policies\Microsoft");
    assert!(glob(r"HKEY_LOCAL_MACHINE\SOFTWARE\Policies\*").matches(&short));
    assert!(glob(r"HKLM\SOFTWARE\Policies\*").matches(&short));
    assert!(!glob(r"HKCU\SOFTWARE\**").matches(&run));
    assert!(!glob(r"HKLMX\SOFTWARE\**").matches(&run));
    // A glob whose hive is itself a pattern is matched against the long names.
    assert!(glob(r"HKEY_*\SOFTWARE\**").matches(&short));
    let service = ChangeRecord {
        service: Some(ServiceColumns {
            svc_name: "Spooler".into(),
            ..ServiceColumns::default()
        }),
        ..record(ConfigChangeType::WindowsServices)
    };
    assert!(glob("spool*").matches(&service));
    assert!(!glob("Sched*").matches(&service));
    // A record without a subject (the monitor's own) never matches a glob, but passes none.
    assert!(!glob("*").matches(&record(ConfigChangeType::Monitor)));
    assert!(ChangeFilter::default().matches(&record(ConfigChangeType::Monitor)));
}

#[test]
fn every_field_of_the_filter_narrows() {
    let base = key(r"HKLM\SOFTWARE\x");
    let pass = |filter: ChangeFilter| filter.matches(&base);
    let at: Timestamp = "2026-12-03T10:00:00.5Z".parse().unwrap();
    let next = Timestamp::from_unix_nanos(at.unix_nanos() + 1);
    assert!(pass(ChangeFilter {
        since: Some(at),
        until: Some(next),
        types: vec![ConfigChangeType::Registry],
        categories: vec![ChangeCategory::Modified],
        computer: Some("abc".into()),
        entity: Some("e".into()),
        after_sequence: Some(4),
        ..ChangeFilter::default()
    }));
    assert!(!pass(ChangeFilter {
        since: Some(next),
        ..ChangeFilter::default()
    }));
    assert!(!pass(ChangeFilter {
        until: Some(at),
        ..ChangeFilter::default()
    }));
    assert!(!pass(ChangeFilter {
        types: vec![ConfigChangeType::Files],
        ..ChangeFilter::default()
    }));
    assert!(!pass(ChangeFilter {
        categories: vec![ChangeCategory::Added],
        ..ChangeFilter::default()
    }));
    assert!(!pass(ChangeFilter {
        computer: Some("web2".into()),
        ..ChangeFilter::default()
    }));
    assert!(!pass(ChangeFilter {
        entity: Some("f".into()),
        ..ChangeFilter::default()
    }));
    assert!(!pass(ChangeFilter {
        after_sequence: Some(5),
        ..ChangeFilter::default()
    }));
}
