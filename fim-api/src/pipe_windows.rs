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
    ffi::c_void,
    io,
    os::windows::io::AsRawHandle,
    pin::Pin,
    ptr,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::windows::named_pipe::{NamedPipeServer, ServerOptions},
    sync::mpsc,
    task::JoinHandle,
};
use tonic::transport::server::Connected;
use windows_sys::Win32::{
    Foundation::{
        CloseHandle, LocalFree, ERROR_ACCESS_DENIED, ERROR_INSUFFICIENT_BUFFER, ERROR_NONE_MAPPED,
        ERROR_PIPE_BUSY, HANDLE,
    },
    Security::{
        Authorization::{
            ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW,
            ConvertStringSidToSidW, SDDL_REVISION_1,
        },
        CheckTokenMembership, GetLengthSid, GetTokenInformation, LookupAccountNameW,
        LookupAccountSidW, RevertToSelf, SidTypeAlias, SidTypeGroup, SidTypeWellKnownGroup,
        TokenUser, PSECURITY_DESCRIPTOR, PSID, SECURITY_ATTRIBUTES, SID_NAME_USE, TOKEN_QUERY,
        TOKEN_USER,
    },
    System::{
        Pipes::{GetNamedPipeClientProcessId, ImpersonateNamedPipeClient},
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

fn wide(text: &str) -> Vec<u16> {
    text.encode_utf16().chain(Some(0)).collect()
}

/// A NUL-terminated UTF-16 string the system allocated, as text.
///
/// # Safety
/// `text` must be null or point at a NUL-terminated UTF-16 string.
unsafe fn from_wide(text: *const u16) -> String {
    if text.is_null() {
        return String::new();
    }
    let mut length = 0;
    // SAFETY: the caller promises a NUL-terminated string.
    while unsafe { *text.add(length) } != 0 {
        length += 1;
    }
    // SAFETY: `length` units were just read.
    String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(text, length) })
}

/// A SID in memory this process owns (in u32s: a SID's sub-authorities want their alignment).
#[derive(Clone, Debug)]
pub struct Sid(Vec<u32>);

impl Sid {
    fn as_psid(&self) -> PSID {
        self.0.as_ptr() as PSID
    }

    /// Copies a SID the system handed out.
    ///
    /// # Safety
    /// `sid` must point at a valid SID.
    unsafe fn copy_of(sid: PSID) -> Sid {
        // SAFETY: a valid SID is GetLengthSid bytes long.
        let length = unsafe { GetLengthSid(sid) } as usize;
        let mut copy = vec![0u32; length.div_ceil(4)];
        // SAFETY: `length` bytes are readable at `sid` and fit in `copy`.
        unsafe { ptr::copy_nonoverlapping(sid as *const u8, copy.as_mut_ptr().cast(), length) };
        Sid(copy)
    }

    /// From its string form (`S-1-5-32-544`).
    pub fn parse(text: &str) -> io::Result<Sid> {
        let text = wide(text);
        let mut sid: PSID = ptr::null_mut();
        // SAFETY: the string is NUL-terminated; on success `sid` is LocalAlloc'd, freed below.
        if unsafe { ConvertStringSidToSidW(text.as_ptr(), &mut sid) } == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the system just produced a valid SID.
        let copy = unsafe { Sid::copy_of(sid) };
        // SAFETY: allocated by ConvertStringSidToSidW with LocalAlloc.
        unsafe { LocalFree(sid as _) };
        Ok(copy)
    }

    /// The string form, for SDDL and logs.
    pub fn text(&self) -> io::Result<String> {
        let mut text: *mut u16 = ptr::null_mut();
        // SAFETY: the SID is valid (it came from the system); the string is LocalAlloc'd.
        if unsafe { ConvertSidToStringSidW(self.as_psid(), &mut text) } == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the system wrote a NUL-terminated string.
        let result = unsafe { from_wide(text) };
        // SAFETY: allocated by ConvertSidToStringSidW with LocalAlloc.
        unsafe { LocalFree(text as _) };
        Ok(result)
    }

    /// DOMAIN\name, when the system can say.
    fn account(&self) -> Option<String> {
        let mut name = vec![0u16; 256];
        let mut domain = vec![0u16; 256];
        let mut name_length = name.len() as u32;
        let mut domain_length = domain.len() as u32;
        let mut kind: SID_NAME_USE = 0;
        // SAFETY: both buffers are valid for the lengths given; the SID is valid.
        let found = unsafe {
            LookupAccountSidW(
                ptr::null(),
                self.as_psid(),
                name.as_mut_ptr(),
                &mut name_length,
                domain.as_mut_ptr(),
                &mut domain_length,
                &mut kind,
            )
        };
        if found == 0 {
            return None;
        }
        let name = String::from_utf16_lossy(&name[..name_length as usize]);
        let domain = String::from_utf16_lossy(&domain[..domain_length as usize]);
        Some(if domain.is_empty() {
            name
        } else {
            format!(r"{domain}\{name}")
        })
    }
}

