//! What Wine 8.0 does not implement, asserted, so the day it does these probes fail and the
//! real tests can be switched on: ETW consumption (OpenTraceW), the USN journal
//! (FSCTL_QUERY_USN_JOURNAL) and NotifyServiceStatusChangeW. On a real Windows these probes
//! fail too, by design: they describe Wine, and say so.
#![cfg(windows)]
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::ptr::{null, null_mut};

use windows_sys::Win32::{
    Foundation::{CloseHandle, GetLastError, INVALID_HANDLE_VALUE},
    Storage::FileSystem::{
        CreateFileW, FILE_GENERIC_READ, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
    },
    System::{
        Diagnostics::Etw::{
            OpenTraceW, EVENT_TRACE_LOGFILEW, PROCESS_TRACE_MODE_EVENT_RECORD,
            PROCESS_TRACE_MODE_REAL_TIME,
        },
        Ioctl::FSCTL_QUERY_USN_JOURNAL,
        Services::{
            CloseServiceHandle, NotifyServiceStatusChangeW, OpenSCManagerW,
            SC_MANAGER_ENUMERATE_SERVICE, SERVICE_NOTIFY_2W, SERVICE_NOTIFY_CREATED,
            SERVICE_NOTIFY_DELETED, SERVICE_NOTIFY_STATUS_CHANGE,
        },
        IO::DeviceIoControl,
    },
};

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain([0]).collect()
}

/// Measured under Wine 8.0: an invalid handle, error 5. The ETW who-data source cannot run here.
#[test]
fn wine_lacks_etw_real_time_consumption() {
    let mut name = wide("NT Kernel Logger");
    // SAFETY: a zeroed logfile description with a real-time logger name.
    let handle = unsafe {
        let mut logfile: EVENT_TRACE_LOGFILEW = std::mem::zeroed();
        logfile.LoggerName = name.as_mut_ptr();
        logfile.Anonymous1.ProcessTraceMode =
            PROCESS_TRACE_MODE_REAL_TIME | PROCESS_TRACE_MODE_EVENT_RECORD;
        OpenTraceW(&mut logfile)
    };
    let error = unsafe { GetLastError() };
    assert_eq!(
        (handle.Value, error),
        (u64::MAX, 5),
        "OpenTraceW on a real-time session works now: switch the ETW tests on"
    );
}

/// Measured under Wine 8.0: the volume opens, the journal query fails with ERROR_NOT_SUPPORTED.
#[test]
fn wine_lacks_the_usn_journal() {
    let volume = wide(r"\\.\C:");
    // SAFETY: opening the volume for reading; closed below.
    let handle = unsafe {
        CreateFileW(
            volume.as_ptr(),
            FILE_GENERIC_READ,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            null(),
            OPEN_EXISTING,
            0,
            null_mut(),
        )
    };
    assert_ne!(handle, INVALID_HANDLE_VALUE, "the volume opens under Wine");
    {
        let mut out = [0u8; 256];
        let mut returned = 0u32;
        // SAFETY: a valid handle and an output buffer of the given size.
        let ok = unsafe {
            DeviceIoControl(
                handle,
                FSCTL_QUERY_USN_JOURNAL,
                null(),
                0,
                out.as_mut_ptr().cast(),
                out.len() as u32,
                &mut returned,
                null_mut(),
            )
        };
        let error = unsafe { GetLastError() };
        unsafe { CloseHandle(handle) };
        assert_eq!(
            (ok, error),
            (0, 50),
            "FSCTL_QUERY_USN_JOURNAL works now: switch the USN tests on"
        );
    }
}

/// Measured under Wine 8.0: ERROR_CALL_NOT_IMPLEMENTED (120); fimsvc polls instead.
#[test]
fn wine_lacks_notify_service_status_change() {
    // SAFETY: the local manager; closed below.
    let manager = unsafe { OpenSCManagerW(null(), null(), SC_MANAGER_ENUMERATE_SERVICE) };
    assert!(!manager.is_null());
    let mut notify: SERVICE_NOTIFY_2W = unsafe { std::mem::zeroed() };
    notify.dwVersion = SERVICE_NOTIFY_STATUS_CHANGE;
    // SAFETY: a valid manager handle and a notify buffer that outlives the call.
    let status = unsafe {
        NotifyServiceStatusChangeW(
            manager,
            SERVICE_NOTIFY_CREATED | SERVICE_NOTIFY_DELETED,
            &notify,
        )
    };
    unsafe { CloseServiceHandle(manager) };
    assert_eq!(
        status, 120,
        "NotifyServiceStatusChangeW works now: use it instead of the poll"
    );
}
