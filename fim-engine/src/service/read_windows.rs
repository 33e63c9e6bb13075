//! The service control manager as a [`ServiceReader`]: `EnumServicesStatusExW` for names,
//! display names and states, `QueryServiceConfigW` per service for its startup type, binary
//! path and account.
//!
//! A service deleted between the enumeration and its query is left out (the next sweep reports
//! it Removed); one whose configuration cannot be read (access denied) is listed with empty
//! path and account, and logged, rather than dropped: dropping it would look like a deletion.
use std::ptr::{null, null_mut};

use fim_model::columns::{cap_text, text_from_utf16};
use windows_sys::Win32::{
    Foundation::{
        GetLastError, ERROR_ACCESS_DENIED, ERROR_MORE_DATA, ERROR_SERVICE_DOES_NOT_EXIST,
    },
    System::Services::{
        CloseServiceHandle, EnumServicesStatusExW, OpenSCManagerW, OpenServiceW,
        QueryServiceConfigW, ENUM_SERVICE_STATUS_PROCESSW, QUERY_SERVICE_CONFIGW,
        SC_ENUM_PROCESS_INFO, SC_HANDLE, SC_MANAGER_CONNECT, SC_MANAGER_ENUMERATE_SERVICE,
        SERVICE_DRIVER, SERVICE_QUERY_CONFIG, SERVICE_STATE_ALL, SERVICE_WIN32,
    },
};

use super::{ServiceError, ServiceReader, ServiceSnapshot};

/// The local machine's service control manager.
pub struct WindowsServices;

/// Closes a service or manager handle when dropped.
struct Handle(SC_HANDLE);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from OpenSCManagerW/OpenServiceW and is closed once.
        unsafe { CloseServiceHandle(self.0) };
    }
}

fn os_error(what: &str, code: u32) -> ServiceError {
    if code == ERROR_ACCESS_DENIED {
        return ServiceError::AccessDenied;
    }
    ServiceError::Os {
        what: what.to_string(),
        code,
        message: std::io::Error::from_raw_os_error(code as i32).to_string(),
    }
}

/// Text from a NUL-terminated UTF-16 string the system returned (None: empty), and whether it
/// was capped or had invalid UTF-16 replaced.
///
/// # Safety
/// `text` is null or points to a NUL-terminated UTF-16 string that stays valid meanwhile.
unsafe fn wide_text(text: *const u16) -> (String, bool) {
    if text.is_null() {
        return (String::new(), false);
    }
    let mut length = 0usize;
    // SAFETY: the string is NUL-terminated (the caller's contract).
    while unsafe { *text.add(length) } != 0 {
        length += 1;
    }
    // SAFETY: `length` units before the NUL are readable.
    let units = unsafe { std::slice::from_raw_parts(text, length) };
    let (text, invalid) = text_from_utf16(units);
    let (text, capped) = cap_text(text);
    (text, invalid || capped)
}

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain([0]).collect()
}

pub fn state_name(state: u32) -> String {
    match state {
        1 => "Stopped",
        2 => "StartPending",
        3 => "StopPending",
        4 => "Running",
        5 => "ContinuePending",
        6 => "PausePending",
        7 => "Paused",
        other => return format!("State{other}"),
    }
    .to_string()
}

pub fn startup_name(start: u32) -> String {
    match start {
        0 => "Boot",
        1 => "System",
        2 => "Auto",
        3 => "Manual",
        4 => "Disabled",
        other => return format!("Start{other}"),
    }
    .to_string()
}

impl ServiceReader for WindowsServices {
    fn list(&self) -> Result<Vec<ServiceSnapshot>, ServiceError> {
        // SAFETY: null machine and database name mean the local active database.
        let manager = unsafe {
            OpenSCManagerW(
                null(),
                null(),
                SC_MANAGER_CONNECT | SC_MANAGER_ENUMERATE_SERVICE,
            )
        };
        if manager.is_null() {
            // SAFETY: reads this thread's last error.
            return Err(os_error("OpenSCManagerW", unsafe { GetLastError() }));
        }
        let manager = Handle(manager);
        let mut services = Vec::new();
        for (name, display, state, capped) in enumerate(&manager)? {
            if let Some(service) = configured(&manager, name, display, state, capped)? {
                services.push(service);
            }
        }
        Ok(services)
    }
}

