//! The service control manager under Wine: a service created, reconfigured and deleted with
//! the real calls, each read back exactly.
use std::ptr::{null, null_mut};

use windows_sys::Win32::System::Services::{
    ChangeServiceConfigW, CreateServiceW, DeleteService, OpenSCManagerW, SC_MANAGER_ALL_ACCESS,
    SERVICE_ALL_ACCESS, SERVICE_DEMAND_START, SERVICE_DISABLED, SERVICE_ERROR_NORMAL,
    SERVICE_NO_CHANGE, SERVICE_WIN32_OWN_PROCESS,
};

use super::*;

fn find(name: &str) -> Option<ServiceSnapshot> {
    WindowsServices
        .list()
        .expect("list the services")
        .into_iter()
        .find(|service| service.name.eq_ignore_ascii_case(name))
}

#[test]
fn a_service_created_reconfigured_and_deleted_is_read_back_exactly() {
    let name = format!("fim-test-{}", std::process::id());
    // SAFETY: local manager, full access (Wine's user is an administrator).
    let manager = unsafe { OpenSCManagerW(null(), null(), SC_MANAGER_ALL_ACCESS) };
    assert!(!manager.is_null(), "OpenSCManagerW");
    let manager = Handle(manager);
    let path = wide(r"C:\fim\test service.exe --flag");
    let display = wide("FIM test service");
    let wide_name = wide(&name);
    // SAFETY: valid handle and NUL-terminated strings; optional arguments null.
    let service = unsafe {
        CreateServiceW(
            manager.0,
            wide_name.as_ptr(),
            display.as_ptr(),
            SERVICE_ALL_ACCESS,
            SERVICE_WIN32_OWN_PROCESS,
            SERVICE_DEMAND_START,
            SERVICE_ERROR_NORMAL,
            path.as_ptr(),
            null(),
            null_mut(),
            null(),
            null(),
            null(),
        )
    };
    assert!(!service.is_null(), "CreateServiceW");
    let service = Handle(service);
    let created = find(&name).expect("the new service is listed");
    assert_eq!(created.name, name);
    assert_eq!(created.display_name, "FIM test service");
    assert_eq!(created.state, "Stopped");
    assert_eq!(created.startup_type, "Manual");
    assert_eq!(created.path, r"C:\fim\test service.exe --flag");
    assert_eq!(created.account, "LocalSystem");
    assert!(!created.capped);

    let new_path = wide(r"C:\Users\Public\evil.exe");
    // SAFETY: valid service handle; SERVICE_NO_CHANGE and nulls keep the other settings.
    let changed = unsafe {
        ChangeServiceConfigW(
            service.0,
            SERVICE_NO_CHANGE,
            SERVICE_DISABLED,
            SERVICE_NO_CHANGE,
            new_path.as_ptr(),
            null(),
            null_mut(),
            null(),
            null(),
            null(),
            null(),
        )
    };
    assert_ne!(changed, 0, "ChangeServiceConfigW");
    let reconfigured = find(&name).expect("still listed");
    assert_eq!(reconfigured.startup_type, "Disabled");
    assert_eq!(reconfigured.path, r"C:\Users\Public\evil.exe");
    assert_eq!(reconfigured.display_name, "FIM test service");

    // SAFETY: valid service handle with DELETE access (SERVICE_ALL_ACCESS).
    assert_ne!(unsafe { DeleteService(service.0) }, 0, "DeleteService");
    drop(service);
    assert_eq!(find(&name), None, "a deleted service is no longer listed");
}

#[test]
fn states_and_startup_types_have_their_names() {
    assert_eq!(state_name(4), "Running");
    assert_eq!(state_name(99), "State99");
    assert_eq!(startup_name(2), "Auto");
    assert_eq!(startup_name(4), "Disabled");
}
