//! Win32 security helpers of `api_wine.rs`: a client on a restricted token, the pipe's DACL
//! read back, and whether this is Wine.
#![allow(dead_code)]

/// A client whose token has Administrators only as deny-only (CreateRestrictedToken) calls
/// GetStatus from a thread impersonating that token. Returns what happened.
pub fn call_with_restricted_token(pipe: String) -> String {
    use windows_sys::Win32::{
        Foundation::{CloseHandle, LocalFree},
        Security::{
            Authorization::ConvertStringSidToSidW, CreateRestrictedToken, ImpersonateLoggedOnUser,
            RevertToSelf, SID_AND_ATTRIBUTES, TOKEN_ASSIGN_PRIMARY, TOKEN_DUPLICATE,
            TOKEN_IMPERSONATE, TOKEN_QUERY,
        },
        System::Threading::{GetCurrentProcess, OpenProcessToken},
    };
    let administrators: Vec<u16> = "S-1-5-32-544".encode_utf16().chain(Some(0)).collect();
    let mut sid = std::ptr::null_mut();
    let mut process = std::ptr::null_mut();
    let mut restricted = std::ptr::null_mut();
    // SAFETY: valid out pointers and a NUL-terminated SID string; the handles and the SID
    // are freed below.
    unsafe {
        assert_ne!(ConvertStringSidToSidW(administrators.as_ptr(), &mut sid), 0);
        assert_ne!(
            OpenProcessToken(
                GetCurrentProcess(),
                TOKEN_DUPLICATE | TOKEN_QUERY | TOKEN_IMPERSONATE | TOKEN_ASSIGN_PRIMARY,
                &mut process,
            ),
            0
        );
        let disable = [SID_AND_ATTRIBUTES {
            Sid: sid,
            Attributes: 0,
        }];
        let created = CreateRestrictedToken(
            process,
            0,
            1,
            disable.as_ptr(),
            0,
            std::ptr::null(),
            0,
            std::ptr::null(),
            &mut restricted,
        );
        assert_ne!(
            created,
            0,
            "CreateRestrictedToken: {}",
            std::io::Error::last_os_error()
        );
        assert_ne!(ImpersonateLoggedOnUser(restricted), 0);
        // The token really is without Administrators (this thread now impersonates it).
        let mut member = 1;
        let checked = windows_sys::Win32::Security::CheckTokenMembership(
            std::ptr::null_mut(),
            sid,
            &mut member,
        );
        assert!(
            checked != 0 && member == 0,
            "the restricted token still counts as an administrator"
        );
    }
    // A current-thread runtime: the pipe is opened on this, the impersonating, thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let outcome = runtime.block_on(async {
        match fim_api::client::connect_pipe(&pipe).await {
            Err(error) => format!("not connected: {error:?}"),
            Ok(mut client) => match client.get_status(fim_api::pb::GetStatusRequest {}).await {
                Ok(_) => "answered".to_string(),
                Err(status) => format!("refused: {}", status.message()),
            },
        }
    });
    // SAFETY: ends this thread's impersonation; frees what was created above.
    unsafe {
        assert_ne!(RevertToSelf(), 0);
        CloseHandle(restricted);
        CloseHandle(process);
        LocalFree(sid);
    }
    outcome
}

/// Is this Wine? (ntdll exports wine_get_version there.)
pub fn under_wine() -> bool {
    use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
    let ntdll: Vec<u16> = "ntdll.dll".encode_utf16().chain(Some(0)).collect();
    // SAFETY: NUL-terminated names; ntdll is always loaded.
    unsafe {
        let module = GetModuleHandleW(ntdll.as_ptr());
        !module.is_null() && GetProcAddress(module, c"wine_get_version".as_ptr().cast()).is_some()
    }
}

/// The DACL on the pipe fimsvc created, as SDDL, read through a client handle.
pub fn pipe_dacl(pipe: &str) -> String {
    use windows_sys::Win32::{
        Foundation::{CloseHandle, LocalFree, INVALID_HANDLE_VALUE},
        Security::{
            Authorization::{
                ConvertSecurityDescriptorToStringSecurityDescriptorW, GetSecurityInfo,
                SDDL_REVISION_1, SE_KERNEL_OBJECT,
            },
            DACL_SECURITY_INFORMATION,
        },
        Storage::FileSystem::{
            CreateFileW, OPEN_EXISTING, SECURITY_IDENTIFICATION, SECURITY_SQOS_PRESENT,
        },
    };
    let name: Vec<u16> = pipe.encode_utf16().chain(Some(0)).collect();
    // SAFETY: every pointer is valid for its call; what the system allocates is freed here.
    unsafe {
        let handle = CreateFileW(
            name.as_ptr(),
            fim_api::pipe::CLIENT_ACCESS,
            0,
            std::ptr::null(),
            OPEN_EXISTING,
            SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
            std::ptr::null_mut(),
        );
        assert_ne!(
            handle,
            INVALID_HANDLE_VALUE,
            "{}",
            std::io::Error::last_os_error()
        );
        let mut descriptor = std::ptr::null_mut();
        let status = GetSecurityInfo(
            handle,
            SE_KERNEL_OBJECT,
            DACL_SECURITY_INFORMATION,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            &mut descriptor,
        );
        assert_eq!(status, 0, "GetSecurityInfo");
        let mut text = std::ptr::null_mut();
        let converted = ConvertSecurityDescriptorToStringSecurityDescriptorW(
            descriptor,
            SDDL_REVISION_1,
            DACL_SECURITY_INFORMATION,
            &mut text,
            std::ptr::null_mut(),
        );
        assert_ne!(converted, 0, "{}", std::io::Error::last_os_error());
        let mut length = 0;
        while *text.add(length) != 0 {
            length += 1;
        }
        let sddl = String::from_utf16_lossy(std::slice::from_raw_parts(text, length));
        LocalFree(text.cast());
        LocalFree(descriptor);
        CloseHandle(handle);
        sddl
    }
}