/// (name, display name, state, capped) of every Win32 service and driver.
fn enumerate(manager: &Handle) -> Result<Vec<(String, String, String, bool)>, ServiceError> {
    let mut found = Vec::new();
    let mut resume = 0u32;
    // u64 words, so the entries the call writes at the start of the buffer are aligned.
    let mut buffer: Vec<u64> = vec![0; 64 * 1024 / 8];
    loop {
        let (mut needed, mut returned) = (0u32, 0u32);
        let bytes = u32::try_from(buffer.len() * 8).unwrap_or(u32::MAX);
        // SAFETY: the buffer is `bytes` long and writable; counts and resume are valid.
        let ok = unsafe {
            EnumServicesStatusExW(
                manager.0,
                SC_ENUM_PROCESS_INFO,
                SERVICE_WIN32 | SERVICE_DRIVER,
                SERVICE_STATE_ALL,
                buffer.as_mut_ptr().cast(),
                bytes,
                &mut needed,
                &mut returned,
                &mut resume,
                null(),
            )
        };
        // SAFETY: reads this thread's last error.
        let error = if ok == 0 {
            unsafe { GetLastError() }
        } else {
            0
        };
        if ok == 0 && error != ERROR_MORE_DATA {
            return Err(os_error("EnumServicesStatusExW", error));
        }
        let entries = buffer.as_ptr().cast::<ENUM_SERVICE_STATUS_PROCESSW>();
        for index in 0..returned as usize {
            // SAFETY: the call wrote `returned` entries at the start of the buffer, whose
            // strings point into the same buffer, which is not touched until they are copied.
            let entry = unsafe { &*entries.add(index) };
            let (name, name_capped) = unsafe { wide_text(entry.lpServiceName) };
            let (display, display_capped) = unsafe { wide_text(entry.lpDisplayName) };
            let state = state_name(entry.ServiceStatusProcess.dwCurrentState);
            found.push((name, display, state, name_capped || display_capped));
        }
        if ok != 0 {
            return Ok(found);
        }
        // More to come (from `resume`): make room for what the call said it needs.
        let wanted = (needed as usize).div_ceil(8).max(buffer.len());
        buffer = vec![0; wanted];
    }
}

/// The service with its configuration; None when it was deleted meanwhile.
fn configured(
    manager: &Handle,
    name: String,
    display_name: String,
    state: String,
    capped: bool,
) -> Result<Option<ServiceSnapshot>, ServiceError> {
    let mut service = ServiceSnapshot {
        name,
        display_name,
        state,
        capped,
        ..ServiceSnapshot::default()
    };
    let wide_name = wide(&service.name);
    // SAFETY: a valid manager handle and a NUL-terminated name.
    let handle = unsafe { OpenServiceW(manager.0, wide_name.as_ptr(), SERVICE_QUERY_CONFIG) };
    if handle.is_null() {
        // SAFETY: reads this thread's last error.
        let error = unsafe { GetLastError() };
        if error == ERROR_SERVICE_DOES_NOT_EXIST {
            return Ok(None);
        }
        tracing::debug!(service = %service.name, "cannot open the service to read its configuration: error {error}");
        return Ok(Some(service));
    }
    let handle = Handle(handle);
    let mut needed = 0u32;
    // SAFETY: asking for the size only (null buffer of 0 bytes).
    unsafe { QueryServiceConfigW(handle.0, null_mut(), 0, &mut needed) };
    let mut buffer: Vec<u64> = vec![0; (needed as usize).div_ceil(8).max(1)];
    let bytes = u32::try_from(buffer.len() * 8).unwrap_or(u32::MAX);
    let config = buffer.as_mut_ptr().cast::<QUERY_SERVICE_CONFIGW>();
    // SAFETY: the buffer is aligned for the structure and `bytes` long.
    if unsafe { QueryServiceConfigW(handle.0, config, bytes, &mut needed) } == 0 {
        // SAFETY: reads this thread's last error.
        let error = unsafe { GetLastError() };
        tracing::debug!(service = %service.name, "cannot read the service's configuration: error {error}");
        return Ok(Some(service));
    }
    // SAFETY: the call filled the structure; its strings point into the buffer.
    let config = unsafe { &*config };
    service.startup_type = startup_name(config.dwStartType);
    let (path, path_capped) = unsafe { wide_text(config.lpBinaryPathName) };
    let (account, account_capped) = unsafe { wide_text(config.lpServiceStartName) };
    service.path = path;
    service.account = account;
    service.capped |= path_capped || account_capped;
    Ok(Some(service))
}

#[cfg(test)]
#[path = "read_windows_tests.rs"]
mod tests;
