//! Who is on the other end of a Unix socket connection, fixed at accept time (the Unix half
//! of [`crate::peer`]).
//!
//! Roles on the local socket come from the kernel, not from anything the client says:
//! SO_PEERCRED gives the uid, gid and pid, and SO_PEERGROUPS the supplementary groups, both
//! as they were when the client connected. Reading /proc/PID/status later would race with the
//! client exiting and the pid being reused, so the groups are taken from the socket once and
//! carried with the connection ([`PeerStream`] is what tonic serves; its [`UnixPeer`] lands in
//! every request's extensions).
use std::{
    ffi::CString,
    io,
    os::fd::AsRawFd,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::UnixStream,
};
use tonic::transport::server::Connected;

use crate::peer::UnixPeer;

/// An accepted Unix socket connection and its peer's credentials.
pub struct PeerStream {
    stream: UnixStream,
    peer: Option<UnixPeer>,
}

impl PeerStream {
    pub fn new(stream: UnixStream) -> Self {
        let peer = match stream.peer_cred() {
            Ok(cred) => Some(UnixPeer {
                uid: cred.uid(),
                gid: cred.gid(),
                pid: cred.pid(),
                groups: peer_groups(&stream).unwrap_or_else(|error| {
                    tracing::debug!("SO_PEERGROUPS failed: {error}; using the primary group only");
                    Vec::new()
                }),
            }),
            Err(error) => {
                tracing::warn!("cannot read a client's credentials: {error}; it gets no role");
                None
            }
        };
        PeerStream { stream, peer }
    }

    /// The credentials read at accept time (None when the kernel would not say).
    pub fn peer(&self) -> Option<&UnixPeer> {
        self.peer.as_ref()
    }
}

/// The peer's supplementary groups as they were at connect time.
fn peer_groups(stream: &UnixStream) -> io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut length = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: the buffer is valid for `length` bytes; the kernel writes at most that and
        // sets `length` to what it wrote (or needs, with ERANGE).
        let status = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut length,
            )
        };
        let count = length as usize / std::mem::size_of::<libc::gid_t>();
        if status == 0 {
            groups.truncate(count);
            return Ok(groups);
        }
        let error = io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::ERANGE) && count > groups.len() {
            groups.resize(count, 0);
            continue;
        }
        return Err(error);
    }
}

/// The id of a group by name (None when there is no such group).
pub fn group_id(name: &str) -> io::Result<Option<u32>> {
    let name = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a group name"))?;
    let mut buffer = vec![0u8; 4096];
    loop {
        // SAFETY: all-zero is a valid `group` (pointers null, gid 0); getgrnam_r fills it.
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; the buffer for its length.
        let status = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut group,
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                &mut found,
            )
        };
        if status == libc::ERANGE && buffer.len() < 1 << 20 {
            buffer.resize(buffer.len() * 2, 0);
            continue;
        }
        if status != 0 {
            return Err(io::Error::from_raw_os_error(status));
        }
        return Ok((!found.is_null()).then_some(group.gr_gid));
    }
}

impl Connected for PeerStream {
    type ConnectInfo = Option<UnixPeer>;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.peer.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