/// A group by SID string or account name (LookupAccountNameW); None when no account has that
/// name. A name that resolves to a user is refused: a role group must be a group.
pub fn resolve_group(name: &str, what: &'static str) -> Result<Option<Sid>, PipeError> {
    let failed = |source| PipeError::Account {
        what,
        name: name.to_string(),
        source,
    };
    if name.len() > 4 && name[..4].eq_ignore_ascii_case("S-1-") {
        return Sid::parse(name).map(Some).map_err(failed);
    }
    let account = wide(name);
    // 68 bytes: the largest SID (15 sub-authorities).
    let mut sid = vec![0u32; 17];
    let mut domain = vec![0u16; 256];
    loop {
        let mut sid_length = (sid.len() * 4) as u32;
        let mut domain_length = domain.len() as u32;
        let mut kind: SID_NAME_USE = 0;
        // SAFETY: the name is NUL-terminated and both buffers are valid for their lengths.
        let found = unsafe {
            LookupAccountNameW(
                ptr::null(),
                account.as_ptr(),
                sid.as_mut_ptr() as PSID,
                &mut sid_length,
                domain.as_mut_ptr(),
                &mut domain_length,
                &mut kind,
            )
        };
        if found != 0 {
            if ![SidTypeGroup, SidTypeAlias, SidTypeWellKnownGroup].contains(&kind) {
                return Err(PipeError::NotAGroup {
                    what,
                    name: name.to_string(),
                });
            }
            return Ok(Some(Sid(sid)));
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error().map(|code| code as u32) {
            Some(ERROR_NONE_MAPPED) => return Ok(None),
            Some(ERROR_INSUFFICIENT_BUFFER)
                if sid_length as usize > sid.len() * 4 || domain_length as usize > domain.len() =>
            {
                sid.resize((sid_length as usize).div_ceil(4).max(sid.len()), 0);
                domain.resize((domain_length as usize).max(domain.len()), 0);
            }
            _ => return Err(failed(error)),
        }
    }
}

/// A security descriptor from SDDL, freed on drop.
struct Descriptor(PSECURITY_DESCRIPTOR);

// SAFETY: the descriptor is written once by the system and only read afterwards.
unsafe impl Send for Descriptor {}
// SAFETY: as above.
unsafe impl Sync for Descriptor {}

impl Descriptor {
    fn from_sddl(sddl: &str) -> io::Result<Descriptor> {
        let text = wide(sddl);
        let mut descriptor: PSECURITY_DESCRIPTOR = ptr::null_mut();
        // SAFETY: the string is NUL-terminated; the descriptor is LocalAlloc'd, freed on drop.
        let converted = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                text.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                ptr::null_mut(),
            )
        };
        if converted == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Descriptor(descriptor))
    }
}

impl Drop for Descriptor {
    fn drop(&mut self) {
        // SAFETY: allocated by ConvertStringSecurityDescriptorToSecurityDescriptorW.
        unsafe { LocalFree(self.0 as _) };
    }
}

/// Checks a descriptor string the way the pipe will use it (for the Wine tests).
pub fn descriptor_accepted(sddl: &str) -> io::Result<()> {
    Descriptor::from_sddl(sddl).map(drop)
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

fn create_instance(
    path: &str,
    descriptor: &Descriptor,
    first: bool,
) -> io::Result<NamedPipeServer> {
    let mut attributes = SECURITY_ATTRIBUTES {
        nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
        lpSecurityDescriptor: descriptor.0,
        bInheritHandle: 0,
    };
    let mut options = ServerOptions::new();
    options
        .first_pipe_instance(first)
        .reject_remote_clients(true);
    // SAFETY: `attributes` is a valid SECURITY_ATTRIBUTES whose descriptor outlives the call.
    unsafe {
        options.create_with_security_attributes_raw(
            path,
            (&mut attributes as *mut SECURITY_ATTRIBUTES).cast::<c_void>(),
        )
    }
}

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
        let first = create_instance(path, &descriptor, true).map_err(|source| {
            match source.raw_os_error().map(|code| code as u32) {
                Some(ERROR_ACCESS_DENIED) | Some(ERROR_PIPE_BUSY) => {
                    PipeError::InUse(path.to_string())
                }
                _ => PipeError::Create {
                    path: path.to_string(),
                    source,
                },
            }
        })?;
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
            continue;
        }
        let connected = waiting;
        waiting = loop {
            match create_instance(&path, &descriptor, false) {
                Ok(next) => break next,
                Err(error) => {
                    tracing::warn!("cannot create the next API pipe instance: {error}; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
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
    Some(WindowsPeer {
        sid: user.text().unwrap_or_else(|_| "an unreadable SID".into()),
        account: user.account(),
        pid,
        system: check(Some(&memberships.system)),
        administrator: check(Some(&memberships.administrators)),
        owner_group: check(memberships.owner.as_ref()),
        reader_group: check(memberships.reader.as_ref()),
    })
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
