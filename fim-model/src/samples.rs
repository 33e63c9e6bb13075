//! Example records of the kinds Linux never produces, for the tests of every crate that
//! handles records (store, journal, filter, proto, CLI) and for documentation. Not used by
//! any producer.
use crate::{
    actor::{UserIdentity, WindowsUser},
    Actor, ChangeCategory, ChangeRecord, ConfigChangeType, Detection, RegistryColumns,
    ServiceColumns, Timestamp,
};

/// A process of a Windows user.
pub fn windows_actor() -> Actor {
    Actor {
        process_id: 4242,
        thread_id: 4243,
        process_name: "reg.exe".into(),
        executable: Some(r"C:\Windows\System32\reg.exe".into()),
        parent_process_id: 4000,
        user: UserIdentity::Windows(WindowsUser {
            user_sid: "S-1-5-21-1-2-3-1001".into(),
            logon_id: Some(0x3e7),
            account_name: Some(r"CORP\alice".into()),
        }),
    }
}

pub fn registry_record() -> ChangeRecord {
    ChangeRecord {
        sequence: 9,
        time_generated: Timestamp::from_unix_nanos(1_796_292_000_123_456_789),
        computer: "win1".into(),
        computer_id: "guid".into(),
        config_change_type: ConfigChangeType::Registry,
        change_category: ChangeCategory::Modified,
        fields_changed: vec!["ValueData".into()],
        entity: "run-keys".into(),
        detected_by: Detection::Realtime,
        operations: vec!["set-value".into()],
        actor: Some(windows_actor()),
        file: None,
        registry: Some(RegistryColumns {
            registry_key: r"HKEY_LOCAL_MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Run"
                .into(),
            hive: "HKEY_LOCAL_MACHINE".into(),
            value_name: Some("Updater".into()),
            value_type: Some("REG_SZ".into()),
            previous_value_type: Some("REG_SZ".into()),
            value_data: Some(r"C:\evil.exe".into()),
            previous_value_data: Some(r"C:\good.exe".into()),
            value_data_invalid: true,
            ..RegistryColumns::default()
        }),
        service: None,
        contributors: Vec::new(),
        contributors_omitted: 0,
        monitor: None,
    }
}

/// A service whose start type was changed to Disabled and which was stopped, found by a scan.
pub fn service_record() -> ChangeRecord {
    ChangeRecord {
        config_change_type: ConfigChangeType::WindowsServices,
        entity: "services".into(),
        fields_changed: vec!["SvcState".into(), "SvcStartupType".into()],
        detected_by: Detection::Scan,
        operations: Vec::new(),
        registry: None,
        service: Some(ServiceColumns {
            svc_name: "Spooler".into(),
            svc_state: Some("Stopped".into()),
            previous_svc_state: Some("Running".into()),
            svc_startup_type: Some("Disabled".into()),
            previous_svc_startup_type: Some("Auto".into()),
            svc_account: Some("LocalSystem".into()),
            ..ServiceColumns::default()
        }),
        actor: None,
        ..registry_record()
    }
}
