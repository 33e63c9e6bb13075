//! Connecting to fimsvc's named pipe (the Windows half of [`crate::client`]).
//!
//! The pipe is opened with CreateFileW rather than tokio's `ClientOptions`, for two reasons:
//! the access asked for is [`CLIENT_ACCESS`] (the DACL grants the role groups no more: not
//! GENERIC_WRITE, which would include FILE_CREATE_PIPE_INSTANCE), and the impersonation level
//! is SECURITY_IDENTIFICATION, so whoever answers (fimsvc, or a process that squatted the
//! name while fimsvc was not running) may learn who the caller is but never act as it.
use std::{io, os::windows::io::RawHandle, ptr, time::Duration};

use hyper_util::rt::TokioIo;
use tokio::net::windows::named_pipe::NamedPipeClient;
use tonic::transport::{Channel, Endpoint, Uri};
use windows_sys::Win32::{
    Foundation::{ERROR_PIPE_BUSY, INVALID_HANDLE_VALUE},
    Storage::FileSystem::{
        CreateFileW, FILE_FLAG_OVERLAPPED, OPEN_EXISTING, SECURITY_IDENTIFICATION,
        SECURITY_SQOS_PRESENT,
    },
};

use crate::{
    client::{ConnectError, MAX_RESPONSE_BYTES},
    pb::fim_client::FimClient,
    pipe::{pipe_path, CLIENT_ACCESS},
};

/// How long a busy pipe (every instance taken for a moment) is retried.
const BUSY_FOR: Duration = Duration::from_secs(5);

/// One attempt to open the pipe.
fn open_once(path: &str) -> io::Result<NamedPipeClient> {
    let name: Vec<u16> = path.encode_utf16().chain(Some(0)).collect();
    // SAFETY: the name is NUL-terminated; no security attributes, no template.
    let handle = unsafe {
        CreateFileW(
            name.as_ptr(),
            CLIENT_ACCESS,
            0,
            ptr::null(),
            OPEN_EXISTING,
            FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION,
            ptr::null_mut(),
        )
    };
    if handle == INVALID_HANDLE_VALUE {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh, owned handle to a named pipe client, opened for overlapped I/O, which
    // is what tokio requires; it is closed by the client (or on its error path).
    unsafe { NamedPipeClient::from_raw_handle(handle as RawHandle) }
}

/// Opens the pipe, waiting a little while every instance is busy (ERROR_PIPE_BUSY: fimsvc
/// creates the next instance right after a client connects).
pub(crate) async fn open(path: &str) -> io::Result<NamedPipeClient> {
    let deadline = tokio::time::Instant::now() + BUSY_FOR;
    loop {
        match open_once(path) {
            Err(error)
                if error.raw_os_error() == Some(ERROR_PIPE_BUSY as i32)
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            opened => return opened,
        }
    }
}

/// Connects to fimsvc's pipe (`fim` or `\\.\pipe\fim`).
pub async fn connect_pipe(name: &str) -> Result<FimClient<Channel>, ConnectError> {
    let path = pipe_path(name);
    let dialled = path.clone();
    // The URI is required by the builder but unused: the connector opens the pipe.
    let channel = Endpoint::from_static("http://fimsvc.local")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = dialled.clone();
            async move { open(&path).await.map(TokioIo::new) }
        }))
        .await
        .map_err(|source| ConnectError::Local { path, source })?;
    Ok(FimClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES))
}
