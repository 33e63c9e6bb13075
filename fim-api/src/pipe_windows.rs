//! The local API on Windows: a named pipe (`\\.\pipe\fim` by default), the counterpart of the
//! Unix socket.
//!
//! - The pipe is created with the DACL of [`crate::pipe::pipe_sddl`] (SYSTEM, Administrators,
//!   the owner and reader groups; nobody else can open it), rejects remote clients, and its
//!   first instance is created with FILE_FLAG_FIRST_PIPE_INSTANCE: if the name exists already
//!   (a second fimsvc, or a squatter who created it first to answer our clients) start-up
//!   fails loudly instead of sharing the name.
//! - One instance always waits: as soon as a client connects, the next instance is created,
//!   then the connected one is identified and handed to tonic.
//! - The peer is identified once, at connect time, from its token: ImpersonateNamedPipeClient,
//!   OpenThreadToken, RevertToSelf at once, then CheckTokenMembership for SYSTEM,
//!   Administrators and the two groups. The result ([`WindowsPeer`]) travels with the
//!   connection into every request's extensions, where [`crate::auth`] turns it into a role.
//!   Clients open the pipe at identification level (`client_windows.rs`), so the token can be
//!   queried but a server squatting the name could not act as the client.
use std::{
    io,
    os::windows::io::{AsRawHandle, RawHandle},
    pin::Pin,
    ptr,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use crate::security_windows::Descriptor;
pub use crate::security_windows::{descriptor_accepted, resolve_group, Sid};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::windows::named_pipe::NamedPipeServer,
    sync::mpsc,
    task::JoinHandle,
};
use tonic::transport::server::Connected;
use windows_sys::Win32::{
    Foundation::{
        CloseHandle, GetLastError, SetLastError, ERROR_ACCESS_DENIED, ERROR_ALREADY_EXISTS,
        ERROR_PIPE_BUSY, HANDLE, INVALID_HANDLE_VALUE,
    },
    Security::{
        CheckTokenMembership, GetTokenInformation, RevertToSelf, TokenUser, SECURITY_ATTRIBUTES,
        TOKEN_QUERY, TOKEN_USER,
    },
    Storage::FileSystem::{
        FILE_FLAG_FIRST_PIPE_INSTANCE, FILE_FLAG_OVERLAPPED, PIPE_ACCESS_DUPLEX,
    },
    System::{
        Pipes::{
            CreateNamedPipeW, GetNamedPipeClientProcessId, GetNamedPipeHandleStateW,
            ImpersonateNamedPipeClient, PIPE_READMODE_BYTE, PIPE_REJECT_REMOTE_CLIENTS,
            PIPE_TYPE_BYTE, PIPE_UNLIMITED_INSTANCES, PIPE_WAIT,
        },
        Threading::{GetCurrentThread, OpenThreadToken},
    },
};

use crate::{
    limits::{Limited, Limiter, PeerKey},
    peer::WindowsPeer,
    pipe::{pipe_sddl, NotASid, ADMINISTRATORS_SID, SYSTEM_SID},
};

/// Why the pipe could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    #[error(
        "the API pipe {0} already exists: another fimsvc serves it, or another process created \
         it first; refusing to share it (stop that process, or choose another --api-pipe)"
    )]
    InUse(String),
    #[error("cannot create the API pipe {path}: {source}")]
    Create { path: String, source: io::Error },
    #[error("the API pipe's security descriptor {sddl:?} was refused: {source}")]
    Descriptor { sddl: String, source: io::Error },
    #[error("cannot look up the {what} {name:?}: {source}")]
    Account {
        what: &'static str,
        name: String,
        source: io::Error,
    },
    #[error("the {what} {name:?} is not a group (a user or another kind of account)")]
    NotAGroup { what: &'static str, name: String },
    #[error(transparent)]
    Sid(#[from] NotASid),
}

/// The SIDs each connection is checked against.
struct Memberships {
    system: Sid,
    administrators: Sid,
    owner: Option<Sid>,
    reader: Option<Sid>,
}

/// The pipe, its descriptor and its first instance, not yet accepting.
pub struct PipeListener {
    path: String,
    descriptor: Arc<Descriptor>,
    first: NamedPipeServer,
    memberships: Arc<Memberships>,
    /// "owner: SYSTEM, Administrators, group ...; readers: ..." for the start-up line.
    pub roles: String,
}

/// Why a first instance could not be ours.
enum Created {
    Ours(NamedPipeServer),
    /// The name existed already.
    Taken,
}

/// Creates an instance of the pipe with its descriptor, byte mode, remote clients rejected.
///
/// `first`: FILE_FLAG_FIRST_PIPE_INSTANCE, which Windows enforces by failing with
/// ERROR_ACCESS_DENIED. Wine 8.0 ignores the flag (its CreateNamedPipeW always opens or
/// creates, and did not set ERROR_ALREADY_EXISTS here either), so a first instance is also
/// checked to be the only one (GetNamedPipeHandleStateW's current instances): on Windows that
/// is always true after the flag did its work, under Wine it is the check.
fn create_instance(path: &str, descriptor: &Descriptor, first: bool) -> io::Result<Created> {
    let name: Vec<u16> = path.encode_utf16().chain(Some(0)).collect();
    let attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: descriptor.0,
        bInheritHandle: 0,
    };
    let mut open_mode = PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED;
    if first {
        open_mode |= FILE_FLAG_FIRST_PIPE_INSTANCE;
    }
    // SAFETY: no arguments.
    unsafe { SetLastError(0) };
    // SAFETY: the name is NUL-terminated, `attributes` and its descriptor outlive the call.
    let handle = unsafe {
        CreateNamedPipeW(
            name.as_ptr(),
            open_mode,
            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
            PIPE_UNLIMITED_INSTANCES,
            BUFFER_BYTES,
            BUFFER_BYTES,
            0,
            &attributes,
        )
    };
    if handle == INVALID_HANDLE_VALUE {
        let error = io::Error::last_os_error();
        return match error.raw_os_error().map(|code| code as u32) {
            Some(ERROR_ACCESS_DENIED) | Some(ERROR_PIPE_BUSY) if first => Ok(Created::Taken),
            _ => Err(error),
        };
    }
    // SAFETY: no arguments; read before any other call.
    let existed = unsafe { GetLastError() } == ERROR_ALREADY_EXISTS;
    // SAFETY: a fresh, owned pipe server handle opened for overlapped I/O, as tokio requires;
    // closed by the server (or on its error path).
    let server = unsafe { NamedPipeServer::from_raw_handle(handle as RawHandle) }?;
    if first && (existed || instances(&server)? != 1) {
        return Ok(Created::Taken);
    }
    Ok(Created::Ours(server))
}

/// How many instances the pipe has now.
fn instances(server: &NamedPipeServer) -> io::Result<u32> {
    let mut count = 0u32;
    // SAFETY: a valid pipe handle; every out pointer but the count is null (not wanted).
    let read = unsafe {
        GetNamedPipeHandleStateW(
            server.as_raw_handle() as HANDLE,
            ptr::null_mut(),
            &mut count,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            0,
        )
    };
    if read == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(count)
}

/// The pipe's buffer sizes in each direction (tokio's default).
const BUFFER_BYTES: u32 = 65536;

impl PipeListener {
    /// Resolves the groups, builds the descriptor and creates the first instance.
    pub fn bind(
        path: &str,
        owner_group: Option<&str>,
        reader_group: Option<&str>,
    ) -> Result<PipeListener, PipeError> {
        let group = |name: Option<&str>, what| -> Result<Option<(String, Sid)>, PipeError> {
            let Some(name) = name else { return Ok(None) };
            match resolve_group(name, what)? {
                Some(sid) => Ok(Some((name.to_string(), sid))),
                None => {
                    tracing::info!("{what} {name} does not exist: nobody is added by it");
                    Ok(None)
                }
            }
        };
        let owner = group(owner_group, "owner group")?;
        let reader = group(reader_group, "reader group")?;
        let text = |sid: &Sid, what, name: &str| {
            sid.text().map_err(|source| PipeError::Account {
                what,
                name: name.to_string(),
                source,
            })
        };
        let owner_sid = owner
            .as_ref()
            .map(|(name, sid)| text(sid, "owner group", name))
            .transpose()?;
        let reader_sid = reader
            .as_ref()
            .map(|(name, sid)| text(sid, "reader group", name))
            .transpose()?;
        let sddl = pipe_sddl(owner_sid.as_deref(), reader_sid.as_deref())?;
        let descriptor = Descriptor::from_sddl(&sddl)
            .map_err(|source| PipeError::Descriptor { sddl, source })?;
        let first = match create_instance(path, &descriptor, true) {
            Ok(Created::Ours(server)) => server,
            Ok(Created::Taken) => return Err(PipeError::InUse(path.to_string())),
            Err(source) => {
                return Err(PipeError::Create {
                    path: path.to_string(),
                    source,
                })
            }
        };
        let roles = format!(
            "owners: SYSTEM, Administrators{}; readers: {}",
            owner
                .as_ref()
                .map(|(name, sid)| format!(", {name} ({})", sid.text().unwrap_or_default()))
                .unwrap_or_default(),
            reader
                .as_ref()
                .map(|(name, sid)| format!("{name} ({})", sid.text().unwrap_or_default()))
                .unwrap_or_else(|| "none".into()),
        );
        let well_known = |sid| {
            Sid::parse(sid).map_err(|source| PipeError::Account {
                what: "well-known group",
                name: sid.to_string(),
                source,
            })
        };
        Ok(PipeListener {
            path: path.to_string(),
            descriptor: Arc::new(descriptor),
            first,
            memberships: Arc::new(Memberships {
                system: well_known(SYSTEM_SID)?,
                administrators: well_known(ADMINISTRATORS_SID)?,
                owner: owner.map(|(_, sid)| sid),
                reader: reader.map(|(_, sid)| sid),
            }),
            roles,
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Accepted, identified and admitted connections, until the stream is dropped.
    pub fn incoming(self, limiter: Limiter) -> PipeIncoming {
        let (sender, receiver) = mpsc::channel(1);
        let task = tokio::spawn(accept(self, limiter, sender));
        PipeIncoming { receiver, task }
    }
}

/// What tonic serves from; dropping it stops accepting (the waiting instance is closed).
pub struct PipeIncoming {
    receiver: mpsc::Receiver<io::Result<Limited<PipeStream>>>,
    task: JoinHandle<()>,
}

impl tokio_stream::Stream for PipeIncoming {
    type Item = io::Result<Limited<PipeStream>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}

impl Drop for PipeIncoming {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The accept loop: connect, create the next instance, identify, admit.
async fn accept(
    listener: PipeListener,
    limiter: Limiter,
    sender: mpsc::Sender<io::Result<Limited<PipeStream>>>,
) {
    let PipeListener {
        path,
        descriptor,
        first,
        memberships,
        ..
    } = listener;
    let mut waiting = first;
    loop {
        if let Err(error) = waiting.connect().await {
            tracing::warn!("a client's connection to the API pipe failed: {error}");
            let _ = waiting.disconnect();
            // Not a busy loop should the error persist.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let connected = waiting;
        waiting = loop {
            match create_instance(&path, &descriptor, false) {
                Ok(Created::Ours(next)) => break next,
                // Only a first instance is ever reported as taken.
                Ok(Created::Taken) => {
                    tracing::warn!("the API pipe's next instance was refused; retrying");
                }
                Err(error) => {
                    tracing::warn!("cannot create the next API pipe instance: {error}; retrying");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let peer = identify(&connected, &memberships);
        let key = peer.as_ref().map_or(PeerKey::Unknown, WindowsPeer::key);
        let Some(slot) = limiter.admit(key) else {
            continue;
        };
        let stream = PipeStream {
            pipe: connected,
            peer,
        };
        if sender.send(Ok(Limited::new(stream, slot))).await.is_err() {
            return;
        }
    }
}

/// A token handle, closed on drop.
struct Token(HANDLE);

impl Drop for Token {
    fn drop(&mut self) {
        // SAFETY: opened by OpenThreadToken, closed once.
        unsafe { CloseHandle(self.0) };
    }
}

/// The connected client's token: impersonate, open the thread token, revert at once.
fn client_token(pipe: HANDLE) -> io::Result<Token> {
    // SAFETY: `pipe` is a connected server instance.
    if unsafe { ImpersonateNamedPipeClient(pipe) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let mut token: HANDLE = ptr::null_mut();
    // OpenAsSelf: the token is opened with fimsvc's own rights, not the client's (which, at
    // identification level, could not open it).
    // SAFETY: a valid out pointer; the pseudo-handle needs no closing.
    let opened = unsafe { OpenThreadToken(GetCurrentThread(), TOKEN_QUERY, 1, &mut token) };
    let error = io::Error::last_os_error();
    // SAFETY: no arguments; ends the impersonation this thread started above.
    if unsafe { RevertToSelf() } == 0 {
        // Carrying on would run this worker thread, and every task it polls, as the client.
        tracing::error!(
            "RevertToSelf failed after identifying an API client ({}): stopping",
            io::Error::last_os_error()
        );
        std::process::abort();
    }
    if opened == 0 {
        return Err(error);
    }
    Ok(Token(token))
}

/// Is `sid` enabled in the (impersonation) token?
fn member(token: &Token, sid: &Sid) -> io::Result<bool> {
    let mut is_member = 0;
    // SAFETY: the token came from OpenThreadToken, the SID is valid, the out pointer too.
    if unsafe { CheckTokenMembership(token.0, sid.as_psid(), &mut is_member) } == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(is_member != 0)
}

/// The token's user SID.
fn token_user(token: &Token) -> io::Result<Sid> {
    let mut needed = 0u32;
    // SAFETY: a size query: no buffer, the length goes to `needed`.
    unsafe { GetTokenInformation(token.0, TokenUser, ptr::null_mut(), 0, &mut needed) };
    // u64s: TOKEN_USER holds a pointer and wants its alignment.
    let mut buffer = vec![0u64; (needed as usize).div_ceil(8).max(1)];
    // SAFETY: the buffer is valid for `buffer.len() * 8` bytes.
    let read = unsafe {
        GetTokenInformation(
            token.0,
            TokenUser,
            buffer.as_mut_ptr().cast(),
            (buffer.len() * 8) as u32,
            &mut needed,
        )
    };
    if read == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the system wrote a TOKEN_USER at the start of the aligned buffer; its SID
    // points into the same buffer, which lives until the copy is made.
    Ok(unsafe {
        let user = &*(buffer.as_ptr() as *const TOKEN_USER);
        Sid::copy_of(user.User.Sid)
    })
}

/// Who the connected client is; None (logged) when its token cannot be read: no role.
fn identify(pipe: &NamedPipeServer, memberships: &Memberships) -> Option<WindowsPeer> {
    let handle = pipe.as_raw_handle() as HANDLE;
    let token = match client_token(handle) {
        Ok(token) => token,
        Err(error) => {
            tracing::warn!("cannot read an API pipe client's token ({error}): it gets no role");
            return None;
        }
    };
    let check = |sid: Option<&Sid>| match sid.map(|sid| member(&token, sid)) {
        Some(Ok(member)) => member,
        Some(Err(error)) => {
            tracing::warn!("CheckTokenMembership failed ({error}): counted as not a member");
            false
        }
        None => false,
    };
    let user = match token_user(&token) {
        Ok(user) => user,
        Err(error) => {
            tracing::warn!("cannot read an API pipe client's user ({error}): it gets no role");
            return None;
        }
    };
    let mut pid = 0u32;
    // SAFETY: a connected pipe handle and a valid out pointer.
    let pid = (unsafe { GetNamedPipeClientProcessId(handle, &mut pid) } != 0).then_some(pid);
    let peer = WindowsPeer {
        sid: user.text().unwrap_or_else(|_| "an unreadable SID".into()),
        account: user.account(),
        pid,
        system: check(Some(&memberships.system)),
        administrator: check(Some(&memberships.administrators)),
        owner_group: check(memberships.owner.as_ref()),
        reader_group: check(memberships.reader.as_ref()),
    };
    tracing::debug!(
        peer = %peer.describe(),
        system = peer.system,
        administrator = peer.administrator,
        owner_group = peer.owner_group,
        reader_group = peer.reader_group,
        "API pipe client identified"
    );
    Some(peer)
}

/// A connected pipe instance and its client's identity.
pub struct PipeStream {
    pipe: NamedPipeServer,
    peer: Option<WindowsPeer>,
}

impl Connected for PipeStream {
    type ConnectInfo = Option<WindowsPeer>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.peer.clone()
    }
}

impl AsyncRead for PipeStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_read(cx, buf)
    }
}

impl AsyncWrite for PipeStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.pipe).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[path = "pipe_windows_tests.rs"]
mod tests;
